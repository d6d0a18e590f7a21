//! `hoist releases`: each host's release history, newest first, with what each release changed.

use hoist_core::release::{Difference, History, differences};
use hoist_core::vars::SecretsMode;
use serde_json::json;

use crate::cli::Global;
use crate::commands::remote;
use crate::output::Output;

pub fn run(global: &Global, limit: Option<&str>, out: &Output) -> anyhow::Result<u8> {
    let Some(project) = super::load(global, SecretsMode::Optional, out)? else {
        return Ok(1);
    };
    let names = project
        .inventory
        .select(limit.unwrap_or("all"))
        .map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (read, failed) = remote::ask_each(&project.inventory, &names, global, async |ssh| {
            hoist_ops::release::history(ssh).await
        })
        .await;
        let mut code = 0;
        let mut doc = Vec::new();
        for (host, r) in read {
            match r {
                Ok(history) if global.json => doc.push(host_json(&host, &history)),
                Ok(history) => out.print(&host_text(&host, &history)),
                Err(e) => {
                    code = 1;
                    out.error(&e.to_string());
                }
            }
        }
        for e in failed.values() {
            code = 1;
            out.error(&e.to_string());
        }
        if global.json {
            out.print(&format!(
                "{}\n",
                json!({"schema": "hoist.releases/v1", "hosts": doc})
            ));
        }
        Ok(code)
    })
}

/// Each release, newest first, with what it changed from the one before it.
fn changes(history: &History) -> Vec<(&hoist_core::release::Release, Vec<Difference>)> {
    let mut out: Vec<_> = history
        .releases
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let before = i.checked_sub(1).map(|j| &history.releases[j]);
            (r, differences(before, r))
        })
        .collect();
    out.reverse();
    out
}

fn host_text(host: &str, history: &History) -> String {
    if history.releases.is_empty() {
        return format!("{host}: no release recorded\n");
    }
    let mut s = format!("{host}\n");
    let current = history.last().map(|r| r.id);
    for (r, diffs) in changes(history) {
        let mark = if Some(r.id) == current { "*" } else { " " };
        let revision = r
            .revision
            .as_deref()
            .map(|v| format!("  revision {v}"))
            .unwrap_or_default();
        let restores = r
            .restores
            .map(|id| format!("  (back to release {id})"))
            .unwrap_or_default();
        s.push_str(&format!(
            "{mark} release {:<4} {}  by {}{revision}{restores}\n",
            r.id,
            time(r.time),
            r.by
        ));
        for d in diffs {
            s.push_str(&format!(
                "      {} {}: {}\n",
                d.kind,
                d.name,
                d.what.join(", ")
            ));
        }
    }
    s
}

fn host_json(host: &str, history: &History) -> serde_json::Value {
    let current = history.last().map(|r| r.id);
    let releases: Vec<_> = changes(history)
        .into_iter()
        .map(|(r, diffs)| {
            json!({
                "id": r.id,
                "current": Some(r.id) == current,
                "time": time(r.time),
                "by": r.by,
                "revision": r.revision,
                "restores": r.restores,
                "changes": r.changes,
                "differences": diffs,
                "containers": r.containers.iter().map(|(name, c)| json!({
                    "name": name,
                    "project": c.project,
                    "service": c.service,
                    "image": c.image,
                    "image_id": c.image_id,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"host": host, "releases": releases})
}

/// Seconds since the epoch as an RFC 3339 UTC time.
fn time(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || secs.to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use hoist_core::release::History;

    /// Two releases of one host: the API's configuration and a file changed, then a rollback.
    fn history() -> History {
        let ran = |hash: &str| {
            serde_json::json!({"project": "app", "service": "api", "config_hash": hash,
                "image": "apm-api:local", "image_id": "sha256:1"})
        };
        let placed = |sum: &str| {
            serde_json::json!({"sha256": sum, "mode": 0o600, "origin": "templates/app.env.j2",
                "sensitive": true})
        };
        let doc = serde_json::json!({
            "version": 1,
            "specs": {},
            "releases": [
                {"id": 1, "time": 1_790_000_000, "by": "ops@ci", "run": "r1", "plan": "p1",
                 "changes": ["container api: create"],
                 "containers": {"apm-api": ran("a")}, "files": {"/etc/apm/app.env": placed("x")}},
                {"id": 2, "time": 1_790_000_600, "by": "ops@ci", "run": "r2", "plan": "p2",
                 "revision": "v1.2-3-gabc", "changes": ["container api: recreate"],
                 "containers": {"apm-api": ran("b")}, "files": {"/etc/apm/app.env": placed("y")}},
                {"id": 3, "time": 1_790_001_200, "by": "ops@laptop", "run": "r3", "plan": "p3",
                 "restores": 1, "changes": ["container api: recreate"],
                 "containers": {"apm-api": ran("a")}, "files": {"/etc/apm/app.env": placed("x")}},
            ],
        });
        History::parse(doc.to_string().as_bytes()).expect("a history")
    }

    #[test]
    fn releases_are_listed_newest_first_with_what_each_changed() {
        assert_eq!(
            super::host_text("app-1", &history()),
            "\
app-1
* release 3    2026-09-21T14:33:20Z  by ops@laptop  (back to release 1)
      container apm-api: configuration
      file /etc/apm/app.env: content
  release 2    2026-09-21T14:23:20Z  by ops@ci  revision v1.2-3-gabc
      container apm-api: configuration
      file /etc/apm/app.env: content
  release 1    2026-09-21T14:13:20Z  by ops@ci
      container apm-api: added
      file /etc/apm/app.env: added
"
        );
        assert_eq!(
            super::host_text("data-1", &History::default()),
            "data-1: no release recorded\n"
        );
    }

    #[test]
    fn the_json_marks_the_current_release_and_never_holds_file_contents() {
        let doc = super::host_json("app-1", &history());
        let ids: Vec<_> = doc["releases"]
            .as_array()
            .expect("releases")
            .iter()
            .map(|r| (r["id"].as_u64(), r["current"].as_bool()))
            .collect();
        assert_eq!(
            ids,
            [
                (Some(3), Some(true)),
                (Some(2), Some(false)),
                (Some(1), Some(false))
            ]
        );
        assert_eq!(doc["releases"][0]["restores"], 1);
        assert!(!doc.to_string().contains("sha256\":\"x"));
    }
}
