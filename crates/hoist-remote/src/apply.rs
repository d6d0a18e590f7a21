//! Applying a plan: exactly the reviewed changes, host by host in parallel, play by play in order,
//! each container waiting for the health of what it depends on.
//!
//! Phases: (1) on every host at once: take the host's lock, set up the engine, put files, deliver
//! images, create networks and volumes; (2) play by play, the hosts of that play at once: create,
//! recreate or start containers in dependency order, then run the play's actions (wait, exec),
//! then, once for the whole play, its `validate` checks (crate::validate); (3) deletions, only when
//! asked; then release the locks. A host that fails is reported and left
//! out of later phases; the others carry on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use futures_util::StreamExt as _;
use hoist_core::desired::{self, ActionKind, ContainerSpec, Desired, HostDesired, ImageSource};
use hoist_core::observed::Observed;
use hoist_core::plan::{self, Change, ChangeAction, HostPlan, Plan, ResourceKind};
use hoist_core::playbook::Wait;
use hoist_core::secret::Redactor;
use hoist_core::stack::ConditionKind;
use tokio::sync::Mutex;

use crate::docker::{self, Gate};
use crate::error::{RemoteError, Result};
use crate::ssh::SshHost;
use crate::validate::{self, Check};
use crate::{engine, files, images, observe, script};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The project root (image build contexts are relative to it).
    pub root: PathBuf,
    /// Perform deletions.
    pub prune: bool,
    /// How long a dependency may take to become healthy or complete.
    pub gate_timeout: Duration,
    /// How many hosts at once.
    pub forks: usize,
    /// Take the lock even if another run holds it.
    pub break_lock: bool,
    /// What the playbook's `validate` steps check, and how (None: the playbook has none).
    pub validate: Option<Arc<validate::Config>>,
}

/// What apply reports as it goes (progress lines, or JSON events).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    HostStarted {
        host: String,
    },
    ChangeDone {
        host: String,
        kind: String,
        name: String,
        action: String,
        ms: u128,
    },
    ImageSent {
        host: String,
        image: String,
        bytes: u64,
    },
    /// Bytes of an image sent so far (every 16 MiB).
    ImageProgress {
        host: String,
        image: String,
        bytes: u64,
    },
    ActionDone {
        host: String,
        describe: String,
        ms: u128,
    },
    Note {
        host: String,
        message: String,
    },
    HostFailed {
        host: String,
        error: String,
    },
    HostDone {
        host: String,
        changes: usize,
        ms: u128,
    },
    /// A play's `validate` step ran its checks (once for the play, not per host).
    Validated {
        play: usize,
        checks: Vec<Check>,
        failed: usize,
    },
}

pub type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// The outcome for one host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostReport {
    pub host: String,
    pub ok: bool,
    pub changes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

struct HostRun<'a> {
    ssh: &'a SshHost,
    want: &'a HostDesired,
    plan: HostPlan,
    docker: Option<Docker>,
    changes: usize,
    error: Option<String>,
    started: Instant,
}

impl HostRun<'_> {
    /// The planned changes to resources of one kind, in plan order.
    fn changes_of(&self, kind: ResourceKind) -> Vec<Change> {
        self.plan
            .changes
            .iter()
            .filter(|c| c.kind == kind)
            .cloned()
            .collect()
    }
}

/// The outcome of an apply: per host, and the checks of the `validate` steps.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyReport {
    pub hosts: Vec<HostReport>,
    pub checks: Vec<Check>,
}

impl ApplyReport {
    /// Every host applied and every check passed.
    pub fn ok(&self) -> bool {
        self.hosts.iter().all(|h| h.ok) && self.checks.iter().all(|c| c.ok)
    }
}

/// The outcome of building one image, shared by every host that needs it.
type BuildOnce = Arc<tokio::sync::OnceCell<std::result::Result<(), String>>>;

/// Builds each image once for all hosts.
#[derive(Default)]
struct Builds {
    done: Mutex<BTreeMap<String, BuildOnce>>,
}

