//! `deploy.update_config`: how apply replaces a service's containers when they change (compose's
//! rolling update, run on one host), and `x-hoist.reload`, the signal that makes a service that
//! depends on it pick up the replacement without a restart.

use serde::{Deserialize, Serialize};

use super::fields::duration_field;
use crate::diag::Kind;
use crate::yaml::{self, Ctx, Node};

/// Which container runs while the other is replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// The old container stops, then the new one starts (compose's default): a host port or a
    /// volume one process must own alone is handed over.
    #[default]
    StopFirst,
    /// The new container starts beside the old one and passes its health gate before the old
    /// one stops: the service keeps answering through its network alias.
    StartFirst,
}

/// What a failed update does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// The previous container runs again and the new one is removed.
    #[default]
    Rollback,
    /// The previous container runs again; the new one is kept, stopped, under its scratch name
    /// (`<name>.hoist-new`) for its logs.
    Pause,
}

/// A service's `deploy.update_config`, as apply runs it on each host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateConfig {
    pub order: UpdateOrder,
    /// Replicas replaced at once; 0 is all of them.
    pub parallelism: u32,
    /// Between two batches.
    pub delay_s: u64,
    /// How long a new container must stay up (and healthy, with a healthcheck) after its gate
    /// before the update goes on.
    pub monitor_s: u64,
    pub failure_action: FailureAction,
}

impl UpdateConfig {
    /// Compose's defaults (one at a time, stop-first, no delay or monitor window), but a failed
    /// update is rolled back (compose pauses it; hoist stops the apply either way, and leaves the
    /// previous container serving).
    pub fn compose_default() -> UpdateConfig {
        UpdateConfig {
            order: UpdateOrder::StopFirst,
            parallelism: 1,
            delay_s: 0,
            monitor_s: 0,
            failure_action: FailureAction::Rollback,
        }
    }
}

impl Default for UpdateConfig {
    fn default() -> UpdateConfig {
        UpdateConfig::compose_default()
    }
}

const SECOND: u64 = 1_000_000_000;

/// Decodes `deploy.update_config` at `p`.
pub(super) fn update_config(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<UpdateConfig> {
    let mut f = ctx.fields(v, p)?;
    let mut u = UpdateConfig::compose_default();
    if let Some(n) = f.get("parallelism") {
        let np = yaml::join(p, "parallelism");
        if let Some(k) = ctx.u64(n, &np) {
            u.parallelism = u32::try_from(k).unwrap_or(u32::MAX);
        }
    }
    for (key, slot) in [("delay", &mut u.delay_s), ("monitor", &mut u.monitor_s)] {
        if let Some(n) = f.get(key)
            && let Some(ns) = duration_field(ctx, n, &yaml::join(p, key))
        {
            *slot = ns.div_ceil(SECOND);
        }
    }
    if let Some(n) = f.get("order") {
        let op = yaml::join(p, "order");
        match ctx.string(n, &op).as_deref() {
            Some("stop-first") => u.order = UpdateOrder::StopFirst,
            Some("start-first") => u.order = UpdateOrder::StartFirst,
            Some(other) => ctx.error(
                n.loc,
                &op,
                Kind::InvalidValue,
                format!("{other:?} is not an update order (stop-first, start-first)"),
            ),
            None => {}
        }
    }
    if let Some(n) = f.get("failure_action") {
        let fp = yaml::join(p, "failure_action");
        match ctx.string(n, &fp).as_deref() {
            Some("rollback") => u.failure_action = FailureAction::Rollback,
            Some("pause") => u.failure_action = FailureAction::Pause,
            Some("continue") => ctx.error(
                n.loc,
                &fp,
                Kind::Unsupported,
                "hoist never goes on past a container that failed its gate: use rollback or pause",
            ),
            Some(other) => ctx.error(
                n.loc,
                &fp,
                Kind::InvalidValue,
                format!("{other:?} is not a failure action (rollback, pause)"),
            ),
            None => {}
        }
    }
    if let Some(n) = f.get("max_failure_ratio") {
        let mp = yaml::join(p, "max_failure_ratio");
        if ctx
            .string(n, &mp)
            .is_some_and(|r| r.parse::<f64>() != Ok(0.0))
        {
            ctx.error(
                n.loc,
                &mp,
                Kind::Unsupported,
                "hoist stops a service's update at its first failure: only 0 is supported",
            );
        }
    }
    f.finish(ctx, false);
    Some(u)
}

/// `x-hoist.reload` of a service: the signal its main process reloads its configuration on
/// (`SIGHUP`, `HUP`, or a number).
pub(super) fn reload_signal(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> Option<String> {
    let s = ctx.string(v, p)?;
    let name = s.strip_prefix("SIG").unwrap_or(&s);
    let known = [
        "HUP", "INT", "QUIT", "USR1", "USR2", "TERM", "WINCH", "ALRM", "CONT",
    ];
    if known.contains(&name) || s.parse::<u8>().is_ok_and(|n| n > 0 && n < 65) {
        Some(s)
    } else {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            format!("{s:?} is not a signal to reload on (like SIGHUP or SIGUSR2)"),
        );
        None
    }
}
