//! Monitoring: Prometheus, through its TLS proxy on the control host, scrapes every target it has
//! (a node-exporter on every host of the inventory among them) and has its alert rules loaded.

use std::net::SocketAddr;

use hoist_core::check::{Check, failed};
use hoist_remote::https;
use serde_json::Value;

use super::MonitoringConfig;

/// Asks Prometheus for its targets and its rules, then judges them.
pub async fn monitoring(local: SocketAddr, c: &MonitoringConfig) -> Vec<Check> {
    let login = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", c.user, c.password.expose())
        )
    );
    let endpoint = https::Endpoint {
        connect: local,
        name: &c.name,
        port: c.port,
        ca: &c.ca,
        authorization: Some(&login),
    };
    // A target not scraped yet (just deployed) is `unknown`, and one whose last scrape fell while
    // it was being replaced is `down`: asked again for a few scrape intervals until each is up.
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let answers = match ask(&endpoint, &c.name).await {
            Ok(a) => a,
            Err(check) => return vec![check],
        };
        let settled = answers[0]["data"]["activeTargets"]
            .as_array()
            .is_none_or(|t| t.iter().all(|t| t["health"] == "up"));
        if settled || tokio::time::Instant::now() >= deadline {
            return judge(&answers[0], &answers[1], &c.hosts);
        }
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
}

/// How long targets that are not up yet are asked about again: three scrapes at the platform's
/// 15 s interval.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(45);

/// Prometheus' active targets and its rules, or the check that says why not.
async fn ask(endpoint: &https::Endpoint<'_>, name: &str) -> Result<Vec<Value>, Check> {
    let mut answers = Vec::new();
    for path in ["/api/v1/targets?state=active", "/api/v1/rules"] {
        match endpoint.request(http::Method::GET, path).await {
            Ok(r) if r.status == 200 => match serde_json::from_slice::<Value>(&r.body) {
                Ok(v) => answers.push(v),
                Err(e) => return Err(failed("monitoring.prometheus", name, e, "answers")),
            },
            Ok(r) => {
                return Err(failed(
                    "monitoring.prometheus",
                    name,
                    format!("HTTP {} for {path}", r.status),
                    "200",
                ));
            }
            Err(e) => return Err(failed("monitoring.prometheus", name, e, "answers")),
        }
    }
    Ok(answers)
}

/// One check per target (up, by job and host), one that every host has a node-exporter target,
/// and one for the alert rules (loaded, and which fire).
fn judge(targets: &Value, rules: &Value, hosts: &[String]) -> Vec<Check> {
    let mut out = Vec::new();
    let active = targets["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut nodes = Vec::new();
    for t in &active {
        let job = t["labels"]["job"].as_str().unwrap_or("?");
        let host = t["labels"]["host"].as_str().unwrap_or("");
        let health = t["health"].as_str().unwrap_or("unknown");
        if job == "node_exporter" && health == "up" {
            nodes.push(host.to_owned());
        }
        let target = if host.is_empty() {
            job.to_owned()
        } else {
            format!("{job} {host}")
        };
        let measured = match t["lastError"].as_str().filter(|e| !e.is_empty()) {
            Some(e) => format!("{health}: {e}"),
            None => health.to_owned(),
        };
        out.push(Check::new(
            "monitoring.target",
            &target,
            health == "up",
            measured,
            "up",
        ));
    }
    let missing: Vec<&str> = hosts
        .iter()
        .filter(|h| !nodes.contains(h))
        .map(String::as_str)
        .collect();
    out.push(Check::new(
        "monitoring.node_exporters",
        "every host",
        missing.is_empty(),
        if missing.is_empty() {
            format!("{} of {} up", hosts.len(), hosts.len())
        } else {
            format!("none up on {}", missing.join(", "))
        },
        "one up per host",
    ));
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let all: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["type"] == "alerting")
        .collect();
    let firing: Vec<&str> = all
        .iter()
        .filter(|r| r["state"] == "firing")
        .filter_map(|r| r["name"].as_str())
        .collect();
    out.push(Check::new(
        "monitoring.rules",
        "alerts",
        !all.is_empty(),
        format!(
            "{} alert rule(s) in {} group(s); firing: {}",
            all.len(),
            groups.len(),
            if firing.is_empty() {
                "none".to_owned()
            } else {
                firing.join(", ")
            }
        ),
        "loaded",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_target_every_hosts_node_exporter_and_the_rules_are_judged() {
        let targets = json!({"data": {"activeTargets": [
            {"labels": {"job": "node_exporter", "host": "data-1"}, "health": "up", "lastError": ""},
            {"labels": {"job": "node_exporter", "host": "app-1"}, "health": "down",
             "lastError": "connection refused"},
            {"labels": {"job": "prometheus"}, "health": "up", "lastError": ""},
        ]}});
        let rules = json!({"data": {"groups": [
            {"name": "database", "rules": [
                {"type": "alerting", "name": "PostgresDown", "state": "inactive"},
                {"type": "alerting", "name": "ReplicaNotStreaming", "state": "firing"},
                {"type": "recording", "name": "x"},
            ]},
        ]}});
        let hosts = ["app-1".to_owned(), "data-1".to_owned()];
        let got: Vec<(String, String, bool, String)> = judge(&targets, &rules, &hosts)
            .into_iter()
            .map(|c| (c.check, c.target, c.ok, c.measured))
            .collect();
        let row = |c: &str, t: &str, ok, m: &str| (c.to_owned(), t.to_owned(), ok, m.to_owned());
        assert_eq!(
            got,
            [
                row("monitoring.target", "node_exporter data-1", true, "up"),
                row(
                    "monitoring.target",
                    "node_exporter app-1",
                    false,
                    "down: connection refused"
                ),
                row("monitoring.target", "prometheus", true, "up"),
                row(
                    "monitoring.node_exporters",
                    "every host",
                    false,
                    "none up on app-1"
                ),
                row(
                    "monitoring.rules",
                    "alerts",
                    true,
                    "2 alert rule(s) in 1 group(s); firing: ReplicaNotStreaming"
                ),
            ]
        );
    }

    #[test]
    fn no_rules_loaded_fails() {
        let none = json!({"data": {"groups": []}});
        let checks = judge(&json!({}), &none, &[]);
        let rules = checks
            .iter()
            .find(|c| c.check == "monitoring.rules")
            .expect("rules");
        assert!(!rules.ok);
    }
}
