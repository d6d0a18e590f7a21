//! Backups: `pgbackrest check` as the scheduler's user, the newest backup of each repository
//! against its age limit, and every WAL segment archived since it (no gap).

use std::time::Instant;

use hoist_core::check::{Check, failed};
use hoist_remote::Engine;
use hoist_remote::script;

use super::BackupConfig;
use crate::error::{Error, Result};

async fn pgbackrest(d: &impl Engine, c: &BackupConfig, args: &[&str]) -> Result<String> {
    let argv = script::pgbackrest(&c.stanza, args);
    let (code, output) = d.exec(&c.container, &argv, Some(&c.user)).await?;
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
        Err(Error::Exit {
            what: "pgbackrest".into(),
            code,
            output: line.to_owned(),
        })
    }
}

/// Backups: `pgbackrest check` (archiving works into every repository); in each repository a
/// backup no older than its limit, and every WAL segment from that backup's start to the newest
/// archived one.
pub async fn backups(d: &impl Engine, c: &BackupConfig, segment_size: u64) -> Vec<Check> {
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
    let info: serde_json::Value =
        match pgbackrest(d, c, &["--output=json", "info"])
            .await
            .and_then(|text| {
                serde_json::from_str(&text).map_err(|source| Error::Json {
                    what: "pgbackrest info",
                    source,
                })
            }) {
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
    pub fn from_info(info: &serde_json::Value, repo: u32) -> Result<RepoSummary> {
        let absent = |what: &str| Error::Unexpected(what.to_owned());
        let stanza = info
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| absent("no stanza in pgbackrest info"))?;
        let in_repo =
            |v: &&serde_json::Value| v["database"]["repo-key"].as_u64() == Some(repo.into());
        let last = stanza["backup"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(in_repo)
            .max_by_key(|b| b["timestamp"]["stop"].as_u64().unwrap_or(0))
            .ok_or_else(|| absent("no backup"))?;
        let db_id = last["database"]["id"].as_u64();
        let archive = stanza["archive"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(in_repo)
            .find(|a| a["database"]["id"].as_u64() == db_id)
            .ok_or_else(|| absent("no archived WAL for the newest backup"))?;
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
) -> Result<Vec<String>> {
    let not_a_segment = |name: &str| Error::Unexpected(format!("{name:?} is not a WAL segment"));
    let (start_tli, first) = segment(start, segment_size).ok_or_else(|| not_a_segment(start))?;
    let (tli, last) = segment(stop, segment_size).ok_or_else(|| not_a_segment(stop))?;
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
    d: &impl Engine,
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
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&t).map_err(
                |source| Error::Json {
                    what: "pgbackrest repo-ls",
                    source,
                },
            )
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
        let absent = RepoSummary::from_info(&info, 3).expect_err("no backup in repo3");
        assert!(
            matches!(&absent, Error::Unexpected(s) if s == "no backup"),
            "{absent}"
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
        assert_eq!(
            missing.ok(),
            Some(vec!["000000010000000000000008".to_owned()])
        );
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
        assert_eq!(
            missing.ok(),
            Some(vec!["000000010000000100000001".to_owned()])
        );
        // 64 MiB segments: 64 per high word, ...3F then the next word.
        assert_eq!(
            missing_segments(
                "00000001000000000000003F",
                "000000010000000100000000",
                &names(&["00000001000000000000003F", "000000010000000100000000"]),
                64 * 1024 * 1024,
            )
            .ok(),
            Some(vec![])
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
        assert_eq!(missing.ok(), Some(vec![]));
        assert!(missing_segments("not a segment", "x", &[], SEG).is_err());
    }
}
