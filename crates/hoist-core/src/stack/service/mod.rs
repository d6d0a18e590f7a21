//! One compose service, decoded field by field into a normalised form.
//!
//! Normalising here (short and long port and volume syntax, string and list commands, map and list
//! environments, durations in nanoseconds) is what lets the planner compare specs without flagging
//! differences that are only spelling.
//!
//! - this module: the decoded types and the field dispatch.
//! - `build`: `build:` and the binaries hoist adds to a context.
//! - `environment`: `command`, `environment`, `env_file`.
//! - `volumes`: volumes, bind mounts and placed repository files.
//! - `fields`: ports, networks, healthcheck, depends_on, extra_hosts, durations.
//! - `runtime`: how the container runs (privileges, kernel settings, resources, logging, `deploy`).

mod build;
mod environment;
mod fields;
mod runtime;
mod update;
mod volumes;

pub(super) use environment::{env_lines, labels, outside, read_source, string_map};
pub use fields::parse_duration;
pub use runtime::{
    DEFAULT_SHM_SIZE, DeviceRequest, Logging, Runtime, capability, device, parse_bytes,
};
pub use update::{FailureAction, UpdateConfig, UpdateOrder};

use std::collections::BTreeMap;
use std::path::Path;

use crate::desired::StaticAddress;
use crate::diag::{Kind, Loc};
use crate::yaml::{self, Ctx, Node};

use super::files::{self, FileKind};
use super::{Defs, LowerCtx, StackFile};
use build::build;
use environment::{command, env_file, env_files, environment};
use fields::{depends_on, duration_field, extra_hosts, healthcheck, networks, port};
use volumes::volume;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub mounts: Vec<Mount>,
    /// Files hoist places on the host for this service's bind mounts.
    pub files: Vec<PlacedFile>,
    /// Logical network name -> aliases.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Logical network name -> the address asked for on it.
    pub addresses: BTreeMap<String, StaticAddress>,
    pub healthcheck: Option<Health>,
    pub depends_on: BTreeMap<String, Condition>,
    pub restart: String,
    pub labels: BTreeMap<String, String>,
    pub profiles: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub stop_grace_period_s: Option<u64>,
    pub container_name: Option<String>,
    pub hostname: Option<String>,
    pub runtime: Runtime,
    /// `host`, `none` or `bridge`: the engine's network instead of the stack's.
    pub network_mode: Option<String>,
    /// How many containers run the service (`deploy.replicas`, `scale`), named
    /// `<project>-<service>-<n>` as compose names them.
    pub replicas: u32,
    /// How apply replaces its containers (`deploy.update_config`).
    pub update: UpdateConfig,
    /// The signal that makes it reload its configuration (`x-hoist.reload`): sent after a
    /// service it depends on was replaced, so that it reaches the new containers.
    pub reload: Option<String>,
    pub loc: Loc,
}

/// An image built from the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The context folder, relative to the project root.
    pub context: String,
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    /// Binaries hoist builds and adds to the context before building (`x-hoist-binaries`), by
    /// their file name in the context.
    pub binaries: BTreeMap<String, crate::desired::Binary>,
    /// The stage of a multi-stage Dockerfile to build (`build.target`).
    pub target: Option<String>,
    /// `build.secrets` and `build.ssh`.
    pub session: crate::desired::BuildSession,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

