//! `hoist validate`: proves that the platform works, not just that its containers run. The checks
//! (hoist_ops::validate) go through the SSH masters of the hosts that carry each service: the
//! databases through local ports the first data host forwards (so databases that publish no port
//! are covered too), pgBackRest in the scheduler container through the first control host's engine,
//! the object store and the API over HTTPS through forwarded ports, verified as the names their
//! clients use. A table for people, `--json` for CI; exit 1 on any failure. Addresses, names and
//! limits come from the `validate_*` variables (vars/defaults.yml). The same checks run as a
//! playbook's `validate` step (`config` is shared with apply).

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use hoist_core::check::Check;
use hoist_core::playbook::Topic;
use hoist_core::project::Project;
use hoist_core::secret::Secret;
use hoist_core::vars::HostVars;
use hoist_ops::validate::{
    self, Address, ApiConfig, BackupConfig, Config, DbConfig, Login, MonitoringConfig,
    ObjectStoreConfig, Thresholds,
};
use serde_json::Value;

use crate::cli::Global;
use crate::commands::remote;
use crate::output::Output;

/// The variables of the first host of `group`, which the checks of that role go through.
pub(super) fn first_of<'p>(project: &'p Project, group: &str) -> anyhow::Result<Vars<'p>> {
    let hosts = project
        .inventory
        .select(group)
        .map_err(anyhow::Error::msg)?;
    let host = hosts
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("the inventory has no host in group `{group}`"))?;
    let vars = project
        .vars
        .get(&host)
        .ok_or_else(|| anyhow!("no variables for {host}"))?;
    Ok(Vars { host, vars })
}

/// One host's variables, read with errors naming the host and the variable.
pub struct Vars<'a> {
    pub host: String,
    vars: &'a HostVars,
}

impl Vars<'_> {
    pub fn get(&self, name: &str) -> anyhow::Result<String> {
        self.vars
            .scalar(name)
            .ok_or_else(|| anyhow!("{}: the variable `{name}` is not set", self.host))
    }

    fn number(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.get(name)?;
        text.trim()
            .parse::<f64>()
            .with_context(|| format!("{}: `{name}` = {text:?} is not a number", self.host))
    }

    fn port(&self, name: &str) -> anyhow::Result<u16> {
        let text = self.get(name)?;
        text.trim()
            .parse()
            .with_context(|| format!("{}: `{name}` = {text:?} is not a port", self.host))
    }

    fn address(&self, name: &str) -> anyhow::Result<Address> {
        host_port(&self.get(name)?).with_context(|| format!("{}: `{name}`", self.host))
    }

    /// A list of strings; absent is empty.
    pub fn strings(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let wrong = || anyhow!("{}: `{name}` must be a list of strings", self.host);
        match self.vars.values.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
                .collect(),
            Some(_) => Err(wrong()),
        }
    }

    fn login(&self, user: &str, password: &str) -> anyhow::Result<Login> {
        Ok(Login {
            user: self.get(user)?,
            password: Secret::new(self.get(password)?),
        })
    }
}

fn host_port(text: &str) -> anyhow::Result<Address> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("expected host:port, found {text:?}"))?;
    let port = port
        .parse()
        .with_context(|| format!("{port:?} is not a port"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// An entry of `validate_standbys`: the standby's name on the primary, its address and,
/// for the failover drill, its container.
struct StandbyVars {
    name: String,
    address: Address,
    container: Option<String>,
}

/// The data host's `validate_standbys`; a malformed entry is an error naming its field.
fn standbys(v: &Vars) -> anyhow::Result<Vec<StandbyVars>> {
    let host = &v.host;
    let items = match v.vars.values.get("validate_standbys") {
        Some(Value::Array(items)) => items,
        Some(_) => bail!("{host}: `validate_standbys` must be a list"),
        None => return Ok(Vec::new()),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |f: &str| {
                item[f]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("{host}: `validate_standbys[{i}].{f}` is not set"))
            };
            let address = host_port(&field("address")?)
                .with_context(|| format!("{host}: `validate_standbys[{i}].address`"))?;
            Ok(StandbyVars {
                name: field("name")?,
                address,
                container: field("container").ok(),
            })
        })
        .collect()
}

/// Each standby's name and container, which the failover drill stops and starts.
pub fn standby_containers(v: &Vars) -> anyhow::Result<Vec<(String, String)>> {
    standbys(v)?
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let container = s.container.ok_or_else(|| {
                anyhow!("{}: `validate_standbys[{i}].container` is not set", v.host)
            })?;
            Ok((s.name, container))
        })
        .collect()
}

