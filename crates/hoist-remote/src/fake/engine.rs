//! [`FakeEngine`]: a container engine in memory. Containers created from a spec are observed as
//! a real engine reports them (labels, environment, ports, mounts), so a plan made against a fake
//! that apply converged is empty.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt as _;
use hoist_core::desired::{ContainerSpec, NetworkSpec, VolumeSpec, labels};
use hoist_core::observed::{
    self, ObservedContainer, ObservedImage, ObservedNetwork, ObservedVolume,
};

use super::Shared;
use crate::engine::{ContainerState, Engine, Health, Listed, Scratch, TarStream};
use crate::error::{ErrorKind, RemoteError, Result};

impl State {
    /// A 64-digit id like an engine's, never given twice.
    fn new_id(&mut self, name: &str) -> String {
        use sha2::Digest as _;
        self.made += 1;
        hex::encode(sha2::Sha256::digest(format!("{name}#{}", self.made)))
    }

    /// As an engine keeps it: another container's network namespace by that container's id
    /// (`container:<id>`), when it is there.
    fn namespaces_by_id(&self, observed: &mut ObservedContainer) {
        observed.networks = std::mem::take(&mut observed.networks)
            .into_iter()
            .map(|(n, aliases)| {
                let id = n
                    .strip_prefix("container:")
                    .and_then(|c| self.containers.get(c))
                    .map(|c| format!("container:{}", c.id));
                (id.unwrap_or(n), aliases)
            })
            .collect();
    }
}

/// How a container behaves once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs; healthy after `polls` state reads when it has a healthcheck.
    Healthy { polls: usize },
    /// Runs, and its healthcheck fails with this output.
    Unhealthy(String),
    /// Exits with this code at once (a one-shot job, or a crash).
    Exits(i64),
    /// Runs, and its healthcheck never finishes its start period.
    Starting,
    /// Healthy after one state read, then unhealthy with this output from read `after` on.
    FailsAfter { after: usize, output: String },
}

#[derive(Debug, Clone)]
struct Container {
    /// New with each container made, as an engine's.
    id: String,
    observed: ObservedContainer,
    has_healthcheck: bool,
    polls: usize,
}

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, Container>,
    networks: BTreeMap<String, ObservedNetwork>,
    volumes: BTreeMap<String, ObservedVolume>,
    /// Reference -> image id.
    images: BTreeMap<String, String>,
    /// Ids that no reference names any more: a real engine keeps them until they are pruned.
    old_images: std::collections::BTreeSet<String>,
    /// By container name or by service: how it behaves when started.
    behaviours: BTreeMap<String, Behaviour>,
    /// Exit codes of exec commands, by their first word.
    exec_codes: BTreeMap<String, i64>,
    /// Output of exec commands, by their first word.
    exec_output: BTreeMap<String, String>,
    /// How many containers were made: what their ids are made from.
    made: u64,
    /// What a scratch container of that name exits with and logs.
    scratch: BTreeMap<String, (i64, String)>,
    /// Every scratch container run, as it was asked for.
    scratch_runs: Vec<(String, Scratch)>,
}

/// An engine in memory; clones share state.
#[derive(Debug, Clone)]
pub struct FakeEngine {
    host: String,
    state: Arc<Mutex<State>>,
    shared: Shared,
}

