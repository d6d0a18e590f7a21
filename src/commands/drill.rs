//! `hoist drill ...`: recoveries rehearsed on the real hosts (hoist_ops::drill). `restore`
//! restores a repository's backup into a scratch container on the first data host;
//! `objectstore-outage` stops the bundled object store for a while and proves archiving catches
//! up; `failover` stops the primary, promotes a standby and puts the topology back. Each step is reported as a check, as `hoist validate` does: a table, or `--json`; exit 1
//! when a step failed.

use std::time::Duration;

use anyhow::{anyhow, bail};
use hoist_core::check::Check;
use hoist_core::playbook::Topic;
use hoist_ops::drill::{self, FailoverConfig, OutageConfig, RestoreConfig};
use hoist_remote::Host as _;

use crate::cli::{DrillCommand, Global};
use crate::commands::remote;
use crate::commands::validate::{first_of, print_checks};
use crate::output::Output;

pub fn run(global: &Global, cmd: DrillCommand, out: &Output) -> anyhow::Result<u8> {
    match cmd {
        DrillCommand::Restore {
            repo,
            set,
            checksum,
            timeout,
            yes,
        } => restore(global, repo, set, checksum, timeout, yes, out),
        DrillCommand::ObjectstoreOutage {
            hold,
            catch_up,
            yes,
        } => objectstore_outage(global, hold, catch_up, yes, out),
        DrillCommand::Failover { to, timeout, yes } => failover(global, to, timeout, yes, out),
    }
}

/// A drill runs only where the inventory allows drills (`drills_allowed: true` on the host), and
/// only once confirmed: `--yes`, or an answer on a terminal.
fn allowed(
    project: &hoist_core::project::Project,
    host: &str,
    what: &str,
    yes: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let vars = project
        .vars
        .get(host)
        .ok_or_else(|| anyhow!("{host}: not in the inventory"))?;
    let allowed = vars.scalar("drills_allowed").map(|v| v.trim().to_owned());
    if allowed.as_deref() != Some("true") {
        bail!(
            "{host}: this inventory does not allow drills (set `drills_allowed: true` in its group_vars to allow them); {what}"
        );
    }
    if yes {
        return Ok(());
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("{host}: {what}; run it again with --yes");
    }
    super::apply::ask(&format!("{host}: {what}. Go on? [y/N] "), out)
}

/// Prints the drill's checks; the exit code says whether every step passed.
fn report(
    global: &Global,
    out: &Output,
    drill: &str,
    host: &str,
    checks: &[Check],
) -> anyhow::Result<u8> {
    let mut about = serde_json::Map::new();
    about.insert("drill".into(), drill.into());
    about.insert("host".into(), host.into());
    print_checks(global, out, about, checks)
}

fn objectstore_outage(
    global: &Global,
    hold: u64,
    catch_up: u64,
    yes: bool,
    out: &Output,
) -> anyhow::Result<u8> {
    let Some(project) = super::load(global, super::SecretsMode::Required, out)? else {
        return Ok(1);
    };
    let which = [Topic::Replication, Topic::Backups];
    let cfg = super::validate::config(&project, &which)?;
    let v = first_of(&project, "control")?;
    let control = &v.host;
    if v.get("objectstore_profile")? != "garage" {
        bail!(
            "{control}: objectstore_profile is not `garage`: the drill stops the bundled object store, and this inventory uses another S3 endpoint"
        );
    }
    allowed(
        &project,
        control,
        &format!(
            "the object-store outage drill stops the object store for {hold} s (WAL archiving waits meanwhile)"
        ),
        yes,
        out,
    )?;
    let outage = OutageConfig {
        container: v.get("drill_objectstore_container")?,
        hold: Duration::from_secs(hold),
        catch_up: Duration::from_secs(catch_up),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let checks = rt.block_on(async {
        let hosts = remote::connect_every(&project.inventory, &cfg.hosts(), global).await?;
        let checks = drill::objectstore_outage(&hosts, &cfg, &outage, &super::cancellation()).await;
        remote::close(hosts).await;
        Ok::<_, anyhow::Error>(checks)
    })?;
    report(global, out, "objectstore-outage", control, &checks)
}

fn restore(
    global: &Global,
    repo: u32,
    set: Option<String>,
    checksum: Option<String>,
    timeout: u64,
    yes: bool,
    out: &Output,
) -> anyhow::Result<u8> {
    if !(1..=2).contains(&repo) {
        bail!("--repo: {repo} is not a repository of the platform (1 hot, 2 cold)");
    }
    let Some(project) = super::load(global, super::SecretsMode::Required, out)? else {
        return Ok(1);
    };
    let v = first_of(&project, "data")?;
    let host = v.host.clone();
    allowed(
        &project,
        &host,
        &format!(
            "the restore drill restores repo{repo} into a scratch container on this data host (its disk and CPU)"
        ),
        yes,
        out,
    )?;
    let cfg = RestoreConfig {
        host: host.clone(),
        source: v.get("drill_restore_source")?,
        stanza: v.get("pgbackrest_stanza")?,
        repo,
        set,
        database: v.get("postgres_db")?,
        count: v
            .strings("drill_restore_count")?
            .iter()
            .map(|t| {
                t.parse()
                    .map_err(|e| anyhow!("{host}: `drill_restore_count`: {e}"))
            })
            .collect::<anyhow::Result<_>>()?,
        checksum: checksum
            .map(|t| t.parse().map_err(|e| anyhow!("--checksum: {e}")))
            .transpose()?,
        timeout: Duration::from_secs(timeout),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let checks = rt.block_on(async {
        let hosts =
            remote::connect_every(&project.inventory, std::slice::from_ref(&host), global).await?;
        let checks = match hosts.get(&host) {
            Some(ssh) => match ssh.engine().await {
                Ok(d) => Ok(drill::restore(&d, &cfg, &super::cancellation()).await),
                Err(e) => Err(anyhow::Error::from(e)),
            },
            None => Err(anyhow!("{host}: not connected")),
        };
        remote::close(hosts).await;
        checks
    })?;
    report(global, out, "restore", &host, &checks)
}

fn failover(
    global: &Global,
    to: Option<String>,
    timeout: u64,
    yes: bool,
    out: &Output,
) -> anyhow::Result<u8> {
    let Some(project) = super::load(global, super::SecretsMode::Required, out)? else {
        return Ok(1);
    };
    let db = super::validate::db_config(&project)?;
    let v = first_of(&project, "data")?;
    let failover = FailoverConfig {
        primary: v.get("db_primary_container")?,
        standbys: super::validate::standby_containers(&v)?,
        target: to,
        timeout: Duration::from_secs(timeout),
    };
    allowed(
        &project,
        &db.host,
        &format!(
            "the failover drill stops {} (writes fail until it is back) and re-clones the promoted standby",
            failover.primary
        ),
        yes,
        out,
    )?;
    let rt = tokio::runtime::Runtime::new()?;
    let checks = rt.block_on(async {
        let hosts =
            remote::connect_every(&project.inventory, std::slice::from_ref(&db.host), global)
                .await?;
        let checks = match hosts.get(&db.host) {
            Some(ssh) => Ok(drill::failover(ssh, &db, &failover, &super::cancellation()).await),
            None => Err(anyhow!("{}: not connected", db.host)),
        };
        remote::close(hosts).await;
        checks
    })?;
    report(global, out, "failover", &db.host, &checks)
}