/// Where the databases are and the limits replication is held to: the first data host's variables.
pub fn db_config(project: &Project) -> anyhow::Result<DbConfig> {
    let v = first_of(project, "data")?;
    let standbys = standbys(&v)?
        .into_iter()
        .map(|s| (s.name, s.address))
        .collect();
    Ok(DbConfig {
        primary: v.address("validate_primary")?,
        standbys,
        database: v.get("postgres_db")?,
        admin: v.login("postgres_user", "postgres_password")?,
        writer: v.login("postgres_writer_user", "postgres_writer_password")?,
        reader: v.login("postgres_reader_user", "postgres_reader_password")?,
        table: v
            .get("validate_roles_table")?
            .parse()
            .map_err(|e| anyhow!("{}: `validate_roles_table`: {e}", v.host))?,
        ca: match v.get("db_sslmode")?.as_str() {
            "disable" | "allow" | "prefer" => None,
            _ => Some(v.get("tls_ca_cert")?),
        },
        thresholds: Thresholds {
            max_lag_bytes: v.number("validate_max_lag_bytes")? as i64,
            max_lag_seconds: v.number("validate_max_lag_seconds")?,
            canary_timeout: Duration::from_secs_f64(v.number("validate_canary_timeout_seconds")?),
        },
        host: v.host.clone(),
    })
}

/// The checks' configuration for `which`, from the inventory's variables; a missing or malformed
/// variable is an error naming the host and the variable.
pub fn config(project: &Project, which: &[Topic]) -> anyhow::Result<Config> {
    let wants = |t: Topic| which.contains(&t);
    let mut cfg = Config::default();
    if wants(Topic::Replication) || wants(Topic::Roles) {
        cfg.db = Some(db_config(project)?);
    } else if wants(Topic::Backups) {
        // Only to ask the primary its WAL segment size, which WAL continuity counts in.
        cfg.db = db_config(project).ok();
    }
    if wants(Topic::Backups) {
        let v = first_of(project, "control")?;
        let hours = |name: &str| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs_f64(v.number(name)? * 3600.0))
        };
        cfg.backups = Some(BackupConfig {
            container: v.get("validate_backup_container")?,
            user: v.get("validate_backup_user")?,
            stanza: v.get("pgbackrest_stanza")?,
            repos: vec![
                (1, hours("validate_backup_repo1_max_age_hours")?),
                (2, hours("validate_backup_repo2_max_age_hours")?),
            ],
            host: v.host.clone(),
        });
    }
    if wants(Topic::ObjectStore) {
        let v = first_of(project, "control")?;
        cfg.object_store = Some(ObjectStoreConfig {
            address: v.address("validate_object_store")?,
            name: v.get("objectstore_host")?,
            port: v.port("objectstore_port")?,
            ca: v.get("validate_object_store_ca")?,
            region: v.get("objectstore_region")?,
            access_key: v.get("objectstore_access_key_id")?,
            secret_key: Secret::new(v.get("objectstore_secret_key")?),
            buckets: vec![
                v.get("objectstore_bucket")?,
                v.get("objectstore_bucket_cold")?,
            ],
            path_style: v.get("objectstore_uri_style")? != "host",
            host: v.host.clone(),
        });
    }
    if wants(Topic::Api) {
        let v = first_of(project, "app")?;
        cfg.api = Some(ApiConfig {
            address: v.address("validate_api")?,
            name: v.get("app_public_host")?,
            port: v.port("app_https_port")?,
            ca: v.get("tls_ca_cert")?,
            host: v.host.clone(),
        });
    }
    if wants(Topic::Monitoring) {
        let v = first_of(project, "control")?;
        cfg.monitoring = Some(MonitoringConfig {
            address: v.address("validate_monitoring")?,
            name: v.get("validate_monitoring_name")?,
            port: v.port("prometheus_host_port")?,
            ca: v.get("tls_ca_cert")?,
            user: v.get("prometheus_user")?,
            password: Secret::new(v.get("prometheus_password")?),
            hosts: project.inventory.hosts.keys().cloned().collect(),
            host: v.host.clone(),
        });
    }
    Ok(cfg)
}

pub fn run(global: &Global, only: &[String], out: &Output) -> anyhow::Result<u8> {
    let mut which = Vec::new();
    for c in only {
        match Topic::parse(c) {
            Some(t) => which.push(t),
            None => bail!("unknown check `{c}` (known: {})", Topic::known()),
        }
    }
    if which.is_empty() {
        which = Topic::ALL.to_vec();
    }
    let Some(project) = super::load(global, super::SecretsMode::Required, out)? else {
        return Ok(1);
    };
    let cfg = config(&project, &which)?;
    let rt = tokio::runtime::Runtime::new()?;
    let checks: Vec<Check> = rt.block_on(async {
        let hosts = remote::connect_every(&project.inventory, &cfg.hosts(), global).await?;
        let checks = validate::run(&hosts, &cfg, &which).await;
        remote::close(hosts).await;
        Ok::<_, anyhow::Error>(checks)
    })?;
    print_checks(global, out, serde_json::Map::new(), &checks)
}

/// Prints checks as a table, or with `--json` as a versioned document (`about` fields first);
/// the exit code is 1 when any failed.
pub(super) fn print_checks(
    global: &Global,
    out: &Output,
    about: serde_json::Map<String, Value>,
    checks: &[Check],
) -> anyhow::Result<u8> {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if global.json {
        let mut doc = serde_json::Map::new();
        doc.insert("version".into(), 1.into());
        doc.extend(about);
        doc.insert("checks".into(), serde_json::to_value(checks)?);
        doc.insert("failed".into(), failed.into());
        out.print(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
    } else {
        out.print(&hoist_core::check::table(checks));
    }
    Ok(u8::from(failed > 0))
}
