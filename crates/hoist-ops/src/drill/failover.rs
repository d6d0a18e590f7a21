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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hoist_core::check::{Check, failed};
use hoist_remote::engine::Scratch;
use hoist_remote::{Engine, Host, script};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::LABEL;
use crate::apply::gate::{self, Gate};
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
    let primary = match validate::pool(ssh, &db.primary, &db.database, &db.admin).await {
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
        match validate::pool(ssh, at, &db.database, &db.admin).await {
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

    /// The failure and the take-over: a marker committed on the primary, the primary stopped, the
    /// marker found on the target, the target promoted and written to, the others' switch points
    /// compared. Returns whether the primary was stopped (and so must be put back).
    async fn take_over(&self, out: &mut Vec<Check>) -> bool {
        let t = self.target();
        let marker = match self.mark().await {
            Ok(m) => m,
            Err(e) => {
                out.push(failed("drill.marker", "primary", e, "committed"));
                return false;
            }
        };
        let stopping = Instant::now();
        if let Err(e) = self.d.stop(&self.c.primary, Some(60)).await {
            out.push(failed(
                "drill.primary_stopped",
                &self.c.primary,
                e,
                "stopped",
            ));
            // A failed stop may still have stopped it.
            return true;
        }
        let lost = Instant::now();
        out.push(Check::new(
            "drill.primary_stopped",
            &self.c.primary,
            true,
            format!("stopped in {:.1} s", stopping.elapsed().as_secs_f64()),
            "stopped",
        ));
        // The standby has received everything the primary sent before it went: replay it all.
        let switch_point = match self.settle(t).await {
            Ok(at) => at,
            Err(e) => {
                out.push(failed("drill.replayed", &t.name, e, "everything received"));
                return true;
            }
        };
        let found: Result<i64, sqlx::Error> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {MARKER} WHERE id = $1"
        )))
        .bind(marker.0)
        .fetch_one(&t.pool)
        .await;
        out.push(match found {
            Ok(1) => Check::new(
                "drill.no_data_loss",
                &t.name,
                true,
                format!(
                    "the last commit is there; replayed to {}, the primary's commit was at {}",
                    lsn(switch_point),
                    lsn(marker.1)
                ),
                "the primary's last commit",
            ),
            Ok(n) => failed(
                "drill.no_data_loss",
                &t.name,
                format!(
                    "the last commit is missing ({n} rows), replayed to {}",
                    lsn(switch_point)
                ),
                "the primary's last commit",
            ),
            Err(e) => failed(
                "drill.no_data_loss",
                &t.name,
                e,
                "the primary's last commit",
            ),
        });
        // Its timeline must never reach the live repositories.
        let archive = self
            .psql(
                &t.container,
                &[
                    "ALTER SYSTEM SET archive_command = '/bin/true'",
                    "SELECT pg_reload_conf()",
                ],
            )
            .await;
        if let Err(e) = archive {
            out.push(failed(
                "drill.archiving_off",
                &t.name,
                e,
                "archive_command=/bin/true",
            ));
            return true;
        }
        // The reload is asynchronous: promote only once the new command is in force.
        let deadline = Instant::now() + Duration::from_secs(10);
        let command = loop {
            let shown = self.psql(&t.container, &["SHOW archive_command"]).await;
            match shown {
                Ok(s) if s == "/bin/true" || Instant::now() >= deadline => break Ok(s),
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => break Err(e),
            }
        };
        let archiving_off = command.as_deref().is_ok_and(|s| s == "/bin/true");
        out.push(Check::new(
            "drill.archiving_off",
            &t.name,
            archiving_off,
            command.unwrap_or_else(|e| e.to_string()),
            "archive_command=/bin/true",
        ));
        if !archiving_off {
            return true;
        }
        let promoting = Instant::now();
        let wait_s = self.c.timeout.as_secs().clamp(1, i32::MAX as u64);
        let promote = format!("SELECT pg_promote(true, {wait_s})");
        let promoted = self.psql(&t.container, &[promote.as_str()]).await;
        out.push(match promoted.as_deref() {
            Ok("t") => Check::new(
                "drill.promoted",
                &t.name,
                true,
                format!("promoted in {:.1} s", promoting.elapsed().as_secs_f64()),
                format!("within {} s", self.c.timeout.as_secs()),
            ),
            Ok(other) => failed(
                "drill.promoted",
                &t.name,
                format!("pg_promote returned {other:?}"),
                "t",
            ),
            Err(e) => failed("drill.promoted", &t.name, e, "promoted"),
        });
        if !promoted.as_deref().is_ok_and(|s| s == "t") {
            return true;
        }
        let writing = Instant::now();
        let wrote = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {MARKER} (note) VALUES ('after failover')"
        )))
        .execute(&t.pool)
        .await;
        out.push(match wrote {
            Ok(_) => Check::new(
                "drill.writes",
                &t.name,
                true,
                format!(
                    "committed in {} ms, {:.1} s after the primary stopped",
                    writing.elapsed().as_millis(),
                    lost.elapsed().as_secs_f64()
                ),
                "takes writes",
            ),
            Err(e) => failed("drill.writes", &t.name, e, "takes writes"),
        });
        for n in self.nodes.iter().filter(|n| n.name != t.name) {
            out.push(match replayed(&n.pool).await {
                Ok(at) => Check::new(
                    "drill.standby_can_follow",
                    &n.name,
                    at <= switch_point,
                    format!("replayed to {}", lsn(at)),
                    format!("at most the switch point {}", lsn(switch_point)),
                ),
                Err(e) => failed("drill.standby_can_follow", &n.name, e, "answers"),
            });
        }
        true
    }

    /// Commits a marker row on the primary; its id and the LSN after the commit.
    async fn mark(&self) -> Result<(i64, i64)> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {MARKER} \
             (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)"
        )))
        .execute(self.primary)
        .await?;
        let id = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {MARKER} (note) VALUES ('before failover') RETURNING id"
        )))
        .fetch_one(self.primary)
        .await?;
        let at = sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8")
            .fetch_one(self.primary)
            .await?;
        Ok((id, at))
    }

    /// Waits until the standby has replayed all it received; returns where it stopped.
    async fn settle(&self, n: &Node) -> Result<i64> {
        let deadline = Instant::now() + self.c.timeout;
        loop {
            let (received, replayed): (Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::int8, \
                        pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::int8",
            )
            .fetch_one(&n.pool)
            .await?;
            match (received, replayed) {
                (Some(r), Some(p)) if p >= r => return Ok(p),
                (None, Some(p)) => return Ok(p),
                _ if Instant::now() >= deadline => {
                    return Err(Error::Timeout {
                        seen: "still replaying".into(),
                        after: self.c.timeout,
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Puts the declared topology back: the target, if it left recovery, is stopped and emptied;
    /// the primary starts; the target starts again (cloning the primary when emptied) and streams.
    async fn put_back(&self, out: &mut Vec<Check>) {
        let t = self.target();
        let in_recovery: Option<bool> = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&t.pool)
            .await
            .ok();
        let started = Instant::now();
        if in_recovery == Some(true) {
            // Never promoted: it only needs archiving back and the primary to stream from.
            let _ = self
                .psql(
                    &t.container,
                    &[
                        "ALTER SYSTEM RESET archive_command",
                        "SELECT pg_reload_conf()",
                    ],
                )
                .await;
        } else {
            let emptied = match self.d.stop(&t.container, Some(60)).await {
                Ok(()) => self.empty(&t.container).await,
                Err(e) => Err(e.into()),
            };
            out.push(match emptied {
                Ok(()) => Check::new(
                    "drill.set_aside",
                    &t.name,
                    true,
                    "stopped, data directory emptied",
                    "to clone again",
                ),
                Err(e) => failed("drill.set_aside", &t.name, e, "to clone again"),
            });
        }
        // Started whatever state it is in (an interrupted drill may not have stopped it): its
        // health says whether it is back.
        // Put back whatever happened: a cancellation no longer applies.
        let _ = self.d.start(&self.c.primary).await;
        let healthy = gate::wait(
            self.host,
            self.d,
            &self.c.primary,
            Gate::Healthy,
            self.c.timeout,
            &CancellationToken::new(),
        )
        .await;
        out.push(match healthy {
            Ok(()) => Check::new(
                "drill.primary_back",
                &self.c.primary,
                true,
                format!("healthy after {:.1} s", started.elapsed().as_secs_f64()),
                "healthy",
            ),
            Err(e) => failed("drill.primary_back", &self.c.primary, e, "healthy"),
        });
        let cloning = Instant::now();
        let _ = self.d.start(&t.container).await;
        let streaming = self.streaming(&t.name).await;
        out.push(match streaming {
            Ok(()) => Check::new(
                "drill.standby_back",
                &t.name,
                true,
                format!(
                    "streaming from the primary {:.1} s after its start",
                    cloning.elapsed().as_secs_f64()
                ),
                format!("within {} s", self.c.timeout.as_secs()),
            ),
            Err(e) => failed("drill.standby_back", &t.name, e, "streaming"),
        });
    }

    /// Empties a stopped PostgreSQL container's data directory, in a container sharing its volumes.
    async fn empty(&self, container: &str) -> Result<()> {
        let inspected = self
            .d
            .inspect(container)
            .await?
            .ok_or_else(|| Error::Unexpected(format!("no container {container}")))?;
        let scratch = Scratch {
            image: inspected.image,
            user: Some("root".into()),
            argv: [
                "sh",
                "-c",
                "find \"${PGDATA:-/var/lib/postgresql/data}\" -mindepth 1 -delete",
            ]
            .map(str::to_owned)
            .to_vec(),
            labels: BTreeMap::from([(LABEL.to_owned(), "failover".to_owned())]),
            volumes_from: Some(container.to_owned()),
            ..Scratch::default()
        };
        let ran = self.d.run_scratch(RESET, &scratch, self.c.timeout).await;
        let _ = self.d.remove(RESET).await;
        match ran? {
            (0, _) => Ok(()),
            (code, logs) => Err(Error::Exit {
                what: "emptying".into(),
                code,
                output: logs.trim().to_owned(),
            }),
        }
    }

    /// Waits until `name` streams in the primary's pg_stat_replication.
    async fn streaming(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + self.c.timeout;
        loop {
            let state: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
                "SELECT state FROM pg_stat_replication WHERE application_name = $1",
            )
            .bind(name)
            .fetch_optional(self.primary)
            .await;
            match state {
                Ok(Some(s)) if s == "streaming" => return Ok(()),
                other if Instant::now() >= deadline => {
                    let seen = match other {
                        Ok(Some(s)) => s,
                        Ok(None) => "absent from pg_stat_replication".into(),
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::Timeout {
                        seen,
                        after: self.c.timeout,
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
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
