//! Stacks: compose files, in the compose specification's service model.
//!
//! A stack file is read once ([`StackFile`]) and lowered per host ([`lower`]): `${...}` is
//! interpolated with that host's variables (then its `.env`), templates it mounts or reads as
//! `env_file` are rendered, and every field is checked. A key of the specification that hoist does
//! not take is an error saying why; any other unknown key is an error naming its path; `x-`
//! extension fields are allowed anywhere, as in compose. `x-hoist: {hosts: <pattern>}` binds the
//! stack to hosts; without it, the stack goes to the hosts of the plays that deploy it.

pub mod export;
mod files;
pub mod interpolate;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::Environment;

use crate::desired::{IpamPool, ResourceOptions, StaticAddress};
use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::secret::Redactor;
use crate::source::Source;
use crate::vars::HostVars;
use crate::yaml::{self, Ctx, Node, Value};
use files::FileKind;

pub use service::{
    Build, Condition, DEFAULT_SHM_SIZE, DeviceRequest, Health, Logging, Mount, MountSource,
    PlacedFile, Port, Runtime, Service, capability, device, parse_bytes,
};
pub use service::{FailureAction, UpdateConfig, UpdateOrder};

/// Where files placed by hoist live on a host: `<FILES_ROOT>/<project>/<repository path>`.
pub const FILES_ROOT: &str = "/opt/hoist";

/// A stack file as read from disk, before it is lowered for a host.
#[derive(Debug, Clone)]
pub struct StackFile {
    /// The file stem (`data` for `stacks/data.yml`): how playbooks name the stack.
    pub name: String,
    pub path: PathBuf,
    pub source: SourceName,
    pub node: Node,
    /// The compose project name (`name:`), else the stem.
    pub project: String,
    /// The host pattern from `x-hoist.hosts`.
    pub hosts: String,
    pub hosts_loc: Loc,
    /// The `.env` beside the file, which compose reads for interpolation: values below the
    /// inventory's variables.
    pub dotenv: BTreeMap<String, String>,
    /// That `.env`'s path in the project, when there is one.
    pub dotenv_file: Option<String>,
}

/// Where a value a stack interpolates comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueOrigin {
    /// The host's variable of that name (the inventory stands in for compose's environment).
    Inventory,
    /// The `.env` beside the stack file.
    DotEnv,
}

/// `name` as a host's interpolation sees it: the host's variable first, then the `.env`.
pub fn lookup(
    vars: &HostVars,
    dotenv: &BTreeMap<String, String>,
    name: &str,
) -> Option<(String, ValueOrigin)> {
    vars.scalar(name)
        .map(|v| (v, ValueOrigin::Inventory))
        .or_else(|| dotenv.get(name).map(|v| (v.clone(), ValueOrigin::DotEnv)))
}

/// A stack lowered for one host.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub project: String,
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeMap<String, VolumeDef>,
    pub networks: BTreeMap<String, NetworkDef>,
}

/// The stack's `secrets:` and `configs:`, their contents resolved for the host.
#[derive(Debug, Default)]
pub(crate) struct Defs {
    secrets: BTreeMap<String, Option<files::FileDef>>,
    configs: BTreeMap<String, Option<files::FileDef>>,
}

impl Defs {
    fn get(&self, kind: FileKind) -> &BTreeMap<String, Option<files::FileDef>> {
        match kind {
            FileKind::Secret => &self.secrets,
            FileKind::Config => &self.configs,
        }
    }

    fn get_mut(&mut self, kind: FileKind) -> &mut BTreeMap<String, Option<files::FileDef>> {
        match kind {
            FileKind::Secret => &mut self.secrets,
            FileKind::Config => &mut self.configs,
        }
    }
}

/// A named volume of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDef {
    /// The engine-side name (`<project>_<key>` unless `name:` or `external`).
    pub name: String,
    pub driver: Option<String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    pub options: ResourceOptions,
}

/// A network of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDef {
    pub name: String,
    pub driver: Option<String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
    pub options: ResourceOptions,
}

