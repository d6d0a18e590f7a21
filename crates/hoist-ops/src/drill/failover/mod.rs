//! The failover drill: the primary is lost, a standby takes over, and the declared topology is put
//! back.
//!
//! The primary's container is stopped (writes fail until it is back: a real outage, which is why
//! the command asks for confirmation). The standby that has replayed the most WAL is promoted; the
//! drill proves that the last commit made before the loss is on it, that it takes writes, and
//! whether every other standby could follow it (none has replayed past the switch point, so each
//! could stream the new timeline without a rewind). Then the primary is started again and the
//! promoted standby, whose timeline is now a dead end, is emptied and started: its entrypoint
//! clones the primary again through its slot. The promoted standby never archives (its
//! `archive_command` is set to `/bin/true` before the promotion): its timeline must not reach the
//! live repositories, where a restore to the latest timeline would follow it. Whatever fails or is
//! interrupted after the primary stopped, the put-back runs.

use std::time::Duration;

use hoist_core::check::{Check, failed};
use hoist_remote::{Engine, Host, script};

mod put_back;
mod take_over;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::validate::{self, DbConfig, Standby};

/// The containers the drill stops and starts, and which standby to promote.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// The primary's container.
    pub primary: String,
    /// Each standby: its name on the primary (`application_name`) and its container.
    pub standbys: Vec<(String, String)>,
    /// The standby to promote; the one that replayed the most WAL when None.
    pub target: Option<String>,
    /// How long each wait (promotion, the primary's return, the clone) may take.
    pub timeout: Duration,
}

/// The table the drill writes its marker rows to, on the primary and on the promoted standby.
const MARKER: &str = "hoist_drill_failover";
/// The container that empties the promoted standby's data directory.
const RESET: &str = "hoist-drill-failover-reset";

/// One standby as the drill sees it.
struct Node {
    name: String,
    container: String,
    pool: PgPool,
}

/// Runs the drill with the data host's SSH master (`db.host`).
pub async fn failover<H: Host>(
    ssh: &H,
    db: &DbConfig,
    c: &FailoverConfig,
    cancel: &CancellationToken,
) -> Vec<Check> {
    let host = ssh.name();
    let d = match ssh.engine().await {
        Ok(d) => d,
        Err(e) => return vec![failed("drill.engine", host, e, "answers")],
    };
    let primary = match validate::pool(ssh, &db.primary, db, &db.admin).await {
        Ok(p) => p,
        Err(e) => return vec![failed("drill.preflight", "primary", e, "answers")],
    };
    let mut nodes = Vec::new();
    for (name, at) in &db.standbys {
        let Some((_, container)) = c.standbys.iter().find(|(n, _)| n == name) else {
            return vec![failed(
                "drill.preflight",
                name,
                "no container named for this standby",
                "a container",
            )];
        };
        match validate::pool(ssh, at, db, &db.admin).await {
            Ok(pool) => nodes.push(Node {
                name: name.clone(),
                container: container.clone(),
                pool,
            }),
            Err(e) => return vec![failed("drill.preflight", name, e, "answers")],
        }
    }
    // Only a healthy cluster is failed over: otherwise the drill would measure an earlier fault.
    let standbys: Vec<Standby> = nodes
        .iter()
        .map(|n| Standby {
            name: n.name.clone(),
            pool: n.pool.clone(),
        })
        .collect();
    let before = validate::replication(&primary, &standbys, &db.thresholds).await;
    if before.iter().any(|k| !k.ok) || nodes.is_empty() {
        let mut out: Vec<Check> = before.into_iter().filter(|k| !k.ok).collect();
        out.push(failed(
            "drill.preflight",
            "cluster",
            "replication is not healthy: nothing was stopped",
            "every standby streaming",
        ));
        return out;
    }
    // The drill stops and empties containers chosen by their SQL address: each address must lead
    // to that very container, or the wrong node would be lost.
    let mut pairs: Vec<(&str, &str, &PgPool)> = vec![("primary", c.primary.as_str(), &primary)];
    pairs.extend(
        nodes
            .iter()
            .map(|n| (n.name.as_str(), n.container.as_str(), &n.pool)),
    );
    for (name, container, pool) in pairs {
        if let Err(e) = same_node(&d, container, pool).await {
            return vec![failed(
                "drill.preflight",
                name,
                format!("{e}: nothing was stopped"),
                "its address and its container are one node",
            )];
        }
    }
    let target = match choose(&nodes, c.target.as_deref()).await {
        Ok(i) => i,
        Err(e) => {
            return vec![failed(
                "drill.preflight",
                "standby",
                e,
                "a standby to promote",
            )];
        }
    };
    let mut out = Vec::new();
    let run = Run {
        host,
        d: &d,
        primary: &primary,
        nodes: &nodes,
        target,
        c,
    };
    let finished = tokio::select! {
        stopped = run.take_over(&mut out) => Some(stopped),
        () = cancel.cancelled() => None,
    };
    // Interrupted, the primary may have been stopped: put back all the same.
    let stopped = finished.unwrap_or_else(|| {
        out.push(failed(
            "drill.interrupted",
            host,
            "Ctrl-C",
            "the drill runs to its end",
        ));
        true
    });
    if stopped {
        run.put_back(&mut out).await;
    }
    // The drill's own table goes; the cluster is checked as `hoist validate` would.
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {MARKER}"
    )))
    .execute(&primary)
    .await;
    out.extend(validate::replication(&primary, &standbys, &db.thresholds).await);
    out
}