impl FakeEngine {
    pub(super) fn new(host: &str, shared: Shared) -> FakeEngine {
        FakeEngine {
            host: host.to_owned(),
            state: Arc::default(),
            shared,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn enter(&self, call: String) -> Result<()> {
        self.shared
            .enter(&self.host, format!("engine {call}"))
            .await
            .map(|_| ())
    }

    /// Containers named `name` (or with that config hash, or of service `name`) behave so once
    /// started.
    pub fn behave(&self, name: &str, b: Behaviour) {
        self.state().behaviours.insert(name.to_owned(), b);
    }

    /// An exec whose first word is `program` exits with `code`.
    pub fn exec_exits(&self, program: &str, code: i64) {
        self.state().exec_codes.insert(program.to_owned(), code);
    }

    /// An exec whose first word is `program` prints `output`.
    pub fn exec_prints(&self, program: &str, output: &str) {
        self.state()
            .exec_output
            .insert(program.to_owned(), output.to_owned());
    }

    /// A scratch container named `name` exits with `code` after logging `logs` (0 and nothing
    /// when not told).
    pub fn scratch_exits(&self, name: &str, code: i64, logs: &str) {
        self.state()
            .scratch
            .insert(name.to_owned(), (code, logs.to_owned()));
    }

    /// The scratch containers run so far, in order.
    pub fn scratch_runs(&self) -> Vec<(String, Scratch)> {
        self.state().scratch_runs.clone()
    }

    /// The engine has the image `reference` with id `id`.
    pub fn add_image(&self, reference: &str, id: &str) {
        self.state()
            .images
            .insert(reference.to_owned(), id.to_owned());
    }

    /// The names of its containers.
    pub fn container_names(&self) -> Vec<String> {
        self.state().containers.keys().cloned().collect()
    }

    /// A container as the engine reports it.
    pub fn container(&self, name: &str) -> Option<ObservedContainer> {
        self.state()
            .containers
            .get(name)
            .map(|c| c.observed.clone())
    }

    /// Puts a container there as if another tool (or an earlier run) made it.
    pub fn put_container(&self, name: &str, observed: ObservedContainer) {
        let mut s = self.state();
        let mut observed = observed;
        s.namespaces_by_id(&mut observed);
        let id = s.new_id(name);
        s.containers.insert(
            name.to_owned(),
            Container {
                id,
                has_healthcheck: observed.healthcheck.is_some(),
                observed,
                polls: 0,
            },
        );
    }

    pub fn network_names(&self) -> Vec<String> {
        self.state().networks.keys().cloned().collect()
    }

    pub fn volume_names(&self) -> Vec<String> {
        self.state().volumes.keys().cloned().collect()
    }

    fn missing(&self, what: &str) -> RemoteError {
        RemoteError::new(&self.host, ErrorKind::Engine, format!("no such {what}"))
    }
}

/// How the container `name` behaves: told by its name, its config hash or its service.
fn behaviour_of<'b>(
    behaviours: &'b BTreeMap<String, Behaviour>,
    name: &str,
    observed: &ObservedContainer,
) -> Option<&'b Behaviour> {
    let label = |l: &str| observed.labels.get(l).and_then(|v| behaviours.get(v));
    behaviours
        .get(name)
        .or_else(|| label(labels::CONFIG_HASH))
        .or_else(|| label(labels::SERVICE))
}

/// The container a real engine reports for `spec` once created (not started yet).
fn observed_of(spec: &ContainerSpec, image_id: String) -> ObservedContainer {
    ObservedContainer {
        state: "created".into(),
        health: None,
        ..observed::reported(spec, image_id, &Default::default())
    }
}

impl Engine for FakeEngine {
    async fn ping(&self) -> Result<()> {
        self.enter("ping".into()).await
    }

    async fn containers(&self) -> Result<Vec<Listed>> {
        self.enter("list containers".into()).await?;
        Ok(self
            .state()
            .containers
            .iter()
            .map(|(name, c)| Listed {
                id: c.id.clone(),
                name: name.clone(),
                labels: c.observed.labels.clone(),
                state: c.observed.state.clone(),
                status: match c.observed.exit_code {
                    Some(code) => format!("Exited ({code})"),
                    None => "Up".into(),
                },
            })
            .collect())
    }

    async fn inspect(&self, name: &str) -> Result<Option<ObservedContainer>> {
        self.enter(format!("inspect {name}")).await?;
        Ok(self.container(name))
    }

    async fn state(&self, name: &str) -> Result<ContainerState> {
        self.enter(format!("state {name}")).await?;
        let mut s = self.state();
        let State {
            containers,
            behaviours,
            ..
        } = &mut *s;
        let c = containers.get_mut(name).ok_or_else(|| self.missing(name))?;
        let behaviour = behaviour_of(behaviours, name, &c.observed)
            .cloned()
            .unwrap_or(Behaviour::Healthy { polls: 1 });
        c.polls += 1;
        let mut state = ContainerState {
            status: c.observed.state.clone(),
            ..ContainerState::default()
        };
        if state.status != "running" || !c.has_healthcheck {
            state.exit_code = c.observed.exit_code;
            return Ok(state);
        }
        state.health = match behaviour {
            Behaviour::Healthy { polls } if c.polls > polls => Health::Healthy,
            Behaviour::Unhealthy(output) => {
                state.last_health = Some(format!("exit 1 {output}"));
                Health::Unhealthy
            }
            Behaviour::FailsAfter { after, output } if c.polls >= after => {
                state.last_health = Some(format!("exit 1 {output}"));
                Health::Unhealthy
            }
            Behaviour::FailsAfter { .. } if c.polls > 1 => Health::Healthy,
            _ => Health::Starting,
        };
        Ok(state)
    }

