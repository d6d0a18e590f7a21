//! Drills: rehearsals that prove the platform can recover, run against the real hosts.
//!
//! The restore drill restores a repository's backup into a scratch container on a data host and
//! proves the result is a working database: the scratch container copies the primary's image,
//! configuration files and host names (so it reaches the repository as the primary does), runs
//! `pgbackrest restore` into its own filesystem, starts PostgreSQL on it with archiving off (a
//! restored cluster must never push WAL into the live archive), waits for recovery to end, and
//! measures what it restored. The container is removed whatever happens; nothing of the live
//! cluster is touched.
//!
//! The object-store outage drill stops the object store while the primary keeps committing, and
//! the failover drill ([`failover`]) loses the primary, promotes a standby and puts the declared
//! topology back.

mod failover;

pub use failover::{FailoverConfig, failover};

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
    StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt as _;
use hoist_core::sql::TableName;
use hoist_remote::Engine as _;
use hoist_remote::docker::DockerEngine;

use hoist_remote::{docker, script};
use tokio_util::sync::CancellationToken;

use crate::apply::gate::{self, Gate};
use crate::validate;
use hoist_core::check::Check;
use hoist_remote::SshHost;

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// The inventory host the drill runs on.
    pub host: String,
    /// The container whose image, configuration mounts and host names the scratch one copies.
    pub source: String,
    pub stanza: String,
    pub repo: u32,
    /// A backup label; the repository's newest backup when None.
    pub set: Option<String>,
    pub database: String,
    /// Tables whose rows are counted after the restore.
    pub count: Vec<TableName>,
    /// A table whose rows are also checksummed (md5 of its rows in order).
    pub checksum: Option<TableName>,
    pub timeout: Duration,
}

/// The scratch container's name: one drill at a time per host.
pub const SCRATCH: &str = "hoist-drill-restore";

/// The restore drill on the engine `d` of `c.host`; one check per step, failures included.
pub async fn restore(d: &DockerEngine, c: &RestoreConfig) -> Vec<Check> {
    let target = format!("repo{}", c.repo);
    let started = Instant::now();
    let mut out = match run(d, c).await {
        Ok(lines) => read(&lines, c, &target),
        Err(e) => vec![Check::new("drill.restore", &target, false, e, "restores")],
    };
    remove(d, SCRATCH).await;
    let ok = out.iter().all(|k| k.ok);
    out.push(Check::new(
        "drill.total",
        &target,
        ok,
        format!("{:.1} s", started.elapsed().as_secs_f64()),
        format!("every step, within {} s", c.timeout.as_secs()),
    ));
    out
}

/// Creates the scratch container from the source's image and configuration, runs the script to
/// its end, and returns its output lines.
async fn run(d: &DockerEngine, c: &RestoreConfig) -> Result<Vec<String>, String> {
    let source = d
        .client()
        .inspect_container(&c.source, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("{}: {e}", c.source))?;
    let config = source.config.unwrap_or_default();
    let host_config = source.host_config.unwrap_or_default();
    // Only the read-only files (configuration, certificates): never the live data or socket.
    let mounts: Vec<Mount> = source
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.typ.as_deref() == Some("bind") && m.rw == Some(false))
        .map(|m| Mount {
            target: m.destination,
            source: m.source,
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        })
        .collect();
    let cmd = script::restore_drill(&script::Restore {
        stanza: &c.stanza,
        repo: c.repo,
        set: c.set.as_deref(),
        database: &c.database,
        checksum: c.checksum.as_ref().map(TableName::plain).as_deref(),
        postgres: &config.cmd.unwrap_or_default(),
    });
    let body = ContainerCreateBody {
        image: config.image,
        user: config.user,
        entrypoint: Some(cmd),
        cmd: Some(Vec::new()),
        env: Some(vec![format!(
            "COUNT_TABLES={}",
            c.count
                .iter()
                .map(TableName::plain)
                .collect::<Vec<_>>()
                .join(" ")
        )]),
        labels: Some(HashMap::from([(
            "io.hoist.drill".to_owned(),
            "restore".to_owned(),
        )])),
        host_config: Some(HostConfig {
            mounts: Some(mounts),
            extra_hosts: host_config.extra_hosts,
            ..Default::default()
        }),
        ..Default::default()
    };
    let (exit, logs) = run_scratch(d, SCRATCH, body, c.timeout).await?;
    if exit != 0 {
        // pgBackRest's and PostgreSQL's own error lines say what went wrong.
        let said: Vec<&str> = logs
            .lines()
            .filter(|l| !l.starts_with("hoist-drill ") && !l.trim().is_empty())
            .collect();
        let errors: Vec<&str> = said
            .iter()
            .copied()
            .filter(|l| l.contains("ERROR") || l.contains("FATAL"))
            .collect();
        let shown = if errors.is_empty() { said } else { errors };
        let tail = &shown[shown.len().saturating_sub(5)..];
        return Err(format!("exit {exit}: {}", tail.join(" | ")));
    }
    Ok(logs.lines().map(str::to_owned).collect())
}

