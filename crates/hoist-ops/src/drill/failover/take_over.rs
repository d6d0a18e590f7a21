//! The take-over: a marker committed on the primary, the primary stopped, the standby promoted
//! with archiving off, the marker found on it, and where the other standbys stand.

use std::time::{Duration, Instant};

use hoist_core::check::{Check, failed};
use hoist_remote::Engine;

use super::{MARKER, Node, Run, lsn, replayed};
use crate::error::{Error, Result};
use crate::validate::replication::DRILL_ARCHIVE_OFF;

impl<E: Engine> Run<'_, E> {
    /// The failure and the take-over: a marker committed on the primary, the primary stopped, the
    /// marker found on the target, the target promoted and written to, the others' switch points
    /// compared. Returns whether the primary was stopped (and so must be put back).
    pub(super) async fn take_over(&self, out: &mut Vec<Check>) -> bool {
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
        let off = format!("ALTER SYSTEM SET archive_command = '{DRILL_ARCHIVE_OFF}'");
        let archive = self
            .psql(&t.container, &[off.as_str(), "SELECT pg_reload_conf()"])
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
                Ok(s) if s == DRILL_ARCHIVE_OFF || Instant::now() >= deadline => break Ok(s),
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => break Err(e),
            }
        };
        let archiving_off = command.as_deref().is_ok_and(|s| s == DRILL_ARCHIVE_OFF);
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
}
