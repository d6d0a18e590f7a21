//! `apm-api check-cluster`: connects to every database host of the cluster and reports its role,
//! as the original's `manage.py check_cluster_dbs` (spec §4.5), lines and exit status included.

use std::time::{Duration, Instant};

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::config::{self, ConfigError, HostPort};

#[derive(Debug, Default, clap::Args)]
pub struct Options {
    /// Hosts to check, `h1[:port],h2[:port]` (default: CLUSTER_DB_HOSTS, else the primary and replicas)
    #[arg(long)]
    pub hosts: Option<String>,
    /// Connection timeout in seconds (default: DB_CONNECT_TIMEOUT, else 5)
    #[arg(long)]
    pub timeout: Option<u64>,
    /// libpq sslmode (default: DB_SSLMODE)
    #[arg(long)]
    pub sslmode: Option<String>,
}

fn env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        std::env::var(n)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    })
}

/// The hosts to check, first match wins: --hosts, CLUSTER_DB_HOSTS, the primary and replicas,
/// POSTGRES_HOST.
pub fn targets(opts: &Options) -> Result<Vec<HostPort>, ConfigError> {
    let port_text = env(&["POSTGRES_PORT", "DB_PORT"]).unwrap_or_else(|| "5432".into());
    let port: u16 = port_text
        .parse()
        .map_err(|_| ConfigError::InvalidPort(port_text))?;
    let list = match (&opts.hosts, env(&["CLUSTER_DB_HOSTS"])) {
        (Some(h), _) => h.clone(),
        (None, Some(h)) => h,
        (None, None) => {
            let primary = env(&["CLUSTER_DB_PRIMARY_HOST"]);
            let replicas = env(&["CLUSTER_DB_REPLICA_HOSTS"]);
            match (primary, replicas) {
                (None, None) => {
                    env(&["POSTGRES_HOST", "DB_HOST"]).unwrap_or_else(|| "localhost".into())
                }
                (p, r) => [p, r].into_iter().flatten().collect::<Vec<_>>().join(","),
            }
        }
    };
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|h| config::parse_host(h, port))
        .collect()
}

/// Checks every host; prints a line each; returns the exit code.
pub async fn run(opts: Options) -> anyhow::Result<u8> {
    let database = env(&["POSTGRES_DB", "DB_NAME"]).ok_or(ConfigError::MissingDatabase)?;
    let user = env(&["POSTGRES_APP_USER", "POSTGRES_USER", "DB_USER"]);
    let password = env(&["POSTGRES_APP_PASSWORD", "POSTGRES_PASSWORD", "DB_PASSWORD"]);
    let (Some(user), Some(password)) = (user, password) else {
        anyhow::bail!(
            "Missing DB user/password (POSTGRES_APP_USER/PASSWORD or POSTGRES_USER/PASSWORD)."
        );
    };
    let timeout = Duration::from_secs(
        opts.timeout
            .or_else(|| env(&["DB_CONNECT_TIMEOUT"]).and_then(|t| t.parse().ok()))
            .unwrap_or(5),
    );
    let sslmode = opts.sslmode.clone().or_else(|| env(&["DB_SSLMODE"]));
    let mut failed = Vec::new();
    for target in targets(&opts)? {
        let started = Instant::now();
        let mut o = PgConnectOptions::new()
            .host(&target.host)
            .port(target.port)
            .username(&user)
            .password(&password)
            .database(&database);
        if let Some(m) = sslmode.as_deref().and_then(|m| m.parse::<PgSslMode>().ok()) {
            o = o.ssl_mode(m);
        }
        match tokio::time::timeout(timeout, probe(o, &target)).await {
            Ok(Ok(Some(rows))) => {
                crate::say(&format!(
                    "{target} ok (role=primary, temp rows={rows}, {}ms)",
                    started.elapsed().as_millis()
                ));
            }
            Ok(Ok(None)) => crate::say(&format!(
                "{target} ok (role=replica, read-only, {}ms)",
                started.elapsed().as_millis()
            )),
            Ok(Err(e)) => {
                crate::complain(&format!("{target} failed: {e}"));
                failed.push(target.to_string());
            }
            Err(_) => {
                crate::complain(&format!(
                    "{target} failed: timeout after {}s",
                    timeout.as_secs()
                ));
                failed.push(target.to_string());
            }
        }
    }
    if failed.is_empty() {
        return Ok(0);
    }
    crate::complain(&format!(
        "{} host(s) failed: {}",
        failed.len(),
        failed.join(", ")
    ));
    Ok(1)
}

/// `Some(rows)` on a primary (after writing a probe row to a temporary table), `None` on a replica.
async fn probe(o: PgConnectOptions, target: &HostPort) -> Result<Option<i64>, sqlx::Error> {
    let mut conn = o.connect().await?;
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await?;
    if in_recovery {
        return Ok(None);
    }
    sqlx::query("CREATE TEMP TABLE IF NOT EXISTS apm_cluster_probe (id serial PRIMARY KEY, payload text, created_at timestamptz DEFAULT now())")
        .execute(&mut conn)
        .await?;
    sqlx::query("INSERT INTO apm_cluster_probe (payload) VALUES ($1)")
        .bind(format!("probe@{target}"))
        .execute(&mut conn)
        .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM apm_cluster_probe")
        .fetch_one(&mut conn)
        .await?;
    Ok(Some(rows))
}
