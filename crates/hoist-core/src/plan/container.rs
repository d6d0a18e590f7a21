//! Field-by-field comparison of a desired container with what the engine reports.
//!
//! The engine fills in defaults (the image's environment, command, user and healthcheck; the
//! restart policy `no`; a 10 s stop timeout; its own network aliases; both IPv4 and IPv6 port
//! bindings), so both sides are normalised first and only real differences become reasons.
//! Environment values are never shown: they may be secrets.

use std::collections::{BTreeMap, BTreeSet};

use crate::desired::{ContainerSpec, MountSpec, StaticAddress, labels};
use crate::observed::ObservedContainer;
use crate::stack::{Health, Port};

use super::{Reason, normalize_image};
use crate::secret::Redactor;

/// Docker's stop timeout when none is set.
const DEFAULT_STOP_TIMEOUT_S: u64 = 10;

pub(super) fn explain(
    want: &ContainerSpec,
    have: &ObservedContainer,
    redactor: &Redactor,
) -> Vec<Reason> {
    // A desired value that holds a secret is shown as changed, never old and new: after a
    // rotation the host's old value is a secret no input knows any more.
    let shown = |old: String, new: String| {
        if redactor.contains_secret(&new) || redactor.contains_secret(&old) {
            "changed (holds a secret)".to_owned()
        } else {
            format!("{old} -> {new}")
        }
    };
    let mut out = Vec::new();
    let d = &have.image_defaults;

    if normalize_image(&want.image) != normalize_image(&have.image) {
        out.push(Reason::new(
            "image",
            format!("{} -> {}", have.image, want.image),
        ));
    }
    // The engine fills in the image's command only when the entrypoint is not set (compose's rule).
    let want_cmd = match (&want.command, &want.entrypoint) {
        (Some(c), _) => Some(c.clone()),
        (None, None) => d.cmd.clone(),
        (None, Some(_)) => None,
    };
    if want_cmd.clone().unwrap_or_default() != have.cmd.clone().unwrap_or_default() {
        out.push(Reason::new(
            "command",
            shown(words(&have.cmd), words(&want_cmd)),
        ));
    }
    let want_ep = want.entrypoint.clone().or_else(|| d.entrypoint.clone());
    if want_ep.clone().unwrap_or_default() != have.entrypoint.clone().unwrap_or_default() {
        out.push(Reason::new(
            "entrypoint",
            shown(words(&have.entrypoint), words(&want_ep)),
        ));
    }
    out.extend(env_reasons(want, have));

    let have_ports = normalize_ports(&have.ports);
    if have_ports != want.ports {
        out.push(Reason::new(
            "ports",
            format!("{} -> {}", ports(&have_ports), ports(&want.ports)),
        ));
    }
    let mut have_mounts: Vec<MountSpec> = have
        .mounts
        .iter()
        .map(|m| MountSpec {
            kind: m.kind.clone(),
            source: m.source.clone(),
            target: m.target.clone(),
            read_only: m.read_only,
        })
        .collect();
    have_mounts.sort_by(|a, b| a.target.cmp(&b.target));
    let mut want_mounts = want.mounts.clone();
    want_mounts.sort_by(|a, b| a.target.cmp(&b.target));
    if have_mounts != want_mounts {
        out.push(Reason::new(
            "mounts",
            format!("{} -> {}", mounts(&have_mounts), mounts(&want_mounts)),
        ));
    }
    // Network -> the aliases asked for (the engine's own left out).
    let asked = |nets: &BTreeMap<String, Vec<String>>| -> BTreeMap<String, BTreeSet<String>> {
        nets.iter()
            .map(|(n, a)| {
                (
                    n.clone(),
                    a.iter()
                        .filter(|a| !engine_alias(a, &want.name))
                        .cloned()
                        .collect(),
                )
            })
            .collect()
    };
    let (have_nets, want_nets) = (asked(&have.networks), asked(&want.networks));
    if have_nets != want_nets {
        out.push(Reason::new(
            "networks",
            format!("{} -> {}", nets(&have_nets), nets(&want_nets)),
        ));
    }
    // The addresses asked for, network by network, each under its compose key.
    let no_address = StaticAddress::default();
    let engine_networks: BTreeSet<&String> =
        want.addresses.keys().chain(have.addresses.keys()).collect();
    for n in engine_networks {
        let (was, now) = (
            have.addresses.get(n).unwrap_or(&no_address),
            want.addresses.get(n).unwrap_or(&no_address),
        );
        for (key, was, now) in [
            ("ipv4_address", &was.ipv4, &now.ipv4),
            ("ipv6_address", &was.ipv6, &now.ipv6),
        ] {
            if was != now {
                let or_unset = |a: &Option<String>| a.clone().unwrap_or_else(|| "unset".into());
                out.push(Reason::new(
                    format!("networks.{n}.{key}"),
                    format!("{} -> {}", or_unset(was), or_unset(now)),
                ));
            }
        }
    }
    let want_health = want
        .healthcheck
        .clone()
        .or_else(|| d.healthcheck.clone())
        .map(normalize_health);
    let have_health = have.healthcheck.clone().map(normalize_health);
    if want_health != have_health {
        out.push(Reason::new(
            "healthcheck",
            shown(health(&have_health), health(&want_health)),
        ));
    }
    let have_restart = if have.restart.is_empty() {
        "no"
    } else {
        have.restart.as_str()
    };
    if have_restart != want.restart {
        out.push(Reason::new(
            "restart",
            format!("{have_restart} -> {}", want.restart),
        ));
    }
    let mut have_hosts = have.extra_hosts.clone();
    have_hosts.sort();
    if have_hosts != want.extra_hosts {
        out.push(Reason::new(
            "extra_hosts",
            format!("{} -> {}", have_hosts.join(","), want.extra_hosts.join(",")),
        ));
    }
    let want_user = want.user.clone().unwrap_or_else(|| d.user.clone());
    if want_user != have.user {
        out.push(Reason::new(
            "user",
            format!("{:?} -> {:?}", have.user, want_user),
        ));
    }
    let want_wd = want
        .working_dir
        .clone()
        .unwrap_or_else(|| d.working_dir.clone());
    if want_wd != have.working_dir && !(want_wd.is_empty() && have.working_dir == "/") {
        out.push(Reason::new(
            "working_dir",
            format!("{:?} -> {:?}", have.working_dir, want_wd),
        ));
    }
    if let Some(h) = &want.hostname
        && h != &have.hostname
    {
        out.push(Reason::new(
            "hostname",
            format!("{:?} -> {h:?}", have.hostname),
        ));
    }
    let want_stop = want.stop_grace_period_s.unwrap_or(DEFAULT_STOP_TIMEOUT_S);
    let have_stop = have.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT_S);
    if want_stop != have_stop {
        out.push(Reason::new(
            "stop_grace_period",
            format!("{have_stop}s -> {want_stop}s"),
        ));
    }
    // Labels: the image's own labels are merged in by the engine; hoist's are compared through the hash.
    let have_labels: BTreeMap<&String, &String> = have
        .labels
        .iter()
        .filter(|(k, v)| {
            !k.starts_with("io.hoist.")
                && !k.starts_with("com.docker.compose.")
                && (want.labels.contains_key(*k) || d.labels.get(*k) != Some(*v))
        })
        .collect();
    let want_labels: BTreeMap<&String, &String> = want.labels.iter().collect();
    if have_labels != want_labels {
        let keys: BTreeSet<&String> = have_labels
            .keys()
            .chain(want_labels.keys())
            .copied()
            .collect();
        let changed: Vec<String> = keys
            .into_iter()
            .filter(|k| have_labels.get(k) != want_labels.get(k))
            .map(|k| k.to_string())
            .collect();
        out.push(Reason::new(
            "labels",
            format!("{} changed", changed.join(", ")),
        ));
    }
    let _ = labels::CONFIG_HASH;
    out.extend(
        runtime_reasons(want, have)
            .into_iter()
            .map(|(key, old, new)| Reason::new(key, shown(old, new))),
    );
    out
}

