//! The scripts run for real, by the local `sh`, on files of a temporary folder: what a host does
//! with them (the fake only interprets them).

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::*;

fn run(argv: &[String], stdin: &[u8]) -> (bool, String, Vec<u8>) {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    // A script that refuses early does not read its input: the pipe may break.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.stdout,
    )
}

fn put(path: &std::path::Path, content: &[u8], sent: &[u8]) -> (bool, String) {
    let sum = hoist_core::desired::sha256_hex(content);
    let argv = put_file(&path.display().to_string(), 0o640, "", content.len(), &sum);
    let (ok, err, _) = run(&argv, sent);
    (ok, err)
}

#[test]
fn a_whole_transfer_replaces_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("sub/app.env");
    assert!(put(&f, b"A=1\n", b"A=1\n").0);
    assert_eq!(std::fs::read(&f).expect("read"), b"A=1\n");
}

#[test]
fn a_transfer_cut_short_leaves_the_old_file_and_fails() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("app.env");
    std::fs::write(&f, "OLD=1\n").expect("write");
    let (ok, err) = put(&f, b"NEW=1\nMORE=2\n", b"NEW=1\n");
    assert!(!ok);
    assert!(err.contains("received 6 of 13 bytes"), "{err}");
    let (ok, err) = put(&f, b"NEW=1\n", b"NEW=2\n");
    assert!(!ok);
    assert!(err.contains("checksum differs"), "{err}");
    assert_eq!(std::fs::read_to_string(&f).expect("read"), "OLD=1\n");
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert_eq!(left.len(), 1, "no temporary file is left behind");
}

#[test]
fn a_symlink_or_a_directory_is_refused_not_written_through() {
    let dir = tempfile::tempdir().expect("tmp");
    let target = dir.path().join("target");
    std::fs::write(&target, "precious\n").expect("write");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let (ok, err) = put(&link, b"x\n", b"x\n");
    assert!(!ok && err.contains("is a symlink"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "precious\n"
    );
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let (ok, err) = put(&sub, b"x\n", b"x\n");
    assert!(!ok && err.contains("is a directory"), "{err}");
    assert!(sub.is_dir());
}

#[test]
fn a_symlink_cannot_shift_the_framing_of_the_files_after_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let big = dir.path().join("big");
    std::fs::write(&big, "x".repeat(100)).expect("write");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&big, &link).expect("symlink");
    let next = dir.path().join("next");
    std::fs::write(&next, "hello\n").expect("write");
    let paths = [link.display().to_string(), next.display().to_string()];
    let argv = read_files(&[&paths[0], &paths[1]]);
    let (ok, _, out) = run(&argv, b"");
    assert!(ok);
    let text = String::from_utf8(out).expect("utf-8");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("==hoist== symlink"));
    assert!(lines.next().is_some_and(|l| l.starts_with("==hoist== ")));
    assert_eq!(lines.next(), Some("hello"));
}