/// The engine's own rule for the container, network and volume names it takes in its API's
/// paths: a letter or digit, then letters, digits, `_`, `.` and `-`.
pub fn valid_engine_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Reports `name` unless it is a valid engine name; whether it is.
pub(crate) fn engine_name(ctx: &mut Ctx<'_>, loc: Loc, path: &str, what: &str, name: &str) -> bool {
    let ok = valid_engine_name(name);
    if !ok {
        ctx.error(
            loc,
            path,
            Kind::InvalidValue,
            format!(
                "{name:?} is not a valid {what} name: letters, digits, '_', '.' and '-', starting with a letter or digit"
            ),
        );
    }
    ok
}

fn valid_project(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Reads a stack file and its binding; the services are checked when lowered.
pub fn load(src: &Source, root: &Path, path: &Path, diags: &mut Diagnostics) -> Option<StackFile> {
    let (source, node) = yaml::load(src, root, path, "cannot read: no such file", diags)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut ctx = Ctx::new(source.clone(), diags);
    let mut top = ctx.fields(&node, "")?;
    let project = match top.get("name") {
        Some(n) => {
            let p = ctx.string(n, "name").unwrap_or_default();
            if !valid_project(&p) {
                ctx.error(
                    n.loc,
                    "name",
                    Kind::InvalidValue,
                    format!(
                        "{p:?} is not a valid project name (lowercase letters, digits, '-' and '_')"
                    ),
                );
            }
            p
        }
        None => stem.clone(),
    };
    let (mut hosts, mut hosts_loc) = (String::new(), node.loc);
    // Without `x-hoist`, a compose file as it is: the stack goes to the hosts of the plays that
    // deploy it.
    if let Some(x) = top.get("x-hoist")
        && let Some(mut f) = ctx.fields(x, "x-hoist")
    {
        if let Some(h) = f.require(&mut ctx, "hosts") {
            hosts = ctx.string(h, "x-hoist.hosts").unwrap_or_default();
            hosts_loc = h.loc;
        }
        f.finish(&mut ctx, false);
    }
    let _ = top.get("services");
    let _ = top.get("volumes");
    let _ = top.get("networks");
    let _ = top.get("secrets");
    let _ = top.get("configs");
    for (key, why) in [
        (
            "include",
            "not supported: a stack is one file; list several stacks in the playbook",
        ),
        ("models", "not supported"),
    ] {
        if let Some(v) = top.get(key) {
            ctx.error(v.loc, key, Kind::Unsupported, why);
        }
    }
    if let Some(v) = top.get("version") {
        ctx.warning(
            v.loc,
            "version",
            Kind::Unsupported,
            "`version` is obsolete: compose ignores it, and so does hoist (it can go)",
        );
    }
    top.finish(&mut ctx, true);
    let (dotenv, dotenv_file) = dotenv(src, root, path, &mut ctx);
    Some(StackFile {
        name: stem,
        path: path.to_path_buf(),
        source,
        node,
        project,
        hosts,
        hosts_loc,
        dotenv,
        dotenv_file,
    })
}

/// Whether a variable's name says it holds a secret (`DB_PASSWORD`, `API_TOKEN`, `SECRET_KEY`).
pub fn names_a_secret(key: &str) -> bool {
    const WORDS: &[&str] = &[
        "PASS",
        "PASSWORD",
        "PASSWD",
        "PW",
        "PWD",
        "SECRET",
        "TOKEN",
        "KEY",
        "APIKEY",
        "CREDENTIAL",
        "CREDENTIALS",
        "PRIVATE",
        "AUTH",
    ];
    key.to_ascii_uppercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| WORDS.contains(&w) || w.ends_with("PASSWORD") || w.ends_with("SECRET"))
}

