//! The poison-secret test, beyond the plain value: a secret transformed by every filter the
//! templates offer, the old value of a rotated secret, a secret given with `-e`, secrets of several
//! inventories, and the commands that reach hosts (validate, drills, status, logs) on their
//! failure paths, against a loopback port where nothing listens. Their success paths are checked
//! on the sandbox by the e2e, which scans every output for the inventory's secrets.

mod common;

use std::path::Path;

use common::{POISON, POISON_ENCRYPTED, Run, copy_dir, demo, hoist_in};

/// A new value for the poison secret, as a rotation or `-e` gives it.
const ROTATED: &str = "n3w-ROTATED-value";

/// A secret of a second inventory.
const SECOND: &str = "zq8Kx-Vw3Jp-Ymm4";

/// Every form of `secret` a filter below makes that is long enough to be recognised.
fn forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let reversed: String = secret.chars().rev().collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    let mut forms = vec![
        secret.to_owned(),
        secret.to_uppercase(),
        secret.to_lowercase(),
        reversed,
        secret.replace('-', "_"),
        b64,
        secret
            .chars()
            .map(String::from)
            .collect::<Vec<_>>()
            .join(","),
    ];
    // Every run of 8 characters, in each case: a slice of the secret is the secret too.
    for base in [
        secret.to_owned(),
        secret.to_uppercase(),
        secret.to_lowercase(),
    ] {
        let chars: Vec<char> = base.chars().collect();
        forms.extend(chars.windows(8).map(|w| w.iter().collect::<String>()));
    }
    forms
}

fn assert_clean(what: &str, run: &Run, secrets: &[&str]) {
    let text = run.all();
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{what} shows {form:?} (a form of a secret):\n{text}"
            );
        }
    }
}

/// The demo fixture in a temporary folder.
fn project() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    copy_dir(&demo(), tmp.path());
    tmp
}

fn write(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn plan(root: &Path, observed: &str, extra: &[&str]) -> Vec<(String, Run)> {
    let mut runs = Vec::new();
    for json in [false, true] {
        for trace in [false, true] {
            let mut args = vec!["-i", "inventory/test"];
            args.extend(extra);
            args.extend(["plan", "site", "--observed", observed]);
            if json {
                args.push("--json");
            }
            let env: &[(&str, &str)] = if trace {
                &[("HOIST_LOG", "trace")]
            } else {
                &[]
            };
            let run = hoist_in(root, &args, env);
            assert!(run.code == 0 || run.code == 2, "{args:?}: {}", run.all());
            runs.push((args.join(" "), run));
        }
    }
    runs
}

/// The filters of the templates, each applied to the secret on a line of its own.
const FILTERED: &str = r#"
upper {{ db_password | upper }};
lower {{ db_password | lower }};
title {{ db_password | title }};
capitalize {{ db_password | capitalize }};
replace {{ db_password | replace("-", "_") }};
reverse {{ db_password | reverse }};
slice {{ db_password[2:14] }};
to_json {{ db_password | to_json }};
tojson {{ db_password | tojson }};
to_json_map {{ {"k": db_password} | to_json }};
to_yaml_map {{ {"k": db_password} | to_yaml }};
to_yaml {{ db_password | to_yaml }};
b64encode {{ db_password | b64encode }};
quote {{ db_password | quote }};
regex_replace {{ db_password | regex_replace("p0", "P0") }};
escape {{ db_password | escape }};
join {{ db_password | list | join(",") }};
format {{ "%s!" | format(db_password) }};
concat {{ db_password ~ "tail" }};
indent {{ db_password | trim | indent(2) }};
default {{ db_password | default("x") }};
password_hash {{ db_password | password_hash("sha512") }};
derived {{ shouted | reverse }};
"#;

#[test]
fn no_filter_applied_to_a_secret_shows_it() {
    let tmp = project();
    let template = tmp.path().join("templates/app.conf.j2");
    let mut text = std::fs::read_to_string(&template).expect("read");
    text.push_str(FILTERED);
    std::fs::write(&template, text).expect("write");
    // A variable rendered from a secret, then filtered again in the template.
    write(
        tmp.path(),
        "inventory/test/group_vars/all/derived.yml",
        "shouted: \"{{ db_password | upper }}\"\n",
    );
    for (what, run) in plan(tmp.path(), "observed/bare", &[]) {
        assert_clean(&what, &run, &[POISON, POISON_ENCRYPTED]);
        if !what.contains("--json") {
            // Each filtered line is in the diff, its value masked.
            for line in FILTERED.lines().filter(|l| !l.is_empty()) {
                let name = line.split(' ').next().unwrap_or_default();
                let shown = run
                    .stdout
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("+{name} ")))
                    .unwrap_or_else(|| panic!("{name} is not in the diff:\n{}", run.stdout));
                assert!(shown.contains("(sensitive)"), "{shown}");
            }
        }
    }
}

