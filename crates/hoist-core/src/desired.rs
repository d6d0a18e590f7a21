//! Desired state: what each host should have once a playbook is applied.
//!
//! Built from a loaded project for one playbook: the engine, files (rendered templates and copies),
//! networks, volumes, images and containers of every stack the host runs, plus the actions (wait,
//! exec, validate) that apply runs in order. Containers carry a hash of their normalised spec and of
//! the content of every file they mount, so that a changed file plans a recreate.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::playbook::{Action, Topic, Wait};
use crate::stack::{ConditionKind, Health, MountSource, Port, Runtime, UpdateConfig};

/// Labels hoist puts on what it creates.
pub mod labels {
    pub const PROJECT: &str = "io.hoist.project";
    pub const SERVICE: &str = "io.hoist.service";
    pub const CONFIG_HASH: &str = "io.hoist.config-hash";
    pub const CONTEXT_HASH: &str = "io.hoist.context-hash";
    /// On a built image: the local ids of the images its Dockerfile starts `FROM`, so that a
    /// base made again (updated, slimmed) makes the image again.
    pub const FROM_IDS: &str = "io.hoist.from-ids";
    pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
    pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
    pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
    pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
}

/// The names a container has while apply replaces it: the new one is created beside the old one
/// before the old one stops. A run cut short can leave them; the next run removes them.
pub mod scratch {
    /// The replacement, until it takes the name.
    pub fn new_name(name: &str) -> String {
        format!("{name}.hoist-new")
    }

    /// The container being replaced, until the replacement runs.
    pub fn old_name(name: &str) -> String {
        format!("{name}.hoist-old")
    }

