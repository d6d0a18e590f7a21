//! Apply on the fakes: given these hosts, this plan and this failure, then these calls and this
//! report. No engine, no sshd, no network.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hoist_core::desired::{
    ContainerSpec, Content, Desired, EngineSpec, FileSpec, HostDesired, ImageSource, ImageSpec,
    NetworkSpec,
};
use hoist_core::observed::Observed;
use hoist_core::plan::{self, ChangeAction, Plan};
use hoist_core::secret::Redactor;
use hoist_core::stack::{ConditionKind, FailureAction, Health, UpdateConfig, UpdateOrder};
use hoist_remote::engine::TarStream;
use hoist_remote::error::{ErrorKind, Result};
use hoist_remote::fake::{Behaviour, FakeHost, Fault};
use hoist_remote::images::LocalImages;
use hoist_remote::{Engine as _, observe};
use tokio_util::sync::CancellationToken;

use super::session;
use super::*;

/// A local engine that has every image, as its id.
#[derive(Debug, Default)]
struct FakeLocal {
    /// Each `ensure`: the image, and the calls the watched host had seen by then.
    ensured: Mutex<Vec<(String, Vec<String>)>>,
    watch: Option<FakeHost>,
    /// A build never ends.
    stall_builds: bool,
}

impl LocalImages for FakeLocal {
    async fn ensure(&self, spec: &ImageSpec) -> Result<bool> {
        let seen = self.watch.as_ref().map(FakeHost::calls).unwrap_or_default();
        if let Ok(mut e) = self.ensured.lock() {
            e.push((spec.reference.clone(), seen));
        }
        if self.stall_builds && matches!(spec.source, ImageSource::Build { .. }) {
            std::future::pending::<()>().await;
        }
        Ok(true)
    }
    async fn image_id(&self, reference: &str) -> Option<String> {
        Some(format!("sha256:{reference}"))
    }
    fn export(&self, reference: &str) -> TarStream {
        let id = Bytes::from(format!("sha256:{reference}"));
        Box::pin(futures_util::stream::iter([Ok(id)]))
    }
}

const IMAGE: &str = "app:1";

fn container(name: &str, deps: &[(&str, ConditionKind)], play: usize) -> ContainerSpec {
    let mut c = ContainerSpec {
        name: name.into(),
        project: "p".into(),
        service: name.into(),
        number: 1,
        image: IMAGE.into(),
        command: Some(vec!["serve".into()]),
        entrypoint: None,
        env: BTreeMap::from([("MODE".into(), "test".into())]),
        ports: Vec::new(),
        mounts: Vec::new(),
        networks: BTreeMap::from([("p_default".into(), vec![name.into()])]),
        addresses: BTreeMap::new(),
        healthcheck: Some(Health {
            test: vec!["CMD".into(), "true".into()],
            interval_ns: Some(1_000_000_000),
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
        }),
        restart: "unless-stopped".into(),
        labels: BTreeMap::new(),
        extra_hosts: Vec::new(),
        user: None,
        working_dir: None,
        hostname: None,
        stop_grace_period_s: None,
        runtime: Default::default(),
        depends_on: deps.iter().map(|(d, k)| ((*d).to_owned(), *k)).collect(),
        depends_on_replicas: Default::default(),
        mounted_files: BTreeMap::new(),
        config_hash: String::new(),
        play,
        update: UpdateConfig::compose_default(),
        reload: None,
    };
    c.seal();
    c
}

fn file(path: &str, content: &str) -> FileSpec {
    FileSpec {
        path: path.into(),
        content: content.into(),
        mode: 0o640,
        owner: None,
        group: None,
        origin: "templates/x.j2".into(),
        sensitive: false,
    }
}

fn host_wants(containers: Vec<ContainerSpec>, files: Vec<FileSpec>) -> HostDesired {
    HostDesired {
        address: "h.test".into(),
        engine: Some(EngineSpec {
            daemon: serde_json::json!({"live-restore": true}),
        }),
        files: files.into_iter().map(|f| (f.path.clone(), f)).collect(),
        networks: BTreeMap::from([(
            "p_default".into(),
            NetworkSpec {
                name: "p_default".into(),
                driver: "bridge".into(),
                project: "p".into(),
                external: false,
                options: Default::default(),
            },
        )]),
        volumes: BTreeMap::new(),
        images: BTreeMap::from([(
            IMAGE.into(),
            ImageSpec {
                reference: IMAGE.into(),
                source: ImageSource::Pull,
            },
        )]),
        containers,
        projects: ["p".to_owned()].into(),
        actions: Vec::new(),
    }
}

/// A test's world: fake hosts, what they should have, the options.
struct World {
    hosts: BTreeMap<String, FakeHost>,
    desired: Desired,
    opts: ApplyOptions,
    cancel: CancellationToken,
    events: Arc<Mutex<Vec<Event>>>,
    local: FakeLocal,
}

impl World {
    fn new(hosts: Vec<(FakeHost, HostDesired)>) -> World {
        let mut w = World {
            hosts: BTreeMap::new(),
            desired: Desired::default(),
            opts: ApplyOptions {
                gate_timeout: Duration::from_secs(5),
                engine_timeout: Duration::from_secs(5),
                ..ApplyOptions::default()
            },
            cancel: CancellationToken::new(),
            events: Arc::default(),
            local: FakeLocal::default(),
        };
        for (h, want) in hosts {
            w.desired.hosts.insert(h.name().to_owned(), want);
            w.hosts.insert(h.name().to_owned(), h);
        }
        w
    }

    fn one(h: FakeHost, want: HostDesired) -> World {
        World::new(vec![(h, want)])
    }

    fn host(&self, name: &str) -> &FakeHost {
        &self.hosts[name]
    }

    /// Observes every host and plans, as `hoist plan` would.
    async fn plan(&self) -> Plan {
        let mut observed = Observed::default();
        for (name, h) in &self.hosts {
            let o = observe::host(h, &self.desired.hosts[name])
                .await
                .expect("observes");
            observed.hosts.insert(name.clone(), o);
        }
        plan::diff(
            &self.desired,
            &observed,
            "site.yml",
            "test",
            &Redactor::new(),
        )
    }

    /// Locks, plans and applies, as `hoist apply --yes` does.
    async fn apply(&self) -> ApplyReport {
        self.run(None).await
    }

    /// Locks and applies a plan made earlier, as `hoist apply plan.json` does.
    async fn apply_plan(&self, plan: &Plan) -> ApplyReport {
        self.run(Some(plan)).await
    }

    async fn run(&self, saved: Option<&Plan>) -> ApplyReport {
        let events: Events = {
            let seen = self.events.clone();
            Arc::new(move |e| {
                if let Ok(mut s) = seen.lock() {
                    s.push(e);
                }
            })
        };
        let (locks, refused) = lock::acquire_all(&self.hosts, false, 4, &events).await;
        assert!(refused.is_empty(), "{refused:?}");
        let plan = match saved {
            Some(p) => p.clone(),
            None => self.plan().await,
        };
        let handles = Handles {
            hosts: &self.hosts,
            locks: &locks,
            local: &self.local,
            validator: None,
            redactor: &Redactor::new(),
            events,
            cancel: self.cancel.clone(),
        };
        let report = apply(&handles, &self.desired, &plan, &self.opts).await;
        lock::release_all(&self.hosts, locks).await;
        report
    }

