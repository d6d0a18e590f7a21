//! Health gates: what a container must reach before what depends on it starts. [`gate_state`]
//! decides from one reading of the container's state; [`wait`] only polls it.

use std::time::Duration;

use hoist_core::stack::ConditionKind;
use hoist_remote::Engine;
use hoist_remote::engine::{ContainerState, Health};
use hoist_remote::error::{RemoteError, Result};
use tokio_util::sync::CancellationToken;

/// What a container must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Running,
    Healthy,
    Completed,
}

impl From<ConditionKind> for Gate {
    fn from(k: ConditionKind) -> Gate {
        match k {
            ConditionKind::ServiceStarted => Gate::Running,
            ConditionKind::ServiceHealthy => Gate::Healthy,
            ConditionKind::ServiceCompletedSuccessfully => Gate::Completed,
        }
    }
}

/// Where a gate stands after one reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateState {
    /// Not there yet: read again.
    Wait,
    Ready,
    /// It exited, with this code, and will not get there: its logs say why.
    Exited(i64),
    /// It runs but will not get there (unhealthy, or no healthcheck to wait for).
    Failed(String),
}

/// Decides `gate` for container `name` from its `state`.
pub fn gate_state(name: &str, gate: Gate, state: &ContainerState) -> GateState {
    let exited = state.status == "exited" || state.status == "dead";
    let code = state.exit_code.unwrap_or(-1);
    match gate {
        Gate::Completed if exited && code == 0 => GateState::Ready,
        Gate::Completed if exited => GateState::Exited(code),
        Gate::Completed => GateState::Wait,
        _ if exited => GateState::Exited(code),
        Gate::Running if state.status == "running" => GateState::Ready,
        Gate::Running => GateState::Wait,
        Gate::Healthy => match state.health {
            Health::Healthy => GateState::Ready,
            Health::Unhealthy => {
                GateState::Failed(format!("{name} is unhealthy: {}", last_health(state)))
            }
            Health::None if state.status == "running" => {
                GateState::Failed(format!("{name} has no healthcheck to wait for"))
            }
            Health::None | Health::Starting => GateState::Wait,
        },
    }
}

fn last_health(state: &ContainerState) -> &str {
    state.last_health.as_deref().unwrap_or("(none yet)")
}

/// How often a gate reads the container's state.
const POLL: Duration = Duration::from_millis(500);

/// Waits for `name` to reach `gate`; a failure or a timeout carries the last health output or the
/// tail of the logs.
pub async fn wait<E: Engine>(
    host: &str,
    engine: &E,
    name: &str,
    gate: Gate,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<()> {
    wait_as(host, engine, name, gate, timeout, cancel, false).await
}

/// [`wait`] for a container that replaces another: one the engine restarts has exited, and
/// that is a failure at once (a dependency may be restarted into shape; a new release that
/// crashes is not waited for).
pub async fn wait_new<E: Engine>(
    host: &str,
    engine: &E,
    name: &str,
    gate: Gate,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<()> {
    wait_as(host, engine, name, gate, timeout, cancel, true).await
}

/// Reads `name` for `window` after its gate: it must keep running, and stay healthy when it
/// has a healthcheck. A zero window reads nothing.
pub async fn monitor<E: Engine>(
    host: &str,
    engine: &E,
    name: &str,
    window: Duration,
    cancel: &CancellationToken,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            () = tokio::time::sleep(POLL.min(window)) => {}
            () = cancel.cancelled() => {
                return Err(RemoteError::cancelled(host, &format!("while watching {name}")));
            }
        }
        let state = engine.state(name).await?;
        if state.status != "running" {
            let logs = engine.logs_tail(name, 20).await;
            return Err(RemoteError::other(
                host,
                format!(
                    "{name} stopped running ({}) within {window:?} of its gate; last logs:\n{logs}",
                    state.status
                ),
            ));
        }
        if state.health == Health::Unhealthy {
            return Err(RemoteError::other(
                host,
                format!(
                    "{name} became unhealthy within {window:?} of its gate: {}",
                    last_health(&state)
                ),
            ));
        }
    }
    Ok(())
}

async fn wait_as<E: Engine>(
    host: &str,
    engine: &E,
    name: &str,
    gate: Gate,
    timeout: Duration,
    cancel: &CancellationToken,
    new: bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut state = engine.state(name).await?;
        if new && state.status == "restarting" {
            state.status = "exited".into();
        }
        match gate_state(name, gate, &state) {
            GateState::Ready => return Ok(()),
            GateState::Failed(why) => return Err(RemoteError::other(host, why)),
            GateState::Exited(code) => {
                let logs = engine.logs_tail(name, 20).await;
                return Err(RemoteError::other(
                    host,
                    format!("{name} exited with {code}; last logs:\n{logs}"),
                ));
            }
            GateState::Wait => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let detail = match gate {
                Gate::Healthy => format!(
                    "{name} not healthy after {timeout:?}; last health check: {}",
                    last_health(&state)
                ),
                _ => format!(
                    "{name} still {} after {timeout:?}; last logs:\n{}",
                    state.status,
                    engine.logs_tail(name, 20).await
                ),
            };
            return Err(RemoteError::other(host, detail));
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = cancel.cancelled() => {
                return Err(RemoteError::cancelled(host, &format!("while waiting for {name}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, health: Health, code: Option<i64>) -> ContainerState {
        ContainerState {
            status: status.into(),
            health,
            exit_code: code,
            last_health: Some("exit 1 connection refused".into()),
        }
    }

    #[test]
    fn each_gate_from_each_state() {
        use GateState::*;
        let cases = [
            (Gate::Running, state("created", Health::None, None), Wait),
            (
                Gate::Running,
                state("running", Health::Starting, None),
                Ready,
            ),
            (
                Gate::Healthy,
                state("running", Health::Starting, None),
                Wait,
            ),
            (
                Gate::Healthy,
                state("running", Health::Healthy, None),
                Ready,
            ),
            (
                Gate::Healthy,
                state("running", Health::Unhealthy, None),
                Failed("db is unhealthy: exit 1 connection refused".into()),
            ),
            (
                Gate::Healthy,
                state("running", Health::None, None),
                Failed("db has no healthcheck to wait for".into()),
            ),
            (Gate::Healthy, state("restarting", Health::None, None), Wait),
            (Gate::Completed, state("running", Health::None, None), Wait),
            (
                Gate::Completed,
                state("exited", Health::None, Some(0)),
                Ready,
            ),
            (
                Gate::Completed,
                state("exited", Health::None, Some(3)),
                Exited(3),
            ),
            (
                Gate::Running,
                state("exited", Health::None, Some(1)),
                Exited(1),
            ),
            (
                Gate::Healthy,
                state("exited", Health::Starting, Some(137)),
                Exited(137),
            ),
        ];
        for (gate, st, want) in cases {
            assert_eq!(gate_state("db", gate, &st), want, "{gate:?} {st:?}");
        }
    }
}
