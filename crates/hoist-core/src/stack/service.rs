//! One compose service, decoded field by field into a normalised form.
//!
//! Normalising here (short and long port and volume syntax, string and list commands, map and list
//! environments, durations in nanoseconds) is what lets the planner compare specs without flagging
//! differences that are only spelling.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::{Kind, Loc};
use crate::inventory::normalize;
use crate::source::Source;
use crate::template;
use crate::yaml::{self, Ctx, Node, Value};

use super::{FILES_ROOT, LowerCtx, StackFile};

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
    pub content: String,
    pub mode: u32,
    pub owner: Option<String>,
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
];

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
        loc,
    };
    for &key in SERVICE_KEYS {
        let Some(v) = f.get(key) else { continue };
        let p = yaml::join(path, key);
        match key {
            "image" => svc.image = ctx.string(v, &p).unwrap_or_default(),
            "build" => svc.build = build(ctx, v, &p, stack_dir, lc.root, lc.src),
            "command" => svc.command = command(ctx, v, &p),
            "entrypoint" => svc.entrypoint = command(ctx, v, &p),
            "environment" => {
                let env = environment(ctx, v, &p, lc);
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
            "networks" => svc.networks = networks(ctx, v, &p),
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
            "labels" => svc.labels = string_map(ctx, v, &p),
            "profiles" => svc.profiles = ctx.string_list(v, &p),
            "extra_hosts" => svc.extra_hosts = extra_hosts(ctx, v, &p),
            "user" => svc.user = ctx.string(v, &p),
            "working_dir" => svc.working_dir = ctx.string(v, &p),
            "stop_grace_period" => {
                svc.stop_grace_period_s = duration_field(ctx, v, &p).map(|ns| ns / 1_000_000_000)
            }
            "container_name" => svc.container_name = ctx.string(v, &p),
            "hostname" => svc.hostname = ctx.string(v, &p),
            _ => {}
        }
    }
    f.finish(ctx, true);

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
    if svc.networks.is_empty() {
        svc.networks.insert("default".into(), Vec::new());
    }
    svc.files.sort_by(|a, b| a.path.cmp(&b.path));
    svc.files.dedup_by(|a, b| a.path == b.path);
    Some(svc)
}

fn build(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    stack_dir: &Path,
    root: &Path,
    src: &Source,
) -> Option<Build> {
    let (context, dockerfile, args, binaries) = match &v.value {
        Value::Str(s) => (
            s.clone(),
            "Dockerfile".to_owned(),
            BTreeMap::new(),
            BTreeMap::new(),
        ),
        _ => {
            let mut f = ctx.fields(v, p)?;
            let context = f.string(ctx, "context").unwrap_or_else(|| ".".into());
            let dockerfile = f
                .string(ctx, "dockerfile")
                .unwrap_or_else(|| "Dockerfile".into());
            let args = f
                .get("args")
                .map(|a| string_map(ctx, a, &yaml::join(p, "args")))
                .unwrap_or_default();
            let binaries = f
                .get(BINARIES)
                .map(|b| binaries(ctx, b, &yaml::join(p, BINARIES), root, src))
                .unwrap_or_default();
            f.finish(ctx, true);
            (context, dockerfile, args, binaries)
        }
    };
    let dir = normalize(&stack_dir.join(&context));
    if !src.is_file(&dir.join(&dockerfile)) {
        ctx.error(
            v.loc,
            p,
            Kind::UnknownReference,
            format!(
                "no {dockerfile} in build context {context:?} ({})",
                dir.display()
            ),
        );
    }
    let rel = dir
        .strip_prefix(normalize(root))
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| dir.to_string_lossy().into_owned());
    Some(Build {
        context: rel,
        dockerfile,
        args,
        binaries,
    })
}

/// The build key naming binaries hoist adds to a context (an `x-` key: compose ignores it).
pub const BINARIES: &str = "x-hoist-binaries";

