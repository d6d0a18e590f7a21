//! The checks behind `hoist validate`: each names what it checked, the value it measured and the
//! threshold it held that value to, so a failure says which standby, which role, by how much.
//! [`run`] reaches everything through the SSH masters of the hosts that carry the services:
//! PostgreSQL and HTTPS through forwarded ports, pgBackRest through the Docker engine's forwarded
//! socket; the check functions themselves take what they check (pools, an engine, an address).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::docker::DockerEngine;
use crate::engine::Engine as _;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::ssh::SshHost;
use crate::{docker, https};

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
    pub fn new(
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

/// A `host:port` as the host that forwards it reaches it.
pub type Address = (String, u16);

/// A role and its password.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
}

/// Where and how to check the databases (replication, roles), from `host`'s SSH master.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub host: String,
    pub primary: Address,
    /// Each expected standby: its name on the primary and its address.
    pub standbys: Vec<(String, Address)>,
    pub database: String,
    pub admin: Login,
    pub writer: Login,
    pub reader: Login,
    /// The table the roles are tried on.
    pub table: String,
    pub thresholds: Thresholds,
}

/// The pgBackRest repository host: a container on `host` where pgBackRest runs as `user`.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub host: String,
    pub container: String,
    pub user: String,
    pub stanza: String,
    /// Each repository that must hold a backup, and how old its newest one may be.
    pub repos: Vec<(u32, Duration)>,
}

/// The S3 endpoint behind its TLS front, as its clients use it.
#[derive(Debug, Clone)]
pub struct ObjectStoreConfig {
    pub host: String,
    pub address: Address,
    /// The name clients use (and the certificate carries), and their port.
    pub name: String,
    pub port: u16,
    pub ca: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub buckets: Vec<String>,
    /// Path-style bucket URLs (Garage, MinIO); otherwise virtual-hosted (`bucket.name`).
    pub path_style: bool,
}

/// The API behind its TLS proxy.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub host: String,
    pub address: Address,
    pub name: String,
    pub port: u16,
    pub ca: String,
}

/// Everything the checks need; a part is `None` when its checks were not asked for.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub db: Option<DbConfig>,
    pub backups: Option<BackupConfig>,
    pub object_store: Option<ObjectStoreConfig>,
    pub api: Option<ApiConfig>,
}

impl Config {
    /// The inventory hosts whose SSH masters the checks go through.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = [
            self.db.as_ref().map(|c| &c.host),
            self.backups.as_ref().map(|c| &c.host),
            self.object_store.as_ref().map(|c| &c.host),
            self.api.as_ref().map(|c| &c.host),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// A failed check.
pub fn failed(check: &str, target: &str, measured: impl Into<String>, threshold: &str) -> Check {
    Check::new(check, target, false, measured, threshold)
}

/// Runs the checks named in `which` (see `hoist_core::playbook::CHECKS`) with the connected hosts.
pub async fn run(hosts: &BTreeMap<String, SshHost>, cfg: &Config, which: &[String]) -> Vec<Check> {
    let wants = |k: &str| which.iter().any(|w| w == k);
    let ssh = |host: &str| connected(hosts, host);
    let mut out = Vec::new();
    let mut wal_segment = None;
    let db_checks = wants("replication") || wants("roles");
    if let Some(db) = cfg.db.as_ref().filter(|_| !db_checks && wants("backups")) {
        // Only the WAL segment size, for the backup checks: the default when the primary is out
        // of reach (a database fault is for the replication checks to report).
        if let Ok(ssh) = ssh(&db.host)
            && let Ok(primary) = pool(ssh, &db.primary, &db.database, &db.admin).await
        {
            wal_segment = Some(segment_size(&primary).await);
        }
    }
    if let Some(db) = cfg.db.as_ref().filter(|_| db_checks) {
        match ssh(&db.host) {
            Ok(ssh) => {
                let (checks, size) = databases(ssh, db, wants("replication"), wants("roles")).await;
                out.extend(checks);
                wal_segment = size;
            }
            Err(e) => out.push(failed(
                "replication.primary_reachable",
                "primary",
                e,
                "answers",
            )),
        }
    }
    if let Some(b) = cfg.backups.as_ref().filter(|_| wants("backups")) {
        let engine = match ssh(&b.host) {
            Ok(ssh) => docker::connect(ssh).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match engine {
            Ok(d) => out.extend(backups(&d, b, wal_segment.unwrap_or(DEFAULT_SEGMENT)).await),
            Err(e) => out.push(failed("backups.check", &b.container, e, "passes")),
        }
    }
    if let Some(o) = cfg.object_store.as_ref().filter(|_| wants("object_store")) {
        match forward(hosts, &o.host, &o.address).await {
            Ok(local) => out.extend(object_store(local, o).await),
            Err(e) => out.push(failed("object_store.tls", &o.name, e, "answers")),
        }
    }
    if let Some(a) = cfg.api.as_ref().filter(|_| wants("api")) {
        match forward(hosts, &a.host, &a.address).await {
            Ok(local) => out.extend(api(local, a).await),
            Err(e) => out.push(failed("api.health", &a.name, e, "200")),
        }
    }
    out
}

fn connected<'a>(hosts: &'a BTreeMap<String, SshHost>, host: &str) -> Result<&'a SshHost, String> {
    hosts
        .get(host)
        .ok_or_else(|| format!("{host} is not connected"))
}