/// The `.env` file in the stack's folder, as compose reads it (no file, no values), and its path
/// in the project.
fn dotenv(
    src: &Source,
    root: &Path,
    stack: &Path,
    ctx: &mut Ctx<'_>,
) -> (BTreeMap<String, String>, Option<String>) {
    let Some(path) = stack.parent().map(|d| d.join(".env")) else {
        return (BTreeMap::new(), None);
    };
    if !src.is_file(&path) || !src.within(root, &path) {
        return (BTreeMap::new(), None);
    }
    let rel = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .display()
        .to_string();
    let values = match src.read_to_string(&path) {
        Ok(text) => service::env_lines(ctx, &text, &rel, Loc::UNKNOWN, ""),
        Err(e) => {
            ctx.error(
                Loc::UNKNOWN,
                "",
                Kind::Io,
                format!("{rel}: cannot read: {e}"),
            );
            BTreeMap::new()
        }
    };
    (values, Some(rel))
}

/// What lowering needs besides the file: the host's variables and the template machinery.
#[derive(Debug)]
pub struct LowerCtx<'a> {
    pub root: &'a Path,
    pub src: &'a Source,
    pub env: &'a Environment<'static>,
    pub vars: &'a HostVars,
    pub host: &'a str,
    pub redactor: &'a Redactor,
    /// Profiles enabled for this deployment; services with other profiles are left out.
    pub profiles: &'a [String],
}

/// Lowers `file` for one host: interpolation, rendering, and validation of every field.
pub fn lower(file: &StackFile, lc: &LowerCtx<'_>, diags: &mut Diagnostics) -> Option<Stack> {
    let errors_before = diags.error_count();
    let node = interpolate_tree(file, &file.node, "", lc, diags);
    // A value that could not be interpolated would only be reported again, as empty.
    if diags.error_count() > errors_before {
        return None;
    }
    let mut ctx = Ctx::new(file.source.clone(), diags);
    let mut top = ctx.fields(&node, "")?;

    let mut volumes = BTreeMap::new();
    if let Some(v) = top.get("volumes") {
        for (key, loc, body) in ctx.entries(v, "volumes") {
            let path = yaml::join("volumes", &key);
            let r = resource(&mut ctx, body, &path, &file.project, &key, false);
            if !engine_name(&mut ctx, loc, &path, "volume", &r.name) {
                continue;
            }
            volumes.insert(
                key,
                VolumeDef {
                    name: r.name,
                    driver: r.driver,
                    external: r.external,
                    labels: r.labels,
                    options: r.options,
                },
            );
        }
    }
    let mut networks = BTreeMap::new();
    if let Some(v) = top.get("networks") {
        for (key, loc, body) in ctx.entries(v, "networks") {
            let path = yaml::join("networks", &key);
            let r = resource(&mut ctx, body, &path, &file.project, &key, true);
            if !engine_name(&mut ctx, loc, &path, "network", &r.name) {
                continue;
            }
            networks.insert(
                key,
                NetworkDef {
                    name: r.name,
                    driver: r.driver,
                    external: r.external,
                    labels: r.labels,
                    options: r.options,
                },
            );
        }
    }

    let stack_dir = file.path.parent().unwrap_or(Path::new("."));
    let mut defs = Defs::default();
    for kind in [FileKind::Secret, FileKind::Config] {
        if let Some(v) = top.get(kind.key()) {
            *defs.get_mut(kind) = files::definitions(&mut ctx, v, kind, stack_dir, lc);
        }
    }
    let mut services = BTreeMap::new();
    let mut left_out = BTreeSet::new();
    if let Some(v) = top.require(&mut ctx, "services") {
        for (name, loc, body) in ctx.entries(v, "services") {
            let path = yaml::join("services", &name);
            if !engine_name(&mut ctx, loc, &path, "service", &name) {
                continue;
            }
            if let Some(svc) = service::decode(
                &mut ctx, &name, loc, body, &path, file, stack_dir, lc, &defs,
            ) {
                let active =
                    svc.profiles.is_empty() || svc.profiles.iter().any(|p| lc.profiles.contains(p));
                if active {
                    services.insert(name, svc);
                } else {
                    left_out.insert(name);
                }
            }
        }
    }
    let _ = top.get("name");
    let _ = top.get("x-hoist");
    // Reported once, when the file is read.
    for key in ["version", "include", "models"] {
        let _ = top.get(key);
    }
    top.finish(&mut ctx, true);

    // The default network exists when a service uses it (compose's `<project>_default`).
    if services
        .values()
        .any(|s| s.networks.contains_key("default"))
        && !networks.contains_key("default")
    {
        networks.insert(
            "default".into(),
            NetworkDef {
                name: format!("{}_default", file.project),
                driver: None,
                external: false,
                labels: BTreeMap::new(),
                options: ResourceOptions::default(),
            },
        );
    }
    // Compose: an optional dependency on a service the profiles leave out is no dependency.
    for svc in services.values_mut() {
        svc.depends_on
            .retain(|dep, c| c.required || !left_out.contains(dep));
    }
    // An anonymous volume (`- /data`) is the service's own: named after the service and its
    // target, so it outlives a recreate of the container, as compose keeps it.
    for svc in services.values() {
        for m in &svc.mounts {
            if let MountSource::Volume(key) = &m.source
                && let Some(own) = key.strip_prefix(service::ANONYMOUS)
            {
                // `<service>:<target>`: each service has its own.
                let short = &crate::desired::sha256_hex(own.as_bytes())[..12];
                volumes.entry(key.clone()).or_insert_with(|| VolumeDef {
                    name: format!("{}_{}-{short}", file.project, svc.name),
                    driver: None,
                    external: false,
                    labels: BTreeMap::new(),
                    options: ResourceOptions::default(),
                });
            }
        }
    }
    check_references(&mut ctx, &services, &left_out, &volumes, &networks);
    if ctx.diags.error_count() > errors_before {
        return None;
    }
    Some(Stack {
        name: file.name.clone(),
        project: file.project.clone(),
        services,
        volumes,
        networks,
    })
}

