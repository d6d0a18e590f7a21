//! The poison-secret test: a plaintext secret and an encrypted one are planted in the demo fixture,
//! and every command is run in every output mode; neither value may appear in any of it (stdout,
//! stderr, logs at trace level, JSON, plan files, error messages).

mod common;

use common::{POISON, POISON_ENCRYPTED, demo, hoist_in, repo};

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(POISON),
        "{what} leaks the plaintext secret:\n{text}"
    );
    assert!(
        !text.contains(POISON_ENCRYPTED),
        "{what} leaks the decrypted secret:\n{text}"
    );
}

#[test]
fn no_command_prints_a_secret() {
    let root = demo();
    let tmp = tempfile::tempdir().expect("tmp");
    let plan_file = tmp.path().join("plan.json");
    let plan_file = plan_file.display().to_string();
    let trace = [("HOIST_LOG", "trace")];
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("check", vec!["check"]),
        ("check --json", vec!["check", "--json"]),
        (
            "plan",
            vec![
                "-i",
                "inventory/test",
                "plan",
                "site",
                "--observed",
                "observed/bare",
            ],
        ),
        (
            "plan --json",
            vec![
                "-i",
                "inventory/test",
                "plan",
                "site",
                "--observed",
                "observed/bare",
                "--json",
                "--out",
                &plan_file,
            ],
        ),
        (
            "plan (converged)",
            vec![
                "-i",
                "inventory/test",
                "plan",
                "site",
                "--observed",
                "observed/converged",
            ],
        ),
        (
            "plan (missing snapshot)",
            vec![
                "-i",
                "inventory/test",
                "plan",
                "site",
                "--observed",
                "nowhere",
            ],
        ),
        (
            "plan -e",
            vec![
                "-i",
                "inventory/test",
                "-e",
                "web_port=81",
                "plan",
                "site",
                "--observed",
                "observed/bare",
            ],
        ),
        (
            "inventory show",
            vec!["-i", "inventory/test", "inventory", "show"],
        ),
        (
            "inventory show --json",
            vec!["-i", "inventory/test", "inventory", "show", "--json"],
        ),
        (
            "inventory show --host",
            vec![
                "-i",
                "inventory/test",
                "inventory",
                "show",
                "--host",
                "web-1",
            ],
        ),
        ("--help", vec!["--help"]),
    ];
    for (what, args) in runs {
        for env in [&[][..], &trace[..]] {
            let run = hoist_in(&root, &args, env);
            assert!(
                run.code == 0 || run.code == 2 || what.contains("missing"),
                "{what}: exit {} {}",
                run.code,
                run.stderr
            );
            assert_clean(what, &run.all());
        }
    }
    assert_clean(
        "plan --out",
        &std::fs::read_to_string(&plan_file).expect("plan file"),
    );
}

#[test]
fn errors_that_involve_a_secret_do_not_print_it() {
    // A template error while rendering a line holding the secret, and a bad -e value.
    let tmp = tempfile::tempdir().expect("tmp");
    common::copy_dir(&demo(), tmp.path());
    std::fs::write(
        tmp.path().join("templates/app.conf.j2"),
        "password {{ db_password }} {{ db_password | int(strict) }}\n",
    )
    .expect("write");
    let run = hoist_in(
        tmp.path(),
        &[
            "-i",
            "inventory/test",
            "plan",
            "site",
            "--observed",
            "observed/bare",
        ],
        &[("HOIST_LOG", "trace")],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_clean("template error", &run.all());
    let run = hoist_in(tmp.path(), &["check", "--json"], &[]);
    assert_clean("check of a failing template", &run.all());
}

#[test]
fn secrets_commands_keep_plaintext_off_the_terminal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("secrets.yml");
    std::fs::write(&file, format!("a: {POISON}\n")).expect("write");
    let f = file.display().to_string();
    let enc = hoist_in(&repo(), &["secrets", "encrypt", &f], &[]);
    assert_eq!(enc.code, 0, "{}", enc.stderr);
    assert_clean("secrets encrypt", &enc.all());
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.starts_with("a: \"ENC[AGE,") && !text.contains(POISON),
        "{text}"
    );
    let dec = hoist_in(&repo(), &["secrets", "decrypt", &f], &[]);
    assert_eq!(dec.code, 0, "{}", dec.stderr);
    assert_clean("secrets decrypt", &dec.all());
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        format!("a: \"{POISON}\"\n")
    );
    // Without a key, decrypt fails clearly and leaves the file as it was.
    let enc_again = hoist_in(&repo(), &["secrets", "encrypt", &f], &[]);
    assert_eq!(enc_again.code, 0);
    let before = std::fs::read_to_string(&file).expect("read");
    let nokey = hoist_in(
        &repo(),
        &["secrets", "decrypt", &f],
        &[("HOIST_AGE_KEY_FILE", "")],
    );
    assert_eq!(nokey.code, 1);
    assert!(nokey.stderr.contains("no age key"), "{}", nokey.stderr);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), before);
    // edit with a non-interactive "editor" that appends a value.
    let edit = hoist_in(
        &repo(),
        &["secrets", "edit", &f],
        &[("EDITOR", "sh -c 'echo b: added-value >> \"$0\"'")],
    );
    assert_eq!(edit.code, 0, "{}", edit.stderr);
    assert_clean("secrets edit", &edit.all());
    let after = std::fs::read_to_string(&file).expect("read");
    assert!(
        after.starts_with(before.trim_end()),
        "unchanged values keep their ciphertext"
    );
    assert!(
        after.contains("b: \"ENC[AGE,") && !after.contains("added-value"),
        "{after}"
    );
}

/// `secrets decrypt` never writes plaintext inside a git working tree, in place or with `--out`.
#[test]
fn decrypt_refuses_to_write_plaintext_into_a_working_tree() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(tmp.path().join(".git")).expect("a working tree");
    let file = tmp.path().join("secrets.yml");
    std::fs::write(&file, format!("a: {POISON}\n")).expect("write");
    let f = file.display().to_string();
    let enc = hoist_in(&repo(), &["secrets", "encrypt", &f], &[]);
    assert_eq!(enc.code, 0, "{}", enc.stderr);
    let encrypted = std::fs::read_to_string(&file).expect("read");
    let inside = tmp.path().join("plain.yml").display().to_string();
    for args in [
        vec!["secrets", "decrypt", &f],
        vec!["secrets", "decrypt", &f, "--out", &inside],
    ] {
        let run = hoist_in(&repo(), &args, &[]);
        assert_eq!(run.code, 1, "{args:?}: {}", run.all());
        assert!(
            run.stderr.contains("inside the git working tree"),
            "{}",
            run.stderr
        );
        assert_clean("secrets decrypt", &run.all());
    }
    assert_eq!(std::fs::read_to_string(&file).expect("read"), encrypted);
    assert!(!tmp.path().join("plain.yml").exists());
    // Outside it, to a new private file.
    let elsewhere = tempfile::tempdir().expect("tmp");
    let out = elsewhere.path().join("plain.yml");
    let o = out.display().to_string();
    let run = hoist_in(&repo(), &["secrets", "decrypt", &f, "--out", &o], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