async fn forward(
    hosts: &BTreeMap<String, SshHost>,
    host: &str,
    at: &Address,
) -> Result<SocketAddr, String> {
    connected(hosts, host)?
        .forward_tcp(&at.0, at.1)
        .await
        .map_err(|e| e.to_string())
}

pub async fn pool(ssh: &SshHost, at: &Address, db: &str, login: &Login) -> Result<PgPool, String> {
    let local = ssh
        .forward_tcp(&at.0, at.1)
        .await
        .map_err(|e| e.to_string())?;
    let options = PgConnectOptions::new()
        .host(&local.ip().to_string())
        .port(local.port())
        .database(db)
        .username(&login.user)
        .password(&login.password)
        .application_name("hoist-validate");
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| format!("connecting to {}:{} as {}: {e}", at.0, at.1, login.user))
}

/// Replication and roles through `ssh`'s forwarded ports; also returns the primary's WAL segment
/// size, which the backup checks need to count segments.
async fn databases(
    ssh: &SshHost,
    c: &DbConfig,
    replication_checks: bool,
    roles_checks: bool,
) -> (Vec<Check>, Option<u64>) {
    let mut out = Vec::new();
    let primary = match pool(ssh, &c.primary, &c.database, &c.admin).await {
        Ok(p) => p,
        Err(e) => {
            out.push(failed(
                "replication.primary_reachable",
                "primary",
                e,
                "answers",
            ));
            return (out, None);
        }
    };
    let segment_size = Some(segment_size(&primary).await);
    if replication_checks {
        let mut reachable = Vec::new();
        for (name, at) in &c.standbys {
            match pool(ssh, at, &c.database, &c.admin).await {
                Ok(p) => reachable.push(Standby {
                    name: name.clone(),
                    pool: p,
                }),
                Err(e) => out.push(failed("replication.standby_reachable", name, e, "answers")),
            }
        }
        // A standby that does not answer is still looked for on the primary (not streaming);
        // what would be checked on its own connection is left out.
        let mut expected = reachable.clone();
        for (name, _) in &c.standbys {
            if !expected.iter().any(|s| &s.name == name) {
                expected.push(Standby {
                    name: name.clone(),
                    pool: primary.clone(),
                });
            }
        }
        let checks = replication(&primary, &expected, &c.thresholds).await;
        out.extend(checks.into_iter().filter(|k| {
            reachable.iter().any(|p| p.name == k.target)
                || !matches!(
                    k.check.as_str(),
                    "replication.standby_in_recovery" | "replication.canary"
                )
        }));
    }
    if roles_checks {
        let writer = pool(ssh, &c.primary, &c.database, &c.writer).await;
        let reader = pool(ssh, &c.primary, &c.database, &c.reader).await;
        match (writer, reader) {
            (Ok(w), Ok(r)) => {
                out.extend(roles((&c.writer.user, &w), (&c.reader.user, &r), &c.table).await)
            }
            (w, r) => {
                for (login, e) in [(&c.writer, w.err()), (&c.reader, r.err())] {
                    if let Some(e) = e {
                        out.push(failed("roles.login", &login.user, e, "logs in"));
                    }
                }
            }
        }
    }
    (out, segment_size)
}

