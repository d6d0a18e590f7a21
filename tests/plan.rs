//! `hoist plan` end to end on the demo fixture: against bare hosts, converged hosts, and drifted ones.

mod common;

use std::collections::BTreeMap;

use common::{POISON, demo, hoist_in, load};
use expect_test::expect_file;
use hoist_core::observed::{self, HostObserved, ImageDefaults};
use hoist_core::playbook;

fn converged() -> BTreeMap<String, HostObserved> {
    let root = demo();
    let (project, _) = load(&root, "inventory/test");
    let mut diags = hoist_core::diag::Diagnostics::new();
    let book = playbook::load(
        &hoist_core::source::Source::disk(),
        &root,
        &root.join("playbooks/site.yml"),
        &mut diags,
    )
    .expect("playbook");
    let desired = project.desired(&book, None, &mut diags);
    assert!(!diags.has_errors(), "{:?}", diags.sorted());
    let defaults = ImageDefaults {
        env: vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "LANG=C.UTF-8".into(),
        ],
        cmd: Some(vec!["sleep".into(), "infinity".into()]),
        labels: BTreeMap::from([("org.opencontainers.image.version".into(), "17".into())]),
        ..ImageDefaults::default()
    };
    desired
        .hosts
        .iter()
        .map(|(h, d)| (h.clone(), observed::converged(d, &defaults)))
        .collect()
}

fn pretty(h: &HostObserved) -> String {
    serde_json::to_string_pretty(h).expect("json") + "\n"
}

#[test]
fn converged_snapshot_is_what_a_converged_host_reports() {
    let hosts = converged();
    expect_file!["fixtures/demo/observed/converged/db-1.json"].assert_eq(&pretty(&hosts["db-1"]));
    expect_file!["fixtures/demo/observed/converged/web-1.json"].assert_eq(&pretty(&hosts["web-1"]));
    expect_file!["fixtures/demo/observed/converged/web-2.json"].assert_eq(&pretty(&hosts["web-2"]));
}

#[test]
fn bare_hosts_plan_everything() {
    let root = demo();
    let run = hoist_in(
        &root,
        &[
            "-i",
            "inventory/test",
            "plan",
            "site",
            "--observed",
            "observed/bare",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    expect_file!["snapshots/plan_bare.txt"].assert_eq(&run.stdout);
    assert!(!run.all().contains(POISON));

    let json = hoist_in(
        &root,
        &[
            "-i",
            "inventory/test",
            "plan",
            "playbooks/site.yml",
            "--observed",
            "observed/bare",
            "--json",
        ],
        &[],
    );
    assert_eq!(json.code, 2, "{}", json.stderr);
    expect_file!["snapshots/plan_bare.json"].assert_eq(&json.stdout);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("valid JSON");
    assert_eq!(doc["schema"], "hoist.plan/v1");
}

#[test]
fn converged_hosts_plan_nothing() {
    let run = hoist_in(
        &demo(),
        &[
            "-i",
            "inventory/test",
            "plan",
            "site",
            "--observed",
            "observed/converged",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("No changes: 3 host(s) match the playbook"),
        "{}",
        run.stdout
    );
    for host in ["db-1", "web-1", "web-2"] {
        assert!(run.stdout.contains(&format!("{host} (")), "{}", run.stdout);
    }
    assert!(
        !run.stdout.contains(" + ") && !run.stdout.contains(" ~ "),
        "{}",
        run.stdout
    );
}

/// Drift of every kind the planner explains, plus noise that is only engine defaults.
#[test]
fn drifted_hosts_plan_field_by_field() {
    let mut hosts = converged();
    let db = hosts.get_mut("db-1").expect("db-1");
    let conf = db.files.get_mut("/etc/demo/app.conf").expect("file");
    let old = conf
        .content
        .clone()
        .unwrap_or_default()
        .replace("workers 2;", "workers 1;");
    conf.sha256 = hoist_core::desired::sha256_hex(old.as_bytes());
    conf.content = Some(old);
    conf.mode = "0644".into();
    let docker = db.docker.as_mut().expect("docker");
    let pg = docker
        .containers
        .get_mut("demo-db-db-1")
        .expect("db container");
    for e in pg
        .env
        .iter_mut()
        .filter(|e| e.starts_with("POSTGRES_PASSWORD="))
    {
        *e = "POSTGRES_PASSWORD=an-older-password".into();
    }
    pg.ports.iter_mut().for_each(|p| p.published = Some(5433));
    pg.env.push("LEFTOVER=1".into());
    let mut orphan = pg.clone();
    orphan
        .labels
        .insert("io.hoist.service".into(), "old".into());
    docker.containers.insert("demo-db-old-1".into(), orphan);
    let migrate = docker
        .containers
        .get_mut("demo-db-migrate-1")
        .expect("migrate");
    migrate.state = "exited".into();
    migrate.exit_code = Some(0);
    let image = docker
        .images
        .iter_mut()
        .find(|i| i.tags.contains(&"postgres:17".to_owned()))
        .expect("image");
    image.id = "sha256:newer".into();

    let web1 = hosts
        .get_mut("web-1")
        .expect("web-1")
        .docker
        .as_mut()
        .expect("docker");
    web1.containers
        .get_mut("demo-web-web-1")
        .expect("web")
        .state = "exited".into();
    let web2 = hosts.get_mut("web-2").expect("web-2");
    web2.engine.as_mut().expect("engine").daemon = Some(serde_json::json!({"live-restore": false}));
    let docker = web2.docker.as_mut().expect("docker");
    docker.images.iter_mut().for_each(|i| {
        i.labels
            .insert("io.hoist.context-hash".into(), "stale".into());
    });

    let tmp = tempfile::tempdir().expect("tmp");
    for (h, state) in &hosts {
        std::fs::write(tmp.path().join(format!("{h}.json")), pretty(state)).expect("write");
    }
    let run = hoist_in(
        &demo(),
        &[
            "-i",
            "inventory/test",
            "plan",
            "site",
            "--observed",
            &tmp.path().display().to_string(),
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    expect_file!["snapshots/plan_drift.txt"].assert_eq(&run.stdout);
    assert!(!run.all().contains(POISON));
    assert!(
        !run.all().contains("an-older-password"),
        "env values are never shown"
    );
}

#[test]
fn limit_and_out_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("plan.json");
    let run = hoist_in(
        &demo(),
        &[
            "-i",
            "inventory/test",
            "plan",
            "site",
            "--observed",
            "observed/bare",
            "--limit",
            "web",
            "--out",
            &out.display().to_string(),
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        !run.stdout.contains("db-1 ("),
        "--limit web leaves db-1 out"
    );
    let saved = std::fs::read_to_string(&out).expect("plan.json written");
    let doc: serde_json::Value = serde_json::from_str(&saved).expect("json");
    assert_eq!(doc["summary"]["hosts"], 2);
    assert!(!saved.contains(POISON));
}
