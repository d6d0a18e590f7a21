//! Phase 1 on one host: the engine (then the reviewed unknowns planned again), files, images,
//! networks and volumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use hoist_core::desired::{self, Desired, FileSpec};
use hoist_core::observed::Observed;
use hoist_core::plan::{self, Change, ChangeAction, ResourceKind};
use hoist_remote::error::{ErrorKind, RemoteError, Result};
use hoist_remote::images::{self, LocalImages};
use hoist_remote::{Engine, Host, files, observe, script, setup};

use super::{ApplyOptions, Event, Events, Handles, replan};

use super::{HostRun, needs_engine, step};

impl<H: Host> HostRun<'_, H> {
    /// Phase 1: the engine, files, images, networks and volumes.
    pub(in crate::apply) async fn prepare<L: LocalImages>(
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
                    ..Desired::default()
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
                    // Its containers are recreated on the new one (the plan says so): taken off
                    // it first, since the engine removes no network in use.
                    step(
                        cancel,
                        &name,
                        "taking containers off a network",
                        d.disconnect_all(&n.name),
                    )
                    .await?;
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
        if let desired::ImageSource::Release { id } = &spec.source {
            return d.tag_image(id, &spec.reference).await;
        }
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
}

async fn put_daemon_json<H: Host>(host: &H, daemon: &serde_json::Value) -> Result<()> {
    let content = serde_json::to_string_pretty(daemon).unwrap_or_default() + "\n";
    let spec = FileSpec {
        path: script::DAEMON_JSON.into(),
        content: content.into(),
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
