//! `hoist pki issue`: the CA and certificates are created once, encrypted; a re-run changes nothing;
//! a new host re-issues only the server certificate; `--rotate-ca` re-issues everything. The
//! certificates chain to the CA and name every host (checked with openssl).

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;

use common::{copy_dir, demo, hoist_in};

const FILE: &str = "inventory/test/group_vars/all/pki.secrets.yml";
const NAMES: &str = "inventory/test/group_vars/all/pki.yml";

/// The decrypted values of the PKI file, by key (lists joined with commas). Decrypted, each value
/// is a JSON string, or a flow list of them.
fn decrypted(root: &Path) -> std::collections::BTreeMap<String, String> {
    let run = hoist_in(
        root,
        &["secrets", "decrypt", FILE, "--out", "pki.plain.yml"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(root.join("pki.plain.yml")).expect("decrypted file");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            let value = match serde_json::from_str::<serde_json::Value>(v).expect("JSON value") {
                serde_json::Value::String(s) => s,
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k.to_owned(), value)
        })
        .collect()
}

fn openssl(root: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(root)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn issue_once_then_only_what_changed() {
    let tmp = tempfile::tempdir().expect("tmp");
    copy_dir(&demo(), tmp.path());
    let root = tmp.path();

    // The repository's example inventories ship a placeholder file: it is replaced.
    std::fs::write(
        root.join(FILE),
        "# PLACEHOLDER: replace with `hoist pki issue`\ntls_ca_cert: \"ENC[AGE,YWdlLWVuY3J5cHRpb24ub3JnL3YxCg==]\"\n",
    )
    .expect("placeholder");
    let run = hoist_in(
        root,
        &[
            "-i",
            "inventory/test",
            "pki",
            "issue",
            "--name",
            "apm.example.org",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("a new CA"), "{}", run.stderr);
    let first = std::fs::read_to_string(root.join(FILE)).expect("pki file");
    assert!(!first.contains("BEGIN"), "values are encrypted:\n{first}");
    assert!(first.contains("tls_server_key: \"ENC[AGE,"), "{first}");

    let v = decrypted(root);
    std::fs::write(root.join("ca.pem"), &v["tls_ca_cert"]).expect("write");
    std::fs::write(root.join("server.pem"), &v["tls_server_cert"]).expect("write");
    std::fs::write(root.join("client.pem"), &v["tls_client_cert"]).expect("write");
    for cert in ["server.pem", "client.pem"] {
        let ok = openssl(root, &["verify", "-CAfile", "ca.pem", cert]);
        assert!(ok.contains(": OK"), "{ok}");
    }
    let sans = openssl(
        root,
        &[
            "x509",
            "-in",
            "server.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    for name in [
        "DNS:db-1",
        "DNS:web-2",
        "IP Address:10.9.0.22",
        "DNS:objectstore",
    ] {
        assert!(sans.contains(name), "{name} in {sans}");
    }

    // Nothing to do (the extra name is remembered): the file is byte for byte the same.
    let run = hoist_in(root, &["-i", "inventory/test", "pki", "issue"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("up to date"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(root.join(FILE)).expect("pki"),
        first
    );

    // The project loads the file as secrets: check passes and shows no certificate.
    let check = hoist_in(root, &["check"], &[]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let show = hoist_in(root, &["-i", "inventory/test", "inventory", "show"], &[]);
    assert!(!show.all().contains("BEGIN"), "{}", show.all());
    // The certificate's names are in clear beside it, so output that names a host is not redacted.
    assert!(!first.contains("tls_server_names"), "{first}");
    let names = std::fs::read_to_string(root.join(NAMES)).expect("names file");
    assert!(
        names.contains("tls_server_names: [") && names.contains("\"db-1\""),
        "{names}"
    );
    assert!(
        show.stdout.contains("web-2 (root@10.9.0.22:2222)"),
        "{}",
        show.all()
    );

    // A new host: a new server certificate; the CA and the client certificate keep their ciphertext.
    let hosts = root.join("inventory/test/hosts.yml");
    let text = std::fs::read_to_string(&hosts).expect("hosts");
    std::fs::write(
        &hosts,
        text.replace("  web-2:\n", "  db-2:\n    address: 10.9.0.12\n  web-2:\n"),
    )
    .expect("write");
    let run = hoist_in(root, &["-i", "inventory/test", "pki", "issue"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("a server certificate"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("a new CA"), "{}", run.stderr);
    let second = std::fs::read_to_string(root.join(FILE)).expect("pki");
    let line = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(line(&first, "tls_ca_cert:"), line(&second, "tls_ca_cert:"));
    assert_eq!(
        line(&first, "tls_client_key:"),
        line(&second, "tls_client_key:")
    );
    assert_ne!(
        line(&first, "tls_server_key:"),
        line(&second, "tls_server_key:")
    );
    let names = std::fs::read_to_string(root.join(NAMES)).expect("names file");
    assert!(
        names.contains("\"10.9.0.12\"") && names.contains("\"apm.example.org\""),
        "{names}"
    );

    let run = hoist_in(
        root,
        &["-i", "inventory/test", "pki", "issue", "--rotate-ca"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let third = std::fs::read_to_string(root.join(FILE)).expect("pki");
    assert_ne!(line(&second, "tls_ca_cert:"), line(&third, "tls_ca_cert:"));
    assert_ne!(
        line(&second, "tls_client_key:"),
        line(&third, "tls_client_key:")
    );
}

#[test]
fn names_kept_with_the_certificates_move_to_their_clear_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    copy_dir(&demo(), tmp.path());
    let root = tmp.path();
    let _ = std::fs::remove_file(root.join(FILE));
    let run = hoist_in(root, &["-i", "inventory/test", "pki", "issue"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A PKI file as `pki issue` wrote it before the names had a file of their own.
    let names = std::fs::read_to_string(root.join(NAMES)).expect("names file");
    let listed = names
        .lines()
        .filter(|l| l.starts_with("tls_"))
        .collect::<Vec<_>>()
        .join("\n");
    let run = hoist_in(root, &["secrets", "decrypt", FILE], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let plain = std::fs::read_to_string(root.join(FILE)).expect("pki");
    std::fs::write(root.join(FILE), format!("{plain}{listed}\n")).expect("write");
    let run = hoist_in(root, &["secrets", "encrypt", FILE], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::remove_file(root.join(NAMES)).expect("remove");
    let before = std::fs::read_to_string(root.join(FILE)).expect("pki");
    assert!(before.contains("tls_server_names: [\"ENC[AGE,"), "{before}");

    let run = hoist_in(root, &["-i", "inventory/test", "pki", "issue"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("moved to pki.yml"), "{}", run.stderr);
    assert!(!run.stderr.contains("certificate for"), "{}", run.stderr);
    let after = std::fs::read_to_string(root.join(FILE)).expect("pki");
    assert!(!after.contains("tls_server_names"), "{after}");
    let line = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("tls_server_key:"))
            .map(str::to_owned)
    };
    assert_eq!(line(&before), line(&after), "the key keeps its ciphertext");
    assert_eq!(
        std::fs::read_to_string(root.join(NAMES)).expect("names file"),
        names
    );
}
