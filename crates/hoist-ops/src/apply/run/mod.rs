//! One host's part of an apply: its reviewed plan, its engine once connected, what it did so far
//! and the error that stopped it. `prepare` is phase 1, `actions` a play's waits and execs,
//! `replace` a container replaced as its `deploy.update_config` says.

mod actions;
mod prepare;
mod replace;

use std::future::Future;
use std::time::Instant;

use hoist_core::desired::{ActionKind, ContainerSpec, HostDesired};
use hoist_core::plan::{Change, ChangeAction, HostPlan, ResourceKind};
use hoist_core::playbook::Wait;
use hoist_remote::error::{ErrorKind, RemoteError, Result};
use hoist_remote::images::LocalImages;
use hoist_remote::{Engine, Host};
use tokio_util::sync::CancellationToken;

use super::gate::{self, Gate};
use super::{ApplyOptions, Event, Events, Handles, order, replan};
use replace::Replacement;

pub(super) struct HostRun<'a, H: Host> {
    host: &'a H,
    pub(super) want: &'a HostDesired,
    pub(super) plan: HostPlan,
    engine: Option<H::Engine>,
    pub(super) changes: usize,
    /// The containers this run created or replaced.
    replaced: Vec<String>,
    pub(super) error: Option<String>,
    pub(super) started: Instant,
}

/// Whether a host's run needs its engine: for anything but files and the engine itself, for the
/// containers it must gate on, for actions that reach containers, and for deletions it will run.
pub fn needs_engine(plan: &HostPlan, want: &HostDesired, prune: bool) -> bool {
    plan.changes
        .iter()
        .any(|c| !matches!(c.kind, ResourceKind::Engine | ResourceKind::File))
        || !want.containers.is_empty()
        || (prune && !plan.deletions.is_empty())
        || want.actions.iter().any(|a| {
            matches!(
                a.action,
                Some(ActionKind::Exec { .. } | ActionKind::Wait(Wait::Service { .. }))
            )
        })
}

/// Runs `step` unless the run is cancelled first; a cancelled step is dropped where it stands
/// (a file transfer cut short is refused by the host: see `script::put_file`).
async fn step<T>(
    cancel: &CancellationToken,
    host: &str,
    what: &str,
    step: impl Future<Output = Result<T>>,
) -> Result<T> {
    if cancel.is_cancelled() {
        return Err(RemoteError::cancelled(host, &format!("before {what}")));
    }
    tokio::select! {
        r = step => r,
        () = cancel.cancelled() => Err(RemoteError::cancelled(host, &format!("during {what}"))),
    }
}

