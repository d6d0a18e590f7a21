//! How a container runs, beyond what it runs: privileges, kernel settings, resources, logging and
//! the terminal (`cap_add`, `read_only`, `tmpfs`, `ulimits`, `deploy.resources`, ...), decoded into
//! one normalised [`Runtime`] that the planner compares field by field with what the engine
//! reports, each field under its compose name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diag::Kind;
use crate::yaml::{self, Ctx, Node, Value};

/// The engine's `/dev/shm` size when none is asked for: 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// The runtime options of a container, normalised: capabilities upper case without `CAP_`, lists
/// sorted, sizes in bytes, CPUs in billionths. The default value asks for nothing beyond the
/// engine's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Runtime {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub init: Option<bool>,
    /// Mount point -> options (`size=64m`), or empty.
    pub tmpfs: BTreeMap<String, String>,
    pub sysctls: BTreeMap<String, String>,
    pub shm_size: Option<u64>,
    /// Name -> (soft, hard).
    pub ulimits: BTreeMap<String, (i64, i64)>,
    pub security_opt: Vec<String>,
    /// `host:container:permissions`.
    pub devices: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    pub group_add: Vec<String>,
    pub stop_signal: Option<String>,
    pub stdin_open: bool,
    pub tty: bool,
    /// `port/protocol` the container exposes to other containers without publishing.
    pub expose: Vec<String>,
    pub logging: Option<Logging>,
    /// The OCI runtime (`runc` is the engine's default).
    pub runtime: Option<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    /// Memory limit, bytes.
    pub memory: Option<u64>,
    pub memory_reservation: Option<u64>,
    pub memswap_limit: Option<i64>,
    /// CPU limit, in billionths of a CPU.
    pub nano_cpus: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    /// Devices asked of a driver (`deploy.resources.reservations.devices`, and `gpus` for
    /// short), sorted; left out of the hash when there are none, so the hash of a container
    /// without any stays what it was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_requests: Vec<DeviceRequest>,
}

/// A request for devices of a driver (`HostConfig.DeviceRequests`): by count or by id, each
/// device having every capability asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceRequest {
    /// Empty: the engine picks the driver that offers the capabilities.
    pub driver: String,
    /// How many devices, -1 for all of them; `None` with `device_ids`.
    pub count: Option<i64>,
    pub device_ids: Vec<String>,
    /// Sorted.
    pub capabilities: Vec<String>,
    pub options: BTreeMap<String, String>,
}