/// Creates the container `name` (replacing a leftover one), runs it to its end within `timeout`,
/// and returns its exit code and logs. The caller removes it.
async fn run_scratch(
    d: &DockerEngine,
    name: &str,
    body: ContainerCreateBody,
    timeout: Duration,
) -> Result<(i64, String), String> {
    remove(d, name).await;
    d.client()
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await
        .map_err(|e| format!("creating {name}: {e}"))?;
    d.client()
        .start_container(name, None::<StartContainerOptions>)
        .await
        .map_err(|e| format!("starting {name}: {e}"))?;
    let mut waiting = d
        .client()
        .wait_container(name, None::<WaitContainerOptions>);
    let exit = match tokio::time::timeout(timeout, waiting.next()).await {
        Err(_) => return Err(format!("{name}: not done after {} s", timeout.as_secs())),
        // A non-zero exit arrives as an error carrying the code.
        Ok(Some(Ok(r))) => r.status_code,
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
        Ok(Some(Err(e))) => return Err(e.to_string()),
        Ok(None) => -1,
    };
    Ok((exit, d.logs_tail(name, 10_000).await))
}

/// Removes a container, running or not, if it exists.
async fn remove(d: &DockerEngine, name: &str) {
    let _ = d
        .client()
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
}

fn seconds(end: &str, start: &str) -> f64 {
    end.parse::<f64>().unwrap_or(0.0) - start.parse::<f64>().unwrap_or(0.0)
}