impl<'a, H: Host> HostRun<'a, H> {
    pub(super) fn new(host: &'a H, want: &'a HostDesired, plan: HostPlan) -> HostRun<'a, H> {
        HostRun {
            host,
            want,
            plan,
            engine: None,
            changes: 0,
            replaced: Vec::new(),
            error: None,
            started: Instant::now(),
        }
    }

    pub(super) fn name(&self) -> &str {
        self.host.name()
    }

    /// Records a step's failure as this host's error.
    pub(super) fn fail_on<L: LocalImages>(&mut self, r: Result<()>, handles: &Handles<'_, H, L>) {
        if let Err(e) = r {
            let msg = handles.redactor.redact(&e.to_string());
            (handles.events)(Event::HostFailed {
                host: self.name().to_owned(),
                error: msg.clone(),
            });
            self.error = Some(msg);
        }
    }

    fn changes_of(&self, kind: ResourceKind) -> Vec<Change> {
        self.plan
            .changes
            .iter()
            .filter(|c| c.kind == kind)
            .cloned()
            .collect()
    }

    fn done(&mut self, c: &Change, t: Instant, events: &Events) {
        self.changes += 1;
        if c.kind == ResourceKind::Container {
            self.replaced.push(c.name.clone());
        }
        events(Event::ChangeDone {
            host: self.name().to_owned(),
            kind: c.kind.as_str().into(),
            name: c.name.clone(),
            action: c.action.as_str().into(),
            ms: t.elapsed().as_millis(),
        });
    }

    fn engine(&self) -> Result<&H::Engine> {
        self.engine.as_ref().ok_or_else(|| {
            RemoteError::new(
                self.name(),
                ErrorKind::Engine,
                "the Docker engine is not connected",
            )
        })
    }

    /// Phase 2 for one play: its containers in waves, then its actions.
    pub(super) async fn converge_play<L: LocalImages>(
        &mut self,
        play: usize,
        handles: &Handles<'_, H, L>,
        opts: &ApplyOptions,
    ) -> Result<()> {
        let containers: Vec<&ContainerSpec> = self
            .want
            .containers
            .iter()
            .filter(|c| c.play == play)
            .collect();
        for wave in order::waves(&containers) {
            let work: Vec<(&ContainerSpec, Change)> = wave
                .into_iter()
                .filter_map(|spec| {
                    let c = self.plan.changes.iter().find(|c| {
                        c.kind == ResourceKind::Container
                            && c.name == spec.name
                            && c.action != ChangeAction::Delete
                    })?;
                    Some((spec, c.clone()))
                })
                .collect();
            if work.is_empty() {
                continue;
            }
            let replaced: Vec<(&ContainerSpec, bool)> = work
                .iter()
                .map(|(spec, c)| (*spec, c.action == ChangeAction::Recreate))
                .collect();
            let results = {
                let this = &*self;
                let d = this.engine()?;
                let work = &work;
                // Services side by side; a service's batches one after the other, none after
                // a failed one.
                futures_util::future::join_all(order::batches(&replaced).into_iter().map(
                    |batches| async move {
                        let mut out = Vec::new();
                        for (n, batch) in batches.into_iter().enumerate() {
                            let delay = work[batch[0]].0.update.delay_s;
                            if n > 0 && delay > 0 {
                                tokio::time::sleep(std::time::Duration::from_secs(delay)).await;
                            }
                            let done = futures_util::future::join_all(batch.into_iter().map(
                                |i| async move {
                                    let (spec, c) = &work[i];
                                    let t = Instant::now();
                                    let r =
                                        this.converge_container(d, spec, c, handles, opts).await;
                                    (i, r, t)
                                },
                            ))
                            .await;
                            let failed = done.iter().any(|(_, r, _)| r.is_err());
                            out.extend(done);
                            if failed {
                                break;
                            }
                        }
                        out
                    },
                ))
                .await
            };
            let mut first_error = None;
            for (i, r, t) in results.into_iter().flatten() {
                match r {
                    Ok(()) => self.done(&work[i].1, t, &handles.events),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        let actions: Vec<_> = self
            .want
            .actions
            .iter()
            .filter(|a| a.play_index == play)
            .collect();
        for a in actions {
            let t = Instant::now();
            let ran = step(
                &handles.cancel,
                self.name(),
                &a.describe,
                self.action(a, handles),
            )
            .await?;
            if ran {
                (handles.events)(Event::ActionDone {
                    host: self.name().to_owned(),
                    describe: a.describe.clone(),
                    ms: t.elapsed().as_millis(),
                });
            }
        }
        Ok(())
    }

    /// One container: its dependencies' gates, then its change.
    async fn converge_container<L: LocalImages>(
        &self,
        d: &H::Engine,
        spec: &ContainerSpec,
        c: &Change,
        handles: &Handles<'_, H, L>,
        opts: &ApplyOptions,
    ) -> Result<()> {
        let (name, cancel) = (self.name(), &handles.cancel);
        for (dep, cond) in spec.waits_for() {
            gate::wait(name, d, dep, Gate::from(*cond), opts.gate_timeout, cancel).await?;
        }
        let what = format!("{} of {}", c.action.as_str(), spec.name);
        match c.action {
            ChangeAction::Create => {
                step(cancel, name, &what, async {
                    d.create(spec, &spec.name).await?;
                    d.start(&spec.name).await
                })
                .await
            }
            // Once started, a replacement runs to its end (its own way back included): cut
            // short, it would leave the service stopped under a scratch name. Its gate and
            // monitor window still end on a cancel, which rolls it back.
            ChangeAction::Recreate => {
                if cancel.is_cancelled() {
                    return Err(RemoteError::cancelled(name, &format!("before {what}")));
                }
                let reload = self.reloads_after(d, spec).await;
                let files = self.files_to_put_back(Some(spec));
                let files_back = (!files.is_empty()).then(|| {
                    Box::pin(async move {
                        match crate::release::put_back(self.host, &files).await {
                            Ok(0) => String::new(),
                            Ok(n) => format!("; the {n} file(s) it mounts were put back first"),
                            Err(e) => {
                                format!("; the files it mounts could not be put back: {}", e.detail)
                            }
                        }
                    }) as futures_util::future::BoxFuture<'_, String>
                });
                let notes = Replacement {
                    host: name,
                    gate_timeout: opts.gate_timeout,
                    cancel,
                    reload: &reload,
                    files_back,
                }
                .run(d, spec)
                .await?;
                for message in notes {
                    (handles.events)(Event::Note {
                        host: name.to_owned(),
                        message,
                    });
                }
                Ok(())
            }
            ChangeAction::Start => step(cancel, name, &what, d.start(&spec.name)).await,
            _ => Ok(()),
        }
    }

    /// The running containers to signal once `spec`'s container is replaced: those that wait
    /// for it and reload on a signal (a proxy re-resolving its upstream).
    async fn reloads_after(&self, d: &H::Engine, spec: &ContainerSpec) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for c in &self.want.containers {
            let Some(signal) = &c.reload else { continue };
            if !c.waits_for().any(|(dep, _)| *dep == spec.name) {
                continue;
            }
            if d.state(&c.name).await.is_ok_and(|s| s.status == "running") {
                out.push((c.name.clone(), signal.clone()));
            }
        }
        out
    }

    /// The files this run changed (and did not delete) that no container it replaced mounts;
    /// with `mounted_by`, only those that container mounts.
    fn files_to_put_back(&self, mounted_by: Option<&ContainerSpec>) -> Vec<String> {
        let kept: Vec<&String> = self
            .want
            .containers
            .iter()
            .filter(|c| self.replaced.contains(&c.name))
            .flat_map(|c| c.mounted_files.keys())
            .collect();
        self.changes_of(ResourceKind::File)
            .into_iter()
            .filter(|c| c.action != ChangeAction::Delete && !kept.contains(&&c.name))
            .filter(|c| mounted_by.is_none_or(|s| s.mounted_files.contains_key(&c.name)))
            .map(|c| c.name)
            .collect()
    }

    /// After a replacement was rolled back: the files this run changed go back to the host's
    /// current release, but those a container it did replace mounts (that container runs the
    /// new release, and the next apply converges the rest). The error says which.
    pub(super) async fn put_back_files(&self, e: RemoteError) -> RemoteError {
        let paths = self.files_to_put_back(None);
        if paths.is_empty() {
            return e;
        }
        let detail = match crate::release::put_back(self.host, &paths).await {
            Ok(0) => return e,
            Ok(n) => format!(
                "{}; the {n} file(s) this apply changed for it are the previous release's again",
                e.detail
            ),
            Err(why) => format!(
                "{}; the files this apply changed could not be put back: {}",
                e.detail, why.detail
            ),
        };
        RemoteError::new(&e.host, e.kind, detail)
    }

    /// Records what the host runs now as its next release, with the changes this run made.
    pub(super) async fn record_release(&self, opts: &ApplyOptions, plan: &str) -> Result<u64> {
        let deletions = if opts.prune {
            &self.plan.deletions[..]
        } else {
            &[]
        };
        let changes = self
            .plan
            .changes
            .iter()
            .chain(deletions)
            .map(|c| format!("{} {}: {}", c.kind.as_str(), c.name, c.action.as_str()))
            .collect();
        crate::release::record(
            self.host,
            self.engine.as_ref(),
            self.want,
            &opts.applier,
            plan,
            changes,
            opts.restores.get(self.name()).copied(),
        )
        .await
    }

    /// Phase 3: deletions when asked, a note otherwise.
    pub(super) async fn delete<L: LocalImages>(
        &mut self,
        handles: &Handles<'_, H, L>,
        opts: &ApplyOptions,
    ) -> Result<()> {
        if self.plan.deletions.is_empty() {
            return Ok(());
        }
        if !opts.prune {
            (handles.events)(Event::Note {
                host: self.name().to_owned(),
                message: format!(
                    "{} deletion(s) left in place (pass --prune to apply them)",
                    self.plan.deletions.len()
                ),
            });
            return Ok(());
        }
        let mut dels = self.plan.deletions.clone();
        // Containers before the volumes and networks they use.
        dels.sort_by_key(|c| match c.kind {
            ResourceKind::Container => 0,
            ResourceKind::Volume => 1,
            _ => 2,
        });
        let name = self.name().to_owned();
        for c in dels {
            let t = Instant::now();
            let d = self.engine()?;
            let what = format!("deleting {} {}", c.kind.as_str(), c.name);
            match c.kind {
                ResourceKind::Container => {
                    step(&handles.cancel, &name, &what, d.remove(&c.name)).await?
                }
                ResourceKind::Volume => {
                    step(&handles.cancel, &name, &what, d.remove_volume(&c.name)).await?
                }
                ResourceKind::Network => {
                    step(&handles.cancel, &name, &what, d.remove_network(&c.name)).await?
                }
                _ => {}
            }
            self.done(&c, t, &handles.events);
        }
        Ok(())
    }
}
