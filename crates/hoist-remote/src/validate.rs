//! The checks behind `hoist validate`: each names what it checked, the value it measured and the
//! threshold it held that value to, so a failure says which standby, which role, by how much.
//! They run on connections the caller opens (through the SSH master's forwarded ports, or directly).

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What was checked (`replication.streaming`, `roles.reader_cannot_write`, ...).
    pub check: String,
    /// What it was checked on (a standby's name, a role).
    pub target: String,
    pub ok: bool,
    pub measured: String,
    pub threshold: String,
}

impl Check {
    fn new(
        check: &str,
        target: &str,
        ok: bool,
        measured: impl Into<String>,
        threshold: impl Into<String>,
    ) -> Check {
        Check {
            check: check.to_owned(),
            target: target.to_owned(),
            ok,
            measured: measured.into(),
            threshold: threshold.into(),
        }
    }
}

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
    }
    out.extend(canary(primary, standbys, t.canary_timeout).await);
    out
}

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

/// Roles: the reader can read `table` and cannot write it; the writer can write it. Nothing is
/// written: `INSERT ... SELECT ... WHERE false` is checked for privileges like any insert.
pub async fn roles(writer: (&str, &PgPool), reader: (&str, &PgPool), table: &str) -> Vec<Check> {
    let read = format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS one");
    let write = format!("INSERT INTO {table} SELECT * FROM {table} WHERE false");
    let outcome = async |pool: &PgPool, sql: &str| -> Result<(), String> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| match &e {
                sqlx::Error::Database(d) => {
                    format!("{} ({})", d.message(), d.code().unwrap_or_default())
                }
                _ => e.to_string(),
            })
    };
    let describe = |r: &Result<(), String>| match r {
        Ok(()) => "allowed".to_owned(),
        Err(e) => format!("refused: {e}"),
    };
    let mut out = Vec::new();
    let r = outcome(reader.1, &read).await;
    out.push(Check::new(
        "roles.reader_can_read",
        reader.0,
        r.is_ok(),
        describe(&r),
        "allowed",
    ));
    let r = outcome(reader.1, &write).await;
    let denied = r
        .as_ref()
        .err()
        .is_some_and(|e| e.contains("(42501)") || e.contains("(25006)"));
    out.push(Check::new(
        "roles.reader_cannot_write",
        reader.0,
        denied,
        describe(&r),
        "refused (42501)",
    ));
    let r = outcome(writer.1, &write).await;
    out.push(Check::new(
        "roles.writer_can_write",
        writer.0,
        r.is_ok(),
        describe(&r),
        "allowed",
    ));
    out
}

/// The checks as a table for people: one line each, failures marked.
pub fn table(checks: &[Check]) -> String {
    let w = |f: &dyn Fn(&Check) -> usize| checks.iter().map(f).max().unwrap_or(0);
    let (wc, wt, wm) = (
        w(&|c| c.check.len()),
        w(&|c| c.target.len()),
        w(&|c| c.measured.len()),
    );
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!(
            "{}  {:wc$}  {:wt$}  {:wm$}  ({})\n",
            if c.ok { "ok  " } else { "FAIL" },
            c.check,
            c.target,
            c.measured,
            c.threshold,
        ));
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    s.push_str(&format!("{} check(s), {failed} failed\n", checks.len()));
    s
}