#[test]
fn the_old_value_of_a_rotated_secret_is_not_shown() {
    let tmp = project();
    write(
        tmp.path(),
        "inventory/test/group_vars/all/secrets.yml",
        &std::fs::read_to_string(demo().join("inventory/test/group_vars/all/secrets.yml"))
            .expect("read")
            .replace(POISON, ROTATED),
    );
    // The hosts (the converged snapshot) still hold the old value, in files and environments.
    for (what, run) in plan(tmp.path(), "observed/converged", &[]) {
        assert_clean(&what, &run, &[POISON, ROTATED, POISON_ENCRYPTED]);
        assert!(run.stdout.contains("(sensitive)"), "{what}: {}", run.stdout);
    }
}

#[test]
fn a_secret_given_with_e_stays_a_secret() {
    let tmp = project();
    let e = format!("db_password={ROTATED}");
    for (what, run) in plan(tmp.path(), "observed/converged", &["-e", &e]) {
        assert_clean(&what, &run, &[POISON, ROTATED, POISON_ENCRYPTED]);
    }
    let show = hoist_in(
        tmp.path(),
        &[
            "-i",
            "inventory/test",
            "-e",
            &e,
            "inventory",
            "show",
            "--json",
        ],
        &[],
    );
    assert_eq!(show.code, 0, "{}", show.all());
    assert_clean("inventory show -e", &show, &[ROTATED]);
}