/// A top-level volume or network, as declared.
struct Resource {
    name: String,
    driver: Option<String>,
    external: bool,
    labels: BTreeMap<String, String>,
    options: ResourceOptions,
}

fn resource(
    ctx: &mut Ctx<'_>,
    body: &Node,
    path: &str,
    project: &str,
    key: &str,
    network: bool,
) -> Resource {
    let mut r = Resource {
        name: format!("{project}_{key}"),
        driver: None,
        external: false,
        labels: BTreeMap::new(),
        options: ResourceOptions::default(),
    };
    let Some(mut f) = ctx.fields(body, path) else {
        return r;
    };
    let explicit = f.string(ctx, "name");
    r.driver = f.string(ctx, "driver");
    r.external = f.bool(ctx, "external").unwrap_or(false);
    if let Some(l) = f.get("labels") {
        r.labels = service::labels(ctx, l, &f.path_of("labels"));
    }
    if let Some(o) = f.get("driver_opts") {
        r.options.driver_opts = service::string_map(ctx, o, &f.path_of("driver_opts"));
    }
    if network {
        r.options.internal = f.bool(ctx, "internal").unwrap_or(false);
        r.options.enable_ipv6 = f.bool(ctx, "enable_ipv6").unwrap_or(false);
        if let Some(i) = f.get("ipam") {
            r.options.ipam = ipam(ctx, i, &f.path_of("ipam"));
        }
        if let Some(a) = f.get("attachable") {
            ctx.warning(
                a.loc,
                &f.path_of("attachable"),
                Kind::Unsupported,
                "swarm's (an overlay network other containers may join): ignored",
            );
        }
    }
    if let Some(n) = explicit {
        r.name = n;
    } else if r.external {
        r.name = key.to_owned();
    }
    f.finish(ctx, true);
    r
}