/// The checks from the script's `hoist-drill` lines.
fn read(lines: &[String], c: &RestoreConfig, target: &str) -> Vec<Check> {
    let mut out = Vec::new();
    let fields = |l: &str| -> Vec<String> {
        l.strip_prefix("hoist-drill ")
            .map(|r| r.splitn(3, ' ').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let mut label = String::from("the newest backup");
    for line in lines {
        let f = fields(line);
        match f.first().map(String::as_str) {
            Some("info") => {
                let json = f[1..].join(" ");
                if let Some(l) = backup_label(&json, c.repo, c.set.as_deref()) {
                    label = l;
                }
            }
            Some("restored") if f.len() == 3 => out.push(Check::new(
                "drill.restore",
                target,
                true,
                format!("{label} restored in {:.1} s", seconds(&f[1], &f[2])),
                "restores",
            )),
            Some("recovered") if f.len() == 3 => out.push(Check::new(
                "drill.recovery",
                target,
                true,
                format!("recovered and promoted in {:.1} s", seconds(&f[1], &f[2])),
                "PostgreSQL starts on it",
            )),
            Some("size") if f.len() >= 2 => {
                let bytes: u64 = f[1].trim().parse().unwrap_or(0);
                out.push(Check::new(
                    "drill.database",
                    &c.database,
                    bytes > 0,
                    format!("{:.1} MB", bytes as f64 / 1e6),
                    "answers",
                ));
            }
            Some("count") if f.len() == 3 => {
                let n = f[2].trim();
                out.push(Check::new(
                    "drill.rows",
                    &f[1],
                    n.parse::<u64>().is_ok(),
                    n,
                    "readable",
                ));
            }
            Some("checksum") if f.len() == 3 => {
                let v = f[2].trim();
                out.push(Check::new(
                    "drill.checksum",
                    &f[1],
                    v.split(' ')
                        .next()
                        .is_some_and(|n| n.parse::<u64>().is_ok()),
                    v,
                    "rows and md5",
                ));
            }
            _ => {}
        }
    }
    if !out.iter().any(|k| k.check == "drill.recovery") {
        out.push(Check::new(
            "drill.recovery",
            target,
            false,
            "the drill ended before PostgreSQL recovered",
            "PostgreSQL starts on it",
        ));
    }
    out
}

/// The label of the backup a restore of `repo` takes: `set`, or the repository's newest.
fn backup_label(info: &str, repo: u32, set: Option<&str>) -> Option<String> {
    if let Some(s) = set {
        return Some(s.to_owned());
    }
    let doc: serde_json::Value = serde_json::from_str(info).ok()?;
    doc.get(0)?["backup"]
        .as_array()?
        .iter()
        .filter(|b| b["database"]["repo-key"].as_u64() == Some(repo.into()))
        .max_by_key(|b| b["timestamp"]["stop"].as_u64().unwrap_or(0))
        .and_then(|b| b["label"].as_str())
        .map(str::to_owned)
}

/// The object-store outage drill: what stops, for how long, and what proves recovery.
#[derive(Debug, Clone)]
pub struct OutageConfig {
    /// The object store's container on the control host (its TLS front: the S3 endpoint).
    pub container: String,
    /// How long the object store stays down.
    pub hold: Duration,
    /// How long archiving may take to catch up once it is back.
    pub catch_up: Duration,
}

/// pg_stat_archiver: archived and failed counts, last archived and last failed segment.
type Archiver = (i64, i64, String, String);

async fn archiver(primary: &sqlx::PgPool) -> Result<Archiver, String> {
    sqlx::query_as(
        "SELECT archived_count, failed_count, coalesce(last_archived_wal, ''), \
                coalesce(last_failed_wal, '') FROM pg_stat_archiver",
    )
    .fetch_one(primary)
    .await
    .map_err(|e| e.to_string())
}

/// Writes a row (so there is WAL to switch) and switches to a new segment; returns the closed
/// segment's name, which the archiver must push.
async fn write_and_switch(primary: &sqlx::PgPool) -> Result<String, String> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS hoist_drill_outage (at timestamptz PRIMARY KEY DEFAULT clock_timestamp())",
    )
    .execute(primary)
    .await
    .map_err(|e| e.to_string())?;
    sqlx::query("INSERT INTO hoist_drill_outage DEFAULT VALUES")
        .execute(primary)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(primary)
        .await
        .map_err(|e| e.to_string())
}

/// The object-store outage drill with the connected hosts: the primary as `cfg.db` says (through
/// its data host's master), the object store's container on `cfg.backups`' control host; then the
/// backup checks of `hoist validate` (pgbackrest check, WAL continuity) prove nothing was lost.
pub async fn objectstore_outage(
    hosts: &BTreeMap<String, SshHost>,
    cfg: &validate::Config,
    c: &OutageConfig,
    cancel: &CancellationToken,
) -> Vec<Check> {
    let (Some(db), Some(b)) = (&cfg.db, &cfg.backups) else {
        return vec![Check::new(
            "drill.outage",
            &c.container,
            false,
            "needs the database and backup settings",
            "configured",
        )];
    };
    let (Some(data), Some(control)) = (hosts.get(&db.host), hosts.get(&b.host)) else {
        return vec![Check::new(
            "drill.outage",
            &c.container,
            false,
            "hosts not connected",
            "connected",
        )];
    };
    let primary = match validate::pool(data, &db.primary, &db.database, &db.admin).await {
        Ok(p) => p,
        Err(e) => {
            return vec![Check::new(
                "drill.archiver",
                "primary",
                false,
                e,
                "readable",
            )];
        }
    };
    let d = match docker::connect(control).await {
        Ok(d) => d,
        Err(e) => {
            return vec![Check::new(
                "drill.outage",
                &c.container,
                false,
                e.to_string(),
                "stopped",
            )];
        }
    };
    let mut out = outage(&b.host, &d, &primary, c, cancel).await;
    let segment = validate::segment_size(&primary).await;
    out.extend(validate::backups(&d, b, segment).await);
    out
}