/// `name: {cargo: package, inputs: [paths]}` (a package of this workspace, built in release mode;
/// `inputs` are the files and folders its hash covers) or `name: {crate: name, version: x.y.z,
/// features: [..]}` (from crates.io, built once and cached outside the project).
fn binaries(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    root: &Path,
    src: &Source,
) -> BTreeMap<String, crate::desired::Binary> {
    use crate::desired::Binary;
    let mut out = BTreeMap::new();
    for (name, loc, body) in ctx.entries(v, p) {
        let bp = yaml::join(p, &name);
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            ctx.error(
                loc,
                &bp,
                Kind::InvalidValue,
                format!("{name:?} is not a file name"),
            );
            continue;
        }
        let Some(mut f) = ctx.fields(body, &bp) else {
            continue;
        };
        let cargo = f.string(ctx, "cargo");
        let krate = f.string(ctx, "crate");
        let version = f.string(ctx, "version");
        let inputs = f
            .get("inputs")
            .map(|n| ctx.string_list(n, &yaml::join(&bp, "inputs")))
            .unwrap_or_default();
        let features = f
            .get("features")
            .map(|n| ctx.string_list(n, &yaml::join(&bp, "features")))
            .unwrap_or_default();
        f.finish(ctx, false);
        let binary = match (cargo, krate) {
            (Some(package), None) => {
                if inputs.is_empty() {
                    ctx.error(
                        body.loc,
                        &bp,
                        Kind::MissingKey,
                        "a workspace binary needs `inputs`: the paths its image hash covers",
                    );
                }
                for (i, input) in inputs.iter().enumerate() {
                    if !src.exists(&root.join(input)) {
                        ctx.error(
                            body.loc,
                            &yaml::index(&yaml::join(&bp, "inputs"), i),
                            Kind::UnknownReference,
                            format!("{input:?} does not exist in the project"),
                        );
                    }
                }
                Binary::Workspace { package, inputs }
            }
            (None, Some(name)) => {
                let Some(version) = version else {
                    ctx.error(
                        body.loc,
                        &bp,
                        Kind::MissingKey,
                        "a crates.io binary needs an exact `version`",
                    );
                    continue;
                };
                Binary::Crate {
                    name,
                    version,
                    features,
                }
            }
            _ => {
                ctx.error(
                    body.loc,
                    &bp,
                    Kind::InvalidValue,
                    "expected exactly one of `cargo` (a workspace package) or `crate` (from crates.io)",
                );
                continue;
            }
        };
        out.insert(name, binary);
    }
    out
}

/// A command in string form is split like a shell would, without running one (compose's rule).
fn command(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<Vec<String>> {
    match &v.value {
        Value::Seq(_) => Some(ctx.string_list(v, p)),
        Value::Null => None,
        _ => {
            let s = ctx.string(v, p)?;
            match shlex::split(&s) {
                Some(words) => Some(words),
                None => {
                    ctx.error(v.loc, p, Kind::InvalidValue, "unbalanced quotes in command");
                    None
                }
            }
        }
    }
}

/// A map (`KEY: value`) or a list (`KEY=value`) of strings.
pub(super) fn string_map(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match &v.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let ip = yaml::index(p, i);
                let Some(s) = ctx.string(item, &ip) else {
                    continue;
                };
                match s.split_once('=') {
                    Some((k, val)) => {
                        out.insert(k.to_owned(), val.to_owned());
                    }
                    None => ctx.error(
                        item.loc,
                        &ip,
                        Kind::InvalidValue,
                        format!("expected `name=value`, found {s:?}"),
                    ),
                }
            }
        }
        _ => {
            for (k, _, val) in ctx.entries(v, p) {
                let vp = yaml::join(p, &k);
                let text = if val.is_null() {
                    Some(String::new())
                } else {
                    ctx.string(val, &vp)
                };
                if let Some(t) = text {
                    out.insert(k, t);
                }
            }
        }
    }
    out
}

/// `environment`: like a string map, but a bare `KEY` (or `KEY:` with no value) takes the variable of
/// the same name, as compose takes it from the shell.
fn environment(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    lc: &LowerCtx<'_>,
) -> BTreeMap<String, String> {
    let mut bare = Vec::new();
    let mut out = BTreeMap::new();
    match &v.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let ip = yaml::index(p, i);
                let Some(s) = ctx.string(item, &ip) else {
                    continue;
                };
                match s.split_once('=') {
                    Some((k, val)) => {
                        out.insert(k.to_owned(), val.to_owned());
                    }
                    None => bare.push((s, item.loc, ip)),
                }
            }
        }
        _ => {
            for (k, loc, val) in ctx.entries(v, p) {
                let vp = yaml::join(p, &k);
                if val.is_null() {
                    bare.push((k, loc, vp));
                } else if let Some(t) = ctx.string(val, &vp) {
                    out.insert(k, t);
                }
            }
        }
    }
    for (k, loc, vp) in bare {
        match lc.vars.scalar(&k) {
            Some(val) => {
                out.insert(k, val);
            }
            None => ctx.error(
                loc,
                &vp,
                Kind::UndefinedVariable,
                format!(
                    "`{k}` has no value and no variable `{k}` is defined (host {})",
                    lc.host
                ),
            ),
        }
    }
    out
}

