//! A stack as a plain compose file for one host (`hoist stack export`): what hoist deploys there,
//! in compose's own words, for `docker compose` on that host or any other tool. Variables are
//! resolved, a secret value is a `${name}` reference (compose reads it from its environment or its
//! `.env`), every other `$` is doubled, images built by hoist are named (hoist ships them), files
//! hoist places are bind mounts of their path on the host, and `x-hoist` is gone.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{MountSource, Runtime, Service, Stack, UpdateConfig};
use crate::vars::HostVars;

/// The compose document of `stack` on the host whose variables are `vars`.
pub fn export(stack: &Stack, vars: &HostVars) -> Value {
    let refs = SecretRefs::new(vars);
    let mut doc = Map::new();
    doc.insert("name".into(), json!(stack.project));
    let services: Map<String, Value> = stack
        .services
        .iter()
        .map(|(name, svc)| (name.clone(), service(svc, stack, &refs)))
        .collect();
    doc.insert("services".into(), Value::Object(services));
    let mut volumes = Map::new();
    for (key, v) in &stack.volumes {
        let mut o = Map::new();
        o.insert("name".into(), json!(v.name));
        if let Some(d) = &v.driver {
            o.insert("driver".into(), json!(d));
        }
        if !v.options.driver_opts.is_empty() {
            o.insert("driver_opts".into(), json!(v.options.driver_opts));
        }
        if v.external {
            o.insert("external".into(), json!(true));
        }
        if !v.labels.is_empty() {
            o.insert("labels".into(), json!(v.labels));
        }
        volumes.insert(volume_key(key, &v.name), Value::Object(o));
    }
    if !volumes.is_empty() {
        doc.insert("volumes".into(), Value::Object(volumes));
    }
    let mut networks = Map::new();
    for (key, n) in &stack.networks {
        let mut o = Map::new();
        o.insert("name".into(), json!(n.name));
        if let Some(d) = &n.driver {
            o.insert("driver".into(), json!(d));
        }
        let opts = &n.options;
        if !opts.driver_opts.is_empty() {
            o.insert("driver_opts".into(), json!(opts.driver_opts));
        }
        if opts.internal {
            o.insert("internal".into(), json!(true));
        }
        if opts.enable_ipv6 {
            o.insert("enable_ipv6".into(), json!(true));
        }
        if !opts.ipam.is_empty() {
            o.insert("ipam".into(), json!({ "config": opts.ipam }));
        }
        if n.external {
            o.insert("external".into(), json!(true));
        }
        if !n.labels.is_empty() {
            o.insert("labels".into(), json!(n.labels));
        }
        networks.insert(key.clone(), Value::Object(o));
    }
    if !networks.is_empty() {
        doc.insert("networks".into(), Value::Object(networks));
    }
    Value::Object(doc)
}

/// The key of a volume in the exported file: an anonymous one is named by its engine name.
fn volume_key(key: &str, name: &str) -> String {
    if key.starts_with(super::service::ANONYMOUS) {
        name.to_owned()
    } else {
        key.to_owned()
    }
}

/// The host's secret values, longest first, and the variable each comes from.
struct SecretRefs(Vec<(String, String)>);

impl SecretRefs {
    fn new(vars: &HostVars) -> SecretRefs {
        let mut refs: Vec<(String, String)> = vars
            .secrets
            .iter()
            .filter_map(|(name, v)| v.expose().as_str().map(|s| (s.to_owned(), name.clone())))
            .filter(|(value, _)| value.len() >= 4)
            .collect();
        refs.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        SecretRefs(refs)
    }

    /// `text` for compose: `$` doubled, each secret value a `${name}` reference.
    fn text(&self, text: &str) -> String {
        let mut out = text.replace('$', "$$");
        for (value, name) in &self.0 {
            let escaped = value.replace('$', "$$");
            if out.contains(&escaped) {
                out = out.replace(&escaped, &format!("${{{name}}}"));
            }
        }
        out
    }

    fn list(&self, items: &[String]) -> Value {
        json!(items.iter().map(|i| self.text(i)).collect::<Vec<_>>())
    }

    fn map(&self, m: &BTreeMap<String, String>) -> Value {
        json!(
            m.iter()
                .map(|(k, v)| (k.clone(), self.text(v)))
                .collect::<BTreeMap<_, _>>()
        )
    }
}

