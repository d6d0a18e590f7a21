//! One host's part of an apply: its reviewed plan, its engine once connected, what it did so far
//! and the error that stopped it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use hoist_core::desired::{
    self, ActionKind, ContainerSpec, Desired, FileSpec, HostDesired, scratch,
};
use hoist_core::observed::Observed;
use hoist_core::plan::{self, Change, ChangeAction, HostPlan, ResourceKind};
use hoist_core::playbook::Wait;
use hoist_remote::error::{ErrorKind, RemoteError, Result};
use hoist_remote::images::{self, LocalImages};
use hoist_remote::{Engine, Host, files, observe, script, setup};
use tokio_util::sync::CancellationToken;

use super::gate::{self, Gate};
use super::{ApplyOptions, Event, Events, Handles, order, replan};

pub(super) struct HostRun<'a, H: Host> {
    host: &'a H,
    pub(super) want: &'a HostDesired,
    plan: HostPlan,
    engine: Option<H::Engine>,
    pub(super) changes: usize,
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

    /// Phase 1: the engine, files, images, networks and volumes.
    pub(super) async fn prepare<L: LocalImages>(
        &mut self,
        handles: &Handles<'_, H, L>,
        opts: &ApplyOptions,
    ) -> Result<()> {
        let (events, cancel) = (&handles.events, &handles.cancel);
        let name = self.name().to_owned();
        let engine_changes = self.changes_of(ResourceKind::Engine);
        for c in &engine_changes {
            let t = Instant::now();
            step(
                cancel,
                &name,
                "the engine setup",
                self.set_up_engine(c, opts),
            )
            .await?;
            self.done(c, t, events);
        }
        // What was unknown before the engine answered is known now: plan it, and only it.
        if self.plan.changes.iter().any(|c| c.unknown) || !engine_changes.is_empty() {
            let observed = step(
                cancel,
                &name,
                "observing",
                observe::host(self.host, self.want),
            )
            .await?;
            let fresh = plan::diff(
                &Desired {
                    hosts: BTreeMap::from([(name.clone(), self.want.clone())]),
                },
                &Observed {
                    hosts: BTreeMap::from([(name.clone(), observed)]),
                },
                "",
                "",
                handles.redactor,
            );
            if let Some(hp) = fresh.hosts.first() {
                self.plan = replan::resolve(&self.plan, hp, opts.prune)
                    .map_err(|e| RemoteError::new(&name, ErrorKind::Moved, e.to_string()))?;
            }
        }
        for c in &self.changes_of(ResourceKind::File) {
            let t = Instant::now();
            if let Some(f) = self.want.files.get(&c.name) {
                step(
                    cancel,
                    &name,
                    &format!("writing {}", c.name),
                    files::put(self.host, f),
                )
                .await?;
            }
            self.done(c, t, events);
        }
        if !needs_engine(&self.plan, self.want, opts.prune) {
            return Ok(());
        }
        self.engine = Some(
            step(
                cancel,
                &name,
                "connecting to the engine",
                self.host.engine(),
            )
            .await?,
        );
        for c in self
            .changes_of(ResourceKind::Container)
            .into_iter()
            .filter(|c| c.action == ChangeAction::Delete)
        {
            let t = Instant::now();
            step(
                cancel,
                &name,
                "removing a leftover",
                self.engine()?.remove(&c.name),
            )
            .await?;
            self.done(&c, t, events);
        }
        for c in &self.changes_of(ResourceKind::Image) {
            let t = Instant::now();
            if let Some(spec) = self.want.images.get(&c.name) {
                let what = format!("delivering {}", spec.reference);
                step(cancel, &name, &what, self.deliver(spec, handles)).await?;
            }
            self.done(c, t, events);
        }
        for c in &self.changes_of(ResourceKind::Network) {
            let t = Instant::now();
            if let Some(n) = self.want.networks.get(&c.name) {
                let d = self.engine()?;
                if c.action == ChangeAction::Recreate {
                    step(
                        cancel,
                        &name,
                        "removing a network",
                        d.remove_network(&n.name),
                    )
                    .await?;
                }
                step(cancel, &name, "creating a network", d.create_network(n)).await?;
            }
            self.done(c, t, events);
        }
        for c in &self.changes_of(ResourceKind::Volume) {
            let t = Instant::now();
            if let Some(v) = self.want.volumes.get(&c.name) {
                step(
                    cancel,
                    &name,
                    "creating a volume",
                    self.engine()?.create_volume(v),
                )
                .await?;
            }
            self.done(c, t, events);
        }
        Ok(())
    }

    async fn set_up_engine(&self, c: &Change, opts: &ApplyOptions) -> Result<()> {
        let spec = self.want.engine.as_ref();
        match c.action {
            ChangeAction::Install => {
                let facts = setup::facts(self.host).await?;
                facts.check_supported(self.name())?;
                if !facts.installed {
                    setup::install(self.host).await?;
                }
                if let Some(e) = spec {
                    put_daemon_json(self.host, &e.daemon).await?;
                }
                setup::start(self.host, true, opts.engine_timeout).await
            }
            ChangeAction::Configure => {
                if let Some(e) = spec {
                    put_daemon_json(self.host, &e.daemon).await?;
                }
                setup::start(self.host, true, opts.engine_timeout).await
            }
            _ => setup::start(self.host, false, opts.engine_timeout).await,
        }
    }

    /// Built images, and registry images the local engine has, are streamed from the local
    /// engine; other registry images are pulled by the host.
    async fn deliver<L: LocalImages>(
        &self,
        spec: &desired::ImageSpec,
        handles: &Handles<'_, H, L>,
    ) -> Result<()> {
        let name = self.name();
        let d = self.engine()?;
        if handles.local.ensure(spec).await? {
            let progress = image_progress(&handles.events, name, &spec.reference);
            let bytes = images::transfer(handles.local, d, name, &spec.reference, progress).await?;
            (handles.events)(Event::ImageSent {
                host: name.to_owned(),
                image: spec.reference.clone(),
                bytes,
            });
            Ok(())
        } else {
            d.pull_image(&spec.reference).await
        }
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
            let results = {
                let this = &*self;
                let d = this.engine()?;
                futures_util::future::join_all(work.iter().map(|(spec, c)| async move {
                    let t = Instant::now();
                    (this.converge_container(d, spec, c, handles, opts).await, t)
                }))
                .await
            };
            let mut first_error = None;
            for ((_, c), (r, t)) in work.iter().zip(results) {
                match r {
                    Ok(()) => self.done(c, t, &handles.events),
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
        for (dep, cond) in &spec.depends_on {
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
            ChangeAction::Recreate => step(cancel, name, &what, replace(name, d, spec)).await,
            ChangeAction::Start => step(cancel, name, &what, d.start(&spec.name)).await,
            _ => Ok(()),
        }
    }

    /// Runs one action; false when it was skipped or runs elsewhere.
    async fn action<L: LocalImages>(
        &self,
        a: &desired::ActionSpec,
        handles: &Handles<'_, H, L>,
    ) -> Result<bool> {
        let name = self.name();
        let events = &handles.events;
        match &a.action {
            Some(ActionKind::Wait(Wait::Service {
                service,
                condition,
                timeout_s,
                ..
            })) => {
                let container = self
                    .want
                    .containers
                    .iter()
                    .find(|c| &c.service == service)
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| service.clone());
                let timeout = std::time::Duration::from_secs(*timeout_s);
                gate::wait(
                    name,
                    self.engine()?,
                    &container,
                    Gate::from(*condition),
                    timeout,
                    &handles.cancel,
                )
                .await?;
            }
            Some(ActionKind::Wait(Wait::Port { port, timeout_s })) => {
                let timeout = std::time::Duration::from_secs(*timeout_s);
                wait_for(
                    &handles.cancel,
                    name,
                    &format!("{}:{port}", self.host.address()),
                    timeout,
                    || async {
                        self.host
                            .port_open(*port)
                            .await
                            .then_some(())
                            .ok_or_else(String::new)
                    },
                )
                .await?;
            }
            Some(ActionKind::Wait(Wait::Url {
                url,
                status,
                timeout_s,
            })) => {
                let timeout = std::time::Duration::from_secs(*timeout_s);
                let argv = script::http_status(url);
                wait_for(
                    &handles.cancel,
                    name,
                    &format!("{url} to answer {status}"),
                    timeout,
                    || async {
                        let out = self
                            .host
                            .run(&argv, None)
                            .await
                            .map_err(|e| e.to_string())?;
                        let code = out.stdout_text().trim().to_owned();
                        if code == status.to_string() {
                            Ok(())
                        } else {
                            Err(format!("last answer {code}"))
                        }
                    },
                )
                .await?;
            }
            Some(ActionKind::Exec {
                container,
                command,
                user,
                unless,
            }) => {
                let d = self.engine()?;
                if let Some(guard) = unless {
                    let (code, _) = d.exec(container, guard, user.as_deref()).await?;
                    if code == 0 {
                        events(Event::Note {
                            host: name.to_owned(),
                            message: format!("{}: skipped, `unless` exited 0", a.describe),
                        });
                        return Ok(false);
                    }
                }
                let (code, output) = d.exec(container, command, user.as_deref()).await?;
                if code != 0 {
                    let lines: Vec<&str> = output.lines().collect();
                    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                    return Err(RemoteError::other(
                        name,
                        format!("{} exited with {code}:\n{tail}", a.describe),
                    ));
                }
            }
            // Run once for the play when all its hosts are done.
            Some(ActionKind::Validate(_)) | None => return Ok(false),
        }
        Ok(true)
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

/// Replaces a running container with one made from `spec`: the new one is created beside it
/// first (most failures happen there, with the old one untouched), then the old one stops and
/// hands over its name; if the new one does not start, the old one is put back. Every error says
/// what state the service was left in.
pub(super) async fn replace<E: Engine>(host: &str, d: &E, spec: &ContainerSpec) -> Result<()> {
    let (name, new, old) = (
        &spec.name,
        scratch::new_name(&spec.name),
        scratch::old_name(&spec.name),
    );
    let left = |e: RemoteError, state: &str| {
        RemoteError::new(
            host,
            e.kind,
            format!("replacing {name}: {}; {name} {state}", e.detail),
        )
    };
    d.remove(&new).await?;
    d.remove(&old).await?;
    if let Err(e) = d.create(spec, &new).await {
        return Err(left(e, "was left as it was"));
    }
    if let Err(e) = d.stop(name, spec.stop_grace_period_s).await {
        let _ = d.remove(&new).await;
        return Err(left(e, "was left as it was"));
    }
    if let Err(e) = d.rename(name, &old).await {
        let _ = d.remove(&new).await;
        let _ = d.start(name).await;
        return Err(left(e, "was started again as it was"));
    }
    if let Err(e) = d.rename(&new, name).await {
        let _ = d.remove(&new).await;
        let back = d.rename(&old, name).await.and(d.start(name).await);
        return Err(left(e, restored(back.is_ok())));
    }
    if let Err(e) = d.start(name).await {
        let _ = d.remove(name).await;
        let back = d.rename(&old, name).await.and(d.start(name).await);
        return Err(left(e, restored(back.is_ok())));
    }
    d.remove(&old).await
}

fn restored(ok: bool) -> &'static str {
    if ok {
        "is the previous container again, running"
    } else {
        "is down: neither the new nor the previous container runs"
    }
}

/// Polls `probe` every half second until it answers, the time is up, or the run is cancelled.
async fn wait_for<F, Fut>(
    cancel: &CancellationToken,
    host: &str,
    what: &str,
    timeout: std::time::Duration,
    probe: F,
) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = std::result::Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            let during = if last.is_empty() {
                format!("waiting for {what}")
            } else {
                format!("waiting for {what} ({last})")
            };
            return Err(RemoteError::timeout(host, &during, timeout));
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            () = cancel.cancelled() => return Err(RemoteError::cancelled(host, &format!("while waiting for {what}"))),
        }
    }
}

async fn put_daemon_json<H: Host>(host: &H, daemon: &serde_json::Value) -> Result<()> {
    let content = serde_json::to_string_pretty(daemon).unwrap_or_default() + "\n";
    let spec = FileSpec {
        path: script::DAEMON_JSON.into(),
        content,
        mode: 0o644,
        owner: None,
        group: None,
        origin: "engine step".into(),
        sensitive: false,
    };
    files::put(host, &spec).await
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