fn env_files(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Vec<(String, bool)> {
    match &v.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match &item.value {
                Value::Map(_) => {
                    let ip = yaml::index(p, i);
                    let mut f = ctx.fields(item, &ip)?;
                    let path = f
                        .require(ctx, "path")
                        .and_then(|n| ctx.string(n, &yaml::join(&ip, "path")));
                    let required = f.bool(ctx, "required").unwrap_or(true);
                    f.finish(ctx, true);
                    path.map(|s| (s, required))
                }
                _ => ctx.string(item, &yaml::index(p, i)).map(|s| (s, true)),
            })
            .collect(),
        _ => ctx
            .string(v, p)
            .map(|s| vec![(s, true)])
            .unwrap_or_default(),
    }
}

/// Reads (rendering `.j2` files) and parses one env file.
fn env_file(
    ctx: &mut Ctx<'_>,
    item: &(String, bool),
    v: &Node,
    p: &str,
    stack_dir: &Path,
    lc: &LowerCtx<'_>,
) -> BTreeMap<String, String> {
    let (rel, required) = item;
    let path = normalize(&stack_dir.join(rel));
    if !lc.src.is_file(&path) {
        if *required {
            ctx.error(
                v.loc,
                p,
                Kind::UnknownReference,
                format!("env file {rel:?} does not exist"),
            );
        }
        return BTreeMap::new();
    }
    let Some(text) = read_source(ctx, &path, v, p, lc) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (i, item) in dotenvy::from_read_iter(text.as_bytes()).enumerate() {
        match item {
            Ok((k, val)) => {
                out.insert(k, val);
            }
            Err(e) => {
                let shown = lc.redactor.redact(&e.to_string());
                ctx.error(
                    v.loc,
                    p,
                    Kind::InvalidValue,
                    format!("{rel}: entry {}: {shown}", i + 1),
                );
            }
        }
    }
    out
}

