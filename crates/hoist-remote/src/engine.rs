//! The container-engine seam: what apply, observe, status and the drills ask of a host's engine.
//!
//! [`crate::docker::DockerEngine`] is the real implementation (bollard through the host's forwarded
//! socket), [`crate::fake::FakeEngine`] the in-memory one. Observed values are hoist-core's own
//! types, so the planner reads a fake engine exactly as it reads a real one.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use hoist_core::desired::{ContainerSpec, NetworkSpec, VolumeSpec};
use hoist_core::observed::{ObservedContainer, ObservedImage, ObservedNetwork, ObservedVolume};

use crate::error::Result;

/// An image as a tar stream (`docker save` format), chunk by chunk; an item is an error's text.
pub type TarStream = Pin<Box<dyn Stream<Item = std::result::Result<Bytes, String>> + Send>>;

/// A container's run state, as a health gate reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerState {
    /// `created`, `running`, `exited`, ... (empty when the engine does not say).
    pub status: String,
    pub health: Health,
    pub exit_code: Option<i64>,
    /// The last health check's exit code and output, when one ran.
    pub last_health: Option<String>,
}

/// What the engine says of a container's healthcheck.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Health {
    /// The container has no healthcheck.
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}

/// A container as listed: its id and name, labels, state (`running`, ...) and the engine's status
/// line (`Up 3 minutes (healthy)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub state: String,
    pub status: String,
}

/// A one-off container that runs a command to its end: a drill's scratch work, never a service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scratch {
    pub image: String,
    /// The engine's default (the image's user) when `None`.
    pub user: Option<String>,
    /// The whole command: it replaces the image's entrypoint, and the image's command is dropped.
    pub argv: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Host paths mounted read-only: source, target.
    pub read_only_binds: Vec<(String, String)>,
    /// `name:address` entries for its /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// A container whose volumes it mounts where that container has them.
    pub volumes_from: Option<String>,
}

/// A host's container engine.
pub trait Engine: Send + Sync {
    /// Answers when the engine is up.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// Every container, running or not.
    fn containers(&self) -> impl Future<Output = Result<Vec<Listed>>> + Send;
    /// A container with the defaults of its image; `None` when there is none of that name.
    fn inspect(&self, name: &str)
    -> impl Future<Output = Result<Option<ObservedContainer>>> + Send;
    /// A container's run state.
    fn state(&self, name: &str) -> impl Future<Output = Result<ContainerState>> + Send;
    /// Creates (does not start) a container from `spec`, named `name` (the spec's own name, or a
    /// temporary one while it replaces an older container).
    fn create(&self, spec: &ContainerSpec, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn start(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Stops within `grace_s` seconds (the engine's default when `None`); absent or stopped is fine.
    fn stop(&self, name: &str, grace_s: Option<u64>) -> impl Future<Output = Result<()>> + Send;
    /// Sends `signal` (`SIGHUP`, ...) to a running container's main process.
    fn kill(&self, name: &str, signal: &str) -> impl Future<Output = Result<()>> + Send;
    /// Removes a container, running or not; absent is fine.
    fn remove(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    fn rename(&self, from: &str, to: &str) -> impl Future<Output = Result<()>> + Send;

    fn networks(&self) -> impl Future<Output = Result<BTreeMap<String, ObservedNetwork>>> + Send;
    fn create_network(&self, spec: &NetworkSpec) -> impl Future<Output = Result<()>> + Send;
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Takes every container off network `name`, running ones too, so that it can be removed.
    fn disconnect_all(&self, name: &str) -> impl Future<Output = Result<()>> + Send;

    fn volumes(&self) -> impl Future<Output = Result<BTreeMap<String, ObservedVolume>>> + Send;
    fn create_volume(&self, spec: &VolumeSpec) -> impl Future<Output = Result<()>> + Send;
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<()>> + Send;

    fn images(&self) -> impl Future<Output = Result<Vec<ObservedImage>>> + Send;
    /// The id of the image `reference` names, if the engine has it.
    fn image_id(&self, reference: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// The chain ids of the layers of every image the engine has (`images::chain_ids`): the
    /// stacks of layers an image it loads may leave out; none when it cannot say.
    fn layers(&self) -> impl Future<Output = Result<BTreeSet<String>>> + Send {
        async { Ok(BTreeSet::new()) }
    }
    /// Loads an image from a tar stream.
    fn load_image(
        &self,
        reference: &str,
        tar: TarStream,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Points `reference` at the image `id`, which the engine has.
    fn tag_image(&self, id: &str, reference: &str) -> impl Future<Output = Result<()>> + Send;
    /// Pulls an image from its registry.
    fn pull_image(&self, reference: &str) -> impl Future<Output = Result<()>> + Send;

    /// Creates the scratch container `name` (replacing a leftover of that name), starts it and
    /// waits for its end within `timeout`; its exit code and logs. The caller removes it.
    fn run_scratch(
        &self,
        name: &str,
        scratch: &Scratch,
        timeout: Duration,
    ) -> impl Future<Output = Result<(i64, String)>> + Send;

    /// Runs `argv` in a running container; its exit code and output.
    fn exec(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
    ) -> impl Future<Output = Result<(i64, String)>> + Send;
    /// The last `n` lines of a container's logs (empty when they cannot be read).
    fn logs_tail(&self, name: &str, n: usize) -> impl Future<Output = String> + Send;
}
