//! Networks and volumes as the engine has them, against what the stacks ask: what differs, by
//! compose key.

use crate::desired::{IpamPool, NetworkSpec, VolumeSpec};
use crate::observed::{ObservedNetwork, ObservedVolume};

use super::Reason;

/// What differs between network `want` and the one the engine has, by key: its driver (when the
/// engine says), whether it is internal or has IPv6, and the driver options and pools asked for.
/// What was not asked is the engine's to decide (a pool of its choosing, its own options); a
/// snapshot recorded before hoist observed a network's options (no pool at all) says nothing
/// about them.
pub(super) fn network_reasons(want: &NetworkSpec, have: &ObservedNetwork) -> Vec<Reason> {
    let mut out = Vec::new();
    if !have.driver.is_empty() && have.driver != want.driver {
        out.push(Reason::new(
            "driver",
            format!("{} -> {}", have.driver, want.driver),
        ));
    }
    let (w, h) = (&want.options, &have.options);
    if h.ipam.is_empty() {
        return out;
    }
    for (key, was, now) in [
        ("internal", h.internal, w.internal),
        ("enable_ipv6", h.enable_ipv6, w.enable_ipv6),
    ] {
        if was != now {
            out.push(Reason::new(key, format!("{was} -> {now}")));
        }
    }
    for (key, now) in &w.driver_opts {
        let was = h.driver_opts.get(key);
        if was != Some(now) {
            out.push(Reason::new(
                format!("driver_opts.{key}"),
                format!("{} -> {now}", was.map_or("unset", String::as_str)),
            ));
        }
    }
    if !w.ipam.iter().all(|p| h.ipam.iter().any(|o| holds(o, p))) {
        let shown = |pools: &[IpamPool]| {
            pools
                .iter()
                .map(|p| {
                    let mut s = p.subnet.clone();
                    if let Some(g) = &p.gateway {
                        s.push_str(&format!(" gateway {g}"));
                    }
                    if let Some(r) = &p.ip_range {
                        s.push_str(&format!(" range {r}"));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(Reason::new(
            "ipam",
            format!("{} -> {}", shown(&h.ipam), shown(&w.ipam)),
        ));
    }
    out
}

/// Whether the engine's pool `have` is the pool `asked`: its subnet, and the gateway and range
/// where they were asked (the engine picks a gateway otherwise).
fn holds(have: &IpamPool, asked: &IpamPool) -> bool {
    fn same<T: std::str::FromStr + PartialEq>(a: &str, b: &str) -> bool {
        match (a.parse::<T>(), b.parse::<T>()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        }
    }
    let same_ip = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (_, None) => true,
        (Some(a), Some(b)) => same::<std::net::IpAddr>(a, b),
        (None, Some(_)) => false,
    };
    let same_net = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (_, None) => true,
        (Some(a), Some(b)) => same::<ipnet::IpNet>(a, b),
        (None, Some(_)) => false,
    };
    same::<ipnet::IpNet>(&have.subnet, &asked.subnet)
        && same_ip(&have.gateway, &asked.gateway)
        && same_net(&have.ip_range, &asked.ip_range)
}

/// A volume holds data: one created with other driver options is never recreated by hoist. The
/// plan says so, and what to do.
pub(super) fn volume_note(want: &VolumeSpec, have: &ObservedVolume) -> Option<String> {
    let mut differ: Vec<String> = want
        .options
        .driver_opts
        .iter()
        .filter(|(k, v)| have.driver_opts.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "driver_opts.{k}: {} -> {v}",
                have.driver_opts.get(k).map_or("unset", String::as_str)
            )
        })
        .collect();
    if !have.driver.is_empty() && have.driver != want.driver {
        differ.insert(0, format!("driver: {} -> {}", have.driver, want.driver));
    }
    (!differ.is_empty()).then(|| {
        format!(
            "volume {} was created with other options ({}): hoist does not recreate a volume, whose data would go; move the data, remove the volume (`docker volume rm {}`) and apply again",
            want.name,
            differ.join(", "),
            want.name
        )
    })
}