/// The content of a repository file; `.j2` files are rendered for the host first.
fn read_source(
    ctx: &mut Ctx<'_>,
    path: &Path,
    v: &Node,
    p: &str,
    lc: &LowerCtx<'_>,
) -> Option<String> {
    let text = match lc.src.read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            ctx.error(
                v.loc,
                p,
                Kind::Io,
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    if path.extension().and_then(|e| e.to_str()) != Some("j2") {
        return Some(text);
    }
    let templates = normalize(&template::templates_dir(lc.root));
    let rendered = match path.strip_prefix(&templates) {
        Ok(name) => template::render_file(lc.env, &name.to_string_lossy(), &lc.vars.context()),
        Err(_) => lc
            .env
            .render_named_str(&path.to_string_lossy(), &text, lc.vars.context()),
    };
    match rendered {
        Ok(out) => Some(out),
        Err(e) => {
            let origin = template::Origin {
                file: crate::diag::SourceName::new(lc.root, path),
                line_offset: 0,
                field: String::new(),
            };
            template::report(&e, &origin, ctx.diags);
            None
        }
    }
}

fn port(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<Port> {
    let num = |ctx: &mut Ctx<'_>, s: &str| -> Option<u16> {
        match s.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                let msg = if s.contains('-') {
                    format!("port ranges are not supported ({s:?})")
                } else {
                    format!("{s:?} is not a port number")
                };
                ctx.error(v.loc, p, Kind::InvalidValue, msg);
                None
            }
        }
    };
    if let Value::Map(_) = v.value {
        let mut f = ctx.fields(v, p)?;
        let target = f
            .require(ctx, "target")
            .and_then(|n| ctx.string(n, &yaml::join(p, "target")));
        let published = f.string(ctx, "published");
        let host_ip = f.string(ctx, "host_ip").unwrap_or_default();
        let protocol = f.string(ctx, "protocol").unwrap_or_else(|| "tcp".into());
        let _ = f.string(ctx, "mode");
        let _ = f.string(ctx, "name");
        f.finish(ctx, true);
        let target = num(ctx, &target?)?;
        let published = match published {
            Some(s) => Some(num(ctx, &s)?),
            None => None,
        };
        return Some(Port {
            host_ip,
            published,
            target,
            protocol,
        });
    }
    let s = ctx.string(v, p)?;
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((a, proto)) => (a.to_owned(), proto.to_owned()),
        None => (s.clone(), "tcp".to_owned()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            format!("{protocol:?} is not a protocol (tcp, udp, sctp)"),
        );
        return None;
    }
    // `[ip:][published:]target`, where ip may be an IPv6 address in brackets.
    let (host_ip, rest) = match spec.strip_prefix('[') {
        Some(r) => match r.split_once("]:") {
            Some((ip, rest)) => (ip.to_owned(), rest.to_owned()),
            None => {
                ctx.error(v.loc, p, Kind::InvalidValue, format!("bad port {s:?}"));
                return None;
            }
        },
        None => {
            let parts: Vec<&str> = spec.split(':').collect();
            match parts.len() {
                1 | 2 => (String::new(), spec.clone()),
                3 => (parts[0].to_owned(), format!("{}:{}", parts[1], parts[2])),
                _ => {
                    ctx.error(
                        v.loc,
                        p,
                        Kind::InvalidValue,
                        format!("bad port {s:?} (expected [ip:][host:]container[/protocol])"),
                    );
                    return None;
                }
            }
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some(("", t)) => (None, num(ctx, t)?),
        Some((pub_, t)) => (Some(num(ctx, pub_)?), num(ctx, t)?),
        None => (None, num(ctx, &rest)?),
    };
    let host_ip = if host_ip == "0.0.0.0" {
        String::new()
    } else {
        host_ip
    };
    Some(Port {
        host_ip,
        published,
        target,
        protocol,
    })
}