/// Stops the object store for `c.hold` while the primary keeps writing, starts it again, and
/// proves that WAL archived during the outage caught up: writes commit while it is down, the
/// segments closed meanwhile are not archived (the outage was real), and once it is back every one
/// of them is, within `c.catch_up`. The object store is started again whatever happens.
async fn outage(
    host: &str,
    d: &DockerEngine,
    primary: &sqlx::PgPool,
    c: &OutageConfig,
    cancel: &CancellationToken,
) -> Vec<Check> {
    let target = c.container.as_str();
    let mut out = Vec::new();
    let before = match archiver(primary).await {
        Ok(a) => a,
        Err(e) => {
            return vec![Check::new(
                "drill.archiver",
                "primary",
                false,
                e,
                "readable",
            )];
        }
    };
    let stopped = d
        .client()
        .stop_container(
            target,
            Some(
                bollard::query_parameters::StopContainerOptionsBuilder::default()
                    .t(10)
                    .build(),
            ),
        )
        .await;
    if let Err(e) = stopped {
        return vec![Check::new(
            "drill.outage",
            target,
            false,
            e.to_string(),
            "stopped",
        )];
    }
    let down = Instant::now();
    // While it is down: the primary still commits, and the closed segment waits.
    let written = Instant::now();
    let during = write_and_switch(primary).await;
    out.push(match &during {
        Ok(seg) => Check::new(
            "drill.writes_during_outage",
            "primary",
            true,
            format!(
                "committed in {} ms, closed {seg}",
                written.elapsed().as_millis()
            ),
            "commit",
        ),
        Err(e) => Check::new("drill.writes_during_outage", "primary", false, e, "commit"),
    });
    // A cancellation (Ctrl-C, SIGTERM, SIGHUP) ends the outage early: the store is started
    // again below either way.
    let interrupted = tokio::select! {
        () = tokio::time::sleep(c.hold.saturating_sub(down.elapsed())) => false,
        () = cancel.cancelled() => true,
    };
    if interrupted {
        out.push(Check::new(
            "drill.outage",
            target,
            false,
            format!("interrupted after {:.0} s", down.elapsed().as_secs_f64()),
            format!("held {} s", c.hold.as_secs()),
        ));
    }
    let held = archiver(primary).await;
    let started = d.start(target).await;
    let back = Instant::now();
    if let (Ok(seg), Ok(a)) = (&during, &held) {
        let pending = a.2.as_str() < seg.as_str();
        out.push(Check::new(
            "drill.archive_held",
            "primary",
            pending,
            format!(
                "last archived {}, {} failed attempt(s) in {:.0} s",
                if a.2.is_empty() { "none" } else { &a.2 },
                a.1 - before.1,
                down.elapsed().as_secs_f64()
            ),
            format!("{seg} not archived while down"),
        ));
    }
    if let Err(e) = started {
        out.push(Check::new(
            "drill.restarted",
            target,
            false,
            e.to_string(),
            "healthy",
        ));
        return out;
    }
    // Started again whatever happened: a cancellation no longer applies.
    let healthy = gate::wait(
        host,
        d,
        target,
        Gate::Healthy,
        Duration::from_secs(120),
        &CancellationToken::new(),
    )
    .await;
    out.push(match healthy {
        Ok(()) => Check::new(
            "drill.restarted",
            target,
            true,
            format!("healthy after {:.1} s", back.elapsed().as_secs_f64()),
            "healthy",
        ),
        Err(e) => Check::new("drill.restarted", target, false, e.to_string(), "healthy"),
    });
    // A new segment wakes the archiver at once instead of at its next timeout.
    let last = match write_and_switch(primary).await {
        Ok(seg) => seg,
        Err(e) => {
            out.push(Check::new(
                "drill.catch_up",
                "primary",
                false,
                e,
                "archived",
            ));
            return out;
        }
    };
    let threshold = format!("{last} archived within {} s", c.catch_up.as_secs());
    loop {
        match archiver(primary).await {
            Ok(a) if a.2.as_str() >= last.as_str() => {
                out.push(Check::new(
                    "drill.catch_up",
                    "primary",
                    true,
                    format!(
                        "{} segment(s) archived {:.1} s after the store was back",
                        a.0 - before.0,
                        back.elapsed().as_secs_f64()
                    ),
                    &threshold,
                ));
                break;
            }
            Ok(a) if back.elapsed() >= c.catch_up => {
                out.push(Check::new(
                    "drill.catch_up",
                    "primary",
                    false,
                    format!("last archived {} after {} s", a.2, c.catch_up.as_secs()),
                    &threshold,
                ));
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => {
                out.push(Check::new(
                    "drill.catch_up",
                    "primary",
                    false,
                    e,
                    &threshold,
                ));
                break;
            }
        }
    }
    out
}
