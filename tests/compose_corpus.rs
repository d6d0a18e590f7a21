//! The compose corpus: real-world compose files (`tests/fixtures/compose/NN-name/compose.yaml`,
//! byte for byte as published, each with its `ORIGIN`), each wrapped in a one-host project the
//! way a user deploys one: the file as it is (no `x-hoist`: the play names the host), the `.env`
//! beside it where it needs settings (written for these tests), and a placeholder for every file it
//! references (a build context gets a Dockerfile). `hoist check` passes on each but for the keys
//! docs/formats.md refuses, each refusal one diagnostic of its own; the plan of each against a
//! bare host is snapshot-tested (`UPDATE_EXPECT=1` rewrites `snapshots/compose_corpus.txt`), and
//! `hoist stack export` gives it back as a file valid against compose's own schema.

mod common;

use std::path::Path;

use common::{hoist_in, repo};

/// Writes the one-host project of corpus entry `entry` into `dir`.
fn wrap(entry: &Path, dir: &Path) -> String {
    let name = entry
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once('-'))
        .map(|(_, n)| n.to_owned())
        .expect("NN-name");
    let compose = std::fs::read_to_string(entry.join("compose.yaml")).expect("compose.yaml");
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "inventory/test/hosts.yml",
        "hosts:\n  node-1: {address: 10.0.0.1}\ngroups:\n  app: {hosts: [node-1]}\n",
    );
    write(&format!("stacks/{name}.yml"), &compose);
    if entry.join(".env").is_file() {
        std::fs::copy(entry.join(".env"), dir.join("stacks/.env")).expect("copy .env");
    }
    write(
        "playbooks/site.yml",
        &format!("- name: app\n  hosts: app\n  steps:\n    - engine: {{}}\n    - stack: {name}\n"),
    );
    let origin = std::fs::read_to_string(entry.join("ORIGIN")).expect("ORIGIN");
    let dockerfiles: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("dockerfile:"))
        .map(|d| d.trim().trim_matches('"'))
        .collect();
    for reference in origin
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .map(|r| r.trim().trim_end_matches('/'))
    {
        let r = reference.strip_prefix("./").unwrap_or(reference);
        let is_context = r == "."
            || ["build: ", "context: "].iter().any(|k| {
                compose.contains(&format!("{k}{r}\n"))
                    || compose.contains(&format!("{k}./{r}\n"))
                    || compose.contains(&format!("{k}{r}/\n"))
                    || compose.contains(&format!("{k}./{r}/\n"))
            });
        let rel = format!("stacks/{r}");
        if is_context {
            for d in dockerfiles.iter().copied().chain(["Dockerfile"]) {
                write(&format!("{rel}/{d}"), "FROM scratch\n");
            }
        } else if r.ends_with(".env") || r == ".env" {
            if !dir.join(&rel).exists() {
                write(&rel, "# settings of the corpus entry\n");
            }
        } else if Path::new(r).extension().is_some() || !compose.contains(&format!("{r}:/")) {
            write(&rel, &format!("placeholder for {r}\n"));
        } else {
            write(
                &format!("{rel}/placeholder"),
                &format!("placeholder for {r}\n"),
            );
        }
    }
    name
}

