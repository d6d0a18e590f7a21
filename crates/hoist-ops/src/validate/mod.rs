//! The checks behind `hoist validate` and a playbook's `validate` step, one file per topic: each
//! check names what it checked, the value it measured and the threshold it held that value to, so a
//! failure says which standby, which role, by how much. [`run`] reaches everything through the SSH
//! masters of the hosts that carry the services: PostgreSQL and HTTPS through forwarded ports,
//! pgBackRest through the engine's forwarded socket; the check functions themselves take what they
//! check (pools, an engine, an address).
//!
//! - [`replication`], [`roles`]: the databases, through [`db`]'s pools.
//! - [`backups`]: pgBackRest's check, backup ages and WAL continuity.
//! - [`object_store`]: the S3 endpoint's TLS and buckets.
//! - [`api`]: the API's health through its proxy.
//! - [`monitoring`]: every Prometheus target up (a node-exporter per host), the alert rules loaded.

pub mod api;
pub mod backups;
pub mod db;
pub mod monitoring;
pub mod object_store;
pub mod replication;
pub mod roles;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hoist_core::check::{Check, failed};
use hoist_core::playbook::Topic;
use hoist_core::secret::Secret;
use hoist_core::sql::TableName;
use hoist_remote::Host;

use crate::error::{Error, Result};

pub use backups::{RepoSummary, backups, missing_segments};
use db::{DEFAULT_SEGMENT, databases};
pub use db::{pool, segment_size};
pub use replication::{Standby, Thresholds, replication};
pub use roles::roles;

/// A `host:port` as the host that forwards it reaches it.
pub type Address = (String, u16);

/// A role and its password.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: Secret<String>,
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
    pub table: TableName,
    /// The CA (PEM) that the database's certificate is verified by, as every platform client does
    /// (verify-full; the forwarded address, 127.0.0.1, is one of its names); `None` when the
    /// inventory's databases take no TLS.
    pub ca: Option<String>,
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
    pub secret_key: Secret<String>,
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

/// Prometheus behind its TLS proxy on the control host, and the hosts it should watch.
#[derive(Debug, Clone)]
pub struct MonitoringConfig {
    pub host: String,
    pub address: Address,
    pub name: String,
    pub port: u16,
    pub ca: String,
    pub user: String,
    pub password: Secret<String>,
    /// Every host of the inventory: each needs a node-exporter target, up.
    pub hosts: Vec<String>,
}

/// Everything the checks need; a part is `None` when its checks were not asked for.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub db: Option<DbConfig>,
    pub backups: Option<BackupConfig>,
    pub object_store: Option<ObjectStoreConfig>,
    pub api: Option<ApiConfig>,
    pub monitoring: Option<MonitoringConfig>,
}

impl Config {
    /// The inventory hosts whose SSH masters the checks go through.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = [
            self.db.as_ref().map(|c| &c.host),
            self.backups.as_ref().map(|c| &c.host),
            self.object_store.as_ref().map(|c| &c.host),
            self.api.as_ref().map(|c| &c.host),
            self.monitoring.as_ref().map(|c| &c.host),
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

/// Runs the checks of the topics in `which` with the connected hosts.
pub async fn run<H: Host>(
    hosts: &BTreeMap<String, H>,
    cfg: &Config,
    which: &[Topic],
) -> Vec<Check> {
    let wants = |t: Topic| which.contains(&t);
    let ssh = |host: &str| connected(hosts, host);
    let mut out = Vec::new();
    let mut wal_segment = None;
    let db_checks = wants(Topic::Replication) || wants(Topic::Roles);
    if let Some(db) = cfg
        .db
        .as_ref()
        .filter(|_| !db_checks && wants(Topic::Backups))
    {
        // Only the WAL segment size, for the backup checks: the default when the primary is out
        // of reach (a database fault is for the replication checks to report).
        if let Ok(ssh) = ssh(&db.host)
            && let Ok(primary) = pool(ssh, &db.primary, db, &db.admin).await
        {
            wal_segment = Some(segment_size(&primary).await);
        }
    }
    if let Some(db) = cfg.db.as_ref().filter(|_| db_checks) {
        match ssh(&db.host) {
            Ok(ssh) => {
                let (checks, size) =
                    databases(ssh, db, wants(Topic::Replication), wants(Topic::Roles)).await;
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
    if let Some(b) = cfg.backups.as_ref().filter(|_| wants(Topic::Backups)) {
        let engine = match ssh(&b.host) {
            Ok(ssh) => ssh.engine().await.map_err(Error::from),
            Err(e) => Err(e),
        };
        match engine {
            Ok(d) => out.extend(backups(&d, b, wal_segment.unwrap_or(DEFAULT_SEGMENT)).await),
            Err(e) => out.push(failed("backups.check", &b.container, e, "passes")),
        }
    }
    if let Some(o) = cfg
        .object_store
        .as_ref()
        .filter(|_| wants(Topic::ObjectStore))
    {
        match forward(hosts, &o.host, &o.address).await {
            Ok(local) => out.extend(object_store::object_store(local, o).await),
            Err(e) => out.push(failed("object_store.tls", &o.name, e, "answers")),
        }
    }
    if let Some(a) = cfg.api.as_ref().filter(|_| wants(Topic::Api)) {
        match forward(hosts, &a.host, &a.address).await {
            Ok(local) => out.extend(api::api(local, a).await),
            Err(e) => out.push(failed("api.health", &a.name, e, "200")),
        }
    }
    if let Some(m) = cfg.monitoring.as_ref().filter(|_| wants(Topic::Monitoring)) {
        match forward(hosts, &m.host, &m.address).await {
            Ok(local) => out.extend(monitoring::monitoring(local, m).await),
            Err(e) => out.push(failed("monitoring.prometheus", &m.name, e, "answers")),
        }
    }
    out
}

fn connected<'a, H: Host>(hosts: &'a BTreeMap<String, H>, host: &str) -> Result<&'a H> {
    hosts
        .get(host)
        .ok_or_else(|| Error::NotConnected(host.to_owned()))
}

async fn forward(
    hosts: &BTreeMap<String, impl Host>,
    host: &str,
    at: &Address,
) -> Result<SocketAddr> {
    Ok(connected(hosts, host)?.forward_tcp(&at.0, at.1).await?)
}

/// A playbook's `validate` steps during apply: the checks of the topics a play names, through
/// the connected hosts.
#[derive(Debug)]
pub struct PlayChecks<'a, H: Host> {
    pub hosts: &'a BTreeMap<String, H>,
    pub config: &'a Config,
}

impl<H: Host> crate::apply::Validator for PlayChecks<'_, H> {
    fn run(&self, topics: Vec<Topic>) -> futures_util::future::BoxFuture<'_, Vec<Check>> {
        Box::pin(async move { run(self.hosts, self.config, &topics).await })
    }
}
