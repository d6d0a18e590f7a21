//! The platform's health for the console, read from Prometheus' HTTP API: scrape targets, alert
//! rules, replication lag, backup ages, WAL archiving, memory and disk per host.
//!
//! The API asks Prometheus on the browser's behalf, through the cluster's TLS and Prometheus' own
//! login, and only the fixed queries below: the browser never reaches Prometheus (nor, through it,
//! anything else), and a token with the read scope cannot run a query of its choosing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// Where Prometheus is and how to reach it (`PROMETHEUS_URL`, `PROMETHEUS_USER`,
/// `PROMETHEUS_PASSWORD_FILE`, `PROMETHEUS_CA_FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: url::Url,
    pub user: Option<String>,
    /// A file that holds the password alone (a mounted secret; never an environment variable,
    /// which `docker inspect` shows).
    pub password_file: Option<String>,
    /// The CA that Prometheus' certificate is verified by; the system's roots when unset.
    pub ca_file: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("PROMETHEUS_URL {0:?} is not an http(s) URL")]
    BadUrl(String),
    #[error(
        "PROMETHEUS_URL holds a login: give it as PROMETHEUS_USER and PROMETHEUS_PASSWORD_FILE"
    )]
    LoginInUrl,
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ca(#[from] crate::trust::CaError),
    #[error("building the Prometheus client")]
    Client(#[source] reqwest::Error),
    #[error("Prometheus did not answer: {}", chain(.0))]
    Request(reqwest::Error),
    #[error("Prometheus answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("Prometheus' answer is not what its API documents: {0}")]
    Shape(String),
}

/// An error with its causes, `: `-separated (reqwest's own message leaves out why a request failed:
/// refused, a certificate, a timeout).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl Settings {
    /// From the environment: `None` when `PROMETHEUS_URL` is unset (the platform page then says so).
    pub fn from_env() -> Result<Option<Settings>, Error> {
        Settings::from_vars(|n| std::env::var(n).ok())
    }

    /// [`Settings::from_env`] over any source of variables.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Settings>, Error> {
        let var = |n: &str| {
            get(n)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(raw) = var("PROMETHEUS_URL") else {
            return Ok(None);
        };
        let url = url::Url::parse(&raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or(Error::BadUrl(raw))?;
        // Every holder of a read token sees the URL on the platform page.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::LoginInUrl);
        }
        Ok(Some(Settings {
            url,
            user: var("PROMETHEUS_USER"),
            password_file: var("PROMETHEUS_PASSWORD_FILE"),
            ca_file: var("PROMETHEUS_CA_FILE"),
        }))
    }
}

/// A Prometheus HTTP API client with its login.
pub struct Prometheus {
    base: url::Url,
    login: Option<(String, String)>,
    client: reqwest::Client,
}

