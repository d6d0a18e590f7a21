//! `hoist drill ...`: recoveries rehearsed on the real hosts (hoist_remote::drill). `restore`
//! restores a repository's backup into a scratch container on the first data host;
//! `objectstore-outage` stops the bundled object store for a while and proves archiving catches
//! up. Each step is reported as a check, as `hoist validate` does: a table, or `--json`; exit 1
//! when a step failed.

use std::time::Duration;

use anyhow::{anyhow, bail};
use hoist_core::diag::Diagnostics;
use hoist_core::project::Project;
use hoist_core::vars::SecretsMode;
use hoist_remote::drill::{self, OutageConfig, RestoreConfig};
use hoist_remote::validate::Check;
use hoist_remote::{docker, validate};
use serde_json::Value;

use crate::cli::{DrillCommand, Global};
use crate::commands::remote;
use crate::output::Output;

pub fn run(global: &Global, cmd: DrillCommand, out: &Output) -> anyhow::Result<u8> {
    match cmd {
        DrillCommand::Restore {
            repo,
            set,
            checksum,
            timeout,
        } => restore(global, repo, set, checksum, timeout, out),
        DrillCommand::ObjectstoreOutage { hold, catch_up } => {
            objectstore_outage(global, hold, catch_up, out)
        }
    }
}

fn load(global: &Global, out: &Output) -> anyhow::Result<Option<Project>> {
    let inv = super::inventory_dir(global)?;
    let mut diags = Diagnostics::new();
    let project = super::load_project(global, &inv, SecretsMode::Required, &mut diags)?;
    if project.is_none() {
        for d in diags.sorted() {
            out.eprint(&format!("{d}\n"));
        }
    }
    Ok(project)
}

/// Prints the drill's checks; the exit code says whether every step passed.
fn report(
    global: &Global,
    out: &Output,
    drill: &str,
    host: &str,
    checks: &[Check],
) -> anyhow::Result<u8> {
    let failed = checks.iter().filter(|c| !c.ok).count();
    if global.json {
        let doc = serde_json::json!({"version": 1, "drill": drill, "host": host, "checks": checks, "failed": failed});
        out.print(&format!("{}\n", serde_json::to_string_pretty(&doc)?));
    } else {
        out.print(&validate::table(checks));
    }
    Ok(u8::from(failed > 0))
}

fn objectstore_outage(
    global: &Global,
    hold: u64,
    catch_up: u64,
    out: &Output,
) -> anyhow::Result<u8> {
    let Some(project) = load(global, out)? else {
        return Ok(1);
    };
    let which = ["replication".to_owned(), "backups".to_owned()];
    let cfg = super::validate::config(&project, &which)?;
    let Some(backups) = &cfg.backups else {
        bail!("no backup settings");
    };
    let control = backups.host.clone();
    let vars = project
        .vars
        .get(&control)
        .ok_or_else(|| anyhow!("no variables for {control}"))?;
    if vars.scalar("objectstore_profile").as_deref() != Some("garage") {
        bail!(
            "{control}: objectstore_profile is not `garage`: the drill stops the bundled object store, and this inventory uses another S3 endpoint"
        );
    }
    let container = vars.scalar("drill_objectstore_container").ok_or_else(|| {
        anyhow!("{control}: the variable `drill_objectstore_container` is not set")
    })?;
    let outage = OutageConfig {
        container,
        hold: Duration::from_secs(hold),
        catch_up: Duration::from_secs(catch_up),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let checks = rt.block_on(async {
        let (hosts, failed) = remote::connect(&project.inventory, &cfg.hosts(), global).await;
        if let Some(e) = failed.values().next() {
            remote::close(hosts).await;
            return Err(anyhow!("{e}"));
        }
        let checks = drill::objectstore_outage(&hosts, &cfg, &outage).await;
        remote::close(hosts).await;
        Ok(checks)
    })?;
    report(global, out, "objectstore-outage", &control, &checks)
}

fn restore(
    global: &Global,
    repo: u32,
    set: Option<String>,
    checksum: Option<String>,
    timeout: u64,
    out: &Output,
) -> anyhow::Result<u8> {
    if !(1..=2).contains(&repo) {
        bail!("--repo: {repo} is not a repository of the platform (1 hot, 2 cold)");
    }
    let Some(project) = load(global, out)? else {
        return Ok(1);
    };
    let data = project
        .inventory
        .select("data")
        .map_err(anyhow::Error::msg)?;
    let host = data
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("the inventory has no host in group `data`"))?;
    let vars = project
        .vars
        .get(&host)
        .ok_or_else(|| anyhow!("no variables for {host}"))?;
    let var = |name: &str| {
        vars.scalar(name)
            .ok_or_else(|| anyhow!("{host}: the variable `{name}` is not set"))
    };
    let count = match vars.values.get("drill_restore_count") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                anyhow!("{host}: `drill_restore_count` must be a list of table names")
            })?,
        Some(_) => bail!("{host}: `drill_restore_count` must be a list of table names"),
        None => Vec::new(),
    };
    let cfg = RestoreConfig {
        host: host.clone(),
        source: var("drill_restore_source")?,
        stanza: var("pgbackrest_stanza")?,
        repo,
        set,
        database: var("postgres_db")?,
        count,
        checksum,
        timeout: Duration::from_secs(timeout),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let checks = rt.block_on(async {
        let (hosts, failed) =
            remote::connect(&project.inventory, std::slice::from_ref(&host), global).await;
        if let Some(e) = failed.values().next() {
            remote::close(hosts).await;
            return Err(anyhow!("{e}"));
        }
        let result = match hosts.get(&host) {
            Some(ssh) => match docker::connect(ssh).await {
                Ok(d) => Ok(drill::restore(&d, &cfg).await),
                Err(e) => Err(anyhow!("{e}")),
            },
            None => Err(anyhow!("{host}: not connected")),
        };
        remote::close(hosts).await;
        result
    })?;
    report(global, out, "restore", &host, &checks)
}
