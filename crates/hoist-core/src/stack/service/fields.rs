//! The smaller fields: `ports`, `networks`, `healthcheck`, `depends_on`, `extra_hosts` and
//! durations.

use std::collections::BTreeMap;

use super::{Condition, ConditionKind, Health, Port};
use crate::desired::StaticAddress;
use crate::diag::Kind;
use crate::yaml::{self, Ctx, Node, Value};

pub(super) fn port(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<Port> {
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

/// Network -> aliases, and network -> the address asked for on it (checked against the
/// network's pools once the stack's networks are known).
pub(super) fn networks(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
) -> (
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, StaticAddress>,
) {
    let mut out = BTreeMap::new();
    let mut addresses = BTreeMap::new();
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
                    let mut address = StaticAddress::default();
                    for (key, v6, slot) in [
                        ("ipv4_address", false, &mut address.ipv4),
                        ("ipv6_address", true, &mut address.ipv6),
                    ] {
                        let Some(n) = f.get(key) else { continue };
                        let kp = yaml::join(&np, key);
                        let Some(text) = ctx.string(n, &kp) else {
                            continue;
                        };
                        match text.parse::<std::net::IpAddr>() {
                            Ok(ip) if ip.is_ipv6() == v6 => *slot = Some(ip.to_string()),
                            _ => ctx.error(
                                n.loc,
                                &kp,
                                Kind::InvalidValue,
                                format!(
                                    "{text:?} is not an {} address",
                                    if v6 { "IPv6" } else { "IPv4" }
                                ),
                            ),
                        }
                    }
                    if address != StaticAddress::default() {
                        addresses.insert(name.clone(), address);
                    }
                    for key in [
                        "link_local_ips",
                        "mac_address",
                        "priority",
                        "gw_priority",
                        "driver_opts",
                        "interface_name",
                    ] {
                        if let Some(n) = f.get(key) {
                            ctx.error(
                                n.loc,
                                &yaml::join(&np, key),
                                Kind::Unsupported,
                                "not supported yet: the engine chooses it; reach the service by its name",
                            );
                        }
                    }
                    f.finish(ctx, true);
                }
                out.insert(name, aliases);
            }
        }
    }
    (out, addresses)
}

pub(super) fn healthcheck(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<Health> {
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

pub(super) fn depends_on(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> BTreeMap<String, Condition> {
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

pub(super) fn extra_hosts(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Vec<String> {
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

pub(super) fn duration_field(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<u64> {
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