    async fn create(&self, spec: &ContainerSpec, name: &str) -> Result<()> {
        self.enter(format!("create {name}")).await?;
        let mut s = self.state();
        if s.containers.contains_key(name) {
            return Err(RemoteError::new(
                &self.host,
                ErrorKind::Engine,
                format!("the container name {name:?} is already in use"),
            ));
        }
        let image_id = s
            .images
            .get(&spec.image)
            .cloned()
            .ok_or_else(|| self.missing(&format!("image: {}", spec.image)))?;
        for n in spec.networks.keys() {
            // Another container's network namespace: that container must exist, as on an engine.
            let known = match n.strip_prefix("container:") {
                Some(c) => s.containers.contains_key(c),
                None => s.networks.contains_key(n),
            };
            if !known {
                return Err(self.missing(&format!("network: {n}")));
            }
        }
        let mut observed = observed_of(spec, image_id);
        s.namespaces_by_id(&mut observed);
        let id = s.new_id(name);
        s.containers.insert(
            name.to_owned(),
            Container {
                id,
                observed,
                has_healthcheck: spec.healthcheck.is_some(),
                polls: 0,
            },
        );
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<()> {
        self.enter(format!("start {name}")).await?;
        let mut s = self.state();
        let State {
            containers,
            behaviours,
            ..
        } = &mut *s;
        let c = containers.get_mut(name).ok_or_else(|| self.missing(name))?;
        let behaviour = behaviour_of(behaviours, name, &c.observed);
        c.polls = 0;
        match behaviour {
            Some(Behaviour::Exits(code)) => {
                c.observed.state = "exited".into();
                c.observed.exit_code = Some(*code);
            }
            _ => {
                c.observed.state = "running".into();
                c.observed.exit_code = None;
            }
        }
        Ok(())
    }

    async fn stop(&self, name: &str, _grace_s: Option<u64>) -> Result<()> {
        self.enter(format!("stop {name}")).await?;
        if let Some(c) = self.state().containers.get_mut(name) {
            c.observed.state = "exited".into();
            c.observed.exit_code = Some(0);
        }
        Ok(())
    }

    async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        self.enter(format!("kill {name} {signal}")).await?;
        match self.state().containers.get(name) {
            Some(c) if c.observed.state == "running" => Ok(()),
            _ => Err(RemoteError::new(
                &self.host,
                ErrorKind::Engine,
                format!("container {name} is not running"),
            )),
        }
    }

    async fn remove(&self, name: &str) -> Result<()> {
        self.enter(format!("remove {name}")).await?;
        self.state().containers.remove(name);
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.enter(format!("rename {from} {to}")).await?;
        let mut s = self.state();
        if s.containers.contains_key(to) {
            return Err(RemoteError::new(
                &self.host,
                ErrorKind::Engine,
                format!("the container name {to:?} is already in use"),
            ));
        }
        let c = s
            .containers
            .remove(from)
            .ok_or_else(|| self.missing(from))?;
        s.containers.insert(to.to_owned(), c);
        Ok(())
    }