/// PostgreSQL's default WAL segment size, when the primary could not be asked.
pub(crate) const DEFAULT_SEGMENT: u64 = 16 * 1024 * 1024;

/// The primary's WAL segment size (the default when it cannot say).
pub async fn segment_size(primary: &PgPool) -> u64 {
    sqlx::query_scalar::<_, String>(
        "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'",
    )
    .fetch_one(primary)
    .await
    .ok()
    .and_then(|s| s.parse().ok())
    .unwrap_or(DEFAULT_SEGMENT)
}

async fn pgbackrest(d: &DockerEngine, c: &BackupConfig, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["pgbackrest".to_owned(), format!("--stanza={}", c.stanza)];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let (code, output) = d
        .exec(&c.container, &argv, Some(&c.user))
        .await
        .map_err(|e| e.to_string())?;
    if code == 0 {
        Ok(output)
    } else {
        // pgBackRest's own error line says what went wrong; a HINT may follow it.
        let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
        let line = lines
            .iter()
            .find(|l| l.contains("ERROR:"))
            .or(lines.last())
            .map_or("", |l| l.trim());
        Err(format!("exit {code}: {line}"))
    }
}

/// Backups: `pgbackrest check` (archiving works into every repository); in each repository a
/// backup no older than its limit, and every WAL segment from that backup's start to the newest
/// archived one.
pub async fn backups(d: &DockerEngine, c: &BackupConfig, segment_size: u64) -> Vec<Check> {
    let mut out = Vec::new();
    let started = Instant::now();
    out.push(match pgbackrest(d, c, &["check"]).await {
        Ok(_) => Check::new(
            "backups.check",
            &c.stanza,
            true,
            format!("passed in {:.1} s", started.elapsed().as_secs_f64()),
            "passes",
        ),
        Err(e) => failed("backups.check", &c.stanza, e, "passes"),
    });
    let info: serde_json::Value = match pgbackrest(d, c, &["--output=json", "info"])
        .await
        .and_then(|text| serde_json::from_str(&text).map_err(|e| format!("info JSON: {e}")))
    {
        Ok(v) => v,
        Err(e) => {
            out.push(failed("backups.info", &c.stanza, e, "readable"));
            return out;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (repo, max_age) in &c.repos {
        let target = format!("repo{repo}");
        let summary = match RepoSummary::from_info(&info, *repo) {
            Ok(s) => s,
            Err(e) => {
                out.push(failed("backups.recent", &target, e, "a backup"));
                continue;
            }
        };
        let age = now.saturating_sub(summary.last_stop);
        out.push(Check::new(
            "backups.recent",
            &target,
            age <= max_age.as_secs(),
            format!("{} backup {} ago", summary.last_type, human(age)),
            format!("<= {}", human(max_age.as_secs())),
        ));
        out.push(wal_continuity(d, c, *repo, &summary, segment_size).await);
    }
    out
}

/// What `pgbackrest info` says about one repository.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoSummary {
    pub last_type: String,
    /// When the newest backup ended (Unix seconds).
    pub last_stop: u64,
    /// The first WAL segment the newest backup needs.
    pub archive_start: String,
    /// The archive holding that backup's WAL (`17-1`) and its newest segment.
    pub archive_id: String,
    pub archive_max: String,
}

impl RepoSummary {
    pub fn from_info(info: &serde_json::Value, repo: u32) -> Result<RepoSummary, String> {
        let stanza = info
            .as_array()
            .and_then(|a| a.first())
            .ok_or("no stanza in pgbackrest info")?;
        let in_repo =
            |v: &&serde_json::Value| v["database"]["repo-key"].as_u64() == Some(repo.into());
        let last = stanza["backup"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(in_repo)
            .max_by_key(|b| b["timestamp"]["stop"].as_u64().unwrap_or(0))
            .ok_or("no backup")?;
        let db_id = last["database"]["id"].as_u64();
        let archive = stanza["archive"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(in_repo)
            .find(|a| a["database"]["id"].as_u64() == db_id)
            .ok_or("no archived WAL for the newest backup")?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        Ok(RepoSummary {
            last_type: text(&last["type"]),
            last_stop: last["timestamp"]["stop"].as_u64().unwrap_or(0),
            archive_start: text(&last["archive"]["start"]),
            archive_id: text(&archive["id"]),
            archive_max: text(&archive["max"]),
        })
    }
}

/// A WAL segment name as (timeline, segment number).
fn segment(name: &str, segment_size: u64) -> Option<(u32, u64)> {
    let hex = name.get(..24)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&hex[..8], 16).ok()?;
    let hi = u64::from_str_radix(&hex[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&hex[16..], 16).ok()?;
    Some((tli, hi * (0x1_0000_0000 / segment_size.max(1)) + lo))
}

fn segment_name(tli: u32, number: u64, segment_size: u64) -> String {
    let per = 0x1_0000_0000 / segment_size.max(1);
    format!("{tli:08X}{:08X}{:08X}", number / per, number % per)
}

/// The segments between `start` and `stop` (inclusive, on `stop`'s timeline) missing from
/// `present` (archive file names: the segment, then `-checksum` and a compression extension).
pub fn missing_segments(
    start: &str,
    stop: &str,
    present: &[String],
    segment_size: u64,
) -> Result<Vec<String>, String> {
    let (start_tli, first) =
        segment(start, segment_size).ok_or(format!("{start:?} is not a WAL segment"))?;
    let (tli, last) =
        segment(stop, segment_size).ok_or(format!("{stop:?} is not a WAL segment"))?;
    let have: std::collections::BTreeSet<u64> = present
        .iter()
        .filter_map(|n| segment(n, segment_size))
        .filter(|(t, _)| *t == tli)
        .map(|(_, n)| n)
        .collect();
    // After a promotion the segments up to the switch are on the earlier timeline: count from
    // where this one begins.
    let from = if start_tli == tli {
        first
    } else {
        have.first().copied().unwrap_or(last)
    };
    Ok((from..=last)
        .filter(|n| !have.contains(n))
        .map(|n| segment_name(tli, n, segment_size))
        .collect())
}

async fn wal_continuity(
    d: &DockerEngine,
    c: &BackupConfig,
    repo: u32,
    s: &RepoSummary,
    segment_size: u64,
) -> Check {
    let target = format!("repo{repo}");
    let threshold = "no missing segment";
    // The archive keeps segments in one folder per timeline and high word: list only those between.
    let (Some((_, first)), Some((tli, last))) = (
        segment(&s.archive_start, segment_size),
        segment(&s.archive_max, segment_size),
    ) else {
        return failed(
            "backups.wal_continuous",
            &target,
            format!(
                "unreadable segments {:?}..{:?}",
                s.archive_start, s.archive_max
            ),
            threshold,
        );
    };
    let per = 0x1_0000_0000 / segment_size.max(1);
    let mut present = Vec::new();
    for hi in first / per..=last / per {
        let dir = format!("archive/{}/{}/{tli:08X}{hi:08X}", c.stanza, s.archive_id);
        let listed = pgbackrest(
            d,
            c,
            &[&format!("--repo={repo}"), "--output=json", "repo-ls", &dir],
        )
        .await
        .and_then(|t| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&t)
                .map_err(|e| format!("repo-ls JSON: {e}"))
        });
        match listed {
            Ok(entries) => present.extend(entries.keys().cloned()),
            Err(e) => return failed("backups.wal_continuous", &target, e, threshold),
        }
    }
    match missing_segments(&s.archive_start, &s.archive_max, &present, segment_size) {
        Ok(missing) if missing.is_empty() => Check::new(
            "backups.wal_continuous",
            &target,
            true,
            format!("{}..{} all archived", s.archive_start, s.archive_max),
            threshold,
        ),
        Ok(missing) => failed(
            "backups.wal_continuous",
            &target,
            format!(
                "{} missing between {} and {} (first: {})",
                missing.len(),
                s.archive_start,
                s.archive_max,
                missing[0]
            ),
            threshold,
        ),
        Err(e) => failed("backups.wal_continuous", &target, e, threshold),
    }
}

fn human(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{:.1} h", s as f64 / 3600.0),
        s => format!("{:.1} d", s as f64 / 86400.0),
    }
}