/// Applies `plan` (made from `desired`) on the connected hosts.
pub async fn apply(
    hosts: &BTreeMap<String, SshHost>,
    desired: &Desired,
    plan: &Plan,
    redactor: &Redactor,
    opts: &ApplyOptions,
    events: Events,
) -> ApplyReport {
    let owner = lock_owner();
    let mut checks = Vec::new();
    let mut runs: Vec<HostRun<'_>> = plan
        .hosts
        .iter()
        .filter_map(|hp| {
            let ssh = hosts.get(&hp.host)?;
            let want = desired.hosts.get(&hp.host)?;
            Some(HostRun {
                ssh,
                want,
                plan: hp.clone(),
                docker: None,
                changes: 0,
                error: None,
                started: Instant::now(),
            })
        })
        .collect();
    let local = images::local().ok();
    let builds = Builds::default();

    // Phase 1: every host at once.
    let results: Vec<(usize, Result<HostRun<'_>>)> =
        futures_util::stream::iter(runs.drain(..).enumerate())
            .map(|(i, mut run)| {
                let events = events.clone();
                let (owner, local, builds) = (&owner, &local, &builds);
                async move {
                    events(Event::HostStarted {
                        host: run.ssh.name.clone(),
                    });
                    let r = prepare(
                        &mut run,
                        owner,
                        local.as_ref(),
                        builds,
                        redactor,
                        opts,
                        &events,
                    )
                    .await;
                    (i, r.map(|()| run))
                }
            })
            .buffer_unordered(opts.forks.max(1))
            .collect()
            .await;
    let mut slots: Vec<Option<HostRun<'_>>> = Vec::new();
    let mut failed: Vec<HostReport> = Vec::new();
    let mut ordered = results;
    ordered.sort_by_key(|(i, _)| *i);
    for (_, r) in ordered {
        match r {
            Ok(run) => slots.push(Some(run)),
            Err(e) => {
                let msg = redactor.redact(&e.to_string());
                let host = host_of(&e);
                events(Event::HostFailed {
                    host: host.clone(),
                    error: msg.clone(),
                });
                failed.push(HostReport {
                    host,
                    ok: false,
                    changes: 0,
                    error: Some(msg),
                });
            }
        }
    }

    // Phase 2: play by play.
    let plays = slots
        .iter()
        .flatten()
        .flat_map(|r| {
            r.want
                .containers
                .iter()
                .map(|c| c.play)
                .chain(r.want.actions.iter().map(|a| a.play_index))
        })
        .max();
    for play in 0..=plays.unwrap_or(0) {
        let mut active: Vec<HostRun<'_>> = slots.iter_mut().filter_map(|s| s.take()).collect();
        let done: Vec<HostRun<'_>> = futures_util::stream::iter(active.drain(..))
            .map(|mut run| {
                let events = events.clone();
                async move {
                    if run.error.is_none()
                        && let Err(e) = converge_play(&mut run, play, opts, &events).await
                    {
                        let msg = redactor.redact(&e.to_string());
                        events(Event::HostFailed {
                            host: run.ssh.name.clone(),
                            error: msg.clone(),
                        });
                        run.error = Some(msg);
                    }
                    run
                }
            })
            .buffer_unordered(opts.forks.max(1))
            .collect()
            .await;
        slots = done.into_iter().map(Some).collect();
        let wanted = desired::validations(slots.iter().flatten().map(|r| r.want), Some(play));
        if !wanted.is_empty() {
            checks.extend(validate_play(hosts, &slots, play, &wanted, opts, &events).await);
        }
    }

    // Phase 3: deletions, then unlock.
    let mut reports = failed;
    for run in slots.into_iter().flatten() {
        let mut run = run;
        if run.error.is_none() && opts.prune {
            if let Err(e) = delete(&mut run, &events).await {
                run.error = Some(redactor.redact(&e.to_string()));
            }
        } else if run.error.is_none() && !run.plan.deletions.is_empty() {
            events(Event::Note {
                host: run.ssh.name.clone(),
                message: format!(
                    "{} deletion(s) left in place (pass --prune to apply them)",
                    run.plan.deletions.len()
                ),
            });
        }
        let _ = run.ssh.run(&script::unlock(&owner)).await;
        let ok = run.error.is_none();
        if ok {
            events(Event::HostDone {
                host: run.ssh.name.clone(),
                changes: run.changes,
                ms: run.started.elapsed().as_millis(),
            });
        }
        reports.push(HostReport {
            host: run.ssh.name.clone(),
            ok,
            changes: run.changes,
            error: run.error,
        });
    }
    // Hosts that failed in phase 1 still hold their lock only if they got it: release ours.
    for r in reports.iter().filter(|r| !r.ok) {
        if let Some(ssh) = hosts.get(&r.host) {
            let _ = ssh.run(&script::unlock(&owner)).await;
        }
    }
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    ApplyReport {
        hosts: reports,
        checks,
    }
}

/// Runs a play's checks once, after every host of the play converged; a host that failed makes
/// them pointless, and is itself the failure to report.
async fn validate_play(
    hosts: &BTreeMap<String, SshHost>,
    runs: &[Option<HostRun<'_>>],
    play: usize,
    wanted: &[String],
    opts: &ApplyOptions,
    events: &Events,
) -> Vec<Check> {
    let note = |message: String| {
        for run in runs.iter().flatten() {
            events(Event::Note {
                host: run.ssh.name.clone(),
                message: message.clone(),
            });
        }
    };
    let failed: Vec<&str> = runs
        .iter()
        .flatten()
        .filter(|r| r.error.is_some())
        .map(|r| r.ssh.name.as_str())
        .collect();
    if !failed.is_empty() {
        note(format!(
            "validate {}: not run, {} failed",
            wanted.join(", "),
            failed.join(", ")
        ));
        return Vec::new();
    }
    let Some(cfg) = &opts.validate else {
        note(format!(
            "validate {}: no checks configured",
            wanted.join(", ")
        ));
        return Vec::new();
    };
    let checks = validate::run(hosts, cfg, wanted).await;
    events(Event::Validated {
        play,
        failed: checks.iter().filter(|c| !c.ok).count(),
        checks: checks.clone(),
    });
    checks
}

fn host_of(e: &RemoteError) -> String {
    match e {
        RemoteError::Unreachable { host, .. }
        | RemoteError::Auth { host, .. }
        | RemoteError::HostKey { host, .. }
        | RemoteError::Timeout { host, .. }
        | RemoteError::Command { host, .. }
        | RemoteError::Ssh { host, .. }
        | RemoteError::Docker { host, .. }
        | RemoteError::Other { host, .. } => host.clone(),
    }
}

/// Who holds a lock: this machine, this process, since when.
fn lock_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "controller={} pid={} since={since}",
        host.trim(),
        std::process::id()
    )
}