fn volume(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    svc: &mut Service,
    file: &StackFile,
    stack_dir: &Path,
    lc: &LowerCtx<'_>,
) {
    let (source, target, read_only, kind, placement) = match &v.value {
        Value::Map(_) => {
            let Some(mut f) = ctx.fields(v, p) else {
                return;
            };
            let kind = f.string(ctx, "type").unwrap_or_else(|| "volume".into());
            let source = f.string(ctx, "source").unwrap_or_default();
            let target = f
                .require(ctx, "target")
                .and_then(|n| ctx.string(n, &yaml::join(p, "target")))
                .unwrap_or_default();
            let read_only = f.bool(ctx, "read_only").unwrap_or(false);
            let mut placement = (0o644, None);
            if let Some(x) = f.get("x-hoist") {
                let xp = yaml::join(p, "x-hoist");
                if let Some(mut xf) = ctx.fields(x, &xp) {
                    if let Some(m) = xf.string(ctx, "mode") {
                        match u32::from_str_radix(&m, 8) {
                            Ok(mode) if mode <= 0o7777 => placement.0 = mode,
                            _ => ctx.error(
                                x.loc,
                                &yaml::join(&xp, "mode"),
                                Kind::InvalidValue,
                                format!("{m:?} is not an octal file mode"),
                            ),
                        }
                    }
                    placement.1 = xf.string(ctx, "owner");
                    xf.finish(ctx, false);
                }
            }
            if !matches!(kind.as_str(), "volume" | "bind") {
                ctx.error(
                    v.loc,
                    &yaml::join(p, "type"),
                    Kind::InvalidValue,
                    format!("volume type {kind:?} is not supported (volume, bind)"),
                );
                return;
            }
            f.finish(ctx, true);
            (source, target, read_only, Some(kind), placement)
        }
        _ => {
            let Some(s) = ctx.string(v, p) else { return };
            let parts: Vec<&str> = s.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [t] => (String::new(), t.to_string(), ""),
                [s, t] => (s.to_string(), t.to_string(), ""),
                [s, t, m] => (s.to_string(), t.to_string(), *m),
                _ => {
                    ctx.error(
                        v.loc,
                        p,
                        Kind::InvalidValue,
                        format!("bad volume {s:?} (expected source:target[:ro|rw])"),
                    );
                    return;
                }
            };
            let read_only = match mode {
                "" | "rw" => false,
                "ro" => true,
                other => {
                    ctx.error(
                        v.loc,
                        p,
                        Kind::InvalidValue,
                        format!("volume mode {other:?} is not supported (ro, rw)"),
                    );
                    return;
                }
            };
            (source, target, read_only, None, (0o644, None))
        }
    };
    if !target.starts_with('/') {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            format!("mount target {target:?} must be an absolute path"),
        );
        return;
    }
    let is_path = source.starts_with('/') || source.starts_with('.') || source.starts_with('~');
    let is_bind = kind.as_deref() == Some("bind") || (kind.is_none() && is_path);
    let mount_source = if source.is_empty() {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            "anonymous volumes are not supported: name the volume",
        );
        return;
    } else if !is_bind {
        MountSource::Volume(source)
    } else if source.starts_with('/') {
        MountSource::Bind(source)
    } else if source.starts_with('~') {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            "`~` in a bind source is ambiguous on a remote host: use an absolute path",
        );
        return;
    } else {
        // A repository path: hoist places it (rendered when .j2) under FILES_ROOT and mounts that.
        let local = normalize(&stack_dir.join(&source));
        let root = normalize(lc.root);
        let Ok(rel) = local.strip_prefix(&root) else {
            ctx.error(
                v.loc,
                p,
                Kind::InvalidValue,
                format!("{source:?} lies outside the project"),
            );
            return;
        };
        if !lc.src.exists(&local) {
            ctx.error(
                v.loc,
                p,
                Kind::UnknownReference,
                format!("{source:?} does not exist ({})", rel.display()),
            );
            return;
        }
        let host_path = host_path(&file.project, rel);
        let files = if lc.src.is_dir(&local) {
            lc.src
                .files_under(&local)
                .into_iter()
                .map(|rel| local.join(rel))
                .collect()
        } else {
            vec![local.clone()]
        };
        for f in files {
            let Some(content) = read_source(ctx, &f, v, p, lc) else {
                continue;
            };
            let frel = f.strip_prefix(&root).unwrap_or(&f);
            svc.files.push(PlacedFile {
                path: host_path_file(&file.project, frel),
                content,
                mode: placement.0,
                owner: placement.1.clone(),
                origin: frel.to_string_lossy().into_owned(),
            });
        }
        MountSource::Bind(host_path)
    };
    svc.mounts.push(Mount {
        source: mount_source,
        target,
        read_only,
        loc: v.loc,
    });
}

fn host_path(project: &str, rel: &Path) -> String {
    let s = rel.to_string_lossy();
    let s = s.strip_suffix(".j2").unwrap_or(&s);
    format!("{FILES_ROOT}/{project}/{s}")
}

fn host_path_file(project: &str, rel: &Path) -> String {
    host_path(project, rel)
}

fn networks(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    match &v.value {
        Value::Seq(_) => {
            for n in ctx.string_list(v, p) {
                out.insert(n, Vec::new());
            }
        }
        _ => {
            for (name, _, body) in ctx.entries(v, p) {
                let np = yaml::join(p, &name);
                let mut aliases = Vec::new();
                if let Some(mut f) = ctx.fields(body, &np) {
                    if let Some(a) = f.get("aliases") {
                        aliases = ctx.string_list(a, &yaml::join(&np, "aliases"));
                        aliases.sort();
                    }
                    f.finish(ctx, true);
                }
                out.insert(name, aliases);
            }
        }
    }
    out
}