impl DeviceRequest {
    /// As a plan shows it: `nvidia count=all capabilities=gpu`.
    fn shown(&self) -> String {
        let mut parts = Vec::new();
        if !self.driver.is_empty() {
            parts.push(self.driver.clone());
        }
        match self.count {
            Some(-1) => parts.push("count=all".into()),
            Some(n) => parts.push(format!("count={n}")),
            None => {}
        }
        if !self.device_ids.is_empty() {
            parts.push(format!("device_ids={}", self.device_ids.join(",")));
        }
        parts.push(format!("capabilities={}", self.capabilities.join(",")));
        for (k, v) in &self.options {
            parts.push(format!("{k}={v}"));
        }
        parts.join(" ")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Logging {
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

impl Runtime {
    pub fn is_default(&self) -> bool {
        self == &Runtime::default()
    }

    /// Writes as unset what is the engine's own fixed default (a 64 MiB `/dev/shm`, the `runc`
    /// runtime, no limit) and drops exposed ports that `ports` already publishes: the same
    /// container, with the same hash. What depends on the image or the daemon (a stop signal, the
    /// IPC mode, `init`) stays as written, since leaving it out would let those decide.
    pub fn normalize(&mut self, published: &[String]) {
        self.shm_size = self.shm_size.filter(|s| *s != DEFAULT_SHM_SIZE);
        self.runtime = self.runtime.take().filter(|r| r != "runc");
        for n in [
            &mut self.memory,
            &mut self.memory_reservation,
            &mut self.nano_cpus,
            &mut self.cpu_shares,
        ] {
            *n = n.filter(|n| *n > 0);
        }
        self.memswap_limit = self.memswap_limit.filter(|n| *n != 0);
        self.expose.retain(|e| !published.contains(e));
    }

    /// Each field as compose names it and as a plan shows it, engine defaults shown as empty:
    /// two runtimes run the same container exactly when their entries are equal.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let list = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v.join(",")
        };
        let caps = |v: &[String]| list(&v.iter().map(|c| capability(c)).collect::<Vec<_>>());
        let map = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let flag = |b: bool| if b { "true".to_owned() } else { String::new() };
        let num = |n: Option<u64>| {
            n.filter(|n| *n > 0)
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        let signed = |n: Option<i64>| {
            n.filter(|n| *n > 0)
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        vec![
            ("cap_add", caps(&self.cap_add)),
            ("cap_drop", caps(&self.cap_drop)),
            ("privileged", flag(self.privileged)),
            ("read_only", flag(self.read_only)),
            ("init", self.init.map(|i| i.to_string()).unwrap_or_default()),
            ("tmpfs", map(&self.tmpfs)),
            ("sysctls", map(&self.sysctls)),
            (
                "shm_size",
                num(self.shm_size.filter(|s| *s != DEFAULT_SHM_SIZE)),
            ),
            (
                "ulimits",
                self.ulimits
                    .iter()
                    .map(|(k, (s, h))| format!("{k}={s}:{h}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("security_opt", list(&self.security_opt)),
            ("devices", list(&self.devices)),
            ("dns", self.dns.join(",")),
            ("dns_search", self.dns_search.join(",")),
            ("dns_opt", list(&self.dns_opt)),
            ("group_add", list(&self.group_add)),
            ("stop_signal", self.stop_signal.clone().unwrap_or_default()),
            ("stdin_open", flag(self.stdin_open)),
            ("tty", flag(self.tty)),
            ("expose", list(&self.expose)),
            (
                "logging",
                self.logging
                    .as_ref()
                    .map(|l| {
                        format!("{} {}", l.driver, map(&l.options))
                            .trim()
                            .to_owned()
                    })
                    .unwrap_or_default(),
            ),
            (
                "runtime",
                self.runtime
                    .clone()
                    .filter(|r| r != "runc")
                    .unwrap_or_default(),
            ),
            ("pid", self.pid.clone().unwrap_or_default()),
            ("ipc", self.ipc.clone().unwrap_or_default()),
            ("deploy.resources.limits.memory", num(self.memory)),
            (
                "deploy.resources.reservations.memory",
                num(self.memory_reservation),
            ),
            ("memswap_limit", signed(self.memswap_limit)),
            ("deploy.resources.limits.cpus", cpus(self.nano_cpus)),
            ("cpu_shares", num(self.cpu_shares)),
            ("deploy.resources.limits.pids", signed(self.pids_limit)),
            (
                "deploy.resources.reservations.devices",
                self.device_requests
                    .iter()
                    .map(DeviceRequest::shown)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ]
    }
}

/// `CAP_NET_ADMIN`, `net_admin` and `NET_ADMIN` are one capability.
pub fn capability(c: &str) -> String {
    let c = c.trim().to_ascii_uppercase();
    c.strip_prefix("CAP_").map(str::to_owned).unwrap_or(c)
}

fn cpus(nano: Option<u64>) -> String {
    match nano.filter(|n| *n > 0) {
        Some(n) => {
            let text = format!("{:.3}", n as f64 / 1e9);
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        None => String::new(),
    }
}

/// The service keys decoded here.
pub(super) const KEYS: &[&str] = &[
    "cap_add",
    "cap_drop",
    "privileged",
    "read_only",
    "init",
    "tmpfs",
    "sysctls",
    "shm_size",
    "ulimits",
    "security_opt",
    "devices",
    "dns",
    "dns_search",
    "dns_opt",
    "group_add",
    "stop_signal",
    "stdin_open",
    "tty",
    "expose",
    "logging",
    "runtime",
    "pid",
    "ipc",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "cpus",
    "cpu_shares",
    "pids_limit",
    "gpus",
];

/// Decodes one runtime key of a service into `rt`.
pub(super) fn decode(ctx: &mut Ctx<'_>, key: &str, v: &Node, p: &str, rt: &mut Runtime) {
    match key {
        "cap_add" => rt.cap_add = sorted(ctx.string_list(v, p).iter().map(|c| capability(c))),
        "cap_drop" => rt.cap_drop = sorted(ctx.string_list(v, p).iter().map(|c| capability(c))),
        "privileged" => rt.privileged = ctx.bool(v, p).unwrap_or(false),
        "read_only" => rt.read_only = ctx.bool(v, p).unwrap_or(false),
        "init" => rt.init = ctx.bool(v, p),
        "tmpfs" => {
            let items = match &v.value {
                Value::Seq(_) => ctx.string_list(v, p),
                _ => ctx.string(v, p).into_iter().collect(),
            };
            for item in items {
                let (path, opts) = item.split_once(':').unwrap_or((&item, ""));
                if !path.starts_with('/') {
                    ctx.error(
                        v.loc,
                        p,
                        Kind::InvalidValue,
                        format!("{path:?} is not an absolute path in the container"),
                    );
                }
                rt.tmpfs.insert(path.to_owned(), opts.to_owned());
            }
        }
        "sysctls" => rt.sysctls = super::string_map(ctx, v, p),
        "shm_size" => rt.shm_size = bytes_field(ctx, v, p),
        "ulimits" => rt.ulimits = ulimits(ctx, v, p),
        "security_opt" => rt.security_opt = sorted(ctx.string_list(v, p).into_iter()),
        "devices" => rt.devices = devices(ctx, v, p),
        "gpus" => gpus(ctx, v, p, rt),
        "dns" => rt.dns = one_or_list(ctx, v, p),
        "dns_search" => rt.dns_search = one_or_list(ctx, v, p),
        "dns_opt" => rt.dns_opt = sorted(ctx.string_list(v, p).into_iter()),
        "group_add" => rt.group_add = sorted(ctx.strings(v, p).into_iter()),
        "stop_signal" => rt.stop_signal = ctx.string(v, p),
        "stdin_open" => rt.stdin_open = ctx.bool(v, p).unwrap_or(false),
        "tty" => rt.tty = ctx.bool(v, p).unwrap_or(false),
        "expose" => {
            let mut out = Vec::new();
            for (i, item) in ctx.seq(v, p).iter().enumerate() {
                let ip = yaml::index(p, i);
                if let Some(s) = ctx.string(item, &ip) {
                    match exposed(&s) {
                        Some(e) => out.push(e),
                        None => ctx.error(
                            item.loc,
                            &ip,
                            Kind::InvalidValue,
                            format!("{s:?} is not a port (80, 80/udp)"),
                        ),
                    }
                }
            }
            rt.expose = sorted(out.into_iter());
        }
        "logging" => rt.logging = logging(ctx, v, p),
        "runtime" => rt.runtime = ctx.string(v, p),
        "pid" | "ipc" => {
            let mode = ctx.string(v, p);
            if let Some(m) = mode.as_deref().filter(|m| m.starts_with("service:")) {
                ctx.error(
                    v.loc,
                    p,
                    Kind::Unsupported,
                    format!("{m:?} is not supported yet: `host`, `private`, `shareable` or `container:<name>`"),
                );
            } else if key == "pid" {
                rt.pid = mode;
            } else {
                rt.ipc = mode;
            }
        }
        "mem_limit" => rt.memory = bytes_field(ctx, v, p),
        "mem_reservation" => rt.memory_reservation = bytes_field(ctx, v, p),
        "memswap_limit" => {
            rt.memswap_limit = match ctx.string(v, p).as_deref() {
                Some("-1") => Some(-1),
                _ => bytes_field(ctx, v, p).and_then(|b| i64::try_from(b).ok()),
            }
        }
        "cpus" => rt.nano_cpus = cpus_field(ctx, v, p),
        "cpu_shares" => rt.cpu_shares = ctx.u64(v, p),
        "pids_limit" => rt.pids_limit = signed_field(ctx, v, p),
        _ => {}
    }
}

/// `deploy:` as a single host runs it: resources, the restart policy, how its containers are
/// replaced (`update_config`), the number of replicas (returned). Swarm's placement is refused;
/// `rollback_config` is accepted with a warning (a rollback puts the previous containers back
/// at once).
pub(super) fn deploy(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    rt: &mut Runtime,
    restart: &mut String,
    update: &mut super::update::UpdateConfig,
) -> Option<u32> {
    let mut replicas = None;
    let mut f = ctx.fields(v, p)?;
    if let Some(m) = f.get("mode") {
        let mp = yaml::join(p, "mode");
        match ctx.string(m, &mp).as_deref() {
            Some("replicated") | None => {}
            Some(other) => ctx.error(
                m.loc,
                &mp,
                Kind::Unsupported,
                format!("mode {other:?} is swarm's: hoist runs services replicated on their hosts"),
            ),
        }
    }
    if let Some(r) = f.get("replicas") {
        let rp = yaml::join(p, "replicas");
        if let Some(n) = ctx.u64(r, &rp) {
            replicas = Some(super::replicas(ctx, r.loc, &rp, n));
        }
    }
    if let Some(res) = f.get("resources") {
        resources(ctx, res, &yaml::join(p, "resources"), rt);
    }
    if let Some(rp_node) = f.get("restart_policy") {
        let rp = yaml::join(p, "restart_policy");
        if let Some(mut rf) = ctx.fields(rp_node, &rp) {
            let condition = rf.string(ctx, "condition").unwrap_or_else(|| "any".into());
            let attempts = rf
                .get("max_attempts")
                .and_then(|n| ctx.u64(n, &yaml::join(&rp, "max_attempts")));
            for key in ["delay", "window"] {
                if let Some(d) = rf.get(key) {
                    ctx.warning(
                        d.loc,
                        &yaml::join(&rp, key),
                        Kind::Unsupported,
                        "the engine has no restart delay or window for a container: ignored",
                    );
                }
            }
            rf.finish(ctx, true);
            match condition.as_str() {
                "none" => *restart = "no".into(),
                "any" => *restart = "always".into(),
                "on-failure" => {
                    *restart = match attempts {
                        Some(n) if n > 0 => format!("on-failure:{n}"),
                        _ => "on-failure".into(),
                    }
                }
                other => ctx.error(
                    rp_node.loc,
                    &yaml::join(&rp, "condition"),
                    Kind::InvalidValue,
                    format!("{other:?} is not a restart condition (none, on-failure, any)"),
                ),
            }
        }
    }
    if let Some(n) = f.get("update_config")
        && let Some(u) = super::update::update_config(ctx, n, &yaml::join(p, "update_config"))
    {
        *update = u;
    }
    for key in ["rollback_config", "labels"] {
        if let Some(n) = f.get(key) {
            ctx.warning(
                n.loc,
                &yaml::join(p, key),
                Kind::Unsupported,
                match key {
                    "labels" => "deploy.labels label swarm's service, not its containers: ignored (use `labels`)",
                    _ => "ignored: a failed update puts the previous containers back at once",
                },
            );
        }
    }
    for key in ["placement", "endpoint_mode"] {
        if let Some(n) = f.get(key) {
            ctx.error(
                n.loc,
                &yaml::join(p, key),
                Kind::Unsupported,
                "swarm's: hoist places services by the stack's `x-hoist.hosts`",
            );
        }
    }
    f.finish(ctx, true);
    replicas
}

fn resources(ctx: &mut Ctx<'_>, v: &Node, p: &str, rt: &mut Runtime) {
    let Some(mut f) = ctx.fields(v, p) else {
        return;
    };
    if let Some(l) = f.get("limits") {
        let lp = yaml::join(p, "limits");
        if let Some(mut lf) = ctx.fields(l, &lp) {
            if let Some(c) = lf.get("cpus") {
                rt.nano_cpus = cpus_field(ctx, c, &yaml::join(&lp, "cpus"));
            }
            if let Some(m) = lf.get("memory") {
                rt.memory = bytes_field(ctx, m, &yaml::join(&lp, "memory"));
            }
            if let Some(n) = lf.get("pids") {
                rt.pids_limit = signed_field(ctx, n, &yaml::join(&lp, "pids"));
            }
            lf.finish(ctx, true);
        }
    }
    if let Some(r) = f.get("reservations") {
        let rp = yaml::join(p, "reservations");
        if let Some(mut rf) = ctx.fields(r, &rp) {
            if let Some(m) = rf.get("memory") {
                rt.memory_reservation = bytes_field(ctx, m, &yaml::join(&rp, "memory"));
            }
            if let Some(c) = rf.get("cpus") {
                ctx.warning(
                    c.loc,
                    &yaml::join(&rp, "cpus"),
                    Kind::Unsupported,
                    "the engine reserves no CPU for a single container (compose ignores it too): ignored",
                );
            }
            if let Some(d) = rf.get("devices") {
                let dp = yaml::join(&rp, "devices");
                for (i, item) in ctx.seq(d, &dp).iter().enumerate() {
                    if let Some(r) = device_request(ctx, item, &yaml::index(&dp, i), None) {
                        rt.device_requests.push(r);
                    }
                }
                rt.device_requests.sort();
            }
            rf.finish(ctx, true);
        }
    }
    f.finish(ctx, true);
}

/// `gpus`: `all`, or requests as under `deploy.resources.reservations.devices` whose
/// capabilities are `gpu` unless given.
pub(super) fn gpus(ctx: &mut Ctx<'_>, v: &Node, p: &str, rt: &mut Runtime) {
    match &v.value {
        Value::Seq(_) => {
            for (i, item) in ctx.seq(v, p).iter().enumerate() {
                if let Some(r) = device_request(ctx, item, &yaml::index(p, i), Some("gpu")) {
                    rt.device_requests.push(r);
                }
            }
        }
        _ => match ctx.string(v, p).as_deref() {
            Some("all") => rt.device_requests.push(DeviceRequest {
                count: Some(-1),
                capabilities: vec!["gpu".into()],
                ..DeviceRequest::default()
            }),
            Some(other) => ctx.error(
                v.loc,
                p,
                Kind::InvalidValue,
                format!("{other:?} is neither `all` nor a list of device requests"),
            ),
            None => {}
        },
    }
    rt.device_requests.sort();
}

/// One device request: `capabilities` (required but for `gpus`), `driver`, `count` (a number or
/// `all`, which is what neither it nor `device_ids` means) or `device_ids`, `options`.
fn device_request(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    default_capability: Option<&str>,
) -> Option<DeviceRequest> {
    let mut f = ctx.fields(v, p)?;
    let mut r = DeviceRequest {
        driver: f.string(ctx, "driver").unwrap_or_default(),
        ..DeviceRequest::default()
    };
    match f.get("capabilities") {
        Some(c) => {
            r.capabilities = sorted(
                ctx.string_list(c, &yaml::join(p, "capabilities"))
                    .into_iter(),
            )
        }
        None => match default_capability {
            Some(c) => r.capabilities = vec![c.to_owned()],
            None => {
                f.require(ctx, "capabilities");
            }
        },
    }
    if let Some(ids) = f.get("device_ids") {
        r.device_ids = ctx.string_list(ids, &yaml::join(p, "device_ids"));
    }
    if let Some(c) = f.get("count") {
        let cp = yaml::join(p, "count");
        r.count = match ctx.string(c, &cp).as_deref() {
            Some("all") => Some(-1),
            Some(n) => match n.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    ctx.error(
                        c.loc,
                        &cp,
                        Kind::InvalidValue,
                        format!("{n:?} is neither a number of devices nor `all`"),
                    );
                    None
                }
            },
            None => None,
        };
        if !r.device_ids.is_empty() {
            ctx.error(
                c.loc,
                &cp,
                Kind::InvalidValue,
                "`count` and `device_ids` exclude each other (as in compose)",
            );
        }
    } else if r.device_ids.is_empty() {
        r.count = Some(-1);
    }
    if let Some(o) = f.get("options") {
        r.options = super::string_map(ctx, o, &yaml::join(p, "options"));
    }
    f.finish(ctx, true);
    Some(r)
}

fn sorted(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.collect();
    v.sort();
    v.dedup();
    v
}

fn one_or_list(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Vec<String> {
    match &v.value {
        Value::Seq(_) => ctx.string_list(v, p),
        _ => ctx.string(v, p).into_iter().collect(),
    }
}

fn exposed(s: &str) -> Option<String> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let ok = port.parse::<u16>().is_ok() && matches!(proto, "tcp" | "udp" | "sctp");
    ok.then(|| format!("{port}/{proto}"))
}

fn logging(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<Logging> {
    let mut f = ctx.fields(v, p)?;
    let driver = f
        .string(ctx, "driver")
        .unwrap_or_else(|| "json-file".into());
    let options = f
        .get("options")
        .map(|o| super::string_map(ctx, o, &yaml::join(p, "options")))
        .unwrap_or_default();
    f.finish(ctx, true);
    Some(Logging { driver, options })
}

fn ulimits(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    for (name, _, body) in ctx.entries(v, p) {
        let np = yaml::join(p, &name);
        let limits = match &body.value {
            Value::Map(_) => {
                let Some(mut f) = ctx.fields(body, &np) else {
                    continue;
                };
                let soft = f
                    .require(ctx, "soft")
                    .and_then(|n| signed_field(ctx, n, &yaml::join(&np, "soft")));
                let hard = f
                    .require(ctx, "hard")
                    .and_then(|n| signed_field(ctx, n, &yaml::join(&np, "hard")));
                f.finish(ctx, true);
                soft.zip(hard)
            }
            _ => signed_field(ctx, body, &np).map(|n| (n, n)),
        };
        if let Some((soft, hard)) = limits {
            if soft > hard && hard >= 0 {
                ctx.error(
                    body.loc,
                    &np,
                    Kind::InvalidValue,
                    format!("soft limit {soft} is above the hard limit {hard}"),
                );
            }
            out.insert(name, (soft, hard));
        }
    }
    out
}

fn devices(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, item) in ctx.seq(v, p).iter().enumerate() {
        let ip = yaml::index(p, i);
        let spec = match &item.value {
            Value::Map(_) => {
                let Some(mut f) = ctx.fields(item, &ip) else {
                    continue;
                };
                let source = f
                    .require(ctx, "source")
                    .and_then(|n| ctx.string(n, &yaml::join(&ip, "source")));
                let target = f.string(ctx, "target");
                let perms = f.string(ctx, "permissions");
                f.finish(ctx, true);
                let Some(source) = source else { continue };
                device(&source, target.as_deref(), perms.as_deref())
            }
            _ => {
                let Some(s) = ctx.string(item, &ip) else {
                    continue;
                };
                let mut parts = s.splitn(3, ':');
                let source = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().map(str::to_owned);
                let perms = parts.next().map(str::to_owned);
                device(&source, target.as_deref(), perms.as_deref())
            }
        };
        match spec {
            Some(d) => out.push(d),
            None => ctx.error(
                item.loc,
                &ip,
                Kind::InvalidValue,
                "a device is `/dev/host[:/dev/container[:rwm]]`, both absolute paths",
            ),
        }
    }
    sorted(out.into_iter())
}

/// `host:container:permissions` with the engine's defaults (the same path, `rwm`).
pub fn device(source: &str, target: Option<&str>, perms: Option<&str>) -> Option<String> {
    let target = target.unwrap_or(source);
    let perms = perms.unwrap_or("rwm");
    let ok = source.starts_with('/')
        && target.starts_with('/')
        && !perms.is_empty()
        && perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    ok.then(|| format!("{source}:{target}:{perms}"))
}

fn signed_field(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<i64> {
    let s = ctx.string(v, p)?;
    match s.trim().parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => {
            ctx.error(
                v.loc,
                p,
                Kind::InvalidValue,
                format!("{s:?} is not a whole number"),
            );
            None
        }
    }
}

fn cpus_field(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<u64> {
    let s = ctx.string(v, p)?;
    match s.trim().parse::<f64>() {
        Ok(c) if c >= 0.0 && c.is_finite() => Some((c * 1e9).round() as u64),
        _ => {
            ctx.error(
                v.loc,
                p,
                Kind::InvalidValue,
                format!("{s:?} is not a number of CPUs (0.5, 2)"),
            );
            None
        }
    }
}

fn bytes_field(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<u64> {
    let s = ctx.string(v, p)?;
    match parse_bytes(&s) {
        Some(n) => Some(n),
        None => {
            ctx.error(
                v.loc,
                p,
                Kind::InvalidValue,
                format!("{s:?} is not a size (bytes, or with a unit: 512k, 64m, 1.5g)"),
            );
            None
        }
    }
}

/// A compose size (`1024`, `512k`, `64m`, `1.5gb`, `2GiB`): binary multiples, as the engine reads them.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim();
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let bytes = value * scale as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_the_engine_reads_them() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("64m"), Some(DEFAULT_SHM_SIZE));
        assert_eq!(parse_bytes("64MB"), Some(DEFAULT_SHM_SIZE));
        assert_eq!(parse_bytes("1.5g"), Some(1_610_612_736));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("12x"), None);
        assert_eq!(parse_bytes(""), None);
    }

    #[test]
    fn defaults_and_spellings_compare_equal() {
        let engine = Runtime {
            cap_add: vec!["CAP_NET_ADMIN".into()],
            shm_size: Some(DEFAULT_SHM_SIZE),
            runtime: Some("runc".into()),
            pids_limit: Some(0),
            ..Runtime::default()
        };
        let asked = Runtime {
            cap_add: vec!["net_admin".into()],
            ..Runtime::default()
        };
        assert_eq!(engine.entries(), asked.entries());
        assert_eq!(cpus(Some(500_000_000)), "0.5");
        assert_eq!(cpus(Some(2_000_000_000)), "2");
        assert_eq!(
            device("/dev/fuse", None, None).as_deref(),
            Some("/dev/fuse:/dev/fuse:rwm")
        );
        assert_eq!(device("fuse", None, None), None);
    }
}
