//! Observed state: what a host has, as the remote layer reports it (or a recorded snapshot).
//!
//! A value type with no behaviour of its own. `None` means "could not be observed" (no engine yet,
//! engine not answering), which the planner shows as unknown until applied rather than as an error.
//! Snapshots are JSON files, one per host (`<dir>/<host>.json`), in this same shape.

mod converged;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::stack::{Health, Port};

pub use converged::{converged, network_as_created, reported};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub hosts: BTreeMap<String, HostObserved>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostObserved {
    /// The Docker engine; `None` when it could not be inspected.
    #[serde(default)]
    pub engine: Option<EngineState>,
    /// Files at the paths hoist manages; a missing path is absent on the host.
    #[serde(default)]
    pub files: BTreeMap<String, ObservedFile>,
    /// What the engine holds; `None` when the engine is absent or not answering.
    #[serde(default)]
    pub docker: Option<DockerState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineState {
    pub installed: bool,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub running: bool,
    /// The content of /etc/docker/daemon.json, if any.
    #[serde(default)]
    pub daemon: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedFile {
    /// The content, when it is text and small enough to diff.
    #[serde(default)]
    pub content: Option<String>,
    /// sha256 of the content (hex), always known.
    pub sha256: String,
    /// Octal mode as a string (`"0644"`).
    pub mode: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// The numeric owner and group: a desired `owner: "999"` matches uid 999 whatever its name on
    /// the host (or none, which stat prints as UNKNOWN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerState {
    #[serde(default)]
    pub networks: BTreeMap<String, ObservedNetwork>,
    #[serde(default)]
    pub volumes: BTreeMap<String, ObservedVolume>,
    #[serde(default)]
    pub images: Vec<ObservedImage>,
    #[serde(default)]
    pub containers: BTreeMap<String, ObservedContainer>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedNetwork {
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What it was created with (its pools as the engine reports them: the ones it was given, or
    /// the one it chose); none at all in a snapshot recorded before hoist observed them.
    #[serde(
        default,
        skip_serializing_if = "crate::desired::ResourceOptions::is_default"
    )]
    pub options: crate::desired::ResourceOptions,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedVolume {
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The driver's options it was created with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedImage {
    pub id: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A container as the engine reports it (inspect), before any normalisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedContainer {
    /// The image reference the container was created with.
    pub image: String,
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `running`, `exited`, `created`, ...
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub health: Option<String>,
    /// Exit code of a container that has stopped.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// `KEY=value` entries, image defaults included (as the engine reports them).
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub mounts: Vec<ObservedMount>,
    /// Network name -> aliases.
    #[serde(default)]
    pub networks: BTreeMap<String, Vec<String>>,
    /// Network name -> the address asked for there (not the one the engine gave from its pools).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, crate::desired::StaticAddress>,
    #[serde(default)]
    pub healthcheck: Option<Health>,
    /// Restart policy name (`no`, `always`, `unless-stopped`, `on-failure[:N]`; empty means `no`).
    #[serde(default)]
    pub restart: String,
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// How it runs, as the engine reports it (its defaults filled in).
    #[serde(default, skip_serializing_if = "crate::stack::Runtime::is_default")]
    pub runtime: crate::stack::Runtime,
    /// The defaults the image supplies, to tell them apart from what was asked.
    #[serde(default)]
    pub image_defaults: ImageDefaults,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDefaults {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub healthcheck: Option<Health>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// `port/protocol` the image exposes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedMount {
    /// `volume` or `bind`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Volume name or host path.
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// Reads a snapshot directory: `<dir>/<host>.json` for each requested host.
pub fn load_snapshot(dir: &Path, hosts: &[String]) -> Result<Observed, String> {
    let mut out = Observed::default();
    for host in hosts {
        let path = dir.join(format!("{host}.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let state: HostObserved = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}:{}:{}: {}",
                path.display(),
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            )
        })?;
        out.hosts.insert(host.clone(), state);
    }
    Ok(out)
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}
