//! `hoist check`: the repository's own deployment passes, and a broken project reports every
//! problem with its location, exits 1, and nothing else happens.

mod common;

use common::{hoist, hoist_in, repo};
use expect_test::expect_file;

/// The desired state of the repository's site.yml on the sandbox inventory of a deployment copy
/// (after `sandbox init`), with extra variables (`NAME=VALUE`).
fn site_desired(root: &std::path::Path, extra: &[&str]) -> hoist_core::desired::Desired {
    let (project, _) = common::load_with(root, "inventory/sandbox", extra);
    let mut diags = hoist_core::diag::Diagnostics::new();
    let book = hoist_core::playbook::load(
        &hoist_core::source::Source::disk(),
        root,
        &root.join("playbooks/site.yml"),
        &mut diags,
    )
    .expect("site.yml");
    let desired = project.desired(&book, None, &mut diags);
    assert!(!diags.has_errors(), "{:?}", diags.sorted());
    desired
}

#[test]
fn the_repository_deployment_passes_check() {
    // In a scratch copy: `sandbox init` writes the sandbox's generated (git-ignored) TLS secrets.
    let tmp = common::deployment_copy(&[]);
    let _ = std::fs::remove_dir_all(tmp.path().join("inventory/sandbox/group_vars/sandbox"));
    let init = hoist_in(tmp.path(), &["sandbox", "init"], &[]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    // What `sandbox up` records: the hosts' keys.
    std::fs::write(tmp.path().join(".hoist/sandbox/known_hosts"), "").expect("known_hosts");
    let run = hoist_in(tmp.path(), &["check"], &[("HOIST_AGE_KEY_FILE", "")]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("0 error(s)"), "{}", run.stdout);
    for inv in ["inventory/lan", "inventory/sandbox", "inventory/single"] {
        assert!(run.stdout.contains(inv), "{inv} checked: {}", run.stdout);
    }
}

#[test]
fn the_repository_site_playbook_plans_bare_sandbox_hosts() {
    let tmp = common::deployment_copy(&["tests/fixtures/sandbox-bare"]);
    assert_eq!(hoist_in(tmp.path(), &["sandbox", "init"], &[]).code, 0);
    let run = hoist_in(
        tmp.path(),
        &[
            "-i",
            "inventory/sandbox",
            "plan",
            "site",
            "--observed",
            "tests/fixtures/sandbox-bare",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    for host in ["data-1", "control-1", "app-1"] {
        assert!(
            run.stdout.contains(&format!("{host} (172.30.0.")),
            "{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("+ container apm-data-db-1"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("BEGIN PRIVATE KEY") && !run.stdout.contains("BEGIN EC PRIVATE KEY"),
        "keys are secrets"
    );
}

/// An inventory with its own S3 endpoint (MinIO, a cloud): Garage and its TLS front are left out
/// with their files, the scheduler's dependency on them goes, and every pgBackRest and the
/// Prometheus config follow the endpoint.
#[test]
fn another_s3_endpoint_leaves_garage_out() {
    let tmp = common::deployment_copy(&[]);
    assert_eq!(hoist_in(tmp.path(), &["sandbox", "init"], &[]).code, 0);
    let desired = |extra: &[&str]| site_desired(tmp.path(), extra);
    let file = |d: &hoist_core::desired::Desired, host: &str, path: &str| {
        d.hosts[host]
            .files
            .get(path)
            .and_then(|f| f.content.text().map(str::to_owned))
            .unwrap_or_default()
    };
    let container = |d: &hoist_core::desired::Desired, host: &str, name: &str| {
        d.hosts[host]
            .containers
            .iter()
            .find(|c| c.name == name)
            .cloned()
    };
    let conf = "/opt/hoist/apm-data/templates/pgbackrest/pgbackrest-db.conf";
    let prometheus = "/opt/hoist/apm-control/templates/prometheus/prometheus.yml";

    let bundled = desired(&[]);
    assert!(container(&bundled, "control-1", "apm-control-garage-1").is_some());
    let scheduler = container(&bundled, "control-1", "apm-control-scheduler-1").expect("scheduler");
    assert!(
        scheduler
            .depends_on
            .contains_key("apm-control-objectstore-1"),
        "{:?}",
        scheduler.depends_on
    );
    assert!(
        scheduler
            .extra_hosts
            .contains(&"objectstore:172.30.0.12".to_owned())
    );
    let text = file(&bundled, "data-1", conf);
    for line in [
        "repo1-s3-endpoint=objectstore",
        "repo2-s3-uri-style=path",
        "repo1-storage-ca-file=/etc/pgbackrest/tls/ca.crt",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    assert!(file(&bundled, "control-1", prometheus).contains("job_name: garage"));

    let external = desired(&[
        "objectstore_profile=external",
        "objectstore_host=s3.backup.lan",
        "objectstore_address=10.0.0.50",
        "objectstore_port=443",
        "objectstore_uri_style=host",
        "objectstore_ca_file=/etc/ssl/certs/ca-certificates.crt",
    ]);
    let control = &external.hosts["control-1"];
    for gone in ["apm-control-garage-1", "apm-control-objectstore-1"] {
        assert!(container(&external, "control-1", gone).is_none(), "{gone}");
    }
    assert!(
        !control
            .files
            .keys()
            .any(|p| p.contains("garage/") || p.ends_with("objectstore.conf")),
        "{:?}",
        control.files.keys()
    );
    let scheduler =
        container(&external, "control-1", "apm-control-scheduler-1").expect("scheduler");
    assert!(
        scheduler.depends_on.is_empty(),
        "{:?}",
        scheduler.depends_on
    );
    assert!(
        scheduler
            .extra_hosts
            .contains(&"s3.backup.lan:10.0.0.50".to_owned())
    );
    let db = container(&external, "data-1", "apm-data-db-1").expect("db");
    assert_eq!(db.extra_hosts, vec!["s3.backup.lan:10.0.0.50".to_owned()]);
    let text = file(&external, "data-1", conf);
    for line in [
        "repo1-s3-endpoint=s3.backup.lan",
        "repo2-storage-port=443",
        "repo1-s3-uri-style=host",
        "repo2-storage-ca-file=/etc/ssl/certs/ca-certificates.crt",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    assert!(!file(&external, "control-1", prometheus).contains("garage"));
}

#[test]
fn every_diagnostic_kind_is_located() {
    let broken = repo().join("tests/fixtures/broken");
    let run = hoist_in(&broken, &["check"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    expect_file!["snapshots/check_broken.txt"].assert_eq(&run.stdout);

    let json = hoist_in(&broken, &["check", "--json"], &[]);
    assert_eq!(json.code, 1);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(doc["schema"], "hoist.check/v1");
    let kinds: std::collections::BTreeSet<&str> = doc["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    for kind in [
        "io",
        "syntax",
        "unknown-key",
        "wrong-type",
        "missing-key",
        "invalid-value",
        "unknown-reference",
        "duplicate",
        "undefined-variable",
        "template",
        "cycle",
        "secret",
    ] {
        assert!(kinds.contains(kind), "no {kind} diagnostic in {kinds:?}");
    }
    for d in doc["diagnostics"].as_array().expect("list") {
        assert!(
            !d["file"].as_str().unwrap_or_default().is_empty(),
            "every diagnostic names its file: {d}"
        );
    }
}

#[test]
fn a_broken_project_plans_nothing() {
    let broken = repo().join("tests/fixtures/broken");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("plan.json");
    let run = hoist_in(
        &broken,
        &[
            "plan",
            "site",
            "--observed",
            ".",
            "--out",
            &out.display().to_string(),
        ],
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("nothing was planned"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("playbooks/site.yml:4:7: stack: no stack `nothing-here`"),
        "{}",
        run.stderr
    );
    assert!(
        !out.exists(),
        "no plan file is written when inputs are broken"
    );
}

#[test]
fn a_missing_playbook_is_an_io_error() {
    let run = hoist(&[
        "-i",
        "inventory/sandbox",
        "plan",
        "no-such-playbook",
        "--observed",
        ".",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("error[io]: no-such-playbook: no such playbook"),
        "{}",
        run.stderr
    );
}

/// What the engine and stat report for the repository's data stack converges: services that set
/// only an entrypoint have no command (the engine drops the image's), and files owned by a number
/// the host has no name for read back as UNKNOWN with that uid.
#[test]
fn the_repository_data_stack_converges_as_hosts_report_it() {
    use hoist_core::observed::{self, ImageDefaults};
    let tmp = common::deployment_copy(&[]);
    assert_eq!(hoist_in(tmp.path(), &["sandbox", "init"], &[]).code, 0);
    let desired = site_desired(tmp.path(), &[]);
    let defaults = ImageDefaults {
        cmd: Some(vec!["postgres".into()]),
        ..ImageDefaults::default()
    };
    let observed_dir = tmp.path().join("observed");
    std::fs::create_dir_all(&observed_dir).expect("mkdir");
    let mut numeric = 0;
    let mut entrypoint_only = 0;
    for (host, want) in &desired.hosts {
        let mut have = observed::converged(want, &defaults);
        for (path, file) in &mut have.files {
            let owner = want.files[path].owner.clone().unwrap_or_default();
            if let Ok(uid) = owner.parse::<u32>() {
                file.owner = Some("UNKNOWN".into());
                file.uid = Some(uid);
                numeric += 1;
            }
        }
        if let Some(docker) = &have.docker {
            entrypoint_only += docker
                .containers
                .values()
                .filter(|c| c.entrypoint.is_some() && c.cmd.is_none())
                .count();
        }
        std::fs::write(
            observed_dir.join(format!("{host}.json")),
            serde_json::to_string(&have).expect("json"),
        )
        .expect("write");
    }
    assert!(
        numeric > 0 && entrypoint_only > 0,
        "{numeric} {entrypoint_only}"
    );
    let run = hoist_in(
        tmp.path(),
        &[
            "-i",
            "inventory/sandbox",
            "plan",
            "site",
            "--observed",
            "observed",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

/// A link inside the project that leads out of it is not followed: `hoist check` names the file
/// and never prints what the link points at (here, an age key).
#[test]
fn a_link_out_of_the_project_is_refused_and_never_shown() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("project");
    let key = "AGE-SECRET-KEY-1LINKEDLINKEDLINKEDLINKEDLINKEDLINKEDLINKEDLINKEDLINKEDLINK";
    let outside = tmp.path().join("key.txt");
    std::fs::write(&outside, format!("# created by age-keygen\n{key}\n")).expect("key");
    for (path, text) in [
        (
            "inventory/test/hosts.yml",
            "hosts:\n  app-1: {address: 10.0.0.1}\ngroups:\n  app: {hosts: [app-1]}\n",
        ),
        (
            "stacks/app.yml",
            "name: shop\nx-hoist: {hosts: app}\nservices:\n  web:\n    image: nginx:1.27\n    env_file: [settings.env]\n    volumes: [./conf/site.conf:/etc/nginx/conf.d/site.conf:ro]\n",
        ),
        (
            "playbooks/site.yml",
            "- name: app\n  hosts: app\n  steps:\n    - stack: app\n    - file: {src: files/motd, dest: /etc/motd, mode: \"0644\"}\n",
        ),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("a folder")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    for link in ["stacks/settings.env", "stacks/conf/site.conf", "files/motd"] {
        let p = root.join(link);
        std::fs::create_dir_all(p.parent().expect("a folder")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, p).expect("symlink");
    }
    let run = hoist_in(&root, &["-i", "inventory/test", "check"], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.all().contains("LINKED"), "{}", run.all());
    for named in ["settings.env", "site.conf", "files/motd"] {
        assert!(
            run.all()
                .lines()
                .any(|l| l.contains(named) && l.contains("outside the project")),
            "{named}: {}",
            run.all()
        );
    }
}

/// A workspace binary is built from its cargo workspace's sources, which may lie above the project:
/// an input there is taken, one elsewhere on the controller is refused and never read.
#[test]
fn a_workspace_binarys_inputs_stay_in_its_cargo_workspace() {
    let tmp = tempfile::tempdir().expect("tmp");
    let workspace = tmp.path().join("ws");
    let root = workspace.join("deploy");
    let files = [
        ("Cargo.toml", "[workspace]\nmembers = [\"tool\"]\n"),
        ("tool/src/main.rs", "fn main() {}\n"),
        (
            "deploy/inventory/test/hosts.yml",
            "hosts:\n  app-1: {address: 10.0.0.1}\ngroups:\n  app: {hosts: [app-1]}\n",
        ),
        ("deploy/stacks/img/Dockerfile", "FROM scratch\n"),
        (
            "deploy/stacks/app.yml",
            "name: shop\nx-hoist: {hosts: app}\nservices:\n  web:\n    image: shop/web:1\n    build:\n      context: ./img\n      x-hoist-binaries:\n        tool: {cargo: tool, inputs: [../Cargo.toml, ../tool, ../../key.txt]}\n",
        ),
        (
            "deploy/playbooks/site.yml",
            "- name: app\n  hosts: app\n  steps:\n    - stack: app\n",
        ),
    ];
    for (path, text) in files {
        let p = workspace.join(path);
        std::fs::create_dir_all(p.parent().expect("a folder")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    std::fs::write(tmp.path().join("key.txt"), "AGE-SECRET-KEY-1OUTSIDE\n").expect("key");
    let run = hoist_in(&root, &["-i", "inventory/test", "check"], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    let errors: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(
        errors,
        [
            "error[invalid-value]: stacks/app.yml:9:15: services.web.build.x-hoist-binaries.tool.inputs[2]: \"../../key.txt\" is outside the cargo workspace: a workspace binary is built from its own sources"
        ],
        "{}",
        run.all()
    );
}

/// A bind-mounted file that is not UTF-8 (an icon, a keystore) is copied byte for byte: planned by
/// its size, never read as a template.
#[test]
fn a_binary_bind_mount_is_planned_by_its_size() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    for (path, text) in [
        (
            "inventory/test/hosts.yml",
            "hosts:\n  app-1: {address: 10.0.0.1}\ngroups:\n  app: {hosts: [app-1]}\n",
        ),
        (
            "stacks/app.yml",
            "services:\n  web:\n    image: nginx:1.27\n    volumes: [./static/icon.png:/usr/share/nginx/html/icon.png:ro]\n",
        ),
        (
            "playbooks/site.yml",
            "- name: app\n  hosts: app\n  steps:\n    - stack: app\n",
        ),
        (
            "observed/app-1.json",
            "{\"engine\": {\"installed\": false}}",
        ),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("a folder")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    std::fs::create_dir_all(root.join("stacks/static")).expect("mkdir");
    std::fs::write(
        root.join("stacks/static/icon.png"),
        [0x89, b'P', b'N', b'G', 0xff, 0, 0xfe],
    )
    .expect("icon");
    let run = hoist_in(
        root,
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
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stdout
            .contains("/opt/hoist/app/stacks/static/icon.png (create)")
            && run.stdout.contains("content: binary, 7 bytes"),
        "{}",
        run.stdout
    );
}

/// A fresh clone: the sandbox inventory lacks what `hoist sandbox init` generates, and `hoist check`
/// says so in one line instead of every error its absence causes; the other inventories check.
#[test]
fn a_fresh_clone_checks_clean_and_names_the_command_that_generates_the_rest() {
    let tmp = common::deployment_copy(&[]);
    let _ = std::fs::remove_dir_all(tmp.path().join("inventory/sandbox/group_vars/sandbox"));
    let run = hoist_in(tmp.path(), &["check"], &[("HOIST_AGE_KEY_FILE", "")]);
    assert_eq!(run.code, 0, "{}", run.all());
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("error") || l.starts_with("warning"))
        .collect();
    assert_eq!(
        lines,
        [
            "warning[io]: inventory/sandbox/hosts.yml:7:5: generated: `hoist sandbox init` generates group_vars/sandbox, ../../.hoist/sandbox/id_ed25519: run it, then check this inventory",
            "warning[io]: inventory/sandbox/hosts.yml:9:5: generated: `hoist sandbox up` generates ../../.hoist/sandbox/known_hosts: run it, then check this inventory",
        ],
        "{}",
        run.stdout
    );
    // A command that needs the inventory says which command makes what it lacks.
    let plan = hoist_in(
        tmp.path(),
        &[
            "-i",
            "inventory/sandbox",
            "plan",
            "site",
            "--observed",
            "nowhere",
        ],
        &[("HOIST_AGE_KEY_FILE", "")],
    );
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(
        plan.stderr
            .contains("note: `hoist sandbox init` generates what inventory/sandbox lacks"),
        "{}",
        plan.stderr
    );
}