/// What tells one node of the cluster from the others: the cluster's system identifier (the same
/// on every node of it), the node's `cluster_name` (each standby's own) and whether it is in
/// recovery, as one line.
const IDENTITY: &str = "SELECT system_identifier::text || ' ' || current_setting('cluster_name') \
     || ' ' || pg_is_in_recovery()::text FROM pg_control_system()";

/// Whether the node `pool` reaches is the one running in `container`: the same identity through
/// both.
async fn same_node(d: &impl Engine, container: &str, pool: &PgPool) -> Result<()> {
    let by_sql: String = sqlx::query_scalar(IDENTITY).fetch_one(pool).await?;
    let argv = script::psql_local(&[IDENTITY]);
    let (code, by_container) = d.exec(container, &argv, Some("postgres")).await?;
    if code != 0 {
        return Err(Error::Exit {
            what: format!("psql in {container}"),
            code,
            output: by_container.trim().to_owned(),
        });
    }
    if by_sql.trim() != by_container.trim() {
        return Err(Error::Unexpected(format!(
            "its address leads to {:?}, its container {container} is {:?}",
            by_sql.trim(),
            by_container.trim()
        )));
    }
    Ok(())
}

/// The standby to promote: the one named, or the one that replayed the most WAL.
async fn choose(nodes: &[Node], named: Option<&str>) -> Result<usize> {
    if let Some(name) = named {
        return nodes.iter().position(|n| n.name == name).ok_or_else(|| {
            let known: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
            Error::Unexpected(format!(
                "{name} is not a standby (standbys: {})",
                known.join(", ")
            ))
        });
    }
    let mut best = None;
    for (i, n) in nodes.iter().enumerate() {
        let replayed = replayed(&n.pool).await?;
        if best.is_none_or(|(_, b)| replayed > b) {
            best = Some((i, replayed));
        }
    }
    best.map(|(i, _)| i)
        .ok_or_else(|| Error::Unexpected("no standby".into()))
}

/// How far a standby has replayed, in bytes since 0/0.
async fn replayed(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::int8")
            .fetch_one(pool)
            .await?,
    )
}

/// An LSN as PostgreSQL prints it, from its byte position.
fn lsn(at: i64) -> String {
    let at = at as u64;
    format!("{:X}/{:X}", at >> 32, at & 0xFFFF_FFFF)
}

struct Run<'a, E: Engine> {
    host: &'a str,
    d: &'a E,
    primary: &'a PgPool,
    nodes: &'a [Node],
    target: usize,
    c: &'a FailoverConfig,
}

impl<E: Engine> Run<'_, E> {
    fn target(&self) -> &Node {
        &self.nodes[self.target]
    }

    /// psql as the local superuser in a container, over its socket; the output, or the error.
    async fn psql(&self, container: &str, sql: &[&str]) -> Result<String> {
        let argv = script::psql_local(sql);
        match self.d.exec(container, &argv, Some("postgres")).await? {
            (0, output) => Ok(output.trim().to_owned()),
            (code, output) => Err(Error::Exit {
                what: "psql".into(),
                code,
                output: output.trim().to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lsn;

    #[test]
    fn lsns_print_as_postgresql_does() {
        assert_eq!(lsn(0), "0/0");
        assert_eq!(lsn(0x1_6B37_4D48), "1/6B374D48");
        assert_eq!(lsn(0x0300_0060), "0/3000060");
    }
}