fn service(svc: &Service, stack: &Stack, refs: &SecretRefs) -> Value {
    let mut o = Map::new();
    o.insert("image".into(), json!(svc.image));
    if let Some(n) = &svc.container_name {
        o.insert("container_name".into(), json!(n));
    }
    if let Some(c) = &svc.command {
        o.insert("command".into(), refs.list(c));
    }
    if let Some(e) = &svc.entrypoint {
        o.insert("entrypoint".into(), refs.list(e));
    }
    if !svc.environment.is_empty() {
        o.insert("environment".into(), refs.map(&svc.environment));
    }
    if !svc.ports.is_empty() {
        let ports: Vec<Value> = svc
            .ports
            .iter()
            .map(|p| {
                let mut m = Map::new();
                m.insert("target".into(), json!(p.target));
                if let Some(published) = p.published {
                    m.insert("published".into(), json!(published.to_string()));
                }
                if !p.host_ip.is_empty() {
                    m.insert("host_ip".into(), json!(p.host_ip));
                }
                m.insert("protocol".into(), json!(p.protocol));
                Value::Object(m)
            })
            .collect();
        o.insert("ports".into(), json!(ports));
    }
    if !svc.mounts.is_empty() {
        let mounts: Vec<Value> = svc
            .mounts
            .iter()
            .map(|m| {
                let (kind, source) = match &m.source {
                    MountSource::Volume(key) => {
                        let name = stack.volumes.get(key).map(|v| v.name.as_str()).unwrap_or(key);
                        ("volume", volume_key(key, name))
                    }
                    MountSource::Bind(path) => ("bind", path.clone()),
                };
                json!({"type": kind, "source": source, "target": m.target, "read_only": m.read_only})
            })
            .collect();
        o.insert("volumes".into(), json!(mounts));
    }
    match &svc.network_mode {
        Some(mode) => {
            o.insert("network_mode".into(), json!(mode));
        }
        None => {
            let nets: Map<String, Value> = svc
                .networks
                .iter()
                .map(|(n, aliases)| {
                    let mut body = Map::new();
                    if !aliases.is_empty() {
                        body.insert("aliases".into(), json!(aliases));
                    }
                    if let Some(a) = svc.addresses.get(n) {
                        for (key, ip) in [("ipv4_address", &a.ipv4), ("ipv6_address", &a.ipv6)] {
                            if let Some(ip) = ip {
                                body.insert(key.into(), json!(ip));
                            }
                        }
                    }
                    let body = if body.is_empty() {
                        Value::Null
                    } else {
                        Value::Object(body)
                    };
                    (n.clone(), body)
                })
                .collect();
            o.insert("networks".into(), Value::Object(nets));
        }
    }
    if let Some(h) = &svc.healthcheck {
        let mut m = Map::new();
        if h.test.first().is_some_and(|t| t == "NONE") {
            m.insert("disable".into(), json!(true));
        } else {
            m.insert("test".into(), refs.list(&h.test));
            for (key, ns) in [
                ("interval", h.interval_ns),
                ("timeout", h.timeout_ns),
                ("start_period", h.start_period_ns),
            ] {
                if let Some(ns) = ns {
                    m.insert(key.into(), json!(duration(ns)));
                }
            }
            if let Some(r) = h.retries {
                m.insert("retries".into(), json!(r));
            }
        }
        o.insert("healthcheck".into(), Value::Object(m));
    }
    if !svc.depends_on.is_empty() {
        let deps: Map<String, Value> = svc
            .depends_on
            .iter()
            .map(|(n, c)| {
                let condition = serde_json::to_value(c.kind).unwrap_or_default();
                (
                    n.clone(),
                    json!({"condition": condition, "required": c.required}),
                )
            })
            .collect();
        o.insert("depends_on".into(), Value::Object(deps));
    }
    o.insert("restart".into(), json!(svc.restart));
    if !svc.labels.is_empty() {
        o.insert("labels".into(), refs.map(&svc.labels));
    }
    if !svc.extra_hosts.is_empty() {
        o.insert("extra_hosts".into(), json!(svc.extra_hosts));
    }
    for (key, value) in [
        ("user", &svc.user),
        ("working_dir", &svc.working_dir),
        ("hostname", &svc.hostname),
    ] {
        if let Some(v) = value {
            o.insert(key.into(), json!(v));
        }
    }
    if let Some(s) = svc.stop_grace_period_s {
        o.insert("stop_grace_period".into(), json!(format!("{s}s")));
    }
    runtime(&svc.runtime, &mut o);
    if svc.replicas > 1 {
        let deploy = o.entry("deploy").or_insert_with(|| json!({}));
        if let Value::Object(d) = deploy {
            d.insert("replicas".into(), json!(svc.replicas));
        }
    }
    if svc.update != UpdateConfig::compose_default() {
        let u = &svc.update;
        let deploy = o.entry("deploy").or_insert_with(|| json!({}));
        if let Value::Object(d) = deploy {
            d.insert(
                "update_config".into(),
                json!({
                    "parallelism": u.parallelism,
                    "delay": format!("{}s", u.delay_s),
                    "monitor": format!("{}s", u.monitor_s),
                    "order": u.order,
                    "failure_action": u.failure_action,
                }),
            );
        }
    }
    Value::Object(o)
}