/// A lock held by a dead process of this same machine is stale.
fn stale(holder: &str) -> bool {
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let field = |k: &str| {
        holder
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_default()
            .to_owned()
    };
    field("controller=") == me.trim()
        && !std::path::Path::new(&format!("/proc/{}", field("pid="))).exists()
}

async fn lock(ssh: &SshHost, owner: &str, break_lock: bool, events: &Events) -> Result<()> {
    for _ in 0..2 {
        let out = ssh.run_ok(&script::lock(owner), None).await?;
        let text = out.stdout_text();
        let mut lines = text.lines();
        if lines.next() == Some("acquired") {
            return Ok(());
        }
        let holder = lines.next().unwrap_or("unknown").to_owned();
        if break_lock || stale(&holder) {
            events(Event::Note {
                host: ssh.name.clone(),
                message: format!("breaking the lock held by {holder}"),
            });
            ssh.run_ok(&script::unlock(""), None).await?;
            continue;
        }
        return Err(RemoteError::Other {
            host: ssh.name.clone(),
            detail: format!(
                "another apply holds the lock ({holder}); pass --break-lock if it is gone"
            ),
        });
    }
    Err(RemoteError::Other {
        host: ssh.name.clone(),
        detail: "could not take the lock".into(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn prepare(
    run: &mut HostRun<'_>,
    owner: &str,
    local: Option<&Docker>,
    builds: &Builds,
    redactor: &Redactor,
    opts: &ApplyOptions,
    events: &Events,
) -> Result<()> {
    let host = run.ssh.name.clone();
    lock(run.ssh, owner, opts.break_lock, events).await?;
    // The engine first: everything else lives in it.
    let engine_changes = run.changes_of(ResourceKind::Engine);
    for c in &engine_changes {
        let t = Instant::now();
        let spec = run.want.engine.as_ref();
        match c.action {
            ChangeAction::Install => {
                let facts = engine::facts(run.ssh).await?;
                facts.check_supported(&host)?;
                if !facts.installed {
                    engine::install(run.ssh).await?;
                }
                if let Some(e) = spec {
                    put_daemon_json(run.ssh, &e.daemon).await?;
                }
                engine::start(run.ssh, true, Duration::from_secs(90)).await?;
            }
            ChangeAction::Configure => {
                if let Some(e) = spec {
                    put_daemon_json(run.ssh, &e.daemon).await?;
                }
                engine::start(run.ssh, true, Duration::from_secs(90)).await?;
            }
            _ => engine::start(run.ssh, false, Duration::from_secs(90)).await?,
        }
        done(run, c, t, events);
    }
    // What was unknown before the engine answered is known now: plan this host's engine content again.
    if run.plan.changes.iter().any(|c| c.unknown) || !engine_changes.is_empty() {
        let observed = observe::host(run.ssh, run.want).await?;
        let one = Desired {
            hosts: BTreeMap::from([(host.clone(), run.want.clone())]),
        };
        let fresh = plan::diff(
            &one,
            &Observed {
                hosts: BTreeMap::from([(host.clone(), observed)]),
            },
            "",
            "",
            redactor,
        );
        if let Some(mut hp) = fresh.hosts.into_iter().next() {
            hp.changes.retain(|c| c.kind != ResourceKind::Engine);
            run.plan = hp;
        }
    }
    let needs_docker = run
        .plan
        .changes
        .iter()
        .any(|c| c.kind != ResourceKind::Engine && c.kind != ResourceKind::File)
        || !run.want.containers.is_empty()
        || run.want.actions.iter().any(|a| {
            matches!(
                a.action,
                Some(ActionKind::Exec { .. } | ActionKind::Wait(Wait::Service { .. }))
            )
        });
    for c in &run.changes_of(ResourceKind::File) {
        let t = Instant::now();
        if let Some(f) = run.want.files.get(&c.name) {
            files::put(run.ssh, f).await?;
        }
        done(run, c, t, events);
    }
    if !needs_docker {
        return Ok(());
    }
    let d = docker::connect(run.ssh).await?;
    for c in &run.changes_of(ResourceKind::Image) {
        let t = Instant::now();
        let Some(spec) = run.want.images.get(&c.name) else {
            continue;
        };
        // Built images, and registry images the local engine has, are streamed from the local
        // engine; other registry images are pulled by the host.
        let from_local = match (&spec.source, local) {
            (ImageSource::Build { .. }, Some(l)) => {
                build_once(l, builds, &opts.root, spec)
                    .await
                    .map_err(|detail| RemoteError::Other {
                        host: host.clone(),
                        detail,
                    })?;
                Some(l)
            }
            (ImageSource::Build { .. }, None) => {
                return Err(RemoteError::Other {
                    host,
                    detail: format!(
                        "{} is built from the repository, which needs a local Docker engine",
                        spec.reference
                    ),
                });
            }
            (ImageSource::Pull, Some(l))
                if images::image_id(l, &spec.reference).await.is_some() =>
            {
                Some(l)
            }
            (ImageSource::Pull, _) => None,
        };
        match from_local {
            Some(l) => {
                let progress = image_progress(events, &host, &spec.reference);
                let bytes = images::transfer(l, &d, &host, &spec.reference, progress).await?;
                events(Event::ImageSent {
                    host: host.clone(),
                    image: spec.reference.clone(),
                    bytes,
                });
            }
            None => images::pull(&d, &host, &spec.reference).await?,
        }
        done(run, c, t, events);
    }
    for c in &run.changes_of(ResourceKind::Network) {
        let t = Instant::now();
        if let Some(n) = run.want.networks.get(&c.name) {
            if c.action == ChangeAction::Recreate {
                docker::remove_network(&host, &d, &n.name).await?;
            }
            docker::create_network(&host, &d, n).await?;
        }
        done(run, c, t, events);
    }
    for c in &run.changes_of(ResourceKind::Volume) {
        let t = Instant::now();
        if let Some(v) = run.want.volumes.get(&c.name) {
            docker::create_volume(&host, &d, v).await?;
        }
        done(run, c, t, events);
    }
    run.docker = Some(d);
    Ok(())
}

async fn put_daemon_json(ssh: &SshHost, daemon: &serde_json::Value) -> Result<()> {
    let content = serde_json::to_string_pretty(daemon).unwrap_or_default() + "\n";
    let spec = desired::FileSpec {
        path: script::DAEMON_JSON.into(),
        content,
        mode: 0o644,
        owner: None,
        group: None,
        origin: "engine step".into(),
        sensitive: false,
    };
    files::put(ssh, &spec).await
}

async fn build_once(
    local: &Docker,
    builds: &Builds,
    root: &std::path::Path,
    spec: &desired::ImageSpec,
) -> std::result::Result<(), String> {
    let cell = builds
        .done
        .lock()
        .await
        .entry(spec.reference.clone())
        .or_default()
        .clone();
    cell.get_or_init(|| async {
        if let ImageSource::Build { context_hash, .. } = &spec.source
            && let Ok(img) = local.inspect_image(&spec.reference).await
        {
            let labels = img.config.and_then(|c| c.labels).unwrap_or_default();
            if labels.get(desired::labels::CONTEXT_HASH) == Some(context_hash) {
                return Ok(());
            }
        }
        images::build(local, root, spec)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .clone()
}

/// Reports an image transfer every 16 MiB.
fn image_progress(events: &Events, host: &str, image: &str) -> images::Progress {
    let (events, host, image) = (events.clone(), host.to_owned(), image.to_owned());
    let step = std::sync::atomic::AtomicU64::new(0);
    Arc::new(move |bytes: u64| {
        let mark = bytes >> 24;
        if step.swap(mark, std::sync::atomic::Ordering::Relaxed) != mark {
            events(Event::ImageProgress {
                host: host.clone(),
                image: image.clone(),
                bytes,
            });
        }
    })
}

fn done(run: &mut HostRun<'_>, c: &Change, t: Instant, events: &Events) {
    run.changes += 1;
    events(Event::ChangeDone {
        host: run.ssh.name.clone(),
        kind: c.kind.as_str().into(),
        name: c.name.clone(),
        action: c.action.as_str().into(),
        ms: t.elapsed().as_millis(),
    });
}

fn gate_of(k: ConditionKind) -> Gate {
    match k {
        ConditionKind::ServiceStarted => Gate::Running,
        ConditionKind::ServiceHealthy => Gate::Healthy,
        ConditionKind::ServiceCompletedSuccessfully => Gate::Completed,
    }
}

/// Containers and actions of one play on one host.
async fn converge_play(
    run: &mut HostRun<'_>,
    play: usize,
    opts: &ApplyOptions,
    events: &Events,
) -> Result<()> {
    let host = run.ssh.name.clone();
    let containers: Vec<&ContainerSpec> = run
        .want
        .containers
        .iter()
        .filter(|c| c.play == play)
        .collect();
    if !containers.is_empty() {
        let d = run.docker.clone().ok_or_else(|| RemoteError::Other {
            host: host.clone(),
            detail: "the Docker engine is not connected".into(),
        })?;
        for spec in containers {
            let Some(c) = run
                .plan
                .changes
                .iter()
                .find(|c| c.kind == ResourceKind::Container && c.name == spec.name)
                .cloned()
            else {
                continue;
            };
            for (dep, cond) in &spec.depends_on {
                docker::wait(&host, &d, dep, gate_of(*cond), opts.gate_timeout).await?;
            }
            let t = Instant::now();
            match c.action {
                ChangeAction::Create => docker::create_and_start(&host, &d, spec).await?,
                ChangeAction::Recreate => {
                    docker::remove_container(&host, &d, &spec.name, spec.stop_grace_period_s)
                        .await?;
                    docker::create_and_start(&host, &d, spec).await?;
                }
                ChangeAction::Start => docker::start(&host, &d, &spec.name).await?,
                _ => {}
            }
            done(run, &c, t, events);
        }
    }
    let actions: Vec<_> = run
        .want
        .actions
        .iter()
        .filter(|a| a.play_index == play)
        .cloned()
        .collect();
    for a in actions {
        let t = Instant::now();
        match &a.action {
            Some(ActionKind::Wait(Wait::Service {
                stack: _,
                service,
                condition,
                timeout_s,
            })) => {
                let d = run.docker.clone().ok_or_else(|| RemoteError::Other {
                    host: host.clone(),
                    detail: "the Docker engine is not connected".into(),
                })?;
                let name = run
                    .want
                    .containers
                    .iter()
                    .find(|c| &c.service == service)
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| service.clone());
                let gate = match condition.as_str() {
                    "healthy" => Gate::Healthy,
                    "completed" => Gate::Completed,
                    _ => Gate::Running,
                };
                docker::wait(&host, &d, &name, gate, Duration::from_secs(*timeout_s)).await?;
            }
            Some(ActionKind::Wait(Wait::Port { port, timeout_s })) => {
                wait_port(
                    &host,
                    &run.ssh.address,
                    *port,
                    Duration::from_secs(*timeout_s),
                )
                .await?
            }
            Some(ActionKind::Wait(Wait::Url {
                url,
                status,
                timeout_s,
            })) => wait_url(run.ssh, url, *status, Duration::from_secs(*timeout_s)).await?,
            Some(ActionKind::Exec {
                container,
                command,
                user,
                unless,
            }) => {
                let d = run.docker.clone().ok_or_else(|| RemoteError::Other {
                    host: host.clone(),
                    detail: "the Docker engine is not connected".into(),
                })?;
                if let Some(guard) = unless {
                    let (code, _) =
                        docker::exec(&host, &d, container, guard, user.as_deref()).await?;
                    if code == 0 {
                        events(Event::Note {
                            host: host.clone(),
                            message: format!("{}: skipped, `unless` exited 0", a.describe),
                        });
                        continue;
                    }
                }
                let (code, output) =
                    docker::exec(&host, &d, container, command, user.as_deref()).await?;
                if code != 0 {
                    let tail: Vec<&str> = output
                        .lines()
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    return Err(RemoteError::Other {
                        host,
                        detail: format!("{} exited with {code}:\n{}", a.describe, tail.join("\n")),
                    });
                }
            }
            // Run once for the play when all its hosts are done (validate_play).
            Some(ActionKind::Validate(_)) | None => continue,
        }
        events(Event::ActionDone {
            host: host.clone(),
            describe: a.describe.clone(),
            ms: t.elapsed().as_millis(),
        });
    }
    Ok(())
}

async fn wait_port(host: &str, address: &str, port: u16, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect((address, port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RemoteError::Timeout {
                host: host.into(),
                during: format!("waiting for {address}:{port}"),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_url(ssh: &SshHost, url: &str, status: u16, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let argv = script::http_status(url);
    let mut last = String::new();
    loop {
        let out = ssh.run(&argv).await?;
        let code = out.stdout_text().trim().to_owned();
        if code == status.to_string() {
            return Ok(());
        }
        if !code.is_empty() {
            last = format!("last answer {code}");
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RemoteError::Timeout {
                host: ssh.name.clone(),
                during: format!("waiting for {url} to answer {status} ({last})"),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

async fn delete(run: &mut HostRun<'_>, events: &Events) -> Result<()> {
    let host = run.ssh.name.clone();
    let Some(d) = run.docker.clone() else {
        return Ok(());
    };
    let mut dels = run.plan.deletions.clone();
    dels.sort_by_key(|c| match c.kind {
        ResourceKind::Container => 0,
        ResourceKind::Volume => 1,
        _ => 2,
    });
    for c in dels {
        let t = Instant::now();
        match c.kind {
            ResourceKind::Container => docker::remove_container(&host, &d, &c.name, None).await?,
            ResourceKind::Volume => docker::remove_volume(&host, &d, &c.name).await?,
            ResourceKind::Network => docker::remove_network(&host, &d, &c.name).await?,
            _ => {}
        }
        done(run, &c, t, events);
    }
    Ok(())
}
