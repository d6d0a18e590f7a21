//! Database connections and read routing.
//!
//! Writes go to the primary. A read goes to the primary when it must see a recent write (any write
//! in the last `READ_AFTER_WRITE_TTL` seconds, as the original) and otherwise to a replica that a
//! background probe found healthy (answering, in recovery, replay lag under a bound); with no healthy
//! replica, reads fall back to the primary. The original picked a replica at random with no health
//! check, so a dead replica turned a share of reads into 500s (spec §11 #5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use crate::config::{Credentials, HostPort, Settings};

/// Replicas further behind than this are not read from.
pub const MAX_REPLICA_LAG: Duration = Duration::from_secs(30);

pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| {
        let mut m = sqlx::migrate!("../../migrations");
        // A database migrated by a later release (the API rolled back to this one) has migrations
        // this binary does not know: every migration only expands (docs/releases.md), so this
        // release runs on it as it ran before them.
        m.set_ignore_missing(true);
        m
    });

#[derive(Debug)]
pub struct Replica {
    pub endpoint: HostPort,
    pub pool: PgPool,
    pub healthy: AtomicBool,
}

#[derive(Debug)]
pub struct Db {
    pub primary: PgPool,
    pub primary_endpoint: HostPort,
    pub replicas: Vec<Arc<Replica>>,
    ttl: Duration,
    /// Unix milliseconds of the last write.
    last_write: AtomicI64,
    next: AtomicUsize,
}

pub fn options(s: &Settings, at: &HostPort, who: &Credentials) -> PgConnectOptions {
    let mut o = PgConnectOptions::new()
        .host(&at.host)
        .port(at.port)
        .username(&who.user)
        .password(&who.password)
        .database(&s.database)
        .application_name("apm-api");
    if let Some(mode) = &s.sslmode
        && let Ok(m) = mode.parse::<PgSslMode>()
    {
        o = o.ssl_mode(m);
    }
    if let Some(ca) = &s.sslrootcert {
        o = o.ssl_root_cert(ca);
    }
    o
}

fn pool(s: &Settings, at: &HostPort, who: &Credentials) -> PgPool {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(s.connect_timeout)
        .idle_timeout(Duration::from_secs(60))
        .connect_lazy_with(options(s, at, who))
}

/// A pool that serves requests: a query that runs away (a deep page, a raw percentile over years)
/// or a transaction left open cannot hold a connection for long. Migrations and the management
/// commands (refresh, seed, embed) run without these limits.
fn serving_pool(s: &Settings, at: &HostPort, who: &Credentials) -> PgPool {
    let o = options(s, at, who).options([
        (
            "statement_timeout",
            format!("{}ms", s.statement_timeout.as_millis()),
        ),
        ("idle_in_transaction_session_timeout", "60s".to_owned()),
    ]);
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(s.connect_timeout)
        .idle_timeout(Duration::from_secs(60))
        .connect_lazy_with(o)
}

/// Creates (or updates the password of) the writer and reader roles the settings name, when they
/// are not the admin, and grants what each needs: the writer reads and writes every table of the
/// schema (rows only: never TRUNCATE), the reader only reads; both read the API tokens and
/// nothing else of `apm_auth`. Default privileges extend the grants to tables created later by
/// the admin (the migrations' owner). An admin that may not manage roles (the platform's: its
/// data stack creates the roles and sets their passwords) leaves existing roles as they are and
/// only grants.
pub async fn ensure_roles(admin: &PgPool, s: &Settings) -> anyhow::Result<()> {
    let writes = "SELECT, INSERT, UPDATE, DELETE";
    let manages_roles: bool = sqlx::query_scalar(
        "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(admin)
    .await?;
    for (who, tables, sequences) in [
        (&s.writer, writes, "USAGE, SELECT, UPDATE"),
        (&s.reader, "SELECT", "SELECT"),
    ] {
        if who.user == s.admin.user {
            continue;
        }
        let statements: Vec<String> = sqlx::query_scalar(
            "SELECT s FROM unnest(ARRAY[
                CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
                          THEN format('CREATE ROLE %I LOGIN PASSWORD %L', $1, $2)
                     WHEN $5 THEN format('ALTER ROLE %I LOGIN PASSWORD %L', $1, $2) END,
                format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), $1),
                format('GRANT USAGE ON SCHEMA public TO %I', $1),
                format('GRANT %s ON ALL TABLES IN SCHEMA public TO %I', $3, $1),
                format('GRANT %s ON ALL SEQUENCES IN SCHEMA public TO %I', $4, $1),
                format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT %s ON TABLES TO %I', $3, $1),
                format('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT %s ON SEQUENCES TO %I', $4, $1),
                format('REVOKE TRUNCATE ON ALL TABLES IN SCHEMA public FROM %I', $1),
                format('ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE TRUNCATE ON TABLES FROM %I', $1),
                format('GRANT USAGE ON SCHEMA apm_auth TO %I', $1),
                format('GRANT SELECT ON apm_auth.tokens TO %I', $1)
             ]) AS s WHERE s IS NOT NULL",
        )
        .bind(&who.user)
        .bind(&who.password)
        .bind(tables)
        .bind(sequences)
        .bind(manages_roles)
        .fetch_all(admin)
        .await?;
        for statement in statements {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(admin)
                .await
                .map_err(|e| anyhow::anyhow!("setting up the database role {}: {e}", who.user))?;
        }
    }
    Ok(())
}