/// `ipam: {driver, config: [{subnet, gateway, ip_range}]}`: the default driver only.
fn ipam(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Vec<IpamPool> {
    let Some(mut f) = ctx.fields(v, p) else {
        return Vec::new();
    };
    if let Some(d) = f.get("driver") {
        let dp = yaml::join(p, "driver");
        if ctx.string(d, &dp).is_some_and(|d| d != "default") {
            ctx.error(
                d.loc,
                &dp,
                Kind::Unsupported,
                "only the engine's default IPAM driver is supported",
            );
        }
    }
    let mut pools = Vec::new();
    if let Some(c) = f.get("config") {
        let cp = yaml::join(p, "config");
        for (i, item) in ctx.seq(c, &cp).iter().enumerate() {
            let ip = yaml::index(&cp, i);
            let Some(mut pf) = ctx.fields(item, &ip) else {
                continue;
            };
            let subnet = pf
                .require(ctx, "subnet")
                .and_then(|n| ctx.string(n, &yaml::join(&ip, "subnet")));
            let gateway = pf.string(ctx, "gateway");
            let ip_range = pf.string(ctx, "ip_range");
            pf.finish(ctx, true);
            if let Some(subnet) = subnet {
                pools.push(IpamPool {
                    subnet,
                    gateway,
                    ip_range,
                });
            }
        }
    }
    f.finish(ctx, true);
    pools
}

fn check_references(
    ctx: &mut Ctx<'_>,
    services: &BTreeMap<String, Service>,
    left_out: &BTreeSet<String>,
    volumes: &BTreeMap<String, VolumeDef>,
    networks: &BTreeMap<String, NetworkDef>,
) {
    for (name, svc) in services {
        let path = yaml::join("services", name);
        // `network_mode: service:<dep>` depends on it too, and is where a wrong name was written.
        let joined = svc
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"));
        for (dep, cond) in &svc.depends_on {
            let (key, hint) = if joined == Some(dep.as_str()) {
                ("network_mode", "")
            } else {
                (
                    "depends_on",
                    " (`required: false` makes the dependency optional)",
                )
            };
            if left_out.contains(dep) {
                ctx.error(
                    cond.loc,
                    &yaml::join(&path, key),
                    Kind::UnknownReference,
                    format!("`{dep}` is left out by the enabled profiles{hint}"),
                );
            } else if !services.contains_key(dep) {
                ctx.error(
                    cond.loc,
                    &yaml::join(&path, key),
                    Kind::UnknownReference,
                    format!("no service named `{dep}` in this stack"),
                );
            }
        }
        for m in &svc.mounts {
            if let MountSource::Volume(v) = &m.source
                && !volumes.contains_key(v)
            {
                ctx.error(
                    m.loc,
                    &yaml::join(&path, "volumes"),
                    Kind::UnknownReference,
                    format!("volume `{v}` is not declared under the top-level `volumes`"),
                );
            }
        }
        for net in svc.networks.keys() {
            if !networks.contains_key(net) {
                ctx.error(
                    svc.loc,
                    &yaml::join(&path, "networks"),
                    Kind::UnknownReference,
                    format!("network `{net}` is not declared under the top-level `networks`"),
                );
            }
        }
        for (net, address) in &svc.addresses {
            if let Some(def) = networks.get(net) {
                check_address(ctx, svc, &yaml::join(&path, "networks"), net, def, address);
            }
        }
    }
    // Cycles in depends_on would deadlock the health-gated start order.
    if let Err(cycle) = start_order(services) {
        let loc = services.get(&cycle[0]).map(|s| s.loc).unwrap_or_default();
        ctx.error(
            loc,
            "services",
            Kind::Cycle,
            format!("depends_on cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// A static address needs one container (replicas would share it) and, on a network the stack
/// creates, a subnet of that network's pools to come from (the engine gives addresses only from
/// the pools it was told of). An external network's pools are its own: the engine checks them.
fn check_address(
    ctx: &mut Ctx<'_>,
    svc: &Service,
    path: &str,
    net: &str,
    def: &NetworkDef,
    address: &StaticAddress,
) {
    let path = yaml::join(path, net);
    if svc.replicas > 1 {
        ctx.error(
            svc.loc,
            &path,
            Kind::InvalidValue,
            format!(
                "a static address is one container's, and the service runs {} replicas",
                svc.replicas
            ),
        );
        return;
    }
    if def.external {
        return;
    }
    let pools: Vec<ipnet::IpNet> = def
        .options
        .ipam
        .iter()
        .filter_map(|p| p.subnet.parse().ok())
        .collect();
    for (key, ip) in [
        ("ipv4_address", &address.ipv4),
        ("ipv6_address", &address.ipv6),
    ] {
        let Some(ip) = ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        else {
            continue;
        };
        if !pools.iter().any(|p| p.contains(&ip)) {
            let subnets: Vec<String> = pools.iter().map(ToString::to_string).collect();
            ctx.error(
                svc.loc,
                &yaml::join(&path, key),
                Kind::InvalidValue,
                if subnets.is_empty() {
                    format!("{ip} needs a subnet to come from: give network `{net}` an `ipam.config` with one that holds it")
                } else {
                    format!("{ip} is not in network `{net}`'s subnets ({})", subnets.join(", "))
                },
            );
        }
    }
}

/// Services in start order: dependencies first, ties by name. Err holds a cycle.
pub fn start_order(services: &BTreeMap<String, Service>) -> Result<Vec<String>, Vec<String>> {
    let mut order = Vec::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 visiting, 2 done
    fn visit<'a>(
        name: &'a str,
        services: &'a BTreeMap<String, Service>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match state.get(name) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = stack.iter().position(|s| s == name).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_owned());
                return Err(cycle);
            }
            _ => {}
        }
        state.insert(name, 1);
        stack.push(name.to_owned());
        if let Some(svc) = services.get(name) {
            for dep in svc.depends_on.keys() {
                if services.contains_key(dep) {
                    visit(dep, services, state, stack, order)?;
                }
            }
        }
        stack.pop();
        state.insert(name, 2);
        order.push(name.to_owned());
        Ok(())
    }
    for name in services.keys() {
        visit(name, services, &mut state, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// A copy of the tree with `${...}` expanded in every string (top-level `x-` blocks are skipped: their
/// content is used through anchors, where it is expanded).
fn interpolate_tree(
    file: &StackFile,
    node: &Node,
    path: &str,
    lc: &LowerCtx<'_>,
    diags: &mut Diagnostics,
) -> Node {
    let value = match &node.value {
        Value::Str(s) if s.contains('$') => {
            let lookup = |name: &str| lookup(lc.vars, &file.dotenv, name).map(|(v, _)| v);
            match interpolate::interpolate(s, &lookup) {
                Ok(v) => Value::Str(v),
                Err(e) => {
                    diags.error(
                        &file.source,
                        node.loc,
                        path,
                        Kind::UndefinedVariable,
                        format!("{e} (host {})", lc.host),
                    );
                    Value::Str(String::new())
                }
            }
        }
        Value::Seq(items) => Value::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, n)| interpolate_tree(file, n, &yaml::index(path, i), lc, diags))
                .collect(),
        ),
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .filter(|(k, _)| {
                    !(path.is_empty()
                        && k.scalar_text()
                            .is_some_and(|k| k.starts_with("x-") && k != "x-hoist"))
                })
                .map(|(k, v)| {
                    let key = k.scalar_text().unwrap_or_default();
                    (
                        k.clone(),
                        interpolate_tree(file, v, &yaml::join(path, &key), lc, diags),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    };
    Node {
        value,
        loc: node.loc,
        bytes: node.bytes.clone(),
    }
}

/// Whether `c` is a condition a `wait` step can wait for.
/// A playbook's `wait: {service, condition}` word as the condition it names.
pub fn service_condition(c: &str) -> Option<ConditionKind> {
    match c {
        "running" => Some(ConditionKind::ServiceStarted),
        "healthy" => Some(ConditionKind::ServiceHealthy),
        "completed" => Some(ConditionKind::ServiceCompletedSuccessfully),
        _ => None,
    }
}

pub use service::{ConditionKind, parse_duration};
