//! What users see of the command line itself: help texts, inventory show and import.

mod common;

use common::{demo, hoist, hoist_in, repo};
use expect_test::expect_file;

#[test]
fn help_texts() {
    let mut all = String::new();
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["plan", "--help"],
        &["inventory", "--help"],
        &["inventory", "show", "--help"],
        &["inventory", "import", "--help"],
        &["secrets", "--help"],
        &["secrets", "edit", "--help"],
    ] {
        let run = hoist(args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        all.push_str(&format!("$ hoist {}\n{}\n", args.join(" "), run.stdout));
    }
    expect_file!["snapshots/help.txt"].assert_eq(&all);
}

#[test]
fn inventory_show_resolves_precedence() {
    let run = hoist_in(
        &demo(),
        &[
            "-i",
            "inventory/test",
            "-e",
            "web_port=81",
            "inventory",
            "show",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    expect_file!["snapshots/inventory_show.txt"].assert_eq(&run.stdout);
}

#[test]
fn ansible_ini_import() {
    let ini = repo().join("tests/fixtures/ansible/hosts.ini");
    let run = hoist(&["inventory", "import", &ini.display().to_string()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    expect_file!["snapshots/import_hosts.yml"].assert_eq(&run.stdout);
    expect_file!["snapshots/import_notes.txt"].assert_eq(&run.stderr);

    // The result is a valid inventory.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("inventory/imported");
    let written = hoist(&[
        "inventory",
        "import",
        &ini.display().to_string(),
        "--out",
        &dir.display().to_string(),
    ]);
    assert_eq!(written.code, 0, "{}", written.stderr);
    let show = hoist_in(
        tmp.path(),
        &["-i", "inventory/imported", "inventory", "show", "--json"],
        &[],
    );
    assert_eq!(show.code, 0, "{}", show.stderr);
    let doc: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(doc["hosts"]["apm-node"]["address"], "192.168.0.127");
    assert_eq!(
        doc["hosts"]["apm-node"]["groups"],
        serde_json::json!(["apm_nodes", "app", "control", "data"])
    );
    // Importing again refuses to overwrite.
    let again = hoist(&[
        "inventory",
        "import",
        &ini.display().to_string(),
        "--out",
        &dir.display().to_string(),
    ]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

/// docs/cli.md is generated from the command definitions; this fails when it is stale
/// (`UPDATE_EXPECT=1 cargo test --test cli` writes it again).
#[test]
fn the_cli_reference_is_current() {
    let run = hoist(&["reference"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    expect_test::expect_file!["../docs/cli.md"].assert_eq(&run.stdout);
}

/// Shell completions and man pages come from the same definitions.
#[test]
fn completions_and_man_pages_come_from_the_definitions() {
    let bash = hoist(&["completions", "bash"]);
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    assert!(
        bash.stdout.contains("_hoist()") && bash.stdout.contains("drill"),
        "{}",
        bash.stdout
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("man");
    let d = dir.display().to_string();
    let man = hoist(&["man", "--out", &d]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    for page in [
        "hoist.1",
        "hoist-plan.1",
        "hoist-drill-failover.1",
        "hoist-stack-export.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}: {text}");
    }
}
