//! Applying a plan: exactly the reviewed changes, host by host in parallel, play by play in order,
//! each container waiting for the health of what it depends on.
//!
//! The caller takes every host's lock first ([`lock::acquire_all`]) and keeps it through observing,
//! planning and the confirmation prompt, so the plan it shows is the plan that runs. Then phases:
//! (1) on every locked host at once: set up the engine (and plan the reviewed unknowns again,
//! [`replan`]), put files, deliver images (the images built on the controller all start building
//! at the phase's start), create networks and volumes; (2) play by play, the hosts
//! of that play at once: containers in waves of independent ones ([`order`]), each behind the
//! health gates of its dependencies ([`gate`]), then the play's actions (wait, exec), then, once
//! for the whole play, its `validate` checks (a play with `serial` converges its hosts a batch at a
//! time, and stops at a batch where a host failed); (3) deletions, only when asked; (4) a release
//! recorded on each host that changed ([`crate::release`]). A host that fails is
//! reported and left out of later phases; the others carry on. Cancellation (Ctrl-C, SIGTERM,
//! SIGHUP, through the token the command passes) stops every host at its next step.

pub mod gate;
pub mod lock;
pub mod order;
pub mod replan;
pub(crate) mod run;
pub mod session;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use hoist_core::check::Check;
use hoist_core::desired::{self, Desired, ImageSource};
use hoist_core::plan::{Plan, ResourceKind};
use hoist_core::playbook::Topic;
use hoist_core::secret::Redactor;
use hoist_remote::images::LocalImages;
use hoist_remote::{ErrorKind, Host, RemoteError};
use tokio_util::sync::CancellationToken;

pub use lock::Locks;
use run::HostRun;

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Perform deletions.
    pub prune: bool,
    /// How long a dependency may take to become healthy or complete.
    pub gate_timeout: Duration,
    /// How long the engine may take to answer after it is started.
    pub engine_timeout: Duration,
    /// How many hosts at once.
    pub forks: usize,
    /// Who applies, for the release each changed host records.
    pub applier: crate::release::Applier,
    /// Hosts that go back to one of their releases (`hoist rollback`): host -> release.
    pub restores: BTreeMap<String, u64>,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions {
            prune: false,
            gate_timeout: Duration::from_secs(300),
            engine_timeout: Duration::from_secs(90),
            forks: 8,
            applier: crate::release::Applier::default(),
            restores: BTreeMap::new(),
        }
    }
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
    /// The host recorded what it runs now as its release `release` (`hoist releases`).
    Released {
        host: String,
        release: u64,
    },
    /// A phase of the run ended: the first (engines, files, images, networks and volumes on
    /// every host at once), then each play.
    PhaseDone {
        phase: String,
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

/// Runs a play's `validate` checks (the topics it names), once every host of the play converged.
pub trait Validator: Send + Sync {
    fn run(&self, topics: Vec<Topic>) -> BoxFuture<'_, Vec<Check>>;
}

/// The outcome for one host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostReport {
    pub host: String,
    pub ok: bool,
    pub changes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

impl<H: Host, L: LocalImages> std::fmt::Debug for Handles<'_, H, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles")
            .field("hosts", &self.hosts.keys().collect::<Vec<_>>())
            .field("locks", self.locks)
            .field("validator", &self.validator.is_some())
            .finish_non_exhaustive()
    }
}

/// What apply works through.
pub struct Handles<'a, H: Host, L: LocalImages> {
    pub hosts: &'a BTreeMap<String, H>,
    /// Proof that the hosts are locked by this run; hosts it does not hold are not touched.
    pub locks: &'a Locks,
    pub local: &'a L,
    /// The playbook's `validate` steps (None: the playbook has none).
    pub validator: Option<&'a dyn Validator>,
    pub redactor: &'a Redactor,
    pub events: Events,
    pub cancel: CancellationToken,
}

/// What a play's `validate` step does, given the hosts of the play that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayValidation {
    /// The play has no validate step.
    Nothing,
    /// Run these topics.
    Run(Vec<Topic>),
    /// Skipped: these hosts failed, and they are the failure to report.
    Skip {
        topics: Vec<Topic>,
        failed: Vec<String>,
    },
    /// Asked for, but nothing was configured to run them.
    Unconfigured(Vec<Topic>),
}

