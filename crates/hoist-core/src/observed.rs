//! Observed state: what a host has, as the remote layer reports it (or a recorded snapshot).
//!
//! A value type with no behaviour of its own. `None` means "could not be observed" (no engine yet,
//! engine not answering), which the planner shows as unknown until applied rather than as an error.
//! Snapshots are JSON files, one per host (`<dir>/<host>.json`), in this same shape.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::stack::{Health, Port};

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
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedVolume {
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
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

/// The state a host reports once `want` is applied exactly, spelled the way the engine spells it
/// (image defaults merged in, both IPv4 and IPv6 port bindings, its own network aliases). Used to
/// check that a converged host plans no change, and to record snapshots for offline review.
pub fn converged(
    want: &crate::desired::HostDesired,
    image_defaults: &ImageDefaults,
) -> HostObserved {
    use crate::desired::{ImageSource, labels, sha256_hex};
    let files = want
        .files
        .values()
        .map(|f| {
            let o = ObservedFile {
                content: Some(f.content.clone()),
                sha256: f.sha256(),
                mode: format!("{:04o}", f.mode),
                owner: Some(f.owner.clone().unwrap_or_else(|| "root".into())),
                group: Some(f.group.clone().unwrap_or_else(|| "root".into())),
                uid: None,
                gid: None,
            };
            (f.path.clone(), o)
        })
        .collect();
    let engine = want.engine.as_ref().map(|e| EngineState {
        installed: true,
        version: Some("26.1.5".into()),
        running: true,
        daemon: Some(e.daemon.clone()),
    });
    let image_id = |r: &str| format!("sha256:{}", sha256_hex(r.as_bytes()));
    let images = want
        .images
        .values()
        .map(|i| {
            let mut labels = BTreeMap::new();
            if let ImageSource::Build { context_hash, .. } = &i.source {
                labels.insert(labels::CONTEXT_HASH.to_owned(), context_hash.clone());
            }
            ObservedImage {
                id: image_id(&i.reference),
                tags: vec![i.reference.clone()],
                labels,
            }
        })
        .collect();
    let project_labels = |p: &str| BTreeMap::from([(labels::PROJECT.to_owned(), p.to_owned())]);
    let networks = want
        .networks
        .values()
        .map(|n| {
            (
                n.name.clone(),
                ObservedNetwork {
                    driver: n.driver.clone(),
                    labels: project_labels(&n.project),
                },
            )
        })
        .collect();
    let volumes = want
        .volumes
        .values()
        .map(|v| {
            (
                v.name.clone(),
                ObservedVolume {
                    driver: v.driver.clone(),
                    labels: project_labels(&v.project),
                },
            )
        })
        .collect();
    let containers = want
        .containers
        .iter()
        .map(|c| {
            let mut env: Vec<String> = image_defaults
                .env
                .iter()
                .filter(|e| !c.env.keys().any(|k| e.starts_with(&format!("{k}="))))
                .cloned()
                .collect();
            env.extend(c.env.iter().map(|(k, v)| format!("{k}={v}")));
            let mut ports = Vec::new();
            for p in &c.ports {
                if p.host_ip.is_empty() {
                    ports.push(Port {
                        host_ip: "0.0.0.0".into(),
                        ..p.clone()
                    });
                    ports.push(Port {
                        host_ip: "::".into(),
                        ..p.clone()
                    });
                } else {
                    ports.push(p.clone());
                }
            }
            let short_id: String = sha256_hex(c.name.as_bytes()).chars().take(12).collect();
            let networks = c
                .networks
                .iter()
                .map(|(n, a)| {
                    let mut a = a.clone();
                    a.push(short_id.clone());
                    (n.clone(), a)
                })
                .collect();
            let observed = ObservedContainer {
                image: c.image.clone(),
                image_id: image_id(&c.image),
                labels: c
                    .engine_labels()
                    .into_iter()
                    .chain(image_defaults.labels.clone())
                    .collect(),
                state: "running".into(),
                health: c
                    .healthcheck
                    .as_ref()
                    .filter(|h| h.test.first().is_some_and(|t| t != "NONE"))
                    .map(|_| "healthy".into()),
                exit_code: None,
                env,
                // The engine defaults the command to the image's only without an entrypoint.
                cmd: match (&c.command, &c.entrypoint) {
                    (Some(cmd), _) => Some(cmd.clone()),
                    (None, None) => image_defaults.cmd.clone(),
                    (None, Some(_)) => None,
                },
                entrypoint: c
                    .entrypoint
                    .clone()
                    .or_else(|| image_defaults.entrypoint.clone()),
                ports,
                mounts: c
                    .mounts
                    .iter()
                    .map(|m| ObservedMount {
                        kind: m.kind.clone(),
                        source: m.source.clone(),
                        target: m.target.clone(),
                        read_only: m.read_only,
                    })
                    .collect(),
                networks,
                healthcheck: c
                    .healthcheck
                    .clone()
                    .or_else(|| image_defaults.healthcheck.clone())
                    .map(|mut h| {
                        h.interval_ns = Some(h.interval_ns.unwrap_or(0));
                        h.timeout_ns = Some(h.timeout_ns.unwrap_or(0));
                        h.retries = Some(h.retries.unwrap_or(0));
                        h.start_period_ns = Some(h.start_period_ns.unwrap_or(0));
                        h
                    }),
                restart: if c.restart == "no" {
                    String::new()
                } else {
                    c.restart.clone()
                },
                extra_hosts: c.extra_hosts.clone(),
                user: c
                    .user
                    .clone()
                    .unwrap_or_else(|| image_defaults.user.clone()),
                working_dir: c.working_dir.clone().unwrap_or_else(|| {
                    if image_defaults.working_dir.is_empty() {
                        "/".into()
                    } else {
                        image_defaults.working_dir.clone()
                    }
                }),
                hostname: c.hostname.clone().unwrap_or(short_id),
                stop_timeout: c.stop_grace_period_s,
                image_defaults: image_defaults.clone(),
            };
            (c.name.clone(), observed)
        })
        .collect();
    let docker = Some(DockerState {
        networks,
        volumes,
        images,
        containers,
    });
    HostObserved {
        engine,
        files,
        docker,
    }
}