/// The runtime options that differ from the engine's defaults, under compose's keys.
fn runtime(rt: &Runtime, o: &mut Map<String, Value>) {
    let mut put = |key: &str, v: Value| {
        o.insert(key.into(), v);
    };
    for (key, list) in [
        ("cap_add", &rt.cap_add),
        ("cap_drop", &rt.cap_drop),
        ("security_opt", &rt.security_opt),
        ("devices", &rt.devices),
        ("dns", &rt.dns),
        ("dns_search", &rt.dns_search),
        ("dns_opt", &rt.dns_opt),
        ("group_add", &rt.group_add),
        ("expose", &rt.expose),
    ] {
        if !list.is_empty() {
            put(key, json!(list));
        }
    }
    for (key, flag) in [
        ("privileged", rt.privileged),
        ("read_only", rt.read_only),
        ("stdin_open", rt.stdin_open),
        ("tty", rt.tty),
    ] {
        if flag {
            put(key, json!(true));
        }
    }
    if let Some(i) = rt.init {
        put("init", json!(i));
    }
    if !rt.tmpfs.is_empty() {
        let tmpfs: Vec<String> = rt
            .tmpfs
            .iter()
            .map(|(p, opts)| {
                if opts.is_empty() {
                    p.clone()
                } else {
                    format!("{p}:{opts}")
                }
            })
            .collect();
        put("tmpfs", json!(tmpfs));
    }
    if !rt.sysctls.is_empty() {
        put("sysctls", json!(rt.sysctls));
    }
    if let Some(s) = rt.shm_size {
        put("shm_size", json!(s.to_string()));
    }
    if !rt.ulimits.is_empty() {
        let u: Map<String, Value> = rt
            .ulimits
            .iter()
            .map(|(k, (soft, hard))| (k.clone(), json!({"soft": soft, "hard": hard})))
            .collect();
        put("ulimits", Value::Object(u));
    }
    for (key, value) in [
        ("stop_signal", &rt.stop_signal),
        ("runtime", &rt.runtime),
        ("pid", &rt.pid),
        ("ipc", &rt.ipc),
    ] {
        if let Some(v) = value {
            put(key, json!(v));
        }
    }
    if let Some(l) = &rt.logging {
        put("logging", json!({"driver": l.driver, "options": l.options}));
    }
    if let Some(m) = rt.memswap_limit {
        put("memswap_limit", json!(m.to_string()));
    }
    if let Some(c) = rt.cpu_shares {
        put("cpu_shares", json!(c));
    }
    let mut limits = Map::new();
    if let Some(n) = rt.nano_cpus {
        limits.insert("cpus".into(), json!(format!("{}", n as f64 / 1e9)));
    }
    if let Some(m) = rt.memory {
        limits.insert("memory".into(), json!(m.to_string()));
    }
    if let Some(p) = rt.pids_limit {
        limits.insert("pids".into(), json!(p));
    }
    let mut resources = Map::new();
    if !limits.is_empty() {
        resources.insert("limits".into(), Value::Object(limits));
    }
    if let Some(m) = rt.memory_reservation {
        resources.insert("reservations".into(), json!({"memory": m.to_string()}));
    }
    if !resources.is_empty() {
        put("deploy", json!({ "resources": resources }));
    }
}

/// A duration as compose writes it (`30s`, `500ms`).
fn duration(ns: u64) -> String {
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{}us", ns / 1_000)
    }
}

/// The document as YAML.
pub fn to_yaml(doc: &Value) -> String {
    serde_saphyr::to_string(doc).unwrap_or_default()
}
