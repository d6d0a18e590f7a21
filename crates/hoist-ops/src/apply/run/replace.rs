//! Replacing a container, health-gated, with the previous one put back when the new one fails.
//!
//! Both orders of compose's `deploy.update_config` are run here. Stop-first: the new container is
//! created beside the old one (most failures happen there, with the old one untouched), the old
//! one stops and hands over its name, the new one starts. Start-first: the new one starts beside
//! the old one under a scratch name and the old one keeps serving until the new one has passed its
//! gate; then the services that reach it through the network are told to reload, the old one
//! drains for its stop grace period, and the new one takes its name. When the old container was
//! running, the new one must pass its gate (healthy with a healthcheck; running for start-first or
//! a monitor window without one) and stay so for the monitor window; if it does not, the files it
//! mounts are put back and the old container runs again under its name, and the error says so.

use std::time::Duration;

use futures_util::future::BoxFuture;
use hoist_core::desired::{ContainerSpec, scratch};
use hoist_core::stack::{FailureAction, UpdateOrder};
use hoist_remote::Engine;
use hoist_remote::error::{ErrorKind, RemoteError, Result};
use tokio_util::sync::CancellationToken;

use crate::apply::gate::{self, Gate};

/// What a replacement needs besides the container: its gate's limits and who to tell.
pub(super) struct Replacement<'a> {
    pub host: &'a str,
    pub gate_timeout: Duration,
    pub cancel: &'a CancellationToken,
    /// Running containers that reach this one through the network, with the signal each reloads
    /// its configuration on (`x-hoist.reload`).
    pub reload: &'a [(String, String)],
    /// Puts back the files the new container mounts as the previous release had them, before
    /// the previous container starts again; says what it did, as the end of the error.
    pub files_back: Option<BoxFuture<'a, String>>,
}