/// The object store: its TLS front answers, verified against the cluster CA as the name clients
/// use, and each bucket exists for the access key (a signed HEAD).
pub async fn object_store(local: SocketAddr, c: &ObjectStoreConfig) -> Vec<Check> {
    let front = https::Endpoint {
        connect: local,
        name: &c.name,
        port: c.port,
        ca: &c.ca,
    };
    let mut out = Vec::new();
    let started = Instant::now();
    let health = front.request(http::Method::GET, "/_health").await;
    match health {
        Ok(r) => out.push(Check::new(
            "object_store.tls",
            &c.name,
            r.status < 500,
            format!(
                "TLS verified as {}, HTTP {} in {} ms",
                c.name,
                r.status,
                started.elapsed().as_millis()
            ),
            "TLS verified against the cluster CA",
        )),
        Err(e) => {
            out.push(failed(
                "object_store.tls",
                &c.name,
                e,
                "TLS verified against the cluster CA",
            ));
            return out;
        }
    }
    let endpoint = match url::Url::parse(&format!("https://{}:{}", c.name, c.port)) {
        Ok(u) => u,
        Err(e) => {
            out.push(failed(
                "object_store.bucket",
                &c.name,
                e.to_string(),
                "exists",
            ));
            return out;
        }
    };
    let credentials = rusty_s3::Credentials::new(c.access_key.clone(), c.secret_key.clone());
    for name in &c.buckets {
        let style = if c.path_style {
            rusty_s3::UrlStyle::Path
        } else {
            rusty_s3::UrlStyle::VirtualHost
        };
        let bucket =
            match rusty_s3::Bucket::new(endpoint.clone(), style, name.clone(), c.region.clone()) {
                Ok(b) => b,
                Err(e) => {
                    out.push(failed("object_store.bucket", name, e.to_string(), "exists"));
                    continue;
                }
            };
        use rusty_s3::S3Action as _;
        let signed = rusty_s3::actions::HeadBucket::new(&bucket, Some(&credentials))
            .sign(Duration::from_secs(60));
        let path = match signed.query() {
            Some(q) => format!("{}?{q}", signed.path()),
            None => signed.path().to_owned(),
        };
        // Virtual-hosted buckets are names of their own (`bucket.endpoint`).
        let name_of_bucket = signed.host_str().unwrap_or(&c.name).to_owned();
        let r = https::Endpoint {
            name: &name_of_bucket,
            ..front
        }
        .request(http::Method::HEAD, &path)
        .await;
        out.push(match r {
            Ok(r) => Check::new(
                "object_store.bucket",
                name,
                r.status == 200,
                format!("HEAD {}", r.status),
                "200 (exists, key allowed)",
            ),
            Err(e) => failed("object_store.bucket", name, e, "200 (exists, key allowed)"),
        });
    }
    out
}