/// Each runtime option that differs, under its compose name. The engine reports what the image
/// and the published ports add (a stop signal, exposed ports), so those are added to what was asked.
fn runtime_reasons(
    want: &ContainerSpec,
    have: &ObservedContainer,
) -> Vec<(&'static str, String, String)> {
    // An engine always reports some (a 64 MiB /dev/shm, its runtime): none at all is a snapshot
    // recorded before hoist observed them, which says nothing about them.
    if have.runtime.is_default() {
        return Vec::new();
    }
    let d = &have.image_defaults;
    let mut asked = want.runtime.clone();
    asked.stop_signal = asked.stop_signal.or_else(|| d.stop_signal.clone());
    asked.expose.extend(d.exposed.iter().cloned());
    asked.expose.extend(
        want.ports
            .iter()
            .map(|p| format!("{}/{}", p.target, p.protocol)),
    );
    let mut reported = have.runtime.clone();
    // What was not asked for is the daemon's or the image's to decide (its log options, IPC mode,
    // `init`, default /dev/shm and pids limit, the swap it derives from a memory limit): only
    // what was asked is compared.
    match (&asked.logging, &mut reported.logging) {
        (None, r) => *r = None,
        // The daemon merges its default log options into a container of its default driver.
        (Some(a), Some(r)) if a.driver == r.driver => {
            r.options.retain(|k, _| a.options.contains_key(k));
        }
        _ => {}
    }
    if asked.memswap_limit.is_none() {
        reported.memswap_limit = None;
    }
    if asked.ipc.is_none() {
        reported.ipc = None;
    }
    if asked.init.is_none() {
        reported.init = None;
    }
    if asked.shm_size.is_none() {
        reported.shm_size = None;
    }
    if asked.pids_limit.is_none() {
        reported.pids_limit = None;
    }
    if asked.stop_signal.is_none() {
        reported.stop_signal = None;
    }
    // The engine adds `label=disable` for a privileged container or a host PID or IPC namespace.
    if !asked.security_opt.iter().any(|o| o.starts_with("label=")) {
        reported.security_opt.retain(|o| o != "label=disable");
    }
    asked
        .entries()
        .into_iter()
        .zip(reported.entries())
        .filter(|((_, a), (_, r))| a != r)
        .map(|((key, a), (_, r))| {
            let shown = |v: String| if v.is_empty() { "unset".to_owned() } else { v };
            (key, shown(r), shown(a))
        })
        .collect()
}