impl Replacement<'_> {
    /// Replaces the container `spec.name` with one made from `spec`. Returns notes for what went
    /// wrong without stopping the service (a reload that failed).
    pub(super) async fn run<E: Engine>(
        mut self,
        d: &E,
        spec: &ContainerSpec,
    ) -> Result<Vec<String>> {
        let was_running = d.state(&spec.name).await?.status == "running";
        match spec.update.order {
            UpdateOrder::StartFirst if was_running => self.start_first(d, spec).await,
            _ => self.stop_first(d, spec, was_running).await,
        }
    }

    fn left(&self, spec: &ContainerSpec, e: RemoteError, state: &str) -> RemoteError {
        RemoteError::new(
            self.host,
            e.kind,
            format!(
                "replacing {}: {}; {} {state}",
                spec.name, e.detail, spec.name
            ),
        )
    }

    /// The new container failed its gate and the previous one runs again: an error that names
    /// the service, the configuration that failed, and why.
    fn rolled_back(
        &self,
        spec: &ContainerSpec,
        why: &RemoteError,
        kept: bool,
        files: &str,
    ) -> RemoteError {
        let kept = if kept {
            format!(
                "; the new container is kept, stopped, as {}",
                scratch::new_name(&spec.name)
            )
        } else {
            String::new()
        };
        RemoteError::new(
            self.host,
            ErrorKind::RolledBack,
            format!(
                "service {} of {}: the new container (configuration {}) failed its gate: {}; rolled back: the previous container runs as {}{kept}{files}",
                spec.service,
                spec.project,
                short(&spec.config_hash),
                why.detail,
                spec.name
            ),
        )
    }

    /// The new container's gate, then its monitor window.
    async fn settle<E: Engine>(&self, d: &E, spec: &ContainerSpec, name: &str) -> Result<()> {
        let Some(gate) = own_gate(spec) else {
            return Ok(());
        };
        gate::wait_new(self.host, d, name, gate, self.gate_timeout, self.cancel).await?;
        let window = Duration::from_secs(spec.update.monitor_s);
        gate::monitor(self.host, d, name, window, self.cancel).await
    }

    /// The files back, once (empty when there is nothing to put back).
    async fn files_back(&mut self) -> String {
        match self.files_back.take() {
            Some(f) => f.await,
            None => String::new(),
        }
    }

    async fn start_first<E: Engine>(&mut self, d: &E, spec: &ContainerSpec) -> Result<Vec<String>> {
        let (name, new, old) = (
            &spec.name,
            scratch::new_name(&spec.name),
            scratch::old_name(&spec.name),
        );
        self.create_beside(d, spec, &new, &old).await?;
        if let Err(e) = d.start(&new).await {
            let _ = d.remove(&new).await;
            return Err(self.left(spec, e, "was left as it was"));
        }
        if let Err(why) = self.settle(d, spec, &new).await {
            let kept = spec.update.failure_action == FailureAction::Pause;
            // Out of the service's way first: stopped, it no longer answers under its aliases.
            let gone = if kept {
                d.stop(&new, spec.stop_grace_period_s).await
            } else {
                d.remove(&new).await
            };
            if let Err(e) = gone {
                return Err(self.left(
                    spec,
                    e,
                    &format!("runs, and the failed container {new} may still answer beside it"),
                ));
            }
            let files = self.files_back().await;
            return Err(self.rolled_back(spec, &why, kept, &files));
        }
        // Both answer now: who reaches the service resolves both before the old one goes.
        let mut notes = self.reload(d).await;
        if let Err(e) = d.stop(name, spec.stop_grace_period_s).await {
            let _ = d.start(name).await;
            let _ = d.remove(&new).await;
            return Err(self.left(spec, e, "was started again as it was"));
        }
        notes.extend(self.reload(d).await);
        if let Err(e) = d.rename(name, &old).await {
            let _ = d.start(name).await;
            let _ = d.remove(&new).await;
            return Err(self.left(spec, e, "was started again as it was"));
        }
        if let Err(e) = d.rename(&new, name).await {
            // Not left serving under a scratch name (the next run would remove it as a
            // leftover): the previous container, under its name again.
            let _ = d.remove(&new).await;
            return Err(self.left(spec, e, restored(put_back(d, &old, name, true).await, true)));
        }
        self.remove_old(d, spec, &old).await?;
        Ok(notes)
    }

    /// The new container, created (not started) under its scratch name beside the old one,
    /// after the leftovers of a run cut short are gone.
    async fn create_beside<E: Engine>(
        &self,
        d: &E,
        spec: &ContainerSpec,
        new: &str,
        old: &str,
    ) -> Result<()> {
        d.remove(new).await?;
        d.remove(old).await?;
        if let Err(e) = d.create(spec, new).await {
            // Created but not connected to every network, say: no half-made replacement stays.
            let _ = d.remove(new).await;
            return Err(self.left(spec, e, "was left as it was"));
        }
        Ok(())
    }

    /// The replaced container, once the new one serves under its name.
    async fn remove_old<E: Engine>(&self, d: &E, spec: &ContainerSpec, old: &str) -> Result<()> {
        d.remove(old).await.map_err(|e| {
            self.left(
                spec,
                e,
                &format!("runs the new container; the previous one is left as {old}"),
            )
        })
    }

    async fn stop_first<E: Engine>(
        &mut self,
        d: &E,
        spec: &ContainerSpec,
        was_running: bool,
    ) -> Result<Vec<String>> {
        let (name, new, old) = (
            &spec.name,
            scratch::new_name(&spec.name),
            scratch::old_name(&spec.name),
        );
        self.create_beside(d, spec, &new, &old).await?;
        if let Err(e) = d.stop(name, spec.stop_grace_period_s).await {
            let _ = d.remove(&new).await;
            // The stop may have taken effect all the same (an API timeout).
            let _ = d.start(name).await;
            return Err(self.left(spec, e, "was left as it was"));
        }
        if let Err(e) = d.rename(name, &old).await {
            let _ = d.remove(&new).await;
            let _ = d.start(name).await;
            return Err(self.left(spec, e, "was started again as it was"));
        }
        if let Err(e) = d.rename(&new, name).await {
            let _ = d.remove(&new).await;
            return Err(self.left(
                spec,
                e,
                restored(put_back(d, &old, name, was_running).await, was_running),
            ));
        }
        if let Err(e) = d.start(name).await {
            let _ = d.remove(name).await;
            return Err(self.left(
                spec,
                e,
                restored(put_back(d, &old, name, was_running).await, was_running),
            ));
        }
        if was_running && let Err(why) = self.settle(d, spec, name).await {
            let kept = spec.update.failure_action == FailureAction::Pause
                && d.stop(name, spec.stop_grace_period_s).await.is_ok()
                && d.rename(name, &new).await.is_ok();
            if !kept {
                let _ = d.remove(name).await;
            }
            // Its files as they were before it starts again: a start mounts them anew.
            let files = self.files_back().await;
            if !put_back(d, &old, name, true).await {
                return Err(self.left(spec, why, restored(false, true)));
            }
            return Err(self.rolled_back(spec, &why, kept, &files));
        }
        let notes = self.reload(d).await;
        self.remove_old(d, spec, &old).await?;
        Ok(notes)
    }

    /// Signals each reloading dependent; a failure is a note, the service itself is replaced.
    async fn reload<E: Engine>(&self, d: &E) -> Vec<String> {
        let mut notes = Vec::new();
        for (container, signal) in self.reload {
            if let Err(e) = d.kill(container, signal).await {
                notes.push(format!(
                    "{container} was not reloaded ({signal}): {}",
                    e.detail
                ));
            }
        }
        notes
    }
}

/// What a new container must reach before it replaces the old one: healthy when it has a
/// healthcheck; running for a start-first update without one (the old one is not stopped for a
/// container that is not even up); nothing more than started otherwise.
fn own_gate(spec: &ContainerSpec) -> Option<Gate> {
    let checked = spec
        .healthcheck
        .as_ref()
        .is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE"));
    if checked {
        Some(Gate::Healthy)
    } else if spec.update.order == UpdateOrder::StartFirst || spec.update.monitor_s > 0 {
        Some(Gate::Running)
    } else {
        None
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The previous container under its name again, started if it ran: only if it got its name back.
async fn put_back<E: Engine>(d: &E, old: &str, name: &str, start: bool) -> bool {
    match d.rename(old, name).await {
        Ok(()) => !start || d.start(name).await.is_ok(),
        Err(_) => false,
    }
}

fn restored(ok: bool, running: bool) -> &'static str {
    match (ok, running) {
        (true, true) => "is the previous container again, running",
        (true, false) => "is the previous container again, as it was",
        (false, _) => "is down: neither the new nor the previous container runs",
    }
}
