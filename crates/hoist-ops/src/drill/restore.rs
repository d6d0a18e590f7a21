//! The restore drill: a repository's backup restored into a scratch container on a data host,
//! proved to be a working database.
//!
//! First it checks that the data host has room (the backup's size and a margin free where the
//! engine keeps containers' files): a restore that filled the disk would take the live cluster
//! down with it. The scratch container copies the primary's image, read-only configuration files and host
//! names (so it reaches the repository as the primary does), runs `pgbackrest restore` into its
//! own filesystem, starts PostgreSQL on it with archiving off (a restored cluster must never push
//! WAL into the live archive), waits for recovery to end, and measures what it restored. The
//! container is removed whatever happens; nothing of the live cluster is touched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hoist_core::check::{Check, failed};
use hoist_core::sql::TableName;
use hoist_remote::engine::Scratch;
use hoist_remote::{Engine, script};
use tokio_util::sync::CancellationToken;

use super::LABEL;
use crate::error::{Error, Result};

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

/// The restore drill on the engine `d` of `c.host`; one check per step, failures included. A
/// cancellation ends it early; the scratch container is removed either way.
pub async fn restore(d: &impl Engine, c: &RestoreConfig, cancel: &CancellationToken) -> Vec<Check> {
    let target = format!("repo{}", c.repo);
    let started = Instant::now();
    let mut out = tokio::select! {
        ran = async {
            // Room first: a restore that fills the data host's disk would take the live cluster
            // down with it.
            let room = room(d, c).await;
            if !room.ok {
                return vec![room];
            }
            let mut out = vec![room];
            match run(d, c).await {
                Ok(lines) => out.extend(read(&lines, c, &target)),
                Err(e) => out.push(Check::new("drill.restore", &target, false, e, "restores")),
            }
            out
        } => ran,
        () = cancel.cancelled() => vec![failed(
            "drill.interrupted",
            &target,
            format!("interrupted after {:.0} s", started.elapsed().as_secs_f64()),
            "the drill runs to its end",
        )],
    };
    // Removed whatever happened; a removal that fails leaves it for the next drill to replace.
    let _ = d.remove(SCRATCH).await;
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

/// The restore needs its backup's database size, and a margin, free where the engine keeps
/// containers' files (the source container's root is on the same filesystem as the scratch one's).
const ROOM_MARGIN: f64 = 1.2;

/// Whether the data host has room for the restore: the backup's size (`pgbackrest info`, in the
/// source container) against the space free under the source container's root (`df`).
async fn room(d: &impl Engine, c: &RestoreConfig) -> Check {
    let target = format!("repo{}", c.repo);
    let measured = async {
        let argv = script::pgbackrest(&c.stanza, &["--output=json", "info"]);
        // As PostgreSQL's user, as archive-push runs: no log or lock file made root's.
        let (code, info) = d.exec(&c.source, &argv, Some("postgres")).await?;
        if code != 0 {
            return Err(Error::Exit {
                what: "pgbackrest info".into(),
                code,
                output: info.trim().to_owned(),
            });
        }
        let info: serde_json::Value =
            serde_json::from_str(info.trim()).map_err(|source| Error::Json {
                what: "pgbackrest info",
                source,
            })?;
        let size = backup_size(&info, c.repo, c.set.as_deref())
            .ok_or_else(|| Error::Unexpected(format!("no backup in repo{} to restore", c.repo)))?;
        let df = ["df", "-Pk", "/"].map(str::to_owned);
        let (code, text) = d.exec(&c.source, &df, None).await?;
        let free = free_bytes(&text).filter(|_| code == 0).ok_or_else(|| {
            Error::Unexpected(format!("df did not say how much is free: {}", text.trim()))
        })?;
        Ok::<_, Error>((size, free))
    };
    match measured.await {
        Ok((size, free)) => {
            let needed = (size as f64 * ROOM_MARGIN) as u64;
            Check::new(
                "drill.disk",
                &target,
                free >= needed,
                format!("{:.1} GB free", free as f64 / 1e9),
                format!(
                    ">= {:.1} GB (the backup's {:.1} GB and a margin)",
                    needed as f64 / 1e9,
                    size as f64 / 1e9
                ),
            )
        }
        Err(e) => failed("drill.disk", &target, e, "room for the restore"),
    }
}

/// The database size of the backup a restore of `repo` takes (`set`, or the newest).
fn backup_size(info: &serde_json::Value, repo: u32, set: Option<&str>) -> Option<u64> {
    info.get(0)?["backup"]
        .as_array()?
        .iter()
        .filter(|b| b["database"]["repo-key"].as_u64() == Some(repo.into()))
        .filter(|b| set.is_none_or(|s| b["label"].as_str() == Some(s)))
        .max_by_key(|b| b["timestamp"]["stop"].as_u64().unwrap_or(0))
        .and_then(|b| b["info"]["size"].as_u64())
}

/// The bytes free in `df -Pk`'s answer (its second line's fourth column, in KiB).
fn free_bytes(df: &str) -> Option<u64> {
    let kib: u64 = df.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs the script in a scratch container made from the source's image and configuration;
/// its output lines.
async fn run(d: &impl Engine, c: &RestoreConfig) -> Result<Vec<String>> {
    let source = d
        .inspect(&c.source)
        .await?
        .ok_or_else(|| Error::Unexpected(format!("no container {}", c.source)))?;
    let argv = script::restore_drill(&script::Restore {
        stanza: &c.stanza,
        repo: c.repo,
        set: c.set.as_deref(),
        database: &c.database,
        checksum: c.checksum.as_ref().map(TableName::plain).as_deref(),
        postgres: source.cmd.as_deref().unwrap_or_default(),
    });
    let tables: Vec<String> = c.count.iter().map(TableName::plain).collect();
    let scratch = Scratch {
        image: source.image,
        user: Some(source.user).filter(|u| !u.is_empty()),
        argv,
        env: vec![format!("COUNT_TABLES={}", tables.join(" "))],
        labels: BTreeMap::from([(LABEL.to_owned(), "restore".to_owned())]),
        // Only the read-only files (configuration, certificates): never the live data or socket.
        read_only_binds: source
            .mounts
            .into_iter()
            .filter(|m| m.kind == "bind" && m.read_only)
            .map(|m| (m.source, m.target))
            .collect(),
        extra_hosts: source.extra_hosts,
        volumes_from: None,
    };
    let (exit, logs) = d.run_scratch(SCRATCH, &scratch, c.timeout).await?;
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
        return Err(Error::Exit {
            what: "the restore".into(),
            code: exit,
            output: tail.join(" | "),
        });
    }
    Ok(logs.lines().map(str::to_owned).collect())
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

#[cfg(test)]
mod tests {
    use hoist_core::observed::{ObservedContainer, ObservedMount};
    use hoist_remote::fake::{FakeHost, Fault};

    use super::*;

    fn config() -> RestoreConfig {
        RestoreConfig {
            host: "data".into(),
            source: "postgres-primary".into(),
            stanza: "apm".into(),
            repo: 2,
            set: None,
            database: "apm".into(),
            count: vec!["apm_events".parse().expect("a table")],
            checksum: None,
            timeout: Duration::from_secs(60),
        }
    }

    fn mount(kind: &str, source: &str, target: &str, read_only: bool) -> ObservedMount {
        ObservedMount {
            kind: kind.into(),
            source: source.into(),
            target: target.into(),
            read_only,
        }
    }

    /// A data host whose primary has a data volume, a writable socket directory, and read-only
    /// configuration.
    fn data_host() -> FakeHost {
        let host = FakeHost::new("data");
        host.fake_engine().put_container(
            "postgres-primary",
            ObservedContainer {
                image: "apm-postgres:17".into(),
                state: "running".into(),
                user: "postgres".into(),
                cmd: Some(vec![
                    "postgres".into(),
                    "-c".into(),
                    "config_file=/etc/pg.conf".into(),
                ]),
                mounts: vec![
                    mount("volume", "pgdata", "/var/lib/postgresql/data", false),
                    mount("bind", "/var/run/apm", "/var/run/postgresql", false),
                    mount("bind", "/etc/apm/pg.conf", "/etc/pg.conf", true),
                    mount("bind", "/etc/apm/tls", "/etc/tls", true),
                ],
                extra_hosts: vec!["control:10.0.0.2".into()],
                ..Default::default()
            },
        );
        host
    }

    const LOGS: &str = "\
hoist-drill info [{\"backup\":[{\"label\":\"20261201-000000F\",\"database\":{\"repo-key\":2},\"timestamp\":{\"stop\":5}}]}]
hoist-drill restored 104.5 100.0
hoist-drill recovered 110.0 104.5
hoist-drill size 52000000
hoist-drill count apm_events 1200";

    const INFO: &str = r#"[{"backup":[{"label":"20261201-000000F","database":{"repo-key":2},"timestamp":{"stop":5},"info":{"size":52000000}}]}]"#;

    /// The data host as `df` sees it, with `free_kib` available.
    fn df(free_kib: u64) -> String {
        format!(
            "Filesystem     1024-blocks      Used Available Capacity Mounted on\noverlay          61255492  20000000 {free_kib}      25% /\n"
        )
    }

    /// A data host with room for the backup of [`INFO`].
    fn roomy() -> FakeHost {
        let host = data_host();
        host.fake_engine().exec_prints("pgbackrest", INFO);
        host.fake_engine().exec_prints("df", &df(40_000_000));
        host
    }

    #[tokio::test]
    async fn a_restore_without_room_on_the_data_host_does_not_start() {
        let host = data_host();
        let d = host.fake_engine();
        d.exec_prints("pgbackrest", INFO);
        d.exec_prints("df", &df(50_000));
        let checks = restore(d, &config(), &CancellationToken::new()).await;
        assert_eq!(checks[0].check, "drill.disk");
        assert!(!checks[0].ok);
        assert_eq!(checks[0].measured, "0.1 GB free");
        assert!(
            checks[0]
                .threshold
                .starts_with(">= 0.1 GB (the backup's 0.1 GB")
        );
        assert!(d.scratch_runs().is_empty(), "nothing restored");
        assert_eq!(free_bytes(&df(3)), Some(3072));
        assert_eq!(free_bytes("garbage"), None);
    }

    #[tokio::test]
    async fn a_restore_copies_only_the_read_only_files_and_reads_its_steps() {
        let host = roomy();
        let d = host.fake_engine();
        d.scratch_exits(SCRATCH, 0, LOGS);
        let checks = restore(d, &config(), &CancellationToken::new()).await;
        let failed: Vec<_> = checks.iter().filter(|k| !k.ok).collect();
        assert!(failed.is_empty(), "{failed:?}");
        let named: Vec<&str> = checks.iter().map(|k| k.check.as_str()).collect();
        assert_eq!(
            named,
            [
                "drill.disk",
                "drill.restore",
                "drill.recovery",
                "drill.database",
                "drill.rows",
                "drill.total"
            ]
        );
        assert_eq!(checks[1].measured, "20261201-000000F restored in 4.5 s");
        let runs = d.scratch_runs();
        let [(name, scratch)] = runs.as_slice() else {
            panic!("one scratch run: {runs:?}")
        };
        assert_eq!(name, SCRATCH);
        assert_eq!(scratch.image, "apm-postgres:17");
        assert_eq!(scratch.user.as_deref(), Some("postgres"));
        // Never the live data volume or the socket directory.
        assert_eq!(
            scratch.read_only_binds,
            [
                ("/etc/apm/pg.conf".to_owned(), "/etc/pg.conf".to_owned()),
                ("/etc/apm/tls".to_owned(), "/etc/tls".to_owned()),
            ]
        );
        assert_eq!(scratch.extra_hosts, ["control:10.0.0.2"]);
        assert_eq!(scratch.env, ["COUNT_TABLES=apm_events"]);
        assert_eq!(
            scratch.labels.get(LABEL).map(String::as_str),
            Some("restore")
        );
        assert!(
            !d.container_names().contains(&SCRATCH.to_owned()),
            "scratch removed"
        );
    }

    #[tokio::test]
    async fn a_failed_restore_says_pgbackrests_error_and_leaves_nothing() {
        let host = roomy();
        let d = host.fake_engine();
        d.scratch_exits(
            SCRATCH,
            1,
            "P00 INFO: restore command begin\nP00 ERROR: [075]: no backup set found to restore",
        );
        let checks = restore(d, &config(), &CancellationToken::new()).await;
        let restored = &checks[1];
        assert_eq!(restored.check, "drill.restore");
        assert!(!restored.ok);
        assert_eq!(
            restored.measured,
            "the restore exit 1: P00 ERROR: [075]: no backup set found to restore"
        );
        assert!(
            checks
                .last()
                .is_some_and(|k| k.check == "drill.total" && !k.ok)
        );
        assert!(!d.container_names().contains(&SCRATCH.to_owned()));
    }

    #[tokio::test]
    async fn a_cancelled_restore_still_removes_its_scratch_container() {
        let host = roomy();
        host.fault("engine scratch", Fault::Stall);
        let (cancel, c) = (CancellationToken::new(), config());
        let drill = restore(host.fake_engine(), &c, &cancel);
        let stop = async {
            while host.calls_of("engine scratch").is_empty() {
                tokio::task::yield_now().await;
            }
            cancel.cancel();
        };
        let (checks, ()) = tokio::join!(drill, stop);
        assert_eq!(checks[0].check, "drill.interrupted");
        assert!(!checks[0].ok);
        assert_eq!(
            host.calls_of("engine remove"),
            ["engine remove hoist-drill-restore"]
        );
    }

    #[tokio::test]
    async fn a_missing_source_container_is_named() {
        let host = FakeHost::new("data");
        let checks = restore(host.fake_engine(), &config(), &CancellationToken::new()).await;
        assert_eq!(checks[0].check, "drill.disk");
        assert!(
            !checks[0].ok && checks[0].measured.contains("postgres-primary"),
            "{checks:?}"
        );
        assert!(host.fake_engine().scratch_runs().is_empty());
    }
}