    async fn networks(&self) -> Result<BTreeMap<String, ObservedNetwork>> {
        self.enter("list networks".into()).await?;
        Ok(self.state().networks.clone())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<()> {
        self.enter(format!("create network {}", spec.name)).await?;
        self.state()
            .networks
            .insert(spec.name.clone(), observed::network_as_created(spec));
        Ok(())
    }

    /// As an engine: not while a container is on it.
    async fn remove_network(&self, name: &str) -> Result<()> {
        self.enter(format!("remove network {name}")).await?;
        let mut s = self.state();
        if let Some(c) = s
            .containers
            .iter()
            .find(|(_, c)| c.observed.networks.contains_key(name))
            .map(|(n, _)| n.clone())
        {
            return Err(RemoteError::new(
                &self.host,
                ErrorKind::Engine,
                format!("network {name} has active endpoints ({c})"),
            ));
        }
        s.networks.remove(name);
        Ok(())
    }

    async fn disconnect_all(&self, name: &str) -> Result<()> {
        self.enter(format!("disconnect network {name}")).await?;
        for c in self.state().containers.values_mut() {
            c.observed.networks.remove(name);
        }
        Ok(())
    }

    async fn volumes(&self) -> Result<BTreeMap<String, ObservedVolume>> {
        self.enter("list volumes".into()).await?;
        Ok(self.state().volumes.clone())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<()> {
        self.enter(format!("create volume {}", spec.name)).await?;
        self.state().volumes.insert(
            spec.name.clone(),
            ObservedVolume {
                driver: spec.driver.clone(),
                labels: BTreeMap::from([(labels::PROJECT.to_owned(), spec.project.clone())]),
                driver_opts: spec.options.driver_opts.clone(),
            },
        );
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.enter(format!("remove volume {name}")).await?;
        self.state().volumes.remove(name);
        Ok(())
    }

    async fn images(&self) -> Result<Vec<ObservedImage>> {
        self.enter("list images".into()).await?;
        let mut by_id: BTreeMap<String, ObservedImage> = BTreeMap::new();
        for (reference, id) in &self.state().images {
            let i = by_id.entry(id.clone()).or_insert_with(|| ObservedImage {
                id: id.clone(),
                ..ObservedImage::default()
            });
            i.tags.push(reference.clone());
        }
        Ok(by_id.into_values().collect())
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        self.enter(format!("image id {reference}")).await?;
        Ok(self.state().images.get(reference).cloned())
    }

    async fn load_image(&self, reference: &str, mut tar: TarStream) -> Result<()> {
        self.enter(format!("load image {reference}")).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = tar.next().await {
            match chunk {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(e) => {
                    return Err(RemoteError::new(
                        &self.host,
                        ErrorKind::Engine,
                        format!("loading {reference}: unexpected EOF ({e})"),
                    ));
                }
            }
        }
        // The fake local side sends the image id as the image's content.
        let id = String::from_utf8_lossy(&bytes).into_owned();
        let mut s = self.state();
        if let Some(old) = s.images.insert(reference.to_owned(), id) {
            s.old_images.insert(old);
        }
        Ok(())
    }

    async fn tag_image(&self, id: &str, reference: &str) -> Result<()> {
        self.enter(format!("tag image {id} {reference}")).await?;
        let mut s = self.state();
        if !s.images.values().any(|i| i == id) && !s.old_images.contains(id) {
            return Err(self.missing(&format!("image: {id}")));
        }
        if let Some(old) = s.images.insert(reference.to_owned(), id.to_owned()) {
            s.old_images.insert(old);
        }
        Ok(())
    }

    async fn pull_image(&self, reference: &str) -> Result<()> {
        self.enter(format!("pull image {reference}")).await?;
        self.state()
            .images
            .insert(reference.to_owned(), format!("sha256:pulled-{reference}"));
        Ok(())
    }

    async fn run_scratch(
        &self,
        name: &str,
        scratch: &Scratch,
        _timeout: Duration,
    ) -> Result<(i64, String)> {
        self.enter(format!("scratch {name} {}", scratch.argv.join(" ")))
            .await?;
        let mut s = self.state();
        s.scratch_runs.push((name.to_owned(), scratch.clone()));
        let mut observed = ObservedContainer {
            image: scratch.image.clone(),
            state: "exited".into(),
            labels: scratch.labels.clone(),
            ..Default::default()
        };
        let (code, logs) = s.scratch.get(name).cloned().unwrap_or_default();
        observed.exit_code = Some(code);
        let id = s.new_id(name);
        s.containers.insert(
            name.to_owned(),
            Container {
                id,
                observed,
                has_healthcheck: false,
                polls: 0,
            },
        );
        Ok((code, logs))
    }

    async fn exec(
        &self,
        container: &str,
        argv: &[String],
        _user: Option<&str>,
    ) -> Result<(i64, String)> {
        self.enter(format!("exec {container} {}", argv.join(" ")))
            .await?;
        let s = self.state();
        let running = s
            .containers
            .get(container)
            .is_some_and(|c| c.observed.state == "running");
        if !running {
            return Err(RemoteError::new(
                &self.host,
                ErrorKind::Engine,
                format!("container {container} is not running"),
            ));
        }
        let code = argv
            .first()
            .and_then(|p| s.exec_codes.get(p))
            .copied()
            .unwrap_or(0);
        let output = argv
            .first()
            .and_then(|p| s.exec_output.get(p))
            .cloned()
            .unwrap_or_default();
        Ok((code, output))
    }

    async fn logs_tail(&self, name: &str, _n: usize) -> String {
        let _ = self.enter(format!("logs {name}")).await;
        format!("(logs of {name})")
    }
}
