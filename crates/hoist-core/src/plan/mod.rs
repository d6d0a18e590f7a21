//! The planner: `diff(desired, observed) -> Plan`, pure and deterministic.
//!
//! For each host, in name order: the engine, files, images, networks, volumes, then containers in
//! start order; deletions (what hoist owns on the host but the playbook no longer wants) are listed
//! apart, since apply only performs them when asked to. Every recreate lists the fields that differ,
//! after both sides are normalised (image defaults, daemon defaults, spelling), so a plan never
//! flags a difference that is only the engine filling in a default.
//!
//! - this module: the plan's types, `diff` and its summary.
//! - `host`: one host's plan; `container`: a container's fields compared after normalisation;
//!   `file`: a managed file's content, mode and owner; `deletions`: what hoist owns and no longer
//!   wants, and scratch leftovers.

mod container;
mod deletions;
mod file;
mod host;
mod resources;

use serde::{Deserialize, Serialize};

use crate::desired::{self, Desired};
use crate::observed::{HostObserved, Observed};
use crate::secret::Redactor;

use host::diff_host;

/// Version of the plan's JSON form; bumped on any incompatible change.
pub const SCHEMA: &str = "hoist.plan/v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub schema: String,
    pub playbook: String,
    pub inventory: String,
    pub hosts: Vec<HostPlan>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub hosts: usize,
    pub create: usize,
    pub update: usize,
    pub recreate: usize,
    pub delete: usize,
    pub unknown: usize,
    pub actions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostPlan {
    pub host: String,
    pub address: String,
    pub changes: Vec<Change>,
    /// Removals: applied only with an explicit flag.
    pub deletions: Vec<Change>,
    /// Procedural steps apply runs in order (wait, exec, validate); not changes.
    pub actions: Vec<PlannedAction>,
    /// Why some changes are unknown until applied.
    pub notes: Vec<String>,
    /// Fingerprint of the observed state the plan was made against.
    pub observed_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Engine,
    File,
    Image,
    Network,
    Volume,
    Container,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Engine => "engine",
            ResourceKind::File => "file",
            ResourceKind::Image => "image",
            ResourceKind::Network => "network",
            ResourceKind::Volume => "volume",
            ResourceKind::Container => "container",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// Install the Docker engine.
    Install,
    /// Rewrite the engine's configuration and restart it.
    Configure,
    Create,
    Update,
    /// Build the image locally and stream it to the host.
    Build,
    /// Pull the image on the host.
    Pull,
    /// Remove and create again.
    Recreate,
    /// Start what exists.
    Start,
    Delete,
}

impl ChangeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Install => "install",
            ChangeAction::Configure => "configure",
            ChangeAction::Create => "create",
            ChangeAction::Update => "update",
            ChangeAction::Build => "build",
            ChangeAction::Pull => "pull",
            ChangeAction::Recreate => "recreate",
            ChangeAction::Start => "start",
            ChangeAction::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub field: String,
    pub detail: String,
}

impl Reason {
    fn new(field: impl Into<String>, detail: impl Into<String>) -> Reason {
        Reason {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ResourceKind,
    pub name: String,
    pub action: ChangeAction,
    pub reasons: Vec<Reason>,
    /// A unified diff of a file's content (secrets masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The outcome depends on something only known while applying (an engine not installed yet).
    pub unknown: bool,
    /// Hash of the desired resource (file sha256, container config hash, image context hash), so
    /// `apply plan.json` can tell whether the inputs moved since planning. Keyed with the run's
    /// secrets ([`crate::secret::keyed_hash`]): a file holding only a secret cannot be guessed from it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desired_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAction {
    pub play: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub describe: String,
}

impl Plan {
    /// Whether applying would change anything (deletions included).
    pub fn has_changes(&self) -> bool {
        self.hosts
            .iter()
            .any(|h| !h.changes.is_empty() || !h.deletions.is_empty())
    }
}

/// Compares desired and observed state. Hosts missing from `observed` are planned as fully unknown.
pub fn diff(
    desired: &Desired,
    observed: &Observed,
    playbook: &str,
    inventory: &str,
    redactor: &Redactor,
) -> Plan {
    // Taken before the diff learns any old value, so a saved plan and a fresh one agree.
    let key = redactor.plan_key();
    let mut hosts = Vec::new();
    for (name, want) in &desired.hosts {
        let empty = HostObserved::default();
        let (have, reachable) = match observed.hosts.get(name) {
            Some(h) => (h, true),
            None => (&empty, false),
        };
        let mut hp = diff_host(name, want, have, redactor);
        for c in hp.changes.iter_mut().chain(hp.deletions.iter_mut()) {
            if !c.desired_hash.is_empty() {
                c.desired_hash = crate::secret::keyed_hash(&key, &c.desired_hash);
            }
        }
        if !reachable {
            hp.notes.insert(
                0,
                "no observed state for this host: everything is planned as if it were bare".into(),
            );
        }
        hosts.push(hp);
    }
    let mut summary = Summary {
        hosts: hosts.len(),
        ..Summary::default()
    };
    for h in &hosts {
        for c in &h.changes {
            if c.unknown {
                summary.unknown += 1;
            }
            match c.action {
                // A delete among the changes is a leftover of an interrupted replacement: part of
                // converging a container that stays, so it counts with the updates.
                ChangeAction::Update
                | ChangeAction::Configure
                | ChangeAction::Start
                | ChangeAction::Delete => summary.update += 1,
                ChangeAction::Recreate => summary.recreate += 1,
                _ => summary.create += 1,
            }
        }
        summary.delete += h.deletions.len();
        summary.actions += h.actions.len();
    }
    Plan {
        schema: SCHEMA.into(),
        playbook: playbook.into(),
        inventory: inventory.into(),
        hosts,
        summary,
    }
}

pub(super) fn change(
    kind: ResourceKind,
    name: &str,
    action: ChangeAction,
    reasons: Vec<Reason>,
    unknown: bool,
) -> Change {
    Change {
        kind,
        name: name.to_owned(),
        action,
        reasons,
        diff: None,
        unknown,
        desired_hash: String::new(),
    }
}

pub(super) fn change_hashed(
    kind: ResourceKind,
    name: &str,
    action: ChangeAction,
    reasons: Vec<Reason>,
    unknown: bool,
    hash: &str,
) -> Change {
    Change {
        desired_hash: hash.to_owned(),
        ..change(kind, name, action, reasons, unknown)
    }
}

/// `postgres` and `docker.io/library/postgres:latest` name the same image.
pub fn same_image(a: &str, b: &str) -> bool {
    normalize_image(a) == normalize_image(b)
}

pub fn normalize_image(r: &str) -> String {
    let r = r.strip_prefix("docker.io/").unwrap_or(r);
    let r = r.strip_prefix("library/").unwrap_or(r);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || last.contains('@') {
        r.to_owned()
    } else {
        format!("{r}:latest")
    }
}

/// A stable hash of an observed host state.
pub fn fingerprint(have: &HostObserved) -> String {
    desired::sha256_hex(&serde_json::to_vec(have).unwrap_or_default())
}
