//! The planner: `diff(desired, observed) -> Plan`, pure and deterministic.
//!
//! For each host, in name order: the engine, files, images, networks, volumes, then containers in
//! start order; deletions (what hoist owns on the host but the playbook no longer wants) are listed
//! apart, since apply only performs them when asked to. Every recreate lists the fields that differ,
//! after both sides are normalised (image defaults, daemon defaults, spelling), so a plan never
//! flags a difference that is only the engine filling in a default.

mod container;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use crate::desired::{self, Desired, FileSpec, HostDesired, ImageSource, labels};
use crate::observed::{DockerState, HostObserved, Observed, ObservedFile};
use crate::secret::{REDACTED, Redactor};

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
    /// `apply plan.json` can tell whether the inputs moved since planning.
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
    let mut hosts = Vec::new();
    for (name, want) in &desired.hosts {
        let empty = HostObserved::default();
        let (have, reachable) = match observed.hosts.get(name) {
            Some(h) => (h, true),
            None => (&empty, false),
        };
        let mut hp = diff_host(name, want, have, redactor);
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

fn diff_host(name: &str, want: &HostDesired, have: &HostObserved, redactor: &Redactor) -> HostPlan {
    let mut changes = Vec::new();
    let mut notes = Vec::new();

    // The engine gates everything that lives in it.
    let mut docker_unknown = have.docker.is_none();
    if let Some(engine) = &want.engine {
        match &have.engine {
            None => {
                changes.push(change(
                    ResourceKind::Engine,
                    "docker",
                    ChangeAction::Install,
                    vec![Reason::new("engine", "state unknown")],
                    true,
                ));
                docker_unknown = true;
            }
            Some(e) if !e.installed => {
                changes.push(change(
                    ResourceKind::Engine,
                    "docker",
                    ChangeAction::Install,
                    vec![Reason::new("installed", "no -> yes")],
                    false,
                ));
                docker_unknown = true;
            }
            Some(e) => {
                let daemon_want =
                    serde_json::to_string_pretty(&engine.daemon).unwrap_or_default() + "\n";
                let daemon_have = e
                    .daemon
                    .as_ref()
                    .map(|d| serde_json::to_string_pretty(d).unwrap_or_default() + "\n");
                if e.daemon.as_ref() != Some(&engine.daemon) {
                    let mut c = change(
                        ResourceKind::Engine,
                        "docker",
                        ChangeAction::Configure,
                        vec![Reason::new("daemon.json", "content differs")],
                        false,
                    );
                    c.diff = Some(unified(
                        "/etc/docker/daemon.json",
                        daemon_have.as_deref().unwrap_or(""),
                        &daemon_want,
                        redactor,
                    ));
                    changes.push(c);
                } else if !e.running {
                    changes.push(change(
                        ResourceKind::Engine,
                        "docker",
                        ChangeAction::Start,
                        vec![Reason::new("running", "no -> yes")],
                        false,
                    ));
                }
            }
        }
    }
    if docker_unknown && (!want.containers.is_empty() || !want.images.is_empty()) {
        notes.push("the Docker engine is not installed or not answering: its images, networks, volumes and containers are known after engine setup".into());
    }

    for file in want.files.values() {
        if let Some(c) = diff_file(file, have.files.get(&file.path), redactor) {
            changes.push(c);
        }
    }

    let empty = DockerState::default();
    let docker = have.docker.as_ref().unwrap_or(&empty);
    let mut rebuilt = Vec::new();
    for img in want.images.values() {
        let present = docker
            .images
            .iter()
            .find(|i| i.tags.iter().any(|t| same_image(t, &img.reference)));
        let c = match (&img.source, present) {
            (
                ImageSource::Build {
                    context,
                    context_hash,
                    ..
                },
                None,
            ) => Some(change_hashed(
                ResourceKind::Image,
                &img.reference,
                ChangeAction::Build,
                vec![Reason::new(
                    "image",
                    format!("not on host (built from {context})"),
                )],
                docker_unknown,
                context_hash,
            )),
            (
                ImageSource::Build {
                    context,
                    context_hash,
                    ..
                },
                Some(p),
            ) if p.labels.get(labels::CONTEXT_HASH) != Some(context_hash) => {
                rebuilt.push(img.reference.clone());
                Some(change_hashed(
                    ResourceKind::Image,
                    &img.reference,
                    ChangeAction::Build,
                    vec![Reason::new("build context", format!("{context} changed"))],
                    docker_unknown,
                    context_hash,
                ))
            }
            (ImageSource::Pull, None) => Some(change(
                ResourceKind::Image,
                &img.reference,
                ChangeAction::Pull,
                vec![Reason::new("image", "not on host")],
                docker_unknown,
            )),
            _ => None,
        };
        changes.extend(c);
    }
    for net in want.networks.values().filter(|n| !n.external) {
        match docker.networks.get(&net.name) {
            None => changes.push(change(
                ResourceKind::Network,
                &net.name,
                ChangeAction::Create,
                vec![],
                docker_unknown,
            )),
            Some(o) if !o.driver.is_empty() && o.driver != net.driver => changes.push(change(
                ResourceKind::Network,
                &net.name,
                ChangeAction::Recreate,
                vec![Reason::new(
                    "driver",
                    format!("{} -> {}", o.driver, net.driver),
                )],
                docker_unknown,
            )),
            Some(_) => {}
        }
    }
    for vol in want.volumes.values().filter(|v| !v.external) {
        if !docker.volumes.contains_key(&vol.name) {
            changes.push(change(
                ResourceKind::Volume,
                &vol.name,
                ChangeAction::Create,
                vec![],
                docker_unknown,
            ));
        }
    }

    let changed_files: Vec<String> = changes
        .iter()
        .filter(|c| c.kind == ResourceKind::File)
        .map(|c| c.name.clone())
        .collect();
    let completion_deps: Vec<&str> = want
        .containers
        .iter()
        .flat_map(|c| c.depends_on.iter())
        .filter(|(_, k)| **k == crate::stack::ConditionKind::ServiceCompletedSuccessfully)
        .map(|(n, _)| n.as_str())
        .collect();
    for spec in &want.containers {
        let c = match docker.containers.get(&spec.name) {
            None => Some(change_hashed(
                ResourceKind::Container,
                &spec.name,
                ChangeAction::Create,
                vec![],
                docker_unknown,
                &spec.config_hash,
            )),
            Some(o) => {
                let mut reasons = container::explain(spec, o);
                for f in spec
                    .mounted_files
                    .keys()
                    .filter(|f| changed_files.contains(f))
                {
                    reasons.push(Reason::new("mounted file", format!("{f} content changed")));
                }
                if rebuilt.contains(&spec.image) {
                    reasons.push(Reason::new("image", format!("{} is rebuilt", spec.image)));
                } else if let Some(current) = docker
                    .images
                    .iter()
                    .find(|i| i.tags.iter().any(|t| same_image(t, &spec.image)))
                    && !o.image_id.is_empty()
                    && current.id != o.image_id
                {
                    reasons.push(Reason::new(
                        "image",
                        format!("{} now points to a newer image", spec.image),
                    ));
                }
                if reasons.is_empty()
                    && o.labels.get(labels::CONFIG_HASH) != Some(&spec.config_hash)
                {
                    reasons.push(Reason::new(
                        "config-hash",
                        "not created by hoist from this spec",
                    ));
                }
                if !reasons.is_empty() {
                    Some(change_hashed(
                        ResourceKind::Container,
                        &spec.name,
                        ChangeAction::Recreate,
                        reasons,
                        docker_unknown,
                        &spec.config_hash,
                    ))
                } else if o.state != "running"
                    && !(completion_deps.contains(&spec.name.as_str()) && o.exit_code == Some(0))
                {
                    let state = if o.state.is_empty() {
                        "stopped"
                    } else {
                        o.state.as_str()
                    };
                    Some(change_hashed(
                        ResourceKind::Container,
                        &spec.name,
                        ChangeAction::Start,
                        vec![Reason::new("state", format!("{state} -> running"))],
                        docker_unknown,
                        &spec.config_hash,
                    ))
                } else {
                    None
                }
            }
        };
        changes.extend(c);
    }

    changes.extend(leftovers(want, docker));
    let deletions = deletions(want, docker);
    let actions = want
        .actions
        .iter()
        .map(|a| PlannedAction {
            play: a.play.clone(),
            name: a.name.clone(),
            describe: a.describe.clone(),
        })
        .collect();
    HostPlan {
        host: name.to_owned(),
        address: want.address.clone(),
        changes,
        deletions,
        actions,
        notes,
        observed_hash: fingerprint(have),
    }
}

/// Scratch containers an interrupted replacement left behind: removing them is part of
/// converging (they are hoist's own, never the user's), so they are changes, not deletions.
fn leftovers(want: &HostDesired, docker: &DockerState) -> Vec<Change> {
    docker
        .containers
        .keys()
        .filter(|name| {
            desired::scratch::base(name)
                .is_some_and(|b| want.containers.iter().any(|c| c.name == b))
        })
        .map(|name| {
            change(
                ResourceKind::Container,
                name,
                ChangeAction::Delete,
                vec![Reason::new("name", "left by an interrupted replacement")],
                false,
            )
        })
        .collect()
}

/// What hoist owns on the host (labelled with one of its projects) that the playbook no longer wants.
fn deletions(want: &HostDesired, docker: &DockerState) -> Vec<Change> {
    let mut out = Vec::new();
    let owned = |l: &BTreeMap<String, String>| {
        l.get(labels::PROJECT)
            .is_some_and(|p| want.projects.contains(p))
    };
    let wanted: Vec<&str> = want.containers.iter().map(|c| c.name.as_str()).collect();
    for (name, c) in &docker.containers {
        let leftover = desired::scratch::base(name).is_some_and(|b| wanted.contains(&b));
        if owned(&c.labels) && !wanted.contains(&name.as_str()) && !leftover {
            out.push(change(
                ResourceKind::Container,
                name,
                ChangeAction::Delete,
                vec![Reason::new("service", "no longer in the stack")],
                false,
            ));
        }
    }
    for (name, v) in &docker.volumes {
        if owned(&v.labels) && !want.volumes.contains_key(name) {
            out.push(change(
                ResourceKind::Volume,
                name,
                ChangeAction::Delete,
                vec![Reason::new(
                    "volume",
                    "no longer in the stack (its data is lost)",
                )],
                false,
            ));
        }
    }
    for (name, n) in &docker.networks {
        if owned(&n.labels) && !want.networks.contains_key(name) {
            out.push(change(
                ResourceKind::Network,
                name,
                ChangeAction::Delete,
                vec![Reason::new("network", "no longer in the stack")],
                false,
            ));
        }
    }
    out
}

fn change(
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

fn change_hashed(
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

fn diff_file(file: &FileSpec, have: Option<&ObservedFile>, redactor: &Redactor) -> Option<Change> {
    let want_hash = file.sha256();
    let mode = format!("{:04o}", file.mode);
    let Some(have) = have else {
        let mut reasons = vec![Reason::new("mode", mode)];
        if file.sensitive {
            let lines = file.content.lines().count();
            reasons.push(Reason::new(
                "content",
                format!("{REDACTED}: private file, {lines} line(s)"),
            ));
        }
        let mut c = change_hashed(
            ResourceKind::File,
            &file.path,
            ChangeAction::Create,
            reasons,
            false,
            &want_hash,
        );
        c.diff = Some(masked_diff(file, None, redactor)).filter(|d| !d.is_empty());
        return Some(c);
    };
    let mut reasons = Vec::new();
    let mut diff = None;
    if have.sha256 != want_hash {
        match &have.content {
            Some(old) => {
                let d = masked_diff(file, Some(old), redactor);
                if d.is_empty() && file.sensitive {
                    reasons.push(Reason::new(
                        "content",
                        format!("{REDACTED}: private file changed"),
                    ));
                } else if d.is_empty() {
                    reasons.push(Reason::new("content", format!("{REDACTED} value changed")));
                } else {
                    reasons.push(Reason::new("content", "differs"));
                    diff = Some(d);
                }
            }
            None => reasons.push(Reason::new(
                "content",
                format!("sha256 {} -> {}", short(&have.sha256), short(&want_hash)),
            )),
        }
    }
    if normalize_mode(&have.mode) != mode {
        reasons.push(Reason::new(
            "mode",
            format!("{} -> {mode}", normalize_mode(&have.mode)),
        ));
    }
    if let Some(owner) = &file.owner
        && have.owner.is_some()
        && !same_account(owner, have.owner.as_deref(), have.uid)
    {
        reasons.push(Reason::new(
            "owner",
            format!("{} -> {owner}", have.owner.clone().unwrap_or_default()),
        ));
    }
    if let Some(group) = &file.group
        && have.group.is_some()
        && !same_account(group, have.group.as_deref(), have.gid)
    {
        reasons.push(Reason::new(
            "group",
            format!("{} -> {group}", have.group.clone().unwrap_or_default()),
        ));
    }
    if reasons.is_empty() {
        return None;
    }
    let mut c = change_hashed(
        ResourceKind::File,
        &file.path,
        ChangeAction::Update,
        reasons,
        false,
        &want_hash,
    );
    c.diff = diff;
    Some(c)
}

/// A desired owner or group (a name, or a number) against what stat reported.
fn same_account(want: &str, name: Option<&str>, id: Option<u32>) -> bool {
    name == Some(want) || id.is_some_and(|i| i.to_string() == want)
}

fn normalize_mode(m: &str) -> String {
    u32::from_str_radix(m.trim_start_matches("0o"), 8)
        .map(|v| format!("{v:04o}"))
        .unwrap_or_else(|_| m.to_owned())
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// The diff of a file with secrets masked on both sides; empty when only secret values differ, and
/// always empty for a private file.
fn masked_diff(file: &FileSpec, old: Option<&str>, redactor: &Redactor) -> String {
    if file.sensitive {
        return String::new();
    }
    let new = redactor.redact(&file.content);
    let old = old.map(|o| redactor.redact(o)).unwrap_or_default();
    if old == new {
        return String::new();
    }
    unified(&file.path, &old, &new, redactor)
}

fn unified(path: &str, old: &str, new: &str, redactor: &Redactor) -> String {
    let old = redactor.redact(old);
    let new = redactor.redact(new);
    TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (host)"), &format!("{path} (desired)"))
        .to_string()
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