/// How many times a write transaction runs before its conflict is the caller's error.
const CONFLICT_ATTEMPTS: u32 = 3;

/// Runs the write transaction `f` again when PostgreSQL aborted it to break a deadlock (40P01) or
/// a serialization failure (40001), as PostgreSQL's documentation asks of clients: concurrent
/// writes touch the same rollup rows in orders no single statement can fix (an update takes an
/// event out of one row and into another). At most [`CONFLICT_ATTEMPTS`] runs.
pub async fn retry_conflicts<T, F, Fut>(f: F) -> Result<T, sqlx::Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if attempt < CONFLICT_ATTEMPTS && is_conflict(&e) => {
                metrics::counter!("apm_db_conflicts_retried_total").increment(1);
                tracing::info!(attempt, "write conflict, running it again: {e}");
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn is_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

/// An error that says the server is unreachable or going away, not that the query is wrong.
pub(crate) fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => true,
        // Class 08 (connection exception), 57P01-57P03 (shutdown, cannot connect now).
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Counts a failure to reach a database (`apm_db_connection_errors_total`, alerted on).
pub fn connection_error(target: &HostPort, e: &sqlx::Error) {
    if matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Protocol(_)
    ) {
        metrics::counter!("apm_db_connection_errors_total", "target" => target.to_string())
            .increment(1);
    }
}