/// Without the password: the state that holds this is printed in logs.
impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("base", &self.base.as_str())
            .field("user", &self.login.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl Prometheus {
    /// Reads the password and the CA now, so that a wrong path stops the API at start, by name.
    pub fn new(s: &Settings) -> Result<Prometheus, Error> {
        let read = |path: &str| {
            std::fs::read(path).map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })
        };
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3));
        if let Some(path) = &s.ca_file {
            builder = crate::trust::only(builder, path.as_ref())?;
        }
        let password = match &s.password_file {
            Some(path) => String::from_utf8_lossy(&read(path)?).trim_end().to_owned(),
            None => String::new(),
        };
        // A base under a path prefix keeps it when `api/v1/...` is joined to it.
        let mut base = s.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Prometheus {
            base,
            login: s.user.clone().map(|u| (u, password)),
            client: builder.build().map_err(Error::Client)?,
        })
    }

    /// `GET /api/v1/<path>`: the `data` of a `"status": "success"` answer.
    async fn get(&self, path: &str, query: Vec<(&str, String)>) -> Result<Value, Error> {
        let mut url = self
            .base
            .join(&format!("api/v1/{path}"))
            .map_err(|e| Error::BadUrl(format!("{}api/v1/{path}: {e}", self.base)))?;
        url.query_pairs_mut().extend_pairs(query);
        let mut req = self.client.get(url);
        if let Some((user, password)) = &self.login {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req.send().await.map_err(Error::Request)?;
        let status = resp.status();
        let body = resp.text().await.map_err(Error::Request)?;
        if !status.is_success() {
            return Err(Error::Status {
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        let doc: Value = serde_json::from_str(&body).map_err(|e| Error::Shape(e.to_string()))?;
        if doc["status"] != "success" {
            return Err(Error::Shape(format!("status {}", doc["status"])));
        }
        Ok(doc["data"].clone())
    }
}

/// One instant query of the page: its name in the answer and its PromQL.
struct Query {
    name: &'static str,
    promql: &'static str,
}

/// The page's instant queries, fixed: every one is a section of [`report`]'s answer.
const INSTANT: &[Query] = &[
    // Bytes each standby is behind, as the primary sees it (postgres-exporter's pg_stat_replication).
    Query {
        name: "replication",
        promql: "max by (host, application_name, state) (pg_stat_replication_pg_wal_lsn_diff)",
    },
    // Seconds since each repository's last completed backup (the scheduler's textfile metrics).
    Query {
        name: "backups",
        promql: "time() - max by (repo) (pgbackrest_backup_last_completed_timestamp_seconds)",
    },
    Query {
        name: "backup_jobs",
        promql: "max by (task) (pgbackrest_job_last_exit_code)",
    },
    // WAL archiving on each database node (pg_stat_archiver).
    Query {
        name: "wal_archived",
        promql: "max by (host) (pg_stat_archiver_archived_count)",
    },
    Query {
        name: "wal_failed",
        promql: "max by (host) (pg_stat_archiver_failed_count)",
    },
    Query {
        name: "wal_last_archive_age",
        promql: "max by (host) (pg_stat_archiver_last_archive_age)",
    },
    Query {
        name: "memory",
        promql: MEMORY,
    },
    // The fullest filesystem of each host (node-exporter leaves out pseudo and overlay mounts).
    Query {
        name: "disk",
        promql: "max by (host) (1 - node_filesystem_avail_bytes{fstype!~\"tmpfs|ramfs\"} / node_filesystem_size_bytes{fstype!~\"tmpfs|ramfs\"})",
    },
];

/// The share of each host's memory in use.
const MEMORY: &str =
    "max by (host) (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)";

/// [`MEMORY`] over a chart's step: the highest of each step (a subquery), so that a peak between
/// two points still shows.
fn memory_over(step: i64) -> String {
    format!("max by (host) (max_over_time(({MEMORY})[{step}s:]))")
}

/// The shortest and longest window the page shows (seconds).
pub const WINDOW: std::ops::RangeInclusive<i64> = 300..=7 * 86_400;

/// Points per series over the window: enough for a chart, bounded whatever the window.
const POINTS: i64 = 120;

/// The platform page's data for the `window` seconds up to `now`. A query that fails is named in
/// `errors` with its reason, and its section is empty: one exporter down must not blank the page.
pub async fn report(p: &Prometheus, now: DateTime<Utc>, window: i64) -> Value {
    let step = (window / POINTS).max(15);
    // Up to now, not to a multiple of the step: a platform younger than one step still has its
    // last point (each point is the highest of the step before it).
    let end = now.timestamp();
    let start = end - window;
    let instant = INSTANT.iter().map(|q| async move {
        let r = p.get("query", vec![("query", q.promql.to_owned())]).await;
        (q.name, r.and_then(|d| vector(&d)))
    });
    let range = p.get(
        "query_range",
        vec![
            ("query", memory_over(step)),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ],
    );
    let (instant, range, targets, rules) = tokio::join!(
        futures_util::future::join_all(instant),
        range,
        p.get("targets", vec![("state", "active".to_owned())]),
        p.get("rules", vec![("type", "alert".to_owned())]),
    );
    let mut out = Map::new();
    out.insert("prometheus".into(), json!(p.base.as_str()));
    out.insert(
        "window".into(),
        json!({"start": start, "end": end, "step": step}),
    );
    let mut errors = Vec::new();
    // A section's value, or its empty one and the reason in `errors`.
    let mut section = |name: &str, r: Result<Value, Error>, empty: Value| {
        let value = r.unwrap_or_else(|e| {
            errors.push(json!({"query": name, "error": e.to_string()}));
            empty
        });
        out.insert(name.into(), value);
    };
    for (name, r) in instant {
        section(name, r.map(Value::Array), json!([]));
    }
    section(
        "memory_series",
        range.and_then(|d| matrix(&d, start, end, step)),
        json!({"timestamps": [], "series": []}),
    );
    section(
        "targets",
        targets.and_then(|d| target_rows(&d)).map(Value::Array),
        json!([]),
    );
    section(
        "alerts",
        rules.and_then(|d| alert_rows(&d)).map(Value::Array),
        json!([]),
    );
    out.insert("errors".into(), Value::Array(errors));
    Value::Object(out)
}

fn shape(what: &str) -> Error {
    Error::Shape(what.to_owned())
}

/// A number as Prometheus writes it (a string, possibly `NaN` or `+Inf`): JSON null when not finite.
fn number(v: &Value) -> Value {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .map_or(Value::Null, |f| json!(f))
}

/// An instant vector as rows: the series' labels, and `value`.
fn vector(data: &Value) -> Result<Vec<Value>, Error> {
    if data["resultType"] != "vector" {
        return Err(shape("an instant query's result is not a vector"));
    }
    let result = data["result"]
        .as_array()
        .ok_or_else(|| shape("no result"))?;
    let mut rows: Vec<Value> = result
        .iter()
        .map(|s| {
            let mut row = s["metric"].as_object().cloned().unwrap_or_default();
            row.insert("value".into(), number(&s["value"][1]));
            Value::Object(row)
        })
        .collect();
    rows.sort_by_key(|r| r.to_string());
    Ok(rows)
}

/// A range query's matrix as one column of timestamps (`start..=end` by `step`) and a series of
/// values per host, null where a host has no sample: the shape a chart takes.
fn matrix(data: &Value, start: i64, end: i64, step: i64) -> Result<Value, Error> {
    if data["resultType"] != "matrix" {
        return Err(shape("a range query's result is not a matrix"));
    }
    let result = data["result"]
        .as_array()
        .ok_or_else(|| shape("no result"))?;
    // Prometheus aligns a range's points on start + k·step.
    let timestamps: Vec<i64> = (0..)
        .map(|k| start + k * step)
        .take_while(|t| *t <= end)
        .collect();
    let mut series: Vec<(String, Vec<Value>)> = result
        .iter()
        .map(|s| {
            let host = s["metric"]["host"].as_str().unwrap_or("?").to_owned();
            let mut values = vec![Value::Null; timestamps.len()];
            for point in s["values"].as_array().into_iter().flatten() {
                let Some(t) = point[0].as_f64() else { continue };
                let k = ((t as i64) - start) / step;
                if let Some(slot) = usize::try_from(k).ok().and_then(|k| values.get_mut(k)) {
                    *slot = number(&point[1]);
                }
            }
            (host, values)
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(json!({
        "timestamps": timestamps,
        "series": series
            .into_iter()
            .map(|(host, values)| json!({"host": host, "values": values}))
            .collect::<Vec<_>>(),
    }))
}

/// `/api/v1/targets`: one row per active target (job, host, health, last error, last scrape).
fn target_rows(data: &Value) -> Result<Vec<Value>, Error> {
    let active = data["activeTargets"]
        .as_array()
        .ok_or_else(|| shape("no activeTargets"))?;
    let mut rows: Vec<Value> = active
        .iter()
        .map(|t| {
            let labels = &t["labels"];
            json!({
                "job": labels["job"],
                "host": labels.get("host").unwrap_or(&labels["instance"]),
                "instance": labels["instance"],
                "health": t["health"],
                "last_error": t["lastError"],
                "last_scrape": t["lastScrape"],
            })
        })
        .collect();
    rows.sort_by_key(|r| (r["job"].to_string(), r["host"].to_string()));
    Ok(rows)
}

/// `/api/v1/rules?type=alert`: one row per alert rule (group, name, state, how many alerts).
fn alert_rows(data: &Value) -> Result<Vec<Value>, Error> {
    let groups = data["groups"]
        .as_array()
        .ok_or_else(|| shape("no groups"))?;
    let mut rows = Vec::new();
    for g in groups {
        for r in g["rules"].as_array().into_iter().flatten() {
            if r["type"] != "alerting" {
                continue;
            }
            rows.push(json!({
                "group": g["name"],
                "name": r["name"],
                "state": r["state"],
                "health": r["health"],
                "severity": r["labels"]["severity"],
                "active": r["alerts"].as_array().map_or(0, Vec::len),
                "summary": r["annotations"]["summary"],
            }));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("password");
        std::fs::write(&file, "p0ison-prometheus\n").expect("write");
        let p = Prometheus::new(&Settings {
            url: "https://172.30.0.12:9090".parse().expect("url"),
            user: Some("console".into()),
            password_file: Some(file.display().to_string()),
            ca_file: None,
        })
        .expect("client");
        assert_eq!(
            p.login.as_ref().map(|(_, pw)| pw.as_str()),
            Some("p0ison-prometheus")
        );
        let shown = format!("{p:?}");
        assert!(
            shown.contains("console") && !shown.contains("p0ison"),
            "{shown}"
        );
    }

    #[test]
    fn a_vector_becomes_rows_with_their_labels_and_a_number() {
        let data = json!({"resultType": "vector", "result": [
            {"metric": {"repo": "2"}, "value": [1.7e9, "86400.5"]},
            {"metric": {"repo": "1"}, "value": [1.7e9, "3600"]},
            {"metric": {"repo": "3"}, "value": [1.7e9, "NaN"]},
        ]});
        let rows = vector(&data).expect("rows");
        assert_eq!(
            rows,
            vec![
                json!({"repo": "1", "value": 3600.0}),
                json!({"repo": "2", "value": 86400.5}),
                json!({"repo": "3", "value": null}),
            ]
        );
        assert!(vector(&json!({"resultType": "matrix", "result": []})).is_err());
    }

    #[test]
    fn a_matrix_becomes_one_time_column_and_a_series_per_host_with_gaps() {
        let data = json!({"resultType": "matrix", "result": [
            {"metric": {"host": "data-1"}, "values": [[100, "0.5"], [130, "0.25"]]},
            {"metric": {"host": "app-1"}, "values": [[115, "0.1"]]},
        ]});
        let m = matrix(&data, 100, 130, 15).expect("matrix");
        assert_eq!(m["timestamps"], json!([100, 115, 130]));
        assert_eq!(
            m["series"],
            json!([
                {"host": "app-1", "values": [null, 0.1, null]},
                {"host": "data-1", "values": [0.5, null, 0.25]},
            ])
        );
    }

    #[test]
    fn targets_are_named_by_host_and_alerts_by_rule() {
        let targets = json!({"activeTargets": [
            {"labels": {"job": "node_exporter", "host": "data-1", "instance": "172.30.0.11:9100"},
             "health": "up", "lastError": "", "lastScrape": "2026-12-02T10:00:00Z"},
            {"labels": {"job": "prometheus", "instance": "localhost:9090"},
             "health": "down", "lastError": "connection refused", "lastScrape": "2026-12-02T10:00:00Z"},
        ]});
        let rows = target_rows(&targets).expect("rows");
        assert_eq!(rows[0]["host"], "data-1");
        assert_eq!(
            rows[1]["host"], "localhost:9090",
            "the instance, without a host label"
        );
        assert_eq!(rows[1]["last_error"], "connection refused");
        let rules = json!({"groups": [{"name": "apm", "rules": [
            {"type": "alerting", "name": "TargetDown", "state": "firing", "health": "ok",
             "labels": {"severity": "critical"}, "annotations": {"summary": "a target is down"},
             "alerts": [{}, {}]},
            {"type": "recording", "name": "job:up"},
        ]}]});
        assert_eq!(
            alert_rows(&rules).expect("rows"),
            vec![
                json!({"group": "apm", "name": "TargetDown", "state": "firing", "health": "ok",
                        "severity": "critical", "active": 2, "summary": "a target is down"})
            ]
        );
    }

    #[test]
    fn the_url_must_be_http_and_unset_means_no_platform_page() {
        let with = |url: &'static str| {
            Settings::from_vars(move |n| (n == "PROMETHEUS_URL").then(|| url.to_owned()))
        };
        assert!(matches!(with("file:///etc/passwd"), Err(Error::BadUrl(_))));
        assert!(matches!(
            with("https://ops:hunter2@172.30.0.12:9090/"),
            Err(Error::LoginInUrl)
        ));
        assert_eq!(with(" ").expect("blank"), None);
        let s = with("https://172.30.0.12:9090/")
            .expect("set")
            .expect("some");
        assert_eq!(s.url.as_str(), "https://172.30.0.12:9090/");
        assert_eq!((s.user, s.password_file, s.ca_file), (None, None, None));
        let prefixed = with("http://monitoring/prometheus")
            .expect("set")
            .expect("some");
        let p = Prometheus::new(&prefixed).expect("client");
        assert_eq!(p.base.path(), "/prometheus/");
    }
}