/// `hoist check` over several inventories: a problem of the first one that holds its secret is
/// masked, though the last one loaded has other secrets.
#[test]
fn check_masks_the_secrets_of_every_inventory() {
    let tmp = project();
    copy_dir(
        &tmp.path().join("inventory/test"),
        &tmp.path().join("inventory/second"),
    );
    write(
        tmp.path(),
        "inventory/second/group_vars/all/secrets.yml",
        &format!("db_password: {SECOND:?}\n"),
    );
    // A port that is the secret's value: each inventory's error quotes its own.
    let stack = tmp.path().join("stacks/web.yml");
    let text = std::fs::read_to_string(&stack).expect("read");
    std::fs::write(
        &stack,
        text.replace("${web_port}:8000", "${db_password}:8000"),
    )
    .expect("write");
    for args in [vec!["check"], vec!["check", "--json"]] {
        let run = hoist_in(tmp.path(), &args, &[("HOIST_LOG", "trace")]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert_eq!(
            run.stdout.matches("port ranges are not supported").count(),
            2,
            "{}",
            run.stdout
        );
        assert_clean("check of two inventories", &run, &[POISON, SECOND]);
    }
}

/// The commands that reach hosts, where no host answers: each fails, and says nothing secret.
#[test]
fn commands_that_reach_hosts_fail_without_showing_a_secret() {
    let tmp = project();
    let mut hosts = String::from("connection:\n  user: root\nhosts:\n");
    for name in ["db-1", "web-1", "web-2"] {
        hosts.push_str(&format!("  {name}:\n    address: 127.0.0.1\n    port: 1\n"));
    }
    hosts.push_str("groups:\n  db:\n    hosts: [db-1]\n  web:\n    hosts: [web-1, web-2]\n");
    hosts.push_str("    vars:\n      web_port: 8080\n");
    write(tmp.path(), "inventory/test/hosts.yml", &hosts);
    let e = format!("web_token={ROTATED}");
    let runs: [&[&str]; 10] = [
        &["status"],
        &["status", "--json"],
        &["logs", "db-1", "db"],
        &["validate"],
        &["validate", "--json"],
        &["drill", "restore", "--yes"],
        &["-e", "drills_allowed=true", "drill", "restore", "--yes"],
        &["-e", "drills_allowed=true", "drill", "failover", "--yes"],
        &[
            "-e",
            "drills_allowed=true",
            "drill",
            "objectstore-outage",
            "--yes",
        ],
        &["-e", &e, "apply", "site", "--yes"],
    ];
    for args in runs {
        let mut full = vec!["-i", "inventory/test"];
        full.extend(args);
        for env in [&[][..], &[("HOIST_LOG", "trace")][..]] {
            let run = hoist_in(tmp.path(), &full, env);
            assert_ne!(run.code, 0, "{full:?} cannot succeed here: {}", run.all());
            assert_clean(&full.join(" "), &run, &[POISON, POISON_ENCRYPTED, ROTATED]);
        }
    }
}

/// A saved plan is its owner's alone, and its hashes cannot be checked against guesses: the hash
/// of a file that holds only a secret is keyed.
#[test]
fn a_saved_plan_is_private_and_its_hashes_are_keyed() {
    use sha2::Digest as _;
    let tmp = project();
    write(tmp.path(), "templates/only.j2", "{{ db_password }}\n");
    let book = tmp.path().join("playbooks/site.yml");
    let text = std::fs::read_to_string(&book).expect("read").replace(
        "    - name: application config\n",
        "    - file: {template: only.j2, dest: /etc/demo/only, mode: \"0644\"}\n    - name: application config\n",
    );
    std::fs::write(&book, text).expect("write");
    let out = tmp.path().join("plan.json");
    let o = out.display().to_string();
    let args = [
        "-i",
        "inventory/test",
        "plan",
        "site",
        "--observed",
        "observed/bare",
    ];
    let run = hoist_in(tmp.path(), &[&args[..], &["--out", &o]].concat(), &[]);
    assert_eq!(run.code, 2, "{}", run.all());
    let saved = std::fs::read_to_string(&out).expect("plan file");
    assert!(saved.contains("/etc/demo/only"), "{saved}");
    for content in [POISON.to_owned(), format!("{POISON}\n")] {
        let plain = hex::encode(sha2::Sha256::digest(content.as_bytes()));
        assert!(
            !saved.contains(&plain),
            "the plan holds sha256 of the secret"
        );
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Saved and fresh plans still agree: the key is the same from run to run.
    let again = hoist_in(tmp.path(), &[&args[..], &["--json"]].concat(), &[]);
    let hashes = |text: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(text).expect("json");
        let mut out = Vec::new();
        for h in v["hosts"].as_array().into_iter().flatten() {
            for c in h["changes"].as_array().into_iter().flatten() {
                out.extend(c["desired_hash"].as_str().map(str::to_owned));
            }
        }
        out
    };
    assert!(!hashes(&saved).is_empty());
    assert_eq!(hashes(&saved), hashes(&again.stdout));
}

/// `hoist pki issue` prints what it did, never a key or a certificate, on success and failure.
#[test]
fn pki_shows_no_key() {
    let tmp = project();
    let args = ["-i", "inventory/test", "pki", "issue", "--rotate-ca"];
    let issued = hoist_in(tmp.path(), &args, &[("HOIST_LOG", "trace")]);
    assert_eq!(issued.code, 0, "{}", issued.all());
    let nokey = hoist_in(tmp.path(), &args, &[("HOIST_AGE_KEY_FILE", "")]);
    assert_ne!(nokey.code, 0, "{}", nokey.all());
    let file = tmp
        .path()
        .join("inventory/test/group_vars/all/pki.secrets.yml");
    let (project, _) = common::load(tmp.path(), "inventory/test");
    let values: Vec<String> = project.vars["db-1"]
        .secrets
        .iter()
        .filter(|(name, _)| name.starts_with("tls_"))
        .filter_map(|(_, v)| v.expose().as_str().map(str::to_owned))
        .collect();
    assert!(
        !values.is_empty(),
        "{} holds the TLS material",
        file.display()
    );
    for run in [&issued, &nokey] {
        let text = run.all();
        assert!(!text.contains("BEGIN"), "{text}");
        for value in &values {
            for line in value.lines().filter(|l| l.len() >= 16) {
                assert!(!text.contains(line), "pki shows its material:\n{text}");
            }
        }
        assert_clean("pki issue", run, &[POISON, POISON_ENCRYPTED]);
    }
}
