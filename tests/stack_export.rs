//! `hoist stack export`: every stack of the repository (on every host it is bound to), of the
//! fixtures and of the compose corpus, exported as a plain compose file, is valid against the
//! compose specification's own schema (`tests/fixtures/compose-spec`, with its origin), carries
//! no `x-hoist` and shows no secret value (a `${name}` reference instead).

mod common;

use std::path::Path;

use common::{POISON, hoist_in, repo};

/// Exports `stack` for `host`, checks it, and returns the document.
fn export(
    root: &Path,
    inventory: &str,
    stack: &str,
    host: &str,
    secrets: &[&str],
) -> serde_json::Value {
    let what = format!("{} {stack} on {host}", root.display());
    let run = hoist_in(
        root,
        &[
            "-i", inventory, "--json", "stack", "export", stack, "--host", host,
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{what}: {}", run.all());
    for s in secrets {
        assert!(!run.all().contains(s), "{what} shows a secret");
    }
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    let errors = common::compose_errors(&doc);
    assert!(
        errors.is_empty(),
        "{what}: not valid compose:\n{}\n{}",
        errors.join("\n"),
        run.stdout
    );
    assert!(!run.stdout.contains("x-hoist"), "{what}");
    // The YAML form parses to the same document.
    let yaml = hoist_in(
        root,
        &["-i", inventory, "stack", "export", stack, "--host", host],
        &[],
    );
    assert_eq!(yaml.code, 0, "{what}: {}", yaml.all());
    assert!(yaml.stdout.starts_with("name: "), "{}", yaml.stdout);
    doc
}

#[test]
fn the_repository_stacks_export_as_valid_compose_files() {
    let tmp = common::deployment_copy(&[]);
    let init = hoist_in(tmp.path(), &["sandbox", "init"], &[]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    for (stack, host) in [
        ("data", "data-1"),
        ("control", "control-1"),
        ("app", "app-1"),
    ] {
        let doc = export(tmp.path(), "inventory/sandbox", stack, host, &[]);
        assert!(
            doc["services"].as_object().is_some_and(|s| !s.is_empty()),
            "{stack}"
        );
    }
}

#[test]
fn fixture_stacks_export_with_secrets_as_references() {
    let demo = common::demo();
    for host in ["web-1", "web-2"] {
        let doc = export(
            &demo,
            "inventory/test",
            "web",
            host,
            &[POISON, common::POISON_ENCRYPTED],
        );
        let env = &doc["services"]["web"]["environment"];
        assert_eq!(env["DB_PASSWORD"], "${db_password}", "{env}");
        assert_eq!(env["API_TOKEN"], "${web_token}", "{env}");
    }
    export(&demo, "inventory/test", "db", "db-1", &[POISON]);
    let e2e = repo().join("tests/fixtures/e2e");
    let doc = export(
        &e2e,
        "inventory/sandbox",
        "web",
        "data-1",
        &["p0ison-E2E-token"],
    );
    let front = &doc["services"]["front"];
    assert_eq!(
        front["deploy"]["resources"]["limits"]["cpus"], "0.5",
        "{front}"
    );
    assert_eq!(front["cap_drop"], serde_json::json!(["ALL"]), "{front}");
}

/// The schema is not a formality: what compose refuses, it refuses too.
#[test]
fn the_schema_refuses_what_compose_refuses() {
    let bad = serde_json::json!({
        "services": {"web": {"image": "nginx", "imgae": "typo", "restart": ["always"]}},
        "x-hoist": {"hosts": "app"}
    });
    let errors = common::compose_errors(&bad);
    assert!(errors.len() >= 2, "{errors:?}");
    let good = serde_json::json!({"services": {"web": {"image": "nginx", "restart": "always"}}});
    assert_eq!(common::compose_errors(&good), Vec::<String>::new());
}

/// Replicas are exported, and a value made from a secret (no `${name}` can stand for it) is
/// said, not silently left masked.
#[test]
fn replicas_are_exported_and_a_masked_value_is_said() {
    let tmp = tempfile::tempdir().expect("tmp");
    common::copy_dir(&common::demo(), tmp.path());
    let stack = tmp.path().join("stacks/db.yml");
    let text = std::fs::read_to_string(&stack).expect("read");
    std::fs::write(
        &stack,
        text.replacen(
            "    image: postgres:17\n",
            "    image: postgres:17\n    deploy: {replicas: 2}\n",
            1,
        ),
    )
    .expect("write");
    let doc = export(tmp.path(), "inventory/test", "db", "db-1", &[POISON]);
    // The first service of the file: `migrate`.
    let migrate = &doc["services"]["migrate"];
    assert_eq!(migrate["deploy"]["replicas"], 2, "{migrate}");
    let web = hoist_in(
        tmp.path(),
        &[
            "-i",
            "inventory/test",
            "stack",
            "export",
            "web",
            "--host",
            "web-1",
        ],
        &[],
    );
    assert_eq!(web.code, 0, "{}", web.all());
    if web.stdout.contains("(sensitive)") {
        assert!(web.stderr.contains("made from secrets"), "{}", web.stderr);
    }
}
