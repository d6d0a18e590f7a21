//! Replication: the primary is not in recovery; each expected standby streams (in
//! `pg_stat_replication`), its lag in bytes and seconds is under the thresholds, it is in recovery,
//! and a canary row written on the primary is read back on it within the timeout.

use std::time::{Duration, Instant};

use hoist_core::check::Check;
use sqlx::PgPool;

/// Limits the replication checks hold the cluster to.
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub max_lag_bytes: i64,
    pub max_lag_seconds: f64,
    /// How long a canary row written on the primary may take to show on every standby.
    pub canary_timeout: Duration,
}

/// A standby: the name it streams under (`application_name` on the primary) and a connection to it.
#[derive(Debug, Clone)]
pub struct Standby {
    pub name: String,
    pub pool: PgPool,
}

const CANARY_TABLE: &str = "hoist_validate_canary";

/// A row of pg_stat_replication: name, state, replay lag in bytes and in seconds.
type StatRow = (Option<String>, Option<String>, Option<i64>, Option<f64>);

/// Replication: the primary is not in recovery; each expected standby streams, within the lag
/// bounds, is in recovery, and shows a row written on the primary within the timeout.
pub async fn replication(primary: &PgPool, standbys: &[Standby], t: &Thresholds) -> Vec<Check> {
    let mut out = Vec::new();
    match sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
        .fetch_one(primary)
        .await
    {
        Ok(r) => out.push(Check::new(
            "replication.primary_not_in_recovery",
            "primary",
            !r,
            format!("pg_is_in_recovery={r}"),
            "false",
        )),
        Err(e) => {
            out.push(Check::new(
                "replication.primary_reachable",
                "primary",
                false,
                e.to_string(),
                "answers",
            ));
            return out;
        }
    }
    // Without pg_monitor (or superuser) the rows come back with their columns hidden.
    let rows: Vec<StatRow> = match sqlx::query_as(
        "SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8, \
                    EXTRACT(EPOCH FROM replay_lag)::float8 \
             FROM pg_stat_replication",
    )
    .fetch_all(primary)
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            out.push(Check::new(
                "replication.stats_readable",
                "primary",
                false,
                e.to_string(),
                "pg_stat_replication readable",
            ));
            Vec::new()
        }
    };
    let rows: Vec<(String, String, Option<i64>, Option<f64>)> = rows
        .into_iter()
        .map(|(name, state, bytes, seconds)| {
            (
                name.unwrap_or_else(|| "(hidden: grant pg_monitor)".into()),
                state.unwrap_or_else(|| "(hidden)".into()),
                bytes,
                seconds,
            )
        })
        .collect();
    for s in standbys {
        let Some((_, state, lag_bytes, lag_s)) = rows.iter().find(|r| r.0 == s.name) else {
            let present: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            out.push(Check::new(
                "replication.streaming",
                &s.name,
                false,
                format!(
                    "absent from pg_stat_replication (present: {})",
                    present.join(", ")
                ),
                "streaming",
            ));
            continue;
        };
        out.push(Check::new(
            "replication.streaming",
            &s.name,
            state == "streaming",
            state.clone(),
            "streaming",
        ));
        let bytes = lag_bytes.unwrap_or(0);
        out.push(Check::new(
            "replication.lag_bytes",
            &s.name,
            bytes <= t.max_lag_bytes,
            bytes.to_string(),
            format!("<= {}", t.max_lag_bytes),
        ));
        let seconds = lag_s.unwrap_or(0.0);
        out.push(Check::new(
            "replication.lag_seconds",
            &s.name,
            seconds <= t.max_lag_seconds,
            format!("{seconds:.3}"),
            format!("<= {}", t.max_lag_seconds),
        ));
        let recovery = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
            .fetch_one(&s.pool)
            .await;
        out.push(match recovery {
            Ok(r) => Check::new(
                "replication.standby_in_recovery",
                &s.name,
                r,
                format!("pg_is_in_recovery={r}"),
                "true",
            ),
            Err(e) => Check::new(
                "replication.standby_in_recovery",
                &s.name,
                false,
                e.to_string(),
                "true",
            ),
        });
        // The failover drill turns a standby's archiving off before promoting it; a drill killed
        // in between can leave it so, and that standby, once promoted, would archive nothing.
        let archive = sqlx::query_scalar::<_, String>("SHOW archive_command")
            .fetch_one(&s.pool)
            .await;
        out.push(match archive {
            Ok(c) => Check::new(
                "replication.archiving_configured",
                &s.name,
                c != DRILL_ARCHIVE_OFF,
                format!("archive_command={c}"),
                format!("not {DRILL_ARCHIVE_OFF} (a drill's leftover)"),
            ),
            Err(e) => Check::new(
                "replication.archiving_configured",
                &s.name,
                false,
                e.to_string(),
                "readable",
            ),
        });
    }
    out.extend(canary(primary, standbys, t.canary_timeout).await);
    out
}

/// The archive command the failover drill gives the standby it promotes.
pub const DRILL_ARCHIVE_OFF: &str = "/bin/true";

/// Writes a row on the primary and waits for it on every standby.
async fn canary(primary: &PgPool, standbys: &[Standby], timeout: Duration) -> Vec<Check> {
    let token = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let written = async {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {CANARY_TABLE} (token text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
        )))
        .execute(primary)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {CANARY_TABLE} (token) VALUES ($1)"
        )))
        .bind(&token)
        .execute(primary)
        .await
    }
    .await;
    let threshold = format!("<= {} ms", timeout.as_millis());
    if let Err(e) = written {
        return vec![Check::new(
            "replication.canary",
            "primary",
            false,
            format!("writing the canary: {e}"),
            threshold,
        )];
    }
    let started = Instant::now();
    let mut out = Vec::new();
    for s in standbys {
        let seen = loop {
            let found = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {CANARY_TABLE} WHERE token = $1"
            )))
            .bind(&token)
            .fetch_one(&s.pool)
            .await
            .is_ok_and(|n| n == 1);
            if found || started.elapsed() >= timeout {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        out.push(Check::new(
            "replication.canary",
            &s.name,
            seen,
            if seen {
                format!("seen after {} ms", started.elapsed().as_millis())
            } else {
                format!("not seen after {} ms", started.elapsed().as_millis())
            },
            threshold.clone(),
        ));
    }
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {CANARY_TABLE} WHERE token = $1 OR at < now() - interval '1 day'"
    )))
    .bind(&token)
    .execute(primary)
    .await;
    out
}