fn healthcheck(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<Health> {
    let mut f = ctx.fields(v, p)?;
    let disable = f.bool(ctx, "disable").unwrap_or(false);
    let test = f.get("test").map(|t| match &t.value {
        Value::Seq(_) => ctx.string_list(t, &yaml::join(p, "test")),
        _ => ctx
            .string(t, &yaml::join(p, "test"))
            .map(|s| vec!["CMD-SHELL".to_owned(), s])
            .unwrap_or_default(),
    });
    let mut h = Health {
        test: test.unwrap_or_default(),
        interval_ns: None,
        timeout_ns: None,
        retries: None,
        start_period_ns: None,
    };
    for key in ["interval", "timeout", "start_period"] {
        if let Some(d) = f.get(key) {
            let ns = duration_field(ctx, d, &yaml::join(p, key));
            match key {
                "interval" => h.interval_ns = ns,
                "timeout" => h.timeout_ns = ns,
                _ => h.start_period_ns = ns,
            }
        }
    }
    if let Some(r) = f.get("retries") {
        h.retries = ctx.u64(r, &yaml::join(p, "retries"));
    }
    let _ = f
        .get("start_interval")
        .map(|d| duration_field(ctx, d, &yaml::join(p, "start_interval")));
    f.finish(ctx, true);
    if disable || h.test.first().is_some_and(|t| t == "NONE") {
        return Some(Health {
            test: vec!["NONE".into()],
            interval_ns: None,
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
        });
    }
    match h.test.first().map(String::as_str) {
        Some("CMD" | "CMD-SHELL") if h.test.len() > 1 => Some(h),
        _ => {
            ctx.error(
                v.loc,
                &yaml::join(p, "test"),
                Kind::InvalidValue,
                "test must be a string, or a list starting with CMD, CMD-SHELL or NONE",
            );
            None
        }
    }
}

fn depends_on(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> BTreeMap<String, Condition> {
    let mut out = BTreeMap::new();
    match &v.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(name) = ctx.string(item, &yaml::index(p, i)) {
                    out.insert(
                        name,
                        Condition {
                            kind: ConditionKind::ServiceStarted,
                            required: true,
                            loc: item.loc,
                        },
                    );
                }
            }
        }
        _ => {
            for (name, loc, body) in ctx.entries(v, p) {
                let np = yaml::join(p, &name);
                let mut kind = ConditionKind::ServiceStarted;
                let mut required = true;
                if let Some(mut f) = ctx.fields(body, &np) {
                    if let Some(c) = f.get("condition") {
                        let cp = yaml::join(&np, "condition");
                        match ctx.string(c, &cp).as_deref() {
                            Some("service_started") => kind = ConditionKind::ServiceStarted,
                            Some("service_healthy") => kind = ConditionKind::ServiceHealthy,
                            Some("service_completed_successfully") => kind = ConditionKind::ServiceCompletedSuccessfully,
                            Some(other) => ctx.error(c.loc, &cp, Kind::InvalidValue, format!("{other:?} is not a condition (service_started, service_healthy, service_completed_successfully)")),
                            None => {}
                        }
                    }
                    let _ = f.bool(ctx, "restart");
                    required = f.bool(ctx, "required").unwrap_or(true);
                    f.finish(ctx, true);
                }
                out.insert(
                    name,
                    Condition {
                        kind,
                        required,
                        loc,
                    },
                );
            }
        }
    }
    out
}

fn extra_hosts(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Vec<String> {
    let mut out: Vec<String> = match &v.value {
        Value::Map(_) => ctx
            .entries(v, p)
            .into_iter()
            .filter_map(|(k, _, val)| {
                ctx.string(val, &yaml::join(p, &k))
                    .map(|ip| format!("{k}:{ip}"))
            })
            .collect(),
        _ => ctx
            .string_list(v, p)
            .into_iter()
            .map(|s| s.replacen('=', ":", 1))
            .collect(),
    };
    for h in &out {
        match h.split_once(':') {
            Some((name, ip)) if !name.is_empty() && !ip.is_empty() => {}
            _ => ctx.error(
                v.loc,
                p,
                Kind::InvalidValue,
                format!("{h:?} is not `host:address`"),
            ),
        }
    }
    out.sort();
    out
}

fn duration_field(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<u64> {
    let s = ctx.string(v, p)?;
    match parse_duration(&s) {
        Some(ns) => Some(ns),
        None => {
            ctx.error(
                v.loc,
                p,
                Kind::InvalidValue,
                format!("{s:?} is not a duration (like 30s, 1m30s, 500ms)"),
            );
            None
        }
    }
}

/// Parses a compose/Go duration (`1m30s`, `500ms`, `2h`) into nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<u64>() {
        return secs.checked_mul(1_000_000_000);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add((value * scale) as u64)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("10"), Some(10_000_000_000));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