/// The API through its TLS proxy: healthy, and its primary answers (`/api/health/?db=1`).
pub async fn api(local: SocketAddr, c: &ApiConfig) -> Vec<Check> {
    let started = Instant::now();
    let r = https::Endpoint {
        connect: local,
        name: &c.name,
        port: c.port,
        ca: &c.ca,
    }
    .request(http::Method::GET, "/api/health/?db=1")
    .await;
    let threshold = "200, db ok, TLS verified";
    vec![match r {
        Ok(r) => {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            Check::new(
                "api.health",
                &c.name,
                r.status == 200 && body["db"] == "ok",
                format!(
                    "HTTP {} db={} in {} ms",
                    r.status,
                    body["db"].as_str().unwrap_or("?"),
                    started.elapsed().as_millis()
                ),
                threshold,
            )
        }
        Err(e) => failed("api.health", &c.name, e, threshold),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 * 1024 * 1024;

    /// `pgbackrest --output=json info` of the sandbox's stanza (pgBackRest 2.55.1), trimmed.
    const INFO: &str = r#"[{"archive":[
        {"database":{"id":1,"repo-key":1},"id":"17-1","max":"00000001000000000000000A","min":"000000010000000000000001"},
        {"database":{"id":1,"repo-key":2},"id":"17-1","max":"000000010000000000000009","min":"000000010000000000000001"}],
      "backup":[
        {"archive":{"start":"000000010000000000000003","stop":"000000010000000000000003"},"database":{"id":1,"repo-key":1},"timestamp":{"start":1795392000,"stop":1795392100},"type":"full"},
        {"archive":{"start":"000000010000000000000006","stop":"000000010000000000000006"},"database":{"id":1,"repo-key":1},"timestamp":{"start":1795392187,"stop":1795392192},"type":"incr"},
        {"archive":{"start":"000000010000000000000007","stop":"000000010000000000000008"},"database":{"id":1,"repo-key":2},"timestamp":{"start":1795392192,"stop":1795392195},"type":"full"}],
      "name":"apm","status":{"code":0,"message":"ok"}}]"#;

    #[test]
    fn the_newest_backup_of_each_repository() {
        let info: serde_json::Value = serde_json::from_str(INFO).expect("json");
        let r1 = RepoSummary::from_info(&info, 1).expect("repo1");
        assert_eq!(
            (
                r1.last_type.as_str(),
                r1.last_stop,
                r1.archive_start.as_str()
            ),
            ("incr", 1795392192, "000000010000000000000006")
        );
        assert_eq!(
            (r1.archive_id.as_str(), r1.archive_max.as_str()),
            ("17-1", "00000001000000000000000A")
        );
        let r2 = RepoSummary::from_info(&info, 2).expect("repo2");
        assert_eq!(r2.archive_max, "000000010000000000000009");
        assert_eq!(
            RepoSummary::from_info(&info, 3),
            Err("no backup".to_owned())
        );
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| format!("{n}-0123abcd.zst")).collect()
    }

    #[test]
    fn a_missing_segment_is_named() {
        let present = names(&[
            "000000010000000000000006",
            "000000010000000000000007",
            "000000010000000000000009",
        ]);
        let missing = missing_segments(
            "000000010000000000000006",
            "000000010000000000000009",
            &present,
            SEG,
        );
        assert_eq!(missing, Ok(vec!["000000010000000000000008".to_owned()]));
    }

    #[test]
    fn segments_run_on_across_the_high_word() {
        // 16 MiB segments: ...00FF is followed by ...0100000000 (the next high word).
        let present = names(&[
            "0000000100000000000000FE",
            "0000000100000000000000FF",
            "000000010000000100000000",
        ]);
        let missing = missing_segments(
            "0000000100000000000000FE",
            "000000010000000100000001",
            &present,
            SEG,
        );
        assert_eq!(missing, Ok(vec!["000000010000000100000001".to_owned()]));
        // 64 MiB segments: 64 per high word, ...3F then the next word.
        assert_eq!(
            missing_segments(
                "00000001000000000000003F",
                "000000010000000100000000",
                &names(&["00000001000000000000003F", "000000010000000100000000"]),
                64 * 1024 * 1024,
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn after_a_promotion_the_new_timeline_counts_from_its_first_segment() {
        let present = names(&[
            "000000010000000000000006",
            "000000020000000000000007",
            "000000020000000000000008",
        ]);
        let missing = missing_segments(
            "000000010000000000000006",
            "000000020000000000000008",
            &present,
            SEG,
        );
        assert_eq!(missing, Ok(vec![]));
        assert!(missing_segments("not a segment", "x", &[], SEG).is_err());
    }
}