/// Decides a play's validate step.
pub fn play_validation(
    topics: Vec<Topic>,
    failed: Vec<String>,
    configured: bool,
) -> PlayValidation {
    if topics.is_empty() {
        PlayValidation::Nothing
    } else if !failed.is_empty() {
        PlayValidation::Skip { topics, failed }
    } else if !configured {
        PlayValidation::Unconfigured(topics)
    } else {
        PlayValidation::Run(topics)
    }
}

/// Applies `plan` (made from `desired`) on the hosts `handles.locks` holds.
pub async fn apply<H: Host, L: LocalImages>(
    handles: &Handles<'_, H, L>,
    desired: &Desired,
    plan: &Plan,
    opts: &ApplyOptions,
) -> ApplyReport {
    let events = &handles.events;
    let mut reports: Vec<HostReport> = Vec::new();
    let mut runs: Vec<HostRun<'_, H>> = Vec::new();
    for hp in &plan.hosts {
        let (Some(host), Some(want)) = (handles.hosts.get(&hp.host), desired.hosts.get(&hp.host))
        else {
            continue;
        };
        if !handles.locks.holds(&hp.host) {
            let error = format!("{}: not locked by this run; not applied", hp.host);
            events(Event::HostFailed {
                host: hp.host.clone(),
                error: error.clone(),
            });
            reports.push(HostReport {
                host: hp.host.clone(),
                ok: false,
                changes: 0,
                error: Some(error),
            });
            continue;
        }
        runs.push(HostRun::new(host, want, hp.clone()));
    }
    let mut checks = Vec::new();

    // Phase 1: every host at once. The images built on the controller all start building now,
    // beside the hosts' engine setups and transfers; a host's delivery waits for its image's one
    // build (LocalImages::ensure). Builds no host waits for any more stop with the phase.
    let started = std::time::Instant::now();
    let ahead = built_here(&runs);
    let ahead = async {
        futures_util::future::join_all(ahead.iter().map(|spec| handles.local.ensure(spec))).await;
    };
    let prepare = for_each(runs, opts.forks, |mut run| async move {
        events(Event::HostStarted {
            host: run.name().to_owned(),
        });
        let r = run.prepare(handles, opts).await;
        run.fail_on(r, handles);
        run
    });
    runs = match futures_util::future::select(std::pin::pin!(ahead), std::pin::pin!(prepare)).await
    {
        futures_util::future::Either::Left(((), prepare)) => prepare.await,
        futures_util::future::Either::Right((runs, _)) => runs,
    };
    events(Event::PhaseDone {
        phase: "engines, files, images, networks and volumes".to_owned(),
        ms: started.elapsed().as_millis(),
    });

    // Phase 2: play by play; a play with `serial`, batch by batch.
    for play in order::plays(runs.iter().map(|r| r.want)) {
        let started = std::time::Instant::now();
        let batches = match desired.serial.get(&play) {
            Some(s) => s.batches(&runs.iter().map(HostRun::name).collect::<Vec<_>>()),
            None => vec![runs.iter().map(|r| r.name().to_owned()).collect()],
        };
        let mut stopped: Option<String> = None;
        for batch in &batches {
            if let Some(why) = &stopped {
                for run in runs
                    .iter_mut()
                    .filter(|r| r.error.is_none() && batch.iter().any(|b| b == r.name()))
                {
                    run.fail_on(Err(RemoteError::other(run.name(), why.clone())), handles);
                }
                continue;
            }
            let before: Vec<bool> = runs.iter().map(|r| r.error.is_some()).collect();
            runs = for_each(runs, opts.forks, |mut run| async move {
                if run.error.is_none() && batch.iter().any(|b| b == run.name()) {
                    let r = match run.converge_play(play, handles, opts).await {
                        Err(e) if e.kind == ErrorKind::RolledBack => {
                            Err(run.put_back_files(e).await)
                        }
                        r => r,
                    };
                    run.fail_on(r, handles);
                }
                run
            })
            .await;
            if let (Some(s), Some(failed)) = (
                desired.serial.get(&play),
                runs.iter()
                    .zip(&before)
                    .find(|(r, was)| !**was && r.error.is_some())
                    .map(|(r, _)| r.name().to_owned()),
            ) {
                stopped = Some(format!(
                    "not applied: play {:?} goes {} host(s) at a time, and {failed} failed in an earlier batch",
                    s.play,
                    s.serial.batch(s.hosts.len())
                ));
            }
        }
        let topics = desired::validations(runs.iter().map(|r| r.want), Some(play));
        let failed = runs
            .iter()
            .filter(|r| r.error.is_some())
            .map(|r| r.name().to_owned())
            .collect();
        let note = |message: String| {
            for run in &runs {
                events(Event::Note {
                    host: run.name().to_owned(),
                    message: message.clone(),
                });
            }
        };
        match play_validation(topics, failed, handles.validator.is_some()) {
            PlayValidation::Nothing => {}
            PlayValidation::Skip { topics, failed } => note(format!(
                "validate {}: not run, {} failed",
                Topic::list(&topics),
                failed.join(", ")
            )),
            PlayValidation::Unconfigured(topics) => note(format!(
                "validate {}: no checks configured",
                Topic::list(&topics)
            )),
            PlayValidation::Run(topics) => {
                if let Some(validator) = handles.validator {
                    let ran = validator.run(topics).await;
                    events(Event::Validated {
                        play,
                        failed: ran.iter().filter(|c| !c.ok).count(),
                        checks: ran.clone(),
                    });
                    checks.extend(ran);
                }
            }
        }
        events(Event::PhaseDone {
            phase: match desired.plays.get(play) {
                Some(name) => format!("play {name:?}"),
                None => format!("play {}", play + 1),
            },
            ms: started.elapsed().as_millis(),
        });
    }

    // Phase 3: deletions.
    runs = for_each(runs, opts.forks, |mut run| async move {
        if run.error.is_none() {
            let r = run.delete(handles, opts).await;
            run.fail_on(r, handles);
        }
        run
    })
    .await;

    // Phase 4: what each changed host runs now is its next release.
    // The plan as `plan --out` writes it: `sha256sum plan.json` names the same plan.
    let plan_hash =
        &desired::sha256_hex(hoist_core::render::plan_json(plan, handles.redactor).as_bytes());
    runs = for_each(runs, opts.forks, |run| async move {
        if run.error.is_none() && run.changes > 0 {
            let host = run.name().to_owned();
            match run.record_release(opts, plan_hash).await {
                Ok(release) => events(Event::Released { host, release }),
                Err(e) => events(Event::Note {
                    host,
                    message: handles
                        .redactor
                        .redact(&format!("the release was not recorded: {}", e.detail)),
                }),
            }
        }
        run
    })
    .await;

    for run in runs {
        let ok = run.error.is_none();
        if ok {
            events(Event::HostDone {
                host: run.name().to_owned(),
                changes: run.changes,
                ms: run.started.elapsed().as_millis(),
            });
        }
        reports.push(HostReport {
            host: run.name().to_owned(),
            ok,
            changes: run.changes,
            error: run.error,
        });
    }
    reports.sort_by(|a, b| a.host.cmp(&b.host));
    ApplyReport {
        hosts: reports,
        checks,
    }
}