    /// The container a scratch name stands for.
    pub fn base(name: &str) -> Option<&str> {
        name.strip_suffix(".hoist-new")
            .or_else(|| name.strip_suffix(".hoist-old"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub hosts: BTreeMap<String, HostDesired>,
    /// The plays with a `serial`, by index: their hosts converge batch by batch.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub serial: BTreeMap<usize, PlaySerial>,
    /// The playbook's play names, by index (what apply's timings name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plays: Vec<String>,
}

/// A play whose hosts converge a batch at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaySerial {
    pub play: String,
    pub serial: crate::playbook::Serial,
    /// Its hosts, in the play's order.
    pub hosts: Vec<String>,
}

impl PlaySerial {
    /// Its hosts among `present`, in batches.
    pub fn batches(&self, present: &[&str]) -> Vec<Vec<String>> {
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| present.contains(&h.as_str()))
            .cloned()
            .collect();
        let size = self.serial.batch(hosts.len());
        hosts.chunks(size).map(<[String]>::to_vec).collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostDesired {
    pub address: String,
    pub engine: Option<EngineSpec>,
    pub files: BTreeMap<String, FileSpec>,
    pub networks: BTreeMap<String, NetworkSpec>,
    pub volumes: BTreeMap<String, VolumeSpec>,
    pub images: BTreeMap<String, ImageSpec>,
    /// In start order: stacks in playbook order, services dependencies first.
    pub containers: Vec<ContainerSpec>,
    /// Compose projects deployed on this host (what hoist owns there).
    pub projects: BTreeSet<String>,
    pub actions: Vec<ActionSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSpec {
    /// The content of /etc/docker/daemon.json.
    pub daemon: serde_json::Value,
}

/// The daemon.json hoist writes unless a playbook says otherwise: bounded logs, and containers that
/// survive an engine restart.
pub fn default_daemon_config() -> serde_json::Value {
    serde_json::json!({
        "live-restore": true,
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"}
    })
}

/// A placed file's bytes: text, which plans diff with secrets masked, or binary (an icon, a
/// keystore), copied byte for byte and shown by its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Binary(Vec<u8>),
}

impl Content {
    /// Text when the bytes are UTF-8, else binary.
    pub fn from_bytes(bytes: Vec<u8>) -> Content {
        match String::from_utf8(bytes) {
            Ok(text) => Content::Text(text),
            Err(e) => Content::Binary(e.into_bytes()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Content::Text(t) => t.as_bytes(),
            Content::Binary(b) => b,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Content::Text(t) => Some(t),
            Content::Binary(_) => None,
        }
    }
}

impl Default for Content {
    fn default() -> Content {
        Content::Text(String::new())
    }
}

impl From<String> for Content {
    fn from(text: String) -> Content {
        Content::Text(text)
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Content {
        Content::Text(text.to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSpec {
    pub path: String,
    pub content: Content,
    pub mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// The repository file it comes from.
    pub origin: String,
    /// Only its owner may read it (no group or other read bit): its content is never shown, not
    /// even masked, since it may hold secrets the redactor does not know (keys, certificates).
    pub sensitive: bool,
}

impl FileSpec {
    pub fn sha256(&self) -> String {
        sha256_hex(self.content.as_bytes())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: String,
    pub project: String,
    pub external: bool,
    /// Given to the engine when the network is created.
    #[serde(default, skip_serializing_if = "ResourceOptions::is_default")]
    pub options: ResourceOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: String,
    pub project: String,
    pub external: bool,
    /// Given to the engine when the volume is created.
    #[serde(default, skip_serializing_if = "ResourceOptions::is_default")]
    pub options: ResourceOptions,
}

/// What a network or volume is created with besides its driver: the driver's options, and for a
/// network `internal` (no route out), IPv6 and its address pools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceOptions {
    pub driver_opts: BTreeMap<String, String>,
    pub internal: bool,
    pub enable_ipv6: bool,
    pub ipam: Vec<IpamPool>,
}

impl ResourceOptions {
    pub fn is_default(&self) -> bool {
        self == &ResourceOptions::default()
    }
}

/// The address a container asks for on one network (`networks.<name>.ipv4_address`,
/// `ipv6_address`); the engine gives one from the pool otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct StaticAddress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
}

/// An address pool of a network (`ipam.config[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamPool {
    pub subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum ImageSource {
    /// Built from the repository and streamed to the host.
    Build {
        context: String,
        dockerfile: String,
        args: BTreeMap<String, String>,
        context_hash: String,
        /// Binaries added to the context before building, by file name.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        binaries: BTreeMap<String, Binary>,
        /// The Dockerfile's stage to build.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// What the build reads through its BuildKit session: secrets, the SSH agent.
        #[serde(default, skip_serializing_if = "BuildSession::is_empty")]
        session: BuildSession,
    },
    /// Pulled by the host from its registry.
    Pull,
    /// The image of an earlier release, by id, which the host still has: the reference is
    /// pointed at it again (`hoist rollback`).
    Release { id: String },
}

/// What a build reads from the controller while it runs and never keeps (`build.secrets`,
/// `build.ssh`). A build with none uses the engine's classic builder; one with any, BuildKit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSession {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<BuildSecret>,
    /// The controller's SSH agent (`SSH_AUTH_SOCK`) is forwarded as `default`
    /// (`RUN --mount=type=ssh`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssh: bool,
}

impl BuildSession {
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && !self.ssh
    }
}

/// A secret a build mounts (`RUN --mount=type=secret,id=<id>`): served to the build while it
/// runs, never in the image, and never serialised (a saved plan is planned again before it is
/// applied). Its value is not in the image hash, as BuildKit's cache does not key on it either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSecret {
    /// The id the Dockerfile mounts it by: the entry's `target`, else the secret's name.
    pub id: String,
    /// The stack's top-level secret it comes from.
    pub source: String,
    #[serde(skip)]
    pub content: crate::secret::Secret<Content>,
}

/// A binary hoist builds for an image's context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum Binary {
    /// A package of this workspace, `cargo build --release --locked -p <package>`; the image hash
    /// covers `inputs` (paths relative to the project).
    Workspace {
        package: String,
        inputs: Vec<String>,
    },
    /// `cargo install <name> --version =<version> --locked`, once per version and features, cached
    /// outside the project.
    Crate {
        name: String,
        version: String,
        features: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub reference: String,
    pub source: ImageSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// `volume` or `bind`.
    pub kind: String,
    /// Engine volume name or host path.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// A container, normalised: what the planner compares and what apply creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub project: String,
    pub service: String,
    /// Its replica number (compose's `container-number`); left out of the hash when 1.
    #[serde(default = "first", skip_serializing_if = "is_first")]
    pub number: u32,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub mounts: Vec<MountSpec>,
    /// Engine network name -> aliases.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Network -> the address asked for on it; left out of the hash when none is, so the hash
    /// of a container without one stays what it was.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, StaticAddress>,
    pub healthcheck: Option<Health>,
    pub restart: String,
    pub labels: BTreeMap<String, String>,
    pub extra_hosts: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub stop_grace_period_s: Option<u64>,
    /// How it runs (privileges, kernel settings, resources, logging); left out of the hash when
    /// it asks for nothing, so the hash of a container without one stays what it was.
    #[serde(default, skip_serializing_if = "Runtime::is_default")]
    pub runtime: Runtime,
    /// Container names this one waits for, with the condition: the first container of each
    /// service it depends on (see [`ContainerSpec::waits_for`]).
    pub depends_on: BTreeMap<String, ConditionKind>,
    /// The other replicas of those services, waited for too; not in the hash, so that scaling a
    /// dependency does not recreate this container.
    #[serde(skip)]
    pub depends_on_replicas: BTreeMap<String, ConditionKind>,
    /// sha256 of each hoist-placed file it mounts, by host path.
    pub mounted_files: BTreeMap<String, String>,
    /// Hash of everything above; stored as the `io.hoist.config-hash` label.
    pub config_hash: String,
    /// Index of the play that deploys it: apply brings plays up in order.
    #[serde(skip)]
    pub play: usize,
    /// How apply replaces it; not in the hash: a new way of updating recreates nothing.
    #[serde(skip)]
    pub update: UpdateConfig,
    /// The signal it reloads its configuration on, sent when a container it waits for was
    /// replaced; not in the hash.
    #[serde(skip)]
    pub reload: Option<String>,
}

fn first() -> u32 {
    1
}

fn is_first(n: &u32) -> bool {
    *n == 1
}

impl ContainerSpec {
    /// Every container this one waits for: each replica of each service it depends on.
    pub fn waits_for(&self) -> impl Iterator<Item = (&String, &ConditionKind)> {
        self.depends_on.iter().chain(&self.depends_on_replicas)
    }

    /// Computes `config_hash` from the other fields (env values enter only through the hash).
    pub fn seal(&mut self) {
        self.config_hash.clear();
        let json = serde_json::to_vec(self).unwrap_or_default();
        self.config_hash = sha256_hex(&json);
    }

    /// Labels to set on the engine's container: the user's plus hoist's own.
    pub fn engine_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert(labels::PROJECT.into(), self.project.clone());
        l.insert(labels::SERVICE.into(), self.service.clone());
        l.insert(labels::CONFIG_HASH.into(), self.config_hash.clone());
        // compose's own labels: `docker compose ps` and `logs` on a host show the stack as a project.
        l.insert(labels::COMPOSE_PROJECT.into(), self.project.clone());
        l.insert(labels::COMPOSE_SERVICE.into(), self.service.clone());
        l.insert(labels::COMPOSE_NUMBER.into(), self.number.to_string());
        l.insert(labels::COMPOSE_ONEOFF.into(), "False".into());
        l
    }
}

/// A procedural step of the playbook, run by apply after the state before it converged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    pub play: String,
    /// Index of the play, for ordering across hosts.
    #[serde(skip)]
    pub play_index: usize,
    pub name: Option<String>,
    pub describe: String,
    #[serde(skip)]
    pub action: Option<ActionKind>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    Wait(Wait),
    Exec {
        container: String,
        command: Vec<String>,
        user: Option<String>,
        unless: Option<Vec<String>>,
    },
    Validate(Vec<Topic>),
}

/// The checks the `validate` steps of `hosts` ask for (of one play, or of every play), once
/// each, in the order of [`Topic::ALL`].
pub fn validations<'a>(
    hosts: impl IntoIterator<Item = &'a HostDesired>,
    play: Option<usize>,
) -> Vec<Topic> {
    let mut wanted: Vec<Topic> = hosts
        .into_iter()
        .flat_map(|h| &h.actions)
        .filter(|a| play.is_none_or(|p| a.play_index == p))
        .filter_map(|a| match &a.action {
            Some(ActionKind::Validate(checks)) => Some(checks.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    wanted.sort();
    wanted.dedup();
    wanted
}

impl ActionSpec {
    pub fn from_action(
        play: &str,
        name: Option<String>,
        action: &Action,
        container: Option<String>,
    ) -> Option<ActionSpec> {
        let (describe, kind) = match action {
            Action::Wait(w) => {
                let d = match w {
                    Wait::Service {
                        stack,
                        service,
                        condition,
                        timeout_s,
                    } => format!(
                        "wait for {stack}/{service} {} (timeout {timeout_s}s)",
                        condition.word()
                    ),
                    Wait::Url {
                        url,
                        status,
                        timeout_s,
                    } => format!("wait for {url} to answer {status} (timeout {timeout_s}s)"),
                    Wait::Port { port, timeout_s } => {
                        format!("wait for port {port} (timeout {timeout_s}s)")
                    }
                };
                (d, ActionKind::Wait(w.clone()))
            }
            Action::Exec {
                stack,
                service,
                command,
                user,
                unless,
            } => {
                let c = container.unwrap_or_else(|| format!("{stack}/{service}"));
                let words = |argv: &[String]| {
                    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_default()
                };
                let guard = unless
                    .as_ref()
                    .map(|u| format!(" (unless {})", words(u)))
                    .unwrap_or_default();
                (
                    format!("exec in {c}: {}{guard}", words(command)),
                    ActionKind::Exec {
                        container: c,
                        command: command.clone(),
                        user: user.clone(),
                        unless: unless.clone(),
                    },
                )
            }
            Action::Validate { checks } => (
                format!("validate {}", Topic::list(checks)),
                ActionKind::Validate(checks.clone()),
            ),
            _ => return None,
        };
        Some(ActionSpec {
            play: play.to_owned(),
            play_index: 0,
            name,
            describe,
            action: Some(kind),
        })
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Converts a stack mount into its engine form.
pub fn mount_spec(
    source: &MountSource,
    volume_names: &BTreeMap<String, String>,
    target: &str,
    read_only: bool,
) -> MountSpec {
    match source {
        MountSource::Volume(v) => MountSpec {
            kind: "volume".into(),
            source: volume_names.get(v).cloned().unwrap_or_else(|| v.clone()),
            target: target.to_owned(),
            read_only,
        },
        MountSource::Bind(p) => MountSpec {
            kind: "bind".into(),
            source: p.clone(),
            target: target.to_owned(),
            read_only,
        },
    }
}
