//! `hoist validate`: proves that the platform works, not just that its containers run. From the
//! first data host's SSH master it forwards local ports to the primary and each standby (as that
//! host reaches them, so databases that publish no port are covered too), then runs the replication
//! and roles checks (hoist_remote::validate). A table for people, `--json` for CI; exit 1 on any
//! failure. Addresses, names and limits come from the `validate_*` variables (vars/defaults.yml).

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use hoist_core::diag::Diagnostics;
use hoist_core::vars::{HostVars, SecretsMode};
use hoist_remote::validate::{self, Check, Standby, Thresholds};
use hoist_remote::{SshHost, validate as checks};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::cli::Global;
use crate::commands::remote;
use crate::output::Output;

fn var(vars: &HostVars, name: &str) -> anyhow::Result<String> {
    vars.scalar(name)
        .ok_or_else(|| anyhow!("the variable `{name}` is not set for this host"))
}

fn host_port(text: &str, what: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{what}: expected host:port, found {text:?}"))?;
    let port = port
        .parse()
        .with_context(|| format!("{what}: {port:?} is not a port"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

async fn pool(
    ssh: &SshHost,
    at: &(String, u16),
    db: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<PgPool> {
    let local = ssh.forward_tcp(&at.0, at.1).await?;
    let options = PgConnectOptions::new()
        .host(&local.ip().to_string())
        .port(local.port())
        .database(db)
        .username(user)
        .password(password)
        .application_name("hoist-validate");
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to {}:{} as {user}", at.0, at.1))
}

pub fn run(global: &Global, out: &Output) -> anyhow::Result<u8> {
    let inv = super::inventory_dir(global)?;
    let mut diags = Diagnostics::new();
    let Some(project) = super::load_project(global, &inv, SecretsMode::Required, &mut diags)?
    else {
        for d in diags.sorted() {
            out.eprint(&format!("{d}\n"));
        }
        return Ok(1);
    };
    let data = project
        .inventory
        .select("data")
        .map_err(anyhow::Error::msg)?;
    let Some(host) = data.first().cloned() else {
        bail!("the inventory has no host in group `data`");
    };
    let vars = project
        .vars
        .get(&host)
        .ok_or_else(|| anyhow!("no variables for {host}"))?;
    let primary_at = host_port(&var(vars, "validate_primary")?, "validate_primary")?;
    let standbys: Vec<(String, (String, u16))> = match vars.values.get("validate_standbys") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                let name = i["name"].as_str().unwrap_or_default().to_owned();
                let at = host_port(
                    i["address"].as_str().unwrap_or_default(),
                    "validate_standbys",
                )?;
                Ok((name, at))
            })
            .collect::<anyhow::Result<_>>()?,
        _ => Vec::new(),
    };
    let number = |name: &str| -> anyhow::Result<f64> {
        var(vars, name)?
            .parse::<f64>()
            .with_context(|| format!("`{name}` is not a number"))
    };
    let t = Thresholds {
        max_lag_bytes: number("validate_max_lag_bytes")? as i64,
        max_lag_seconds: number("validate_max_lag_seconds")?,
        canary_timeout: Duration::from_secs_f64(number("validate_canary_timeout_seconds")?),
    };
    let db = var(vars, "postgres_db")?;
    let admin = (var(vars, "postgres_user")?, var(vars, "postgres_password")?);
    let writer = (
        var(vars, "postgres_writer_user")?,
        var(vars, "postgres_writer_password")?,
    );
    let reader = (
        var(vars, "postgres_reader_user")?,
        var(vars, "postgres_reader_password")?,
    );
    let table = var(vars, "validate_roles_table")?;

    let rt = tokio::runtime::Runtime::new()?;
    let checks: Vec<Check> = rt.block_on(async {
        let (mut hosts, failed) =
            remote::connect(&project.inventory, std::slice::from_ref(&host), global).await;
        if let Some(e) = failed.get(&host) {
            return Err(anyhow!("{e}"));
        }
        let ssh = hosts
            .remove(&host)
            .ok_or_else(|| anyhow!("{host}: not connected"))?;
        let result = async {
            let primary = pool(&ssh, &primary_at, &db, &admin.0, &admin.1).await?;
            let mut pools = Vec::new();
            let mut checks = Vec::new();
            for (name, at) in &standbys {
                match pool(&ssh, at, &db, &admin.0, &admin.1).await {
                    Ok(p) => pools.push(Standby {
                        name: name.clone(),
                        pool: p,
                    }),
                    Err(e) => checks.push(Check {
                        check: "replication.standby_reachable".into(),
                        target: name.clone(),
                        ok: false,
                        measured: format!("{e:#}"),
                        threshold: "answers".into(),
                    }),
                }
            }
            // A standby that does not answer is also reported by the primary (not streaming).
            let mut expected = pools.clone();
            for (name, _) in &standbys {
                if !expected.iter().any(|s| &s.name == name) {
                    expected.push(Standby {
                        name: name.clone(),
                        pool: primary.clone(),
                    });
                }
            }
            checks.extend(validate::replication(&primary, &expected, &t).await);
            checks.retain(|c| {
                // The stand-in connection of an unreachable standby proves nothing about it.
                !(pools.iter().all(|p| p.name != c.target)
                    && matches!(
                        c.check.as_str(),
                        "replication.standby_in_recovery" | "replication.canary"
                    ))
            });
            let w = pool(&ssh, &primary_at, &db, &writer.0, &writer.1).await?;
            let r = pool(&ssh, &primary_at, &db, &reader.0, &reader.1).await?;
            checks.extend(checks::roles((&writer.0, &w), (&reader.0, &r), &table).await);
            Ok::<Vec<Check>, anyhow::Error>(checks)
        }
        .await;
        ssh.close().await;
        result
    })?;
    let failed = checks.iter().filter(|c| !c.ok).count();
    if global.json {
        let doc =
            serde_json::json!({"version": 1, "host": host, "checks": checks, "failed": failed});
        out.print(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
    } else {
        out.print(&validate::table(&checks));
    }
    Ok(u8::from(failed > 0))
}