/// The images the hosts' plans deliver that are built on the controller, each once: an error is
/// left to the delivery that waits for it, which gets the same build's outcome.
fn built_here<H: Host>(runs: &[HostRun<'_, H>]) -> Vec<desired::ImageSpec> {
    let mut specs = BTreeMap::new();
    for run in runs {
        for c in &run.plan.changes {
            let spec = run.want.images.get(&c.name).filter(|s| {
                c.kind == ResourceKind::Image && matches!(s.source, ImageSource::Build { .. })
            });
            if let Some(spec) = spec {
                specs
                    .entry(spec.reference.clone())
                    .or_insert_with(|| spec.clone());
            }
        }
    }
    specs.into_values().collect()
}

/// Runs `f` on every host run, `forks` at once, and returns them in their original order.
async fn for_each<'h, H, F, Fut>(
    runs: Vec<HostRun<'h, H>>,
    forks: usize,
    f: F,
) -> Vec<HostRun<'h, H>>
where
    H: Host,
    F: Fn(HostRun<'h, H>) -> Fut,
    Fut: Future<Output = HostRun<'h, H>>,
{
    let mut done: Vec<(usize, HostRun<'h, H>)> =
        futures_util::stream::iter(runs.into_iter().enumerate())
            .map(|(i, run)| {
                let fut = f(run);
                async move { (i, fut.await) }
            })
            .buffer_unordered(forks.max(1))
            .collect()
            .await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}