impl ConditionKind {
    /// The playbook's word for it (`wait: {condition: ...}`).
    pub fn word(self) -> &'static str {
        match self {
            ConditionKind::ServiceStarted => "running",
            ConditionKind::ServiceHealthy => "healthy",
            ConditionKind::ServiceCompletedSuccessfully => "completed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: ConditionKind,
    /// Compose's `required: false`: a dependency on a service this deployment leaves out (by its
    /// profiles) is dropped instead of being an error.
    pub required: bool,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Port {
    /// Host address to bind; empty for every address.
    pub host_ip: String,
    /// Host port; None lets the engine choose.
    pub published: Option<u16>,
    pub target: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A named volume of the stack (logical name).
    Volume(String),
    /// A path on the host (absolute, or placed there by hoist).
    Bind(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
    pub loc: Loc,
}

/// A file hoist writes on the host: a rendered template or a copy of a repository file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedFile {
    pub path: String,
    pub content: crate::desired::Content,
    pub mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Holds a secret: never shown, whatever its mode.
    pub secret: bool,
    /// The repository file it comes from.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Health {
    /// `["NONE"]` disables the image's healthcheck.
    pub test: Vec<String>,
    pub interval_ns: Option<u64>,
    pub timeout_ns: Option<u64>,
    pub retries: Option<u64>,
    pub start_period_ns: Option<u64>,
}

const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "networks",
    "healthcheck",
    "depends_on",
    "restart",
    "labels",
    "profiles",
    "extra_hosts",
    "user",
    "working_dir",
    "stop_grace_period",
    "container_name",
    "hostname",
    "deploy",
    "network_mode",
    "pull_policy",
    "platform",
    "scale",
];

/// The prefix of the logical name of an anonymous volume (`- /data`), followed by its target.
pub const ANONYMOUS: &str = "\0anonymous:";

/// Keys of the compose specification's service that hoist does not take, each with why and what
/// to do instead: an error naming the key, never a silent difference from compose.
pub const REFUSED: &[(&str, &str)] = &[
    (
        "extends",
        "not supported: write the service out, or share fields with YAML anchors and `<<` merge keys",
    ),
    (
        "links",
        "legacy: the containers of a stack reach each other by service name on its networks",
    ),
    (
        "external_links",
        "legacy: attach both services to one network (an `external` network for another stack)",
    ),
    (
        "volumes_from",
        "not supported: declare the volume and mount it in both services",
    ),
    (
        "develop",
        "compose watch is for local development: there is nothing to deploy",
    ),
    (
        "attach",
        "it only decides which logs `docker compose up` prints: use `hoist logs`",
    ),
    ("domainname", "not supported yet"),
    ("mac_address", "not supported yet"),
    ("oom_kill_disable", "not supported yet"),
    ("oom_score_adj", "not supported yet"),
    ("mem_swappiness", "not supported yet"),
    ("cgroup", "not supported yet"),
    ("cgroup_parent", "not supported yet"),
    (
        "cpu_count",
        "not supported yet: use `cpus` or `deploy.resources.limits.cpus`",
    ),
    (
        "cpu_percent",
        "not supported yet: use `cpus` or `deploy.resources.limits.cpus`",
    ),
    (
        "cpu_period",
        "not supported yet: use `cpus` or `deploy.resources.limits.cpus`",
    ),
    (
        "cpu_quota",
        "not supported yet: use `cpus` or `deploy.resources.limits.cpus`",
    ),
    ("cpu_rt_runtime", "not supported yet"),
    ("cpu_rt_period", "not supported yet"),
    ("cpuset", "not supported yet"),
    ("blkio_config", "not supported yet"),
    ("device_cgroup_rules", "not supported yet: use `devices`"),
    ("storage_opt", "not supported yet"),
    ("userns_mode", "not supported yet"),
    ("uts", "not supported yet"),
    ("isolation", "Windows containers only"),
    ("credential_spec", "Windows containers only"),
    ("annotations", "not supported yet: use `labels`"),
    ("label_file", "not supported yet: use `labels`"),
    (
        "post_start",
        "not supported yet: run it as a playbook `exec` step",
    ),
    ("pre_stop", "not supported yet"),
    (
        "use_api_socket",
        "not supported: a container never gets the engine's socket from hoist",
    ),
    ("models", "not supported"),
    ("provider", "not supported: hoist deploys containers"),
];

/// A start-first update runs the old and the new container side by side: what only one
/// container can hold at a time is refused, with what to do instead.
fn start_first_fits(ctx: &mut Ctx<'_>, svc: &Service, path: &str) {
    let order = yaml::join(path, "deploy.update_config.order");
    if let Some(p) = svc.ports.iter().find(|p| p.published.is_some()) {
        ctx.error(
            svc.loc,
            &order,
            Kind::InvalidValue,
            format!(
                "start-first runs two containers at once, and host port {} cannot be bound by both: reach the service through its network (a proxy), or use stop-first",
                p.published.unwrap_or_default()
            ),
        );
    }
    if svc.network_mode.as_deref() == Some("host") {
        ctx.error(
            svc.loc,
            &order,
            Kind::InvalidValue,
            "start-first runs two containers at once, and on the host's network both would listen on the same ports: use stop-first",
        );
    }
    if let Some(net) = svc.addresses.keys().next() {
        ctx.error(
            svc.loc,
            &order,
            Kind::InvalidValue,
            format!("start-first runs two containers at once, and its static address on network `{net}` cannot be held by both: use stop-first"),
        );
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn decode(
    ctx: &mut Ctx<'_>,
    name: &str,
    loc: Loc,
    body: &Node,
    path: &str,
    file: &StackFile,
    stack_dir: &Path,
    lc: &LowerCtx<'_>,
    defs: &Defs,
) -> Option<Service> {
    let mut f = ctx.fields(body, path)?;
    let mut svc = Service {
        name: name.to_owned(),
        image: String::new(),
        build: None,
        command: None,
        entrypoint: None,
        environment: BTreeMap::new(),
        ports: Vec::new(),
        mounts: Vec::new(),
        files: Vec::new(),
        networks: BTreeMap::new(),
        addresses: BTreeMap::new(),
        healthcheck: None,
        depends_on: BTreeMap::new(),
        restart: "no".into(),
        labels: BTreeMap::new(),
        profiles: Vec::new(),
        extra_hosts: Vec::new(),
        user: None,
        working_dir: None,
        stop_grace_period_s: None,
        container_name: None,
        hostname: None,
        runtime: Runtime::default(),
        network_mode: None,
        replicas: 1,
        update: UpdateConfig::compose_default(),
        reload: None,
        loc,
    };
    for &key in runtime::KEYS {
        if let Some(v) = f.get(key) {
            runtime::decode(ctx, key, v, &yaml::join(path, key), &mut svc.runtime);
        }
    }
    for &key in SERVICE_KEYS {
        let Some(v) = f.get(key) else { continue };
        let p = yaml::join(path, key);
        match key {
            "image" => svc.image = ctx.string(v, &p).unwrap_or_default(),
            "build" => svc.build = build(ctx, v, &p, stack_dir, lc.root, lc.src, defs),
            "command" => svc.command = command(ctx, v, &p),
            "entrypoint" => svc.entrypoint = command(ctx, v, &p),
            "environment" => {
                let env = environment(ctx, v, &p, lc, &file.dotenv);
                svc.environment.extend(env);
            }
            "env_file" => {
                // env_file values come first; `environment` overrides them, as in compose.
                let mut from_files = BTreeMap::new();
                for (i, item) in env_files(ctx, v, &p).into_iter().enumerate() {
                    from_files.extend(env_file(ctx, &item, v, &yaml::index(&p, i), stack_dir, lc));
                }
                from_files.extend(std::mem::take(&mut svc.environment));
                svc.environment = from_files;
            }
            "ports" => {
                for (i, item) in ctx.seq(v, &p).iter().enumerate() {
                    if let Some(port) = port(ctx, item, &yaml::index(&p, i)) {
                        svc.ports.push(port);
                    }
                }
                svc.ports.sort();
            }
            "volumes" => {
                for (i, item) in ctx.seq(v, &p).iter().enumerate() {
                    volume(
                        ctx,
                        item,
                        &yaml::index(&p, i),
                        &mut svc,
                        file,
                        stack_dir,
                        lc,
                    );
                }
                svc.mounts.sort_by(|a, b| a.target.cmp(&b.target));
            }
            "networks" => (svc.networks, svc.addresses) = networks(ctx, v, &p),
            "healthcheck" => svc.healthcheck = healthcheck(ctx, v, &p),
            "depends_on" => svc.depends_on = depends_on(ctx, v, &p),
            "restart" => {
                let r = ctx.string(v, &p).unwrap_or_default();
                let ok = matches!(
                    r.as_str(),
                    "no" | "always" | "unless-stopped" | "on-failure"
                ) || r
                    .strip_prefix("on-failure:")
                    .is_some_and(|n| n.parse::<u32>().is_ok());
                if ok {
                    svc.restart = r;
                } else {
                    ctx.error(v.loc, &p, Kind::InvalidValue, format!("{r:?} is not a restart policy (no, always, unless-stopped, on-failure[:N])"));
                }
            }
            "labels" => svc.labels = labels(ctx, v, &p),
            "profiles" => svc.profiles = ctx.string_list(v, &p),
            "extra_hosts" => svc.extra_hosts = extra_hosts(ctx, v, &p),
            "user" => svc.user = ctx.string(v, &p),
            "working_dir" => svc.working_dir = ctx.string(v, &p),
            "stop_grace_period" => {
                svc.stop_grace_period_s = duration_field(ctx, v, &p).map(|ns| ns / 1_000_000_000)
            }
            "container_name" => {
                svc.container_name = ctx
                    .string(v, &p)
                    .filter(|n| super::engine_name(ctx, v.loc, &p, "container", n));
            }
            "hostname" => svc.hostname = ctx.string(v, &p),
            "network_mode" => match ctx.string(v, &p).as_deref() {
                Some(m @ ("host" | "none" | "bridge")) => svc.network_mode = Some(m.to_owned()),
                Some(m) if m.strip_prefix("service:").is_some_and(|s| !s.is_empty()) => {
                    svc.network_mode = Some(m.to_owned());
                }
                Some(other) if other.starts_with("container:") => ctx.error(
                    v.loc,
                    &p,
                    Kind::Unsupported,
                    "a container outside the stack, which hoist can neither start first nor follow: put its service in the stack and use `service:<name>`",
                ),
                Some(other) => ctx.error(
                    v.loc,
                    &p,
                    Kind::InvalidValue,
                    format!("{other:?} is not a network mode (host, none, bridge, service:<name>)"),
                ),
                None => {}
            },
            "pull_policy" => match ctx.string(v, &p).as_deref() {
                // What hoist does: pull what the host lacks, build what the repository builds.
                Some("missing" | "if_not_present" | "build") | None => {}
                Some(other) => ctx.error(
                    v.loc,
                    &p,
                    Kind::Unsupported,
                    format!("{other:?} is not supported yet: hoist pulls an image the host lacks (`missing`) and builds what the repository builds"),
                ),
            },
            "platform" => {
                let _ = ctx.string(v, &p);
                ctx.warning(
                    v.loc,
                    &p,
                    Kind::Unsupported,
                    "ignored: hoist builds and pulls for the host's own platform, and an image of another one does not run there",
                );
            }
            // After `restart`: a restart policy under deploy wins, as in compose.
            "deploy" => {
                if let Some(n) = runtime::deploy(
                    ctx,
                    v,
                    &p,
                    &mut svc.runtime,
                    &mut svc.restart,
                    &mut svc.update,
                ) {
                    svc.replicas = n;
                }
            }
            "scale" => {
                if let Some(n) = ctx.u64(v, &p) {
                    svc.replicas = replicas(ctx, v.loc, &p, n);
                }
            }
            _ => {}
        }
    }
    for kind in [FileKind::Secret, FileKind::Config] {
        if let Some(v) = f.get(kind.key()) {
            let p = yaml::join(path, kind.key());
            for u in files::uses(ctx, v, &p, kind) {
                mount_file(ctx, &mut svc, &file.project, kind, &u, &p, defs);
            }
        }
    }
    svc.mounts.sort_by(|a, b| a.target.cmp(&b.target));
    if svc.replicas > 1 {
        if svc.container_name.is_some() {
            ctx.error(
                loc,
                &yaml::join(path, "container_name"),
                Kind::InvalidValue,
                format!(
                    "{} replicas cannot share one `container_name` (as in compose)",
                    svc.replicas
                ),
            );
        }
        if svc
            .mounts
            .iter()
            .any(|m| matches!(&m.source, MountSource::Volume(v) if v.starts_with(ANONYMOUS)))
        {
            ctx.error(
                loc,
                &yaml::join(path, "volumes"),
                Kind::Unsupported,
                format!("{} replicas of an anonymous volume would share it: name a volume per replica, or run one", svc.replicas),
            );
        }
        if let Some(p) = svc.ports.iter().find(|p| p.published.is_some()) {
            ctx.error(
                loc,
                &yaml::join(path, "ports"),
                Kind::InvalidValue,
                format!(
                    "{} replicas cannot all publish host port {}: leave the host port out (the engine picks one per replica) or run one replica",
                    svc.replicas,
                    p.published.unwrap_or_default()
                ),
            );
        }
    }
    for (key, why) in REFUSED {
        if let Some(v) = f.get(key) {
            ctx.error(v.loc, &yaml::join(path, key), Kind::Unsupported, *why);
        }
    }
    if let Some(v) = f.get("x-hoist") {
        let xp = yaml::join(path, "x-hoist");
        if let Some(mut xf) = ctx.fields(v, &xp) {
            if let Some(r) = xf.get("reload") {
                svc.reload = update::reload_signal(ctx, r, &yaml::join(&xp, "reload"));
            }
            xf.finish(ctx, false);
        }
    }
    f.finish(ctx, true);
    if svc.update.order == UpdateOrder::StartFirst {
        start_first_fits(ctx, &svc, path);
    }

    if svc.image.is_empty() {
        match &svc.build {
            // compose's default tag for a built image
            Some(_) => svc.image = format!("{}-{}", file.project, name),
            None => ctx.error(
                loc,
                path,
                Kind::MissingKey,
                "a service needs `image` or `build`",
            ),
        }
    }
    match &svc.network_mode {
        Some(mode) if !svc.networks.is_empty() => ctx.error(
            loc,
            &yaml::join(path, "network_mode"),
            Kind::InvalidValue,
            format!("`network_mode: {mode}` and `networks` exclude each other (as in compose)"),
        ),
        Some(mode) if mode != "bridge" && !svc.ports.is_empty() => ctx.error(
            loc,
            &yaml::join(path, "ports"),
            Kind::InvalidValue,
            match mode.strip_prefix("service:") {
                Some(other) => format!("with `network_mode: {mode}` the container uses `{other}`'s network: publish the ports there"),
                None => format!("with `network_mode: {mode}` there is nothing to publish: the container uses the host's ports (host) or none"),
            },
        ),
        Some(mode) => {
            if let Some(other) = mode.strip_prefix("service:") {
                let other = other.to_owned();
                joins_service(ctx, &mut svc, &other, loc, path);
            }
        }
        None if svc.networks.is_empty() => {
            svc.networks.insert("default".into(), Vec::new());
        }
        None => {}
    }
    svc.files.sort_by(|a, b| a.path.cmp(&b.path));
    svc.files.dedup_by(|a, b| a.path == b.path);
    Some(svc)
}

/// `network_mode: service:<other>`: the container joins the network namespace of `other`'s first
/// container, so it starts after it (compose's implicit dependency), and what belongs to that
/// namespace is `other`'s to set (the engine refuses it here).
fn joins_service(ctx: &mut Ctx<'_>, svc: &mut Service, other: &str, loc: Loc, path: &str) {
    if other == svc.name {
        ctx.error(
            loc,
            &yaml::join(path, "network_mode"),
            Kind::InvalidValue,
            "a service cannot join its own network namespace",
        );
        return;
    }
    for (key, set) in [
        ("hostname", svc.hostname.is_some()),
        ("dns", !svc.runtime.dns.is_empty()),
        ("extra_hosts", !svc.extra_hosts.is_empty()),
        ("expose", !svc.runtime.expose.is_empty()),
    ] {
        if set {
            ctx.error(
                loc,
                &yaml::join(path, key),
                Kind::InvalidValue,
                format!("with `network_mode: service:{other}` the network is `{other}`'s: set `{key}` there"),
            );
        }
    }
    svc.depends_on.entry(other.to_owned()).or_insert(Condition {
        kind: ConditionKind::ServiceStarted,
        required: true,
        loc,
    });
}

/// Places a secret or config a service uses and mounts it read-only. A secret belongs to the
/// service's user: its `uid`, else the user's number; a secret of a user known only by name needs
/// its `uid`, since the host cannot tell what number the name has inside the image.
fn mount_file(
    ctx: &mut Ctx<'_>,
    svc: &mut Service,
    project: &str,
    kind: FileKind,
    u: &files::Use,
    p: &str,
    defs: &Defs,
) {
    let def = match defs.get(kind).get(&u.name) {
        Some(Some(def)) => def,
        // Its definition is wrong, and was reported.
        Some(None) => return,
        None => {
            ctx.error(
                u.loc,
                p,
                Kind::UnknownReference,
                format!("no `{}` under the top-level `{}`", u.name, kind.key()),
            );
            return;
        }
    };
    let (user, group) = match svc.user.as_deref() {
        Some(user) => {
            let (u, g) = user.split_once(':').unwrap_or((user, ""));
            (
                Some(u.to_owned()),
                Some(g.to_owned()).filter(|g| !g.is_empty()),
            )
        }
        None => (None, None),
    };
    let numeric = |s: &Option<String>| s.clone().filter(|v| v.parse::<u32>().is_ok());
    let owner = u.uid.clone().or_else(|| numeric(&user));
    let mut mode = u.mode;
    if kind == FileKind::Secret
        && owner.is_none()
        && user.as_deref().is_some_and(|n| n != "root" && n != "0")
        && mode & 0o004 == 0
    {
        // The host cannot tell what number the name has inside the image: readable by every
        // user of the container, as compose mounts a secret, and said.
        mode |= 0o444;
        ctx.warning(
            u.loc,
            p,
            Kind::MissingKey,
            format!(
                "secret `{}` is mounted readable by every user of the container, since user {:?} has no number here: give the secret's `uid` (the user's id in the image) to make it that user's alone",
                u.name,
                user.unwrap_or_default()
            ),
        );
    }
    let path = files::host_path(project, kind, &svc.name, &u.name);
    svc.files.push(PlacedFile {
        path: path.clone(),
        content: def.content.clone(),
        mode,
        owner,
        group: u.gid.clone().or_else(|| numeric(&group)),
        secret: kind == FileKind::Secret,
        origin: def.origin.clone(),
    });
    svc.mounts.push(Mount {
        source: MountSource::Bind(path),
        target: u.target.clone(),
        read_only: true,
        loc: u.loc,
    });
}

/// A number of replicas: at least one (leave a service out with `profiles`), at most 100.
pub(super) fn replicas(ctx: &mut Ctx<'_>, loc: Loc, p: &str, n: u64) -> u32 {
    match u32::try_from(n) {
        Ok(n @ 1..=100) => n,
        _ => {
            ctx.error(
                loc,
                p,
                Kind::InvalidValue,
                format!("{n} replicas: from 1 to 100 (leave a service out with `profiles`)"),
            );
            1
        }
    }
}