/// Environment differences by key; values are never shown.
fn env_reasons(want: &ContainerSpec, have: &ObservedContainer) -> Vec<Reason> {
    let parse = |list: &[String]| -> BTreeMap<String, String> {
        list.iter()
            .map(|e| {
                e.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .unwrap_or((e.clone(), String::new()))
            })
            .collect()
    };
    let defaults = parse(&have.image_defaults.env);
    let mut have_env = parse(&have.env);
    // A variable the image sets, left as the image set it, was not asked for.
    have_env.retain(|k, v| want.env.contains_key(k) || defaults.get(k) != Some(v));
    let mut out = Vec::new();
    let keys: BTreeSet<&String> = have_env.keys().chain(want.env.keys()).collect();
    for k in keys {
        match (have_env.get(k), want.env.get(k)) {
            (None, Some(_)) => out.push(Reason::new(format!("env {k}"), "added")),
            (Some(_), None) => out.push(Reason::new(format!("env {k}"), "removed")),
            (Some(a), Some(b)) if a != b => {
                out.push(Reason::new(format!("env {k}"), "value changed"))
            }
            _ => {}
        }
    }
    out
}

/// Docker reports a binding on all addresses twice (0.0.0.0 and ::); both mean "every address".
fn normalize_ports(ports: &[Port]) -> Vec<Port> {
    let mut out: Vec<Port> = ports
        .iter()
        .map(|p| {
            let host_ip = if matches!(p.host_ip.as_str(), "0.0.0.0" | "::" | "[::]") {
                String::new()
            } else {
                p.host_ip.clone()
            };
            let protocol = if p.protocol.is_empty() {
                "tcp".into()
            } else {
                p.protocol.clone()
            };
            Port {
                host_ip,
                protocol,
                ..p.clone()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn normalize_health(mut h: Health) -> Health {
    let zero = |v: Option<u64>| v.filter(|n| *n != 0);
    h.interval_ns = zero(h.interval_ns);
    h.timeout_ns = zero(h.timeout_ns);
    h.start_period_ns = zero(h.start_period_ns);
    h.retries = zero(h.retries);
    h
}

/// Aliases the engine adds by itself: the container's name and short id.
fn engine_alias(alias: &str, name: &str) -> bool {
    alias == name || (alias.len() == 12 && alias.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn words(w: &Option<Vec<String>>) -> String {
    match w {
        None => "(image default)".into(),
        Some(w) => shlex::try_join(w.iter().map(String::as_str)).unwrap_or_default(),
    }
}

fn ports(p: &[Port]) -> String {
    if p.is_empty() {
        return "(none)".into();
    }
    p.iter()
        .map(|p| {
            let ip = if p.host_ip.is_empty() {
                String::new()
            } else {
                format!("{}:", p.host_ip)
            };
            let published = p.published.map(|n| format!("{n}:")).unwrap_or_default();
            format!("{ip}{published}{}/{}", p.target, p.protocol)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn mounts(m: &[MountSpec]) -> String {
    if m.is_empty() {
        return "(none)".into();
    }
    m.iter()
        .map(|m| {
            format!(
                "{}:{}{}",
                m.source,
                m.target,
                if m.read_only { ":ro" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn nets(n: &BTreeMap<String, BTreeSet<String>>) -> String {
    n.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn health(h: &Option<Health>) -> String {
    match h {
        None => "(none)".into(),
        Some(h) => shlex::try_join(h.test.iter().map(String::as_str)).unwrap_or_default(),
    }
}