#[test]
fn real_world_compose_files_check_and_plan() {
    let corpus = repo().join("tests/fixtures/compose");
    let mut entries: Vec<_> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("compose.yaml").is_file())
        .collect();
    entries.sort();
    assert!(entries.len() >= 30, "{} entries", entries.len());
    let mut report = String::new();
    let mut not_refusals = Vec::new();
    for entry in &entries {
        let tmp = tempfile::tempdir().expect("tmp");
        let name = wrap(entry, tmp.path());
        // A bare host: no engine yet.
        std::fs::create_dir_all(tmp.path().join("observed")).expect("observed");
        std::fs::copy(
            repo().join("tests/fixtures/demo/observed/bare/db-1.json"),
            tmp.path().join("observed/node-1.json"),
        )
        .expect("bare snapshot");
        let check = hoist_in(tmp.path(), &["-i", "inventory/test", "check"], &[]);
        let label = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        report.push_str(&format!("== {label}\n"));
        let diagnostics: Vec<&str> = check
            .stdout
            .lines()
            .filter(|l| l.starts_with("error") || l.starts_with("warning"))
            .collect();
        for d in &diagnostics {
            report.push_str(&format!("{d}\n"));
            if d.starts_with("error") && !d.starts_with("error[unsupported]") {
                not_refusals.push(format!("{label}: {d}"));
            }
        }
        if check.code == 0 {
            let plan = hoist_in(
                tmp.path(),
                &[
                    "-i",
                    "inventory/test",
                    "plan",
                    "site",
                    "--observed",
                    "observed",
                ],
                &[],
            );
            assert_eq!(plan.code, 2, "{label}: {}", plan.all());
            report.push_str(
                &plan
                    .stdout
                    .replace(&format!("stacks/{name}.yml"), "<stack>"),
            );
            // And back out as a plain compose file, valid against compose's own schema.
            let export = hoist_in(
                tmp.path(),
                &[
                    "-i",
                    "inventory/test",
                    "--json",
                    "stack",
                    "export",
                    &name,
                    "--host",
                    "node-1",
                ],
                &[],
            );
            assert_eq!(export.code, 0, "{label}: {}", export.all());
            let doc: serde_json::Value = serde_json::from_str(&export.stdout).expect("JSON");
            let errors = common::compose_errors(&doc);
            assert!(
                errors.is_empty(),
                "{label} exported: {}\n{}",
                errors.join("\n"),
                export.stdout
            );
        }
        report.push('\n');
    }
    assert!(
        not_refusals.is_empty(),
        "diagnostics that are not refusals of a key:\n{}",
        not_refusals.join("\n")
    );
    expect_test::expect_file!["snapshots/compose_corpus.txt"].assert_eq(&report);
}

/// `hoist inventory show` gives each value of a stack's `.env` as the host interpolates it, and
/// where it came from: the `.env`, or the inventory's variable of that name, which wins.
#[test]
fn inventory_show_says_where_each_dotenv_value_comes_from() {
    let tmp = tempfile::tempdir().expect("tmp");
    let name = wrap(
        &repo().join("tests/fixtures/compose/20-postgresql-pgadmin"),
        tmp.path(),
    );
    let vars = tmp.path().join("inventory/test/group_vars/all/vars.yml");
    std::fs::create_dir_all(vars.parent().expect("parent")).expect("mkdir");
    std::fs::write(&vars, "POSTGRES_DB: apm\n").expect("write");
    let run = hoist_in(
        tmp.path(),
        &["-i", "inventory/test", "inventory", "show"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let section: String = run
        .stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("stack "))
        .take_while(|l| !l.is_empty())
        // expect! drops the snapshot's common indentation: the host's own two spaces go too.
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    expect_test::expect![[r#"
          stack postgresql-pgadmin, from its .env:
            PGADMIN_MAIL  = "ops@example.org"  # stacks/.env
            PGADMIN_PW    = (sensitive)  # stacks/.env
            POSTGRES_DB   = "apm"  # inventory/test/group_vars/all/vars.yml (over stacks/.env)
            POSTGRES_PW   = (sensitive)  # stacks/.env
            POSTGRES_USER = "app"  # stacks/.env
    "#]]
    .assert_eq(&section);
    assert!(
        !run.stdout.contains("corpus-postgres-password"),
        "{}",
        run.stdout
    );

    let json = hoist_in(
        tmp.path(),
        &["-i", "inventory/test", "inventory", "show", "--json"],
        &[],
    );
    assert_eq!(json.code, 0, "{}", json.all());
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let pw = &doc["hosts"]["node-1"]["stacks"][&name]["POSTGRES_PW"];
    assert_eq!(pw["secret"], true, "{pw}");
    assert!(
        !json.stdout.contains("corpus-postgres-password"),
        "{}",
        json.stdout
    );
}