    fn notes(&self) -> Vec<String> {
        self.events
            .lock()
            .map(|e| {
                e.iter()
                    .filter_map(|e| match e {
                        Event::Note { message, .. } => Some(message.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn error_of(r: &ApplyReport, host: &str) -> String {
    r.hosts
        .iter()
        .find(|h| h.host == host)
        .and_then(|h| h.error.clone())
        .unwrap_or_default()
}

fn db_api() -> HostDesired {
    host_wants(
        vec![
            container("db", &[], 0),
            container("api", &[("db", ConditionKind::ServiceHealthy)], 0),
        ],
        vec![file("/etc/apm/app.env", "MODE=test\n")],
    )
}

#[tokio::test]
async fn a_bare_host_is_installed_converged_and_then_left_alone() {
    let w = World::one(FakeHost::bare("h"), db_api());
    let r = w.apply().await;
    assert!(r.ok(), "{r:?}");
    let h = w.host("h");
    assert!(h.engine_installed());
    assert_eq!(h.fake_engine().container_names(), ["api", "db"]);
    assert!(h.file("/etc/apm/app.env").is_some());
    assert_eq!(h.lock_holder(), None, "the lock is released");
    let calls = h.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap_or(usize::MAX);
    assert!(
        pos("lock") < pos("facts"),
        "locked before observing: {calls:?}"
    );
    assert!(pos("install engine") < pos("put /etc/apm/app.env"));
    assert!(
        pos("engine start db") < pos("engine create api"),
        "{calls:?}"
    );
    let again = w.plan().await;
    assert!(!again.has_changes(), "{:#?}", again.hosts[0].changes);
    let before = h.calls().len();
    let r = w.apply().await;
    assert!(r.ok() && r.hosts[0].changes == 0, "{r:?}");
    let mutations: Vec<String> = h.calls()[before..]
        .iter()
        .filter(|c| {
            c.starts_with("engine create") || c.starts_with("engine start") || c.starts_with("put")
        })
        .cloned()
        .collect();
    assert!(
        mutations.is_empty(),
        "a converged host is not touched: {mutations:?}"
    );
}

/// A container in another's network namespace is read back as the engine reports it, by that
/// container's id: named again, a converged host plans nothing; the other container recreated,
/// it follows.
#[tokio::test]
async fn a_container_in_anothers_network_namespace_converges() {
    let mut sidecar = container("sidecar", &[("api", ConditionKind::ServiceStarted)], 0);
    sidecar.networks = BTreeMap::from([("container:api".into(), Vec::new())]);
    sidecar.seal();
    let want = host_wants(vec![container("api", &[], 0), sidecar.clone()], vec![]);
    let mut w = World::one(FakeHost::bare("h"), want);
    let r = w.apply().await;
    assert!(r.ok(), "{r:?}");
    let again = w.plan().await;
    assert!(!again.has_changes(), "{:#?}", again.hosts[0].changes);

    let mut api = container("api", &[], 0);
    api.env.insert("MODE".into(), "other".into());
    api.seal();
    w.desired
        .hosts
        .insert("h".into(), host_wants(vec![api, sidecar], vec![]));
    let planned: Vec<_> = w.plan().await.hosts[0]
        .changes
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(planned, ["api", "sidecar"]);
    let r = w.apply().await;
    assert!(r.ok(), "{r:?}");
    assert!(!w.plan().await.has_changes());
}

/// `db_api`, its image built on the controller.
fn built_db_api() -> HostDesired {
    let mut want = db_api();
    want.images.insert(
        IMAGE.into(),
        ImageSpec {
            reference: IMAGE.into(),
            source: ImageSource::Build {
                context: "images/app".into(),
                dockerfile: "Dockerfile".into(),
                args: BTreeMap::new(),
                context_hash: "c1".into(),
                binaries: BTreeMap::new(),
                target: None,
                session: Default::default(),
            },
        },
    );
    want
}

#[tokio::test]
async fn images_built_here_start_building_before_any_engine_is_set_up() {
    let h = FakeHost::bare("h");
    let mut w = World::one(h.clone(), built_db_api());
    w.local.watch = Some(h);
    let r = w.apply().await;
    assert!(r.ok(), "{r:?}");
    let ensured = w
        .local
        .ensured
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    // Ahead of the hosts, then by the host's delivery (the real local engine builds once).
    let images: Vec<&str> = ensured.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(images, [IMAGE, IMAGE]);
    assert!(
        !ensured[0].1.iter().any(|c| c == "install engine"),
        "the build started before the engine install: {:?}",
        ensured[0].1
    );
    assert!(
        ensured[1].1.iter().any(|c| c == "install engine"),
        "the delivery came after it: {:?}",
        ensured[1].1
    );
}

#[tokio::test]
async fn a_host_that_fails_before_its_image_does_not_wait_for_the_build() {
    let h = FakeHost::bare("h");
    h.fault(
        "install engine",
        Fault::Fail(ErrorKind::Command, "apt-get: no network".into()),
    );
    let mut w = World::one(h, built_db_api());
    w.local.stall_builds = true;
    let r = tokio::time::timeout(Duration::from_secs(10), w.apply())
        .await
        .expect("the apply ends without the build");
    assert!(!r.ok());
    assert!(error_of(&r, "h").contains("apt-get: no network"), "{r:?}");
}

#[tokio::test]
async fn a_dependent_waits_for_its_dependency_to_be_healthy() {
    let h = FakeHost::new("h");
    h.fake_engine()
        .behave("db", Behaviour::Healthy { polls: 3 });
    let w = World::one(h, db_api());
    assert!(w.apply().await.ok());
    let calls = w.host("h").calls();
    let states = calls.iter().filter(|c| *c == "engine state db").count();
    assert!(states >= 3, "polled until healthy: {calls:?}");
    let last_state = calls.iter().rposition(|c| c == "engine state db");
    let create_api = calls.iter().position(|c| c == "engine create api");
    assert!(last_state < create_api);
}

#[tokio::test]
async fn an_unhealthy_dependency_fails_the_host_with_its_health_output() {
    let h = FakeHost::new("h");
    h.fake_engine()
        .behave("db", Behaviour::Unhealthy("pg_isready: no response".into()));
    let w = World::one(h, db_api());
    let r = w.apply().await;
    assert!(!r.ok());
    assert_eq!(
        error_of(&r, "h"),
        "h: db is unhealthy: exit 1 pg_isready: no response"
    );
    assert!(w.host("h").calls_of("engine create api").is_empty());
}

#[tokio::test]
async fn a_one_shot_job_gates_on_completion_and_its_failure_shows_its_logs() {
    let want = host_wants(
        vec![
            container("migrate", &[], 0),
            container(
                "api",
                &[("migrate", ConditionKind::ServiceCompletedSuccessfully)],
                0,
            ),
        ],
        Vec::new(),
    );
    let h = FakeHost::new("h");
    h.fake_engine().behave("migrate", Behaviour::Exits(0));
    let w = World::one(h, want.clone());
    assert!(w.apply().await.ok());

    let h = FakeHost::new("h2");
    h.fake_engine().behave("migrate", Behaviour::Exits(2));
    let w = World::one(h, want);
    let r = w.apply().await;
    assert_eq!(
        error_of(&r, "h2"),
        "h2: migrate exited with 2; last logs:\n(logs of migrate)"
    );
}

#[tokio::test]
async fn a_gate_times_out_with_the_last_health_check() {
    let h = FakeHost::new("h");
    h.fake_engine().behave("db", Behaviour::Starting);
    let mut w = World::one(h, db_api());
    w.opts.gate_timeout = Duration::from_millis(600);
    let r = w.apply().await;
    assert!(
        error_of(&r, "h").starts_with("h: db not healthy after 600ms"),
        "{r:?}"
    );
}

#[tokio::test]
async fn prune_deletes_on_a_host_whose_only_work_is_deletions() {
    let h = FakeHost::new("h");
    let w = World::one(
        h.clone(),
        host_wants(vec![container("old", &[], 0)], Vec::new()),
    );
    assert!(w.apply().await.ok());
    // The stack no longer has `old`, and nothing else changes on the host.
    let mut w = World::one(h.clone(), host_wants(Vec::new(), Vec::new()));
    let want = w.desired.hosts.get_mut("h").expect("h");
    want.images.clear();
    want.networks.clear();
    let plan = w.plan().await;
    assert!(
        plan.hosts[0].changes.is_empty(),
        "{:?}",
        plan.hosts[0].changes
    );
    assert_eq!(
        plan.hosts[0].deletions.len(),
        2,
        "the container and its network"
    );
    let r = w.apply_plan(&plan).await;
    assert!(r.ok());
    assert_eq!(
        h.fake_engine().container_names(),
        ["old"],
        "not without --prune"
    );
    assert!(
        w.notes()
            .iter()
            .any(|n| n.contains("2 deletion(s) left in place"))
    );
    w.opts.prune = true;
    let r = w.apply_plan(&plan).await;
    assert!(r.ok() && r.hosts[0].changes == 2, "{r:?}");
    assert!(h.fake_engine().container_names().is_empty());
    assert!(h.fake_engine().network_names().is_empty());
}

#[tokio::test]
async fn a_held_lock_refuses_and_a_stale_one_of_another_controller_is_kept() {
    let h = FakeHost::new("h");
    let other = "machine=another controller=ci pid=1 since=1";
    h.set_lock_holder(Some(other));
    let hosts = BTreeMap::from([("h".to_owned(), h.clone())]);
    let events: Events = Arc::new(|_| {});
    let (locks, refused) = lock::acquire_all(&hosts, false, 1, &events).await;
    assert!(!locks.holds("h"));
    assert_eq!(refused["h"].kind, ErrorKind::Locked);
    assert!(
        refused["h"].to_string().contains("pass --break-lock"),
        "{}",
        refused["h"]
    );
    assert_eq!(h.lock_holder().as_deref(), Some(other), "left as it was");
    // Broken on purpose: compare and delete exactly that holder, then take it.
    let (locks, refused) = lock::acquire_all(&hosts, true, 1, &events).await;
    assert!(refused.is_empty() && locks.holds("h"));
    assert_eq!(h.lock_holder(), Some(locks.holder().line()));
    lock::release_all(&hosts, locks).await;
    assert_eq!(h.lock_holder(), None);
}

#[tokio::test]
async fn a_lock_left_by_a_dead_process_of_this_machine_is_broken() {
    let me = lock::Holder::me();
    if me.machine.is_empty() || lock::liveness(me.pid) != lock::Liveness::Alive {
        // The decision itself is covered in lock.rs; this machine cannot name its processes.
        assert!(!lock::is_stale(&me, &me, lock::liveness(me.pid)));
        return;
    }
    let dead = lock::Holder {
        pid: u32::MAX - 1,
        ..me.clone()
    };
    let h = FakeHost::new("h");
    h.set_lock_holder(Some(&dead.line()));
    let hosts = BTreeMap::from([("h".to_owned(), h.clone())]);
    let events: Events = Arc::new(|_| {});
    let (locks, refused) = lock::acquire_all(&hosts, false, 1, &events).await;
    assert!(refused.is_empty() && locks.holds("h"), "{refused:?}");
}

#[tokio::test]
async fn a_host_this_run_did_not_lock_is_not_touched() {
    let w = World::one(FakeHost::new("h"), db_api());
    let plan = w.plan().await;
    let events: Events = Arc::new(|_| {});
    let nobody = BTreeMap::<String, FakeHost>::new();
    let (locks, _) = lock::acquire_all(&nobody, false, 1, &events).await;
    let local = FakeLocal::default();
    let handles = Handles {
        hosts: &w.hosts,
        locks: &locks,
        local: &local,
        validator: None,
        redactor: &Redactor::new(),
        events,
        cancel: CancellationToken::new(),
    };
    let r = apply(&handles, &w.desired, &plan, &w.opts).await;
    assert_eq!(error_of(&r, "h"), "h: not locked by this run; not applied");
    assert!(w.host("h").calls_of("engine create").is_empty());
}

#[tokio::test]
async fn after_an_engine_install_only_the_reviewed_unknowns_are_resolved() {
    let h = FakeHost::bare("h");
    let w = World::one(h.clone(), db_api());
    let plan = w.plan().await;
    assert!(plan.hosts[0].changes.iter().any(|c| c.unknown));
    // Between review and apply, something left a network hoist owns and the plan never showed.
    let legacy = NetworkSpec {
        name: "p_legacy".into(),
        driver: "bridge".into(),
        project: "p".into(),
        external: false,
        options: Default::default(),
    };
    h.fake_engine()
        .create_network(&legacy)
        .await
        .expect("network");
    let mut w = w;
    w.opts.prune = true;
    let r = w.apply_plan(&plan).await;
    assert!(
        error_of(&r, "h").contains("did not show (delete network p_legacy)"),
        "{r:?}"
    );
    assert!(
        h.fake_engine().container_names().is_empty(),
        "nothing unreviewed ran"
    );
}

#[tokio::test]
async fn an_interrupted_file_write_fails_and_keeps_the_old_file() {
    let h = FakeHost::new("h");
    h.set_file("/etc/apm/app.env", "MODE=old\n", "0640");
    h.fault("put /etc/apm/app.env", Fault::Truncate(3));
    let w = World::one(h.clone(), db_api());
    let r = w.apply().await;
    assert!(
        error_of(&r, "h").contains("received 3 of 10 bytes"),
        "{r:?}"
    );
    assert_eq!(
        h.file("/etc/apm/app.env").map(|f| f.content),
        Some(b"MODE=old\n".to_vec())
    );
    assert!(
        h.calls_of("engine create").is_empty(),
        "the host stopped there"
    );
}

#[tokio::test]
async fn a_file_destination_that_is_a_symlink_is_refused() {
    let h = FakeHost::new("h");
    h.set_other("/etc/apm/app.env", "symlink");
    let w = World::one(h.clone(), db_api());
    let mut observed = Observed::default();
    let e = observe::host(&h, &w.desired.hosts["h"])
        .await
        .expect_err("refused");
    assert!(
        e.to_string().contains("/etc/apm/app.env is a symlink"),
        "{e}"
    );
    observed.hosts.clear();
}

#[tokio::test]
async fn a_replacement_is_created_before_the_old_container_stops() {
    let h = FakeHost::new("h");
    let w = World::one(h.clone(), db_api());
    assert!(w.apply().await.ok());
    let mut w = World::one(h.clone(), db_api());
    for c in &mut w.desired.hosts.get_mut("h").expect("h").containers {
        if c.name == "api" {
            c.env.insert("MODE".into(), "prod".into());
            c.seal();
        }
    }
    let before = h.calls().len();
    assert!(w.apply().await.ok());
    let calls: Vec<String> = h.calls()[before..]
        .iter()
        .filter(|c| {
            !c.starts_with("engine state")
                && !c.starts_with("engine list")
                && !c.starts_with("engine inspect")
        })
        .filter(|c| c.contains("api"))
        .cloned()
        .collect();
    assert_eq!(
        calls,
        [
            "engine remove api.hoist-new",
            "engine remove api.hoist-old",
            "engine create api.hoist-new",
            "engine stop api",
            "engine rename api api.hoist-old",
            "engine rename api.hoist-new api",
            "engine start api",
            "engine remove api.hoist-old",
        ]
    );
    let env = h.fake_engine().container("api").map(|c| c.env);
    assert_eq!(env, Some(vec!["MODE=prod".to_owned()]));
}

#[tokio::test]
async fn a_failed_replacement_puts_the_old_container_back_and_says_so() {
    let h = FakeHost::new("h");
    let w = World::one(h.clone(), db_api());
    assert!(w.apply().await.ok());
    let mut w = World::one(h.clone(), db_api());
    for c in &mut w.desired.hosts.get_mut("h").expect("h").containers {
        c.env.insert("MODE".into(), "prod".into());
        c.seal();
    }
    h.fail(
        "engine start api",
        ErrorKind::Engine,
        "port 8000 is already allocated",
    );
    let r = w.apply().await;
    assert_eq!(
        error_of(&r, "h"),
        "h: docker: replacing api: port 8000 is already allocated; api is the previous container again, running"
    );
    let api = h.fake_engine().container("api").expect("api is there");
    assert_eq!(api.state, "running");
    assert_eq!(api.env, ["MODE=test"], "the previous one");
    assert_eq!(
        h.fake_engine().container_names(),
        ["api", "db"],
        "no leftover"
    );

    // A create that fails leaves the running container untouched.
    for c in &mut w.desired.hosts.get_mut("h").expect("h").containers {
        c.env.insert("MODE".into(), "prod2".into());
        c.seal();
    }
    h.fail(
        "engine create db.hoist-new",
        ErrorKind::Engine,
        "no such image",
    );
    let mark = h.calls().len();
    let r = w.apply().await;
    assert_eq!(
        error_of(&r, "h"),
        "h: docker: replacing db: no such image; db was left as it was"
    );
    assert!(h.calls()[mark..].iter().all(|c| c != "engine stop db"));
    assert_eq!(
        h.fake_engine().container("db").map(|c| c.state).as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn leftovers_of_an_interrupted_replacement_are_removed_by_the_next_run() {
    let h = FakeHost::new("h");
    let w = World::one(h.clone(), db_api());
    assert!(w.apply().await.ok());
    let api = h.fake_engine().container("api").expect("api");
    h.fake_engine().put_container("api.hoist-old", api);
    let plan = w.plan().await;
    assert!(plan.hosts[0].deletions.is_empty(), "not a user's deletion");
    assert_eq!(plan.hosts[0].changes.len(), 1);
    assert!(w.apply_plan(&plan).await.ok());
    assert_eq!(h.fake_engine().container_names(), ["api", "db"]);
}

#[tokio::test]
async fn independent_containers_are_created_concurrently() {
    let want = host_wants(
        vec![container("a", &[], 0), container("b", &[], 0)],
        Vec::new(),
    );
    let h = FakeHost::new("h");
    h.fault("engine create a", Fault::Stall);
    let w = World::one(h.clone(), want);
    let plan = w.plan().await;
    let applying = w.apply_plan(&plan);
    let _ = tokio::time::timeout(Duration::from_millis(300), applying).await;
    assert_eq!(
        h.calls_of("engine create b"),
        ["engine create b"],
        "b did not wait for a"
    );
}

#[tokio::test]
async fn every_phase_is_timed_and_each_play_named() {
    let data = FakeHost::new("data");
    let app = FakeHost::new("app");
    let mut w = World::new(vec![
        (
            data.clone(),
            host_wants(vec![container("db", &[], 0)], Vec::new()),
        ),
        (app, host_wants(vec![container("api", &[], 1)], Vec::new())),
    ]);
    w.desired.plays = vec!["data".into(), "app".into()];
    assert!(w.apply().await.ok());
    let phases: Vec<String> = w
        .events
        .lock()
        .expect("events")
        .iter()
        .filter_map(|e| match e {
            Event::PhaseDone { phase, .. } => Some(phase.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            "engines, files, images, networks and volumes",
            "play \"data\"",
            "play \"app\"",
        ]
    );
}

#[tokio::test]
async fn plays_run_in_order_across_hosts() {
    let data = FakeHost::new("data");
    let app = FakeHost::new("app");
    let w = World::new(vec![
        (
            data.clone(),
            host_wants(vec![container("db", &[], 0)], Vec::new()),
        ),
        (
            app.clone(),
            host_wants(vec![container("api", &[], 1)], Vec::new()),
        ),
    ]);
    data.fail(
        "engine start db",
        ErrorKind::Engine,
        "no space left on device",
    );
    let r = w.apply().await;
    assert!(!r.ok());
    assert!(error_of(&r, "app").is_empty(), "app itself did not fail");
    assert_eq!(
        app.fake_engine().container_names(),
        ["api"],
        "a failed host does not stop the others"
    );
}

#[tokio::test]
async fn cancellation_stops_a_gate_and_still_releases_the_lock() {
    let h = FakeHost::new("h");
    h.fake_engine().behave("db", Behaviour::Starting);
    let w = World::one(h.clone(), db_api());
    let cancel = w.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cancel.cancel();
    });
    let r = w.apply().await;
    assert_eq!(error_of(&r, "h"), "h: cancelled while waiting for db");
    assert_eq!(h.lock_holder(), None);
    assert!(h.calls_of("engine create api").is_empty());
}

#[test]
fn a_failed_host_skips_the_plays_validation() {
    let topics = vec![Topic::Replication];
    assert_eq!(
        play_validation(Vec::new(), Vec::new(), true),
        PlayValidation::Nothing
    );
    assert_eq!(
        play_validation(topics.clone(), vec!["data-1".into()], true),
        PlayValidation::Skip {
            topics: topics.clone(),
            failed: vec!["data-1".into()]
        }
    );
    assert_eq!(
        play_validation(topics.clone(), Vec::new(), false),
        PlayValidation::Unconfigured(topics.clone())
    );
    assert_eq!(
        play_validation(topics.clone(), Vec::new(), true),
        PlayValidation::Run(topics)
    );
}

#[test]
fn the_engine_is_needed_for_deletions_only_when_they_run() {
    let want = HostDesired::default();
    let mut hp = plan::HostPlan {
        host: "h".into(),
        address: "h".into(),
        changes: Vec::new(),
        deletions: Vec::new(),
        actions: Vec::new(),
        notes: Vec::new(),
        observed_hash: String::new(),
    };
    assert!(!run::needs_engine(&hp, &want, true));
    hp.deletions.push(plan::Change {
        kind: ResourceKind::Container,
        name: "old".into(),
        action: ChangeAction::Delete,
        reasons: Vec::new(),
        diff: None,
        unknown: false,
        desired_hash: String::new(),
    });
    assert!(!run::needs_engine(&hp, &want, false));
    assert!(run::needs_engine(&hp, &want, true));
}

/// A session as `hoist apply` runs it: the review sees the plan while the hosts are locked.
async fn session_with<F>(w: &World, review: F) -> std::result::Result<session::Outcome, String>
where
    F: AsyncFnOnce(
        &Plan,
        &BTreeMap<String, RemoteError>,
    ) -> std::result::Result<session::Review, String>,
{
    let local = FakeLocal::default();
    let redactor = Redactor::new();
    let s = session::Session {
        hosts: &w.hosts,
        desired: &w.desired,
        break_lock: false,
        local: &local,
        validator: None,
        redactor: &redactor,
        events: Arc::new(|_| {}),
        cancel: CancellationToken::new(),
    };
    let desired = w.desired.clone();
    session::run(
        s,
        BTreeMap::new(),
        &w.opts,
        // As `hoist apply` plans: the hosts that could not be locked or observed are left out.
        |observed, failed| {
            let mut desired = desired.clone();
            desired.hosts.retain(|h, _| !failed.contains_key(h));
            plan::diff(&desired, observed, "site.yml", "test", &Redactor::new())
        },
        review,
    )
    .await
}

#[tokio::test]
async fn the_plan_is_reviewed_while_every_host_is_locked() {
    let h = FakeHost::new("h");
    let w = World::one(h.clone(), db_api());
    let seen = Mutex::new(None);
    let outcome = session_with(&w, async |plan: &Plan, _| {
        if let Ok(mut s) = seen.lock() {
            *s = Some(h.lock_holder());
        }
        assert!(plan.has_changes());
        Ok(session::Review::Apply)
    })
    .await
    .expect("applies");
    let held = seen.lock().ok().and_then(|s| s.clone()).flatten();
    assert!(
        held.is_some_and(|holder| holder.starts_with("machine=")),
        "locked during review"
    );
    assert!(outcome.report.is_some_and(|r| r.ok()));
    assert_eq!(h.lock_holder(), None, "released after");
    let calls = h.calls();
    assert_eq!(calls.first().map(String::as_str), Some("lock"), "{calls:?}");
}

#[tokio::test]
async fn a_review_that_stops_or_fails_applies_nothing_and_releases_the_locks() {
    let h = FakeHost::new("h");
    let w = World::one(h.clone(), db_api());
    let outcome = session_with(&w, async |_, _| Ok(session::Review::Stop))
        .await
        .expect("stops");
    assert!(outcome.report.is_none());
    let e = session_with(&w, async |_, _| Err("not applied".to_owned()))
        .await
        .expect_err("the review's error");
    assert_eq!(e, "not applied");
    assert!(h.calls_of("engine create").is_empty());
    assert_eq!(h.lock_holder(), None);
}

#[tokio::test]
async fn a_host_another_run_holds_is_neither_observed_nor_applied() {
    let busy = FakeHost::new("busy");
    busy.set_lock_holder(Some("machine=other controller=ci pid=1 since=1"));
    let free = FakeHost::new("free");
    let w = World::new(vec![(busy.clone(), db_api()), (free.clone(), db_api())]);
    let outcome = session_with(&w, async |plan: &Plan, failed| {
        assert!(failed.contains_key("busy"));
        assert_eq!(plan.hosts.len(), 1, "only the locked host is planned");
        Ok(session::Review::Apply)
    })
    .await
    .expect("applies the other");
    assert_eq!(outcome.unreachable["busy"].kind, ErrorKind::Locked);
    assert_eq!(busy.calls(), ["lock"], "nothing else on the busy host");
    assert_eq!(free.fake_engine().container_names(), ["api", "db"]);
}

#[tokio::test]
async fn a_replacement_that_cannot_be_put_back_says_the_service_is_down() {
    let h = FakeHost::new("h");
    let w = World::one(h.clone(), db_api());
    assert!(w.apply().await.ok());
    let mut w = World::one(h.clone(), db_api());
    for c in &mut w.desired.hosts.get_mut("h").expect("h").containers {
        if c.name == "api" {
            c.env.insert("MODE".into(), "prod".into());
            c.seal();
        }
    }
    h.fail(
        "engine start api",
        ErrorKind::Engine,
        "port 8000 is already allocated",
    );
    h.fail(
        "engine rename api.hoist-old api",
        ErrorKind::Engine,
        "engine went away",
    );
    let mark = h.calls().len();
    let r = w.apply().await;
    assert_eq!(
        error_of(&r, "h"),
        "h: docker: replacing api: port 8000 is already allocated; api is down: neither the new nor the previous container runs"
    );
    let starts = h.calls()[mark..]
        .iter()
        .filter(|c| *c == "engine start api")
        .count();
    assert_eq!(
        starts, 1,
        "nothing is started under a name the old one did not get back"
    );
}

/// A binary file (an icon, a keystore) lands byte for byte, and a second run leaves it alone.
#[tokio::test]
async fn a_binary_file_is_placed_byte_for_byte() {
    let bytes = vec![0x89, b'P', b'N', b'G', 0xff, 0x00, 0xfe, b'\n'];
    let mut icon = file("/srv/icon.png", "");
    icon.content = Content::from_bytes(bytes.clone());
    assert!(icon.content.text().is_none(), "not UTF-8: binary");
    let w = World::one(FakeHost::bare("h"), host_wants(vec![], vec![icon]));
    let r = w.apply().await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(
        w.host("h").file("/srv/icon.png").map(|f| f.content),
        Some(bytes)
    );
    let again = w.plan().await;
    assert!(!again.has_changes(), "{again:?}");
}

/// An API updated start-first behind a proxy that reloads on SIGHUP, as stacks/app.yml has it.
fn api_behind_proxy(order: UpdateOrder) -> HostDesired {
    let mut api = container("api", &[("db", ConditionKind::ServiceHealthy)], 0);
    api.update.order = order;
    api.update.monitor_s = 1;
    api.seal();
    let mut proxy = container("proxy", &[("api", ConditionKind::ServiceHealthy)], 0);
    proxy.reload = Some("SIGHUP".into());
    host_wants(
        vec![container("db", &[], 0), api, proxy],
        vec![file("/etc/apm/app.env", "MODE=test\n")],
    )
}

/// The API's environment changed: a new release of it alone.
fn new_api_release(w: &mut World, mode: &str) -> String {
    let api = w
        .desired
        .hosts
        .get_mut("h")
        .and_then(|h| h.containers.iter_mut().find(|c| c.name == "api"))
        .expect("api");
    api.env.insert("MODE".into(), mode.into());
    api.seal();
    api.config_hash.clone()
}

fn engine_calls(h: &FakeHost, from: usize) -> Vec<String> {
    h.calls()[from..]
        .iter()
        .filter_map(|c| c.strip_prefix("engine "))
        .filter(|c| {
            ["create", "start", "stop", "rename", "remove", "kill"]
                .iter()
                .any(|verb| c.starts_with(verb))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn start_first_the_old_container_serves_until_the_new_one_is_healthy() {
    let h = FakeHost::new("h");
    let mut w = World::one(h.clone(), api_behind_proxy(UpdateOrder::StartFirst));
    assert!(w.apply().await.ok());
    new_api_release(&mut w, "prod");
    let mark = h.calls().len();
    let r = w.apply().await;
    assert!(r.ok(), "{:?}", error_of(&r, "h"));
    assert_eq!(
        engine_calls(&h, mark),
        [
            "remove api.hoist-new",
            "remove api.hoist-old",
            "create api.hoist-new",
            "start api.hoist-new",
            // healthy and watched for the monitor window: the proxy resolves both, then the
            // old one drains and stops, and the proxy resolves the new one alone.
            "kill proxy SIGHUP",
            "stop api",
            "kill proxy SIGHUP",
            "rename api api.hoist-old",
            "rename api.hoist-new api",
            "remove api.hoist-old",
        ]
    );
    // Nothing stopped the old one before the new one was healthy.
    let calls = h.calls();
    let healthy = calls
        .iter()
        .rposition(|c| c == "engine state api.hoist-new")
        .expect("the new one's gate");
    let stopped = calls
        .iter()
        .position(|c| c == "engine stop api")
        .expect("stopped");
    assert!(healthy < stopped);
    let api = h.fake_engine().container("api").expect("api");
    assert_eq!(
        (api.state.as_str(), api.env.as_slice()),
        ("running", &["MODE=prod".to_owned()][..])
    );
    assert_eq!(h.fake_engine().container_names(), ["api", "db", "proxy"]);
    assert_eq!(w.plan().await.hosts[0].changes.len(), 0, "converged");
}

#[tokio::test]
async fn a_start_first_release_that_fails_its_gate_is_rolled_back_and_stays_planned() {
    let h = FakeHost::new("h");
    let mut w = World::one(h.clone(), api_behind_proxy(UpdateOrder::StartFirst));
    assert!(w.apply().await.ok());
    let hash = new_api_release(&mut w, "broken");
    h.fake_engine().behave(
        &hash,
        Behaviour::Unhealthy("curl: (7) connection refused".into()),
    );
    let mark = h.calls().len();
    let r = w.apply().await;
    assert!(!r.ok());
    let error = error_of(&r, "h");
    assert_eq!(
        error,
        format!(
            "h: service api of p: the new container (configuration {}) failed its gate: api.hoist-new is unhealthy: exit 1 curl: (7) connection refused; rolled back: the previous container runs as api",
            &hash[..12]
        )
    );
    let calls = engine_calls(&h, mark);
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("stop api") || c.starts_with("kill")),
        "the old one was never touched: {calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("remove api.hoist-new")
    );
    let api = h.fake_engine().container("api").expect("api");
    assert_eq!(
        (api.state.as_str(), api.env.as_slice()),
        ("running", &["MODE=test".to_owned()][..])
    );
    assert_eq!(h.fake_engine().container_names(), ["api", "db", "proxy"]);
    // The inputs still ask for the release: the next plan shows it, nothing else.
    let plan = w.plan().await;
    let pending: Vec<_> = plan.hosts[0]
        .changes
        .iter()
        .map(|c| (c.name.as_str(), c.action))
        .collect();
    assert_eq!(pending, [("api", ChangeAction::Recreate)]);
}

#[tokio::test]
async fn a_new_container_that_fails_in_its_monitor_window_is_rolled_back_stop_first_too() {
    let h = FakeHost::new("h");
    let mut w = World::one(h.clone(), api_behind_proxy(UpdateOrder::StopFirst));
    assert!(w.apply().await.ok());
    let hash = new_api_release(&mut w, "flaky");
    // Healthy at its gate, unhealthy on a later read: within the one-second window.
    h.fake_engine().behave(
        &hash,
        Behaviour::FailsAfter {
            after: 3,
            output: "database gone".into(),
        },
    );
    let r = w.apply().await;
    let error = error_of(&r, "h");
    assert!(
        error.contains("api became unhealthy within 1s of its gate: exit 1 database gone; rolled back: the previous container runs as api"),
        "{error}"
    );
    let api = h.fake_engine().container("api").expect("api");
    assert_eq!(
        (api.state.as_str(), api.env.as_slice()),
        ("running", &["MODE=test".to_owned()][..])
    );
    assert_eq!(h.fake_engine().container_names(), ["api", "db", "proxy"]);
}

#[tokio::test]
async fn pause_keeps_the_failed_container_stopped_for_its_logs() {
    let h = FakeHost::new("h");
    let mut w = World::one(h.clone(), api_behind_proxy(UpdateOrder::StartFirst));
    for c in &mut w.desired.hosts.get_mut("h").expect("h").containers {
        c.update.failure_action = FailureAction::Pause;
    }
    assert!(w.apply().await.ok());
    let hash = new_api_release(&mut w, "broken");
    h.fake_engine().behave(&hash, Behaviour::Exits(3));
    let r = w.apply().await;
    let error = error_of(&r, "h");
    assert!(error.contains("api.hoist-new exited with 3"), "{error}");
    assert!(
        error.ends_with("the new container is kept, stopped, as api.hoist-new"),
        "{error}"
    );
    assert_eq!(
        h.fake_engine().container_names(),
        ["api", "api.hoist-new", "db", "proxy"]
    );
    // The next run clears it before trying again.
    h.fake_engine()
        .behave(&hash, Behaviour::Healthy { polls: 1 });
    assert!(w.apply().await.ok());
    assert_eq!(h.fake_engine().container_names(), ["api", "db", "proxy"]);
}

#[tokio::test]
async fn replicas_are_replaced_a_batch_at_a_time_and_a_failed_batch_stops_the_rest() {
    let h = FakeHost::new("h");
    let worker = |n: u32| {
        let mut c = container(&format!("p-worker-{n}"), &[], 0);
        c.service = "worker".into();
        c.number = n;
        c.update.parallelism = 1;
        c.seal();
        c
    };
    let mut w = World::one(
        h.clone(),
        host_wants(vec![worker(1), worker(2), worker(3)], Vec::new()),
    );
    assert!(w.apply().await.ok());
    let mut hashes = Vec::new();
    for c in &mut w.desired.hosts.get_mut("h").expect("h").containers {
        c.env.insert("MODE".into(), "v2".into());
        c.seal();
        hashes.push(c.config_hash.clone());
    }
    h.fake_engine()
        .behave(&hashes[1], Behaviour::Unhealthy("no".into()));
    let mark = h.calls().len();
    let r = w.apply().await;
    assert!(
        error_of(&r, "h").contains("service worker of p"),
        "{}",
        error_of(&r, "h")
    );
    let created: Vec<String> = engine_calls(&h, mark)
        .into_iter()
        .filter(|c| c.starts_with("create"))
        .collect();
    assert_eq!(
        created,
        ["create p-worker-1.hoist-new", "create p-worker-2.hoist-new"],
        "one at a time, and the third never"
    );
    let env = |n: u32| {
        h.fake_engine()
            .container(&format!("p-worker-{n}"))
            .map(|c| c.env)
            .unwrap_or_default()
    };
    assert_eq!(
        [env(1), env(2), env(3)],
        [
            vec!["MODE=v2".to_owned()],
            vec!["MODE=test".to_owned()],
            vec!["MODE=test".to_owned()]
        ]
    );
}

fn releases_of(h: &FakeHost) -> hoist_core::release::History {
    h.file(hoist_core::release::HISTORY)
        .map(|f| hoist_core::release::History::parse(&f.content).expect("a history"))
        .unwrap_or_default()
}

#[tokio::test]
async fn each_apply_that_changes_a_host_records_a_release_there() {
    let h = FakeHost::new("h");
    let mut w = World::one(h.clone(), api_behind_proxy(UpdateOrder::StartFirst));
    w.opts.applier = crate::release::Applier {
        by: "ops@controller".into(),
        run: "1-2@controller".into(),
        revision: Some("84cb366".into()),
    };
    assert!(w.apply().await.ok());
    let history = releases_of(&h);
    let first = history.last().expect("release 1");
    assert_eq!((first.id, first.by.as_str()), (1, "ops@controller"));
    assert_eq!(first.revision.as_deref(), Some("84cb366"));
    assert_eq!(
        first.containers.keys().collect::<Vec<_>>(),
        ["api", "db", "proxy"]
    );
    assert_eq!(first.containers["api"].image_id, "sha256:app:1");
    assert!(first.files.contains_key("/etc/apm/app.env"));
    assert!(
        first.changes.contains(&"container api: create".to_owned()),
        "{:?}",
        first.changes
    );
    assert_eq!(
        h.file(hoist_core::release::HISTORY)
            .map(|f| f.mode)
            .as_deref(),
        Some("0600")
    );
    // Every spec it ran is kept, for going back to it.
    assert!(
        history
            .specs
            .contains_key(&first.containers["api"].config_hash)
    );

    // Nothing changed: no release.
    assert!(w.apply().await.ok());
    assert_eq!(releases_of(&h).releases.len(), 1);

    // A new environment for the API: release 2, which changed the API's configuration only.
    new_api_release(&mut w, "prod");
    assert!(w.apply().await.ok());
    let history = releases_of(&h);
    let [one, two] = &history.releases[..] else {
        panic!("two releases: {history:?}");
    };
    assert_eq!(
        hoist_core::release::differences(Some(one), two),
        [hoist_core::release::Difference {
            kind: "container",
            name: "api".into(),
            what: vec!["configuration"],
        }]
    );
    assert!(w.events.lock().is_ok_and(|e| {
        e.iter()
            .any(|e| matches!(e, Event::Released { release: 2, .. }))
    }));

    // A release that fails its gate is not one: the host still runs release 2.
    let hash = new_api_release(&mut w, "broken");
    h.fake_engine()
        .behave(&hash, Behaviour::Unhealthy("no".into()));
    assert!(!w.apply().await.ok());
    assert_eq!(releases_of(&h).last().map(|r| r.id), Some(2));
}

#[tokio::test]
async fn a_history_that_cannot_be_read_is_kept_and_said() {
    let h = FakeHost::new("h");
    h.set_file(hoist_core::release::HISTORY, "{not json", "0600");
    let w = World::one(h.clone(), db_api());
    let r = w.apply().await;
    assert!(r.ok(), "the apply itself stands");
    assert!(
        w.notes()
            .iter()
            .any(|n| n.starts_with("the release was not recorded: /var/lib/hoist/releases.json: ")),
        "{:?}",
        w.notes()
    );
    assert_eq!(
        h.file(hoist_core::release::HISTORY).map(|f| f.content),
        Some(b"{not json".to_vec())
    );
}

#[tokio::test]
async fn a_serial_play_goes_a_batch_of_hosts_at_a_time_and_stops_at_a_failed_one() {
    let hosts: Vec<FakeHost> = ["a", "b", "c"].into_iter().map(FakeHost::new).collect();
    let mut w = World::new(
        hosts
            .iter()
            .map(|h| (h.clone(), api_behind_proxy(UpdateOrder::StartFirst)))
            .collect(),
    );
    w.desired.serial.insert(
        0,
        desired::PlaySerial {
            play: "app".into(),
            serial: hoist_core::playbook::Serial::Hosts(1),
            hosts: vec!["a".into(), "b".into(), "c".into()],
        },
    );
    assert!(w.apply().await.ok());
    let mut hash = String::new();
    for name in ["a", "b", "c"] {
        let api = w
            .desired
            .hosts
            .get_mut(name)
            .and_then(|h| h.containers.iter_mut().find(|c| c.name == "api"))
            .expect("api");
        api.env.insert("MODE".into(), "prod".into());
        api.seal();
        hash.clone_from(&api.config_hash);
    }
    hosts[1]
        .fake_engine()
        .behave(&hash, Behaviour::Unhealthy("no".into()));
    let mark = hosts[2].calls().len();
    let r = w.apply().await;
    let env = |h: &FakeHost| {
        h.fake_engine()
            .container("api")
            .map(|c| c.env)
            .unwrap_or_default()
    };
    assert_eq!(env(&hosts[0]), ["MODE=prod"], "the first batch");
    assert!(
        error_of(&r, "b").contains("rolled back"),
        "{}",
        error_of(&r, "b")
    );
    assert_eq!(env(&hosts[1]), ["MODE=test"]);
    assert_eq!(
        error_of(&r, "c"),
        "c: not applied: play \"app\" goes 1 host(s) at a time, and b failed in an earlier batch"
    );
    assert_eq!(env(&hosts[2]), ["MODE=test"], "never touched");
    assert!(
        hosts[2].calls()[mark..]
            .iter()
            .all(|c| !c.starts_with("engine create"))
    );
}

#[test]
fn serial_batches_follow_the_plays_order_and_its_percentage() {
    use hoist_core::playbook::Serial;
    let s = |serial| desired::PlaySerial {
        play: "p".into(),
        serial,
        hosts: ["c", "a", "b", "d"].map(String::from).to_vec(),
    };
    assert_eq!(
        s(Serial::Hosts(3)).batches(&["a", "b", "c", "d"]),
        [vec!["c", "a", "b"], vec!["d"]]
    );
    assert_eq!(
        s(Serial::Percent(50)).batches(&["a", "b", "d"]),
        [vec!["a", "b"], vec!["d"]]
    );
    assert_eq!(
        s(Serial::Percent(1)).batches(&["a", "b"]),
        [vec!["a"], vec!["b"]]
    );
}

#[tokio::test]
async fn rollback_goes_back_to_the_previous_release_files_included_and_forward_again() {
    let h = FakeHost::new("h");
    let mut w = World::one(h.clone(), api_behind_proxy(UpdateOrder::StartFirst));
    assert!(w.apply().await.ok());
    // Release 2: the API's environment and a file.
    new_api_release(&mut w, "prod");
    w.desired
        .hosts
        .get_mut("h")
        .and_then(|d| d.files.get_mut("/etc/apm/app.env"))
        .expect("app.env")
        .content = "MODE=prod\n".to_owned().into();
    assert!(w.apply().await.ok());
    let today = w.desired.hosts["h"].clone();
    let env = || {
        h.fake_engine()
            .container("api")
            .map(|c| c.env)
            .unwrap_or_default()
    };
    let file = || {
        h.file("/etc/apm/app.env")
            .map(|f| f.content)
            .unwrap_or_default()
    };
    assert_eq!(
        (env(), file()),
        (vec!["MODE=prod".to_owned()], b"MODE=prod\n".to_vec())
    );

    // Back: release 1's container and file, as a plan like any other, recorded as release 3.
    let (from, to, want) = rollback(&h, &today).await;
    assert_eq!((from, to), (2, 1));
    w.desired.hosts.insert("h".into(), want);
    w.opts.restores.insert("h".into(), 1);
    let plan = w.plan().await;
    let changes: Vec<_> = plan.hosts[0]
        .changes
        .iter()
        .map(|c| (c.name.as_str(), c.action))
        .collect();
    assert_eq!(
        changes,
        [
            ("/etc/apm/app.env", ChangeAction::Update),
            ("api", ChangeAction::Recreate)
        ]
    );
    assert!(w.apply().await.ok());
    assert_eq!(
        (env(), file()),
        (vec!["MODE=test".to_owned()], b"MODE=test\n".to_vec())
    );
    let history = releases_of(&h);
    assert_eq!(
        history.last().map(|r| (r.id, r.restores)),
        Some((3, Some(1)))
    );

    // A second rollback moves forward again: to release 2, the one before release 3.
    let (from, to, want) = rollback(&h, &today).await;
    assert_eq!((from, to), (3, 2));
    w.desired.hosts.insert("h".into(), want);
    w.opts.restores.insert("h".into(), 2);
    assert!(w.apply().await.ok());
    assert_eq!(
        (env(), file()),
        (vec!["MODE=prod".to_owned()], b"MODE=prod\n".to_vec())
    );

    // A release the host does not keep is named.
    let history = crate::release::history(&h).await.expect("reads");
    let e = crate::release::restore(&h, &history, &today, 42)
        .await
        .expect_err("no release 42");
    assert_eq!(
        e.to_string(),
        "h: no release 42 on this host (`hoist releases` lists them)"
    );
}

/// What `hoist rollback` chooses for `h` alone, and what it then wants there.
async fn rollback(h: &FakeHost, today: &HostDesired) -> (u64, u64, HostDesired) {
    let history = crate::release::history(h).await.expect("reads");
    let histories = BTreeMap::from([("h".to_owned(), history.clone())]);
    let hoist_core::release::Choice::GoTo { from, to } =
        hoist_core::release::choose(&histories, None)
            .remove("h")
            .expect("chosen")
    else {
        panic!("a release to go to");
    };
    let want = crate::release::restore(h, &history, today, to)
        .await
        .expect("restores");
    (from, to, want)
}

#[tokio::test]
async fn a_rolled_back_release_puts_back_the_files_it_changed() {
    let h = FakeHost::new("h");
    let mut w = World::one(h.clone(), api_behind_proxy(UpdateOrder::StartFirst));
    assert!(w.apply().await.ok());
    let hash = new_api_release(&mut w, "broken");
    w.desired
        .hosts
        .get_mut("h")
        .and_then(|d| d.files.get_mut("/etc/apm/app.env"))
        .expect("app.env")
        .content = "MODE=broken\n".to_owned().into();
    h.fake_engine()
        .behave(&hash, Behaviour::Unhealthy("no".into()));
    let r = w.apply().await;
    let error = error_of(&r, "h");
    assert!(
        error.ends_with(
            "; the 1 file(s) this apply changed for it are the previous release's again"
        ),
        "{error}"
    );
    assert_eq!(
        h.file("/etc/apm/app.env").map(|f| (f.content, f.mode)),
        Some((b"MODE=test\n".to_vec(), "0640".to_owned()))
    );
    // Still asked for: the next plan shows the file and the container.
    assert_eq!(w.plan().await.hosts[0].changes.len(), 2);
}

#[tokio::test]
async fn stop_first_puts_the_files_back_before_the_previous_container_starts_again() {
    let h = FakeHost::new("h");
    let mount = |w: &mut World, content: &str| {
        let d = w.desired.hosts.get_mut("h").expect("h");
        let f = d.files.get_mut("/etc/apm/app.env").expect("app.env");
        f.content = content.to_owned().into();
        let sum = f.sha256();
        let api = d
            .containers
            .iter_mut()
            .find(|c| c.name == "api")
            .expect("api");
        api.mounted_files.insert("/etc/apm/app.env".into(), sum);
        api.seal();
        api.config_hash.clone()
    };
    let mut w = World::one(h.clone(), api_behind_proxy(UpdateOrder::StopFirst));
    mount(&mut w, "MODE=test\n");
    assert!(w.apply().await.ok());
    let hash = mount(&mut w, "MODE=broken\n");
    h.fake_engine()
        .behave(&hash, Behaviour::Unhealthy("no".into()));
    let mark = h.calls().len();
    let r = w.apply().await;
    let error = error_of(&r, "h");
    assert!(
        error.contains("; the 1 file(s) it mounts were put back first"),
        "{error}"
    );
    let calls = &h.calls()[mark..];
    let back = [
        "put /etc/apm/app.env",
        "engine rename api.hoist-old api",
        "engine start api",
    ];
    assert!(
        calls.windows(3).any(|w| w == back),
        "the file, then the previous container: {calls:#?}"
    );
    assert_eq!(
        h.file("/etc/apm/app.env").map(|f| f.content),
        Some(b"MODE=test\n".to_vec())
    );
}