fn pool_gauges(role: &'static str, target: &HostPort, pool: &PgPool) {
    let target = target.to_string();
    metrics::gauge!("apm_db_pool_connections", "role" => role, "target" => target.clone(), "state" => "open")
        .set(f64::from(pool.size()));
    metrics::gauge!("apm_db_pool_connections", "role" => role, "target" => target, "state" => "idle")
        .set(pool.num_idle() as f64);
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Db {
    /// Waits for the primary (`DB_CONNECT_RETRIES` x `DB_CONNECT_DELAY`), runs the migrations as the
    /// admin user unless `SKIP_MIGRATE`, and starts the replica probe.
    pub async fn connect(s: &Settings) -> anyhow::Result<Arc<Db>> {
        let admin = pool(s, &s.primary, &s.admin);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match sqlx::query("SELECT 1").execute(&admin).await {
                Ok(_) => break,
                Err(e) if attempt < s.connect_retries => {
                    tracing::info!(attempt, "waiting for the database at {}: {e}", s.primary);
                    tokio::time::sleep(s.connect_delay).await;
                }
                Err(e) => anyhow::bail!(
                    "the database at {} did not answer after {attempt} attempts: {e}",
                    s.primary
                ),
            }
        }
        if !s.skip_migrate {
            MIGRATOR.run(&admin).await?;
            ensure_roles(&admin, s).await?;
            if let Some(file) = &s.tokens_file {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| anyhow::anyhow!("reading the token file {file}: {e}"))?;
                let entries = crate::auth::parse_file(file, &text)?;
                crate::auth::ensure(&admin, &entries).await?;
                tracing::info!(tokens = entries.len(), "API tokens of {file} in force");
            }
        }
        admin.close().await;
        let db = Arc::new(Db {
            primary: serving_pool(s, &s.primary, &s.writer),
            primary_endpoint: s.primary.clone(),
            replicas: s
                .replicas
                .iter()
                .map(|r| {
                    Arc::new(Replica {
                        endpoint: r.clone(),
                        pool: serving_pool(s, r, &s.reader),
                        healthy: AtomicBool::new(false),
                    })
                })
                .collect(),
            ttl: s.read_after_write_ttl,
            last_write: AtomicI64::new(0),
            next: AtomicUsize::new(0),
        });
        db.probe_replicas().await;
        let probe = db.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                probe.probe_replicas().await;
            }
        });
        Ok(db)
    }

    /// Marks each replica healthy or not: it answers, is in recovery, and replays within the bound
    /// (a replica that has replayed all it received is current, however old the last write). Also
    /// publishes the pools' and replicas' gauges.
    pub async fn probe_replicas(&self) {
        if let Ok(Err(e)) = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&self.primary),
        )
        .await
        {
            connection_error(&self.primary_endpoint, &e);
        }
        pool_gauges("primary", &self.primary_endpoint, &self.primary);
        for r in &self.replicas {
            let q = "SELECT pg_is_in_recovery(), CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                     ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8";
            let ok = match tokio::time::timeout(
                Duration::from_secs(2),
                sqlx::query_as::<_, (bool, f64)>(q).fetch_one(&r.pool),
            )
            .await
            {
                Ok(Ok((in_recovery, lag))) => in_recovery && lag <= MAX_REPLICA_LAG.as_secs_f64(),
                Ok(Err(e)) => {
                    connection_error(&r.endpoint, &e);
                    false
                }
                Err(_) => false,
            };
            if r.healthy.swap(ok, Ordering::Relaxed) != ok {
                tracing::warn!(replica = %r.endpoint, healthy = ok, "replica health changed");
            }
            metrics::gauge!("apm_db_replica_healthy", "target" => r.endpoint.to_string())
                .set(if ok { 1.0 } else { 0.0 });
            pool_gauges("replica", &r.endpoint, &r.pool);
        }
    }

    /// Records a write: reads go to the primary for the TTL.
    pub fn wrote(&self) {
        self.last_write.store(now_ms(), Ordering::Relaxed);
    }

    fn recent_write(&self) -> bool {
        let ttl = self.ttl.as_millis() as i64;
        ttl > 0 && now_ms() - self.last_write.load(Ordering::Relaxed) < ttl
    }

    /// Runs a read on the pool [`Db::reader`] picks. When a replica fails with a connection error
    /// (it stopped, restarts, refuses connections), it is marked unhealthy until the probe finds it
    /// back, and the read runs again on the primary: a replica going down fails no request.
    pub async fn read<T, F, Fut>(&self, f: F) -> Result<T, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let pool = self.reader();
        match f(pool.clone()).await {
            Err(e) if !std::ptr::eq(pool, &self.primary) && is_connection_error(&e) => {
                if let Some(r) = self.replicas.iter().find(|r| std::ptr::eq(&r.pool, pool)) {
                    r.healthy.store(false, Ordering::Relaxed);
                    metrics::gauge!("apm_db_replica_healthy", "target" => r.endpoint.to_string())
                        .set(0.0);
                    connection_error(&r.endpoint, &e);
                    tracing::warn!(replica = %r.endpoint, "replica failed, reading from the primary: {e}");
                }
                metrics::counter!("apm_db_reads_total", "to" => "primary").increment(1);
                f(self.primary.clone()).await
            }
            other => other,
        }
    }

    /// Where a read goes.
    pub fn reader(&self) -> &PgPool {
        let pool = self.route();
        let to = if std::ptr::eq(pool, &self.primary) {
            "primary"
        } else {
            "replica"
        };
        metrics::counter!("apm_db_reads_total", "to" => to).increment(1);
        pool
    }

    fn route(&self) -> &PgPool {
        if self.recent_write() {
            return &self.primary;
        }
        let healthy: Vec<&Arc<Replica>> = self
            .replicas
            .iter()
            .filter(|r| r.healthy.load(Ordering::Relaxed))
            .collect();
        if healthy.is_empty() {
            return &self.primary;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % healthy.len();
        &healthy[i].pool
    }
}
