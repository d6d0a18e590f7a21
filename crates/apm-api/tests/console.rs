//! The console's page and its platform route: the page served open with its CSP, the platform
//! data behind the read scope, asked of a Prometheus (a fake on loopback, answering as Prometheus'
//! HTTP API documents) with its login and only the page's own queries.

mod common;

use std::sync::{Arc, Mutex};

use apm_api::auth::{self, Scope};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse as _;
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
struct Seen {
    paths: Vec<String>,
    queries: Vec<String>,
    logins: Vec<Option<String>>,
}

/// A Prometheus that wants `ops:secret`, answers every query with one sample per host, and fails
/// its rules endpoint.
async fn fake_prometheus() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    async fn answer(
        State(seen): State<Arc<Mutex<Seen>>>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        Query(q): Query<Vec<(String, String)>>,
    ) -> axum::response::Response {
        let login = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let path = uri.path().to_owned();
        {
            let mut s = seen.lock().expect("lock");
            s.paths.push(path.clone());
            s.logins.push(login.clone());
            s.queries.extend(
                q.iter()
                    .filter(|(k, _)| k == "query")
                    .map(|(_, v)| v.clone()),
            );
        }
        // "ops:secret"
        if login.as_deref() != Some("Basic b3BzOnNlY3JldA==") {
            return (StatusCode::UNAUTHORIZED, "401 Unauthorized").into_response();
        }
        let body = match path.trim_start_matches("/prom") {
            "/api/v1/query" => {
                json!({"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {"host": "data-1", "repo": "1", "application_name": "replica_1", "state": "streaming"},
                     "value": [1.7e9, "0.25"]},
                ]}})
            }
            "/api/v1/query_range" => {
                let start: i64 = q
                    .iter()
                    .find(|(k, _)| k == "start")
                    .and_then(|(_, v)| v.parse().ok())
                    .expect("start");
                json!({"status": "success", "data": {"resultType": "matrix", "result": [
                    {"metric": {"host": "app-1"}, "values": [[start, "0.5"]]},
                ]}})
            }
            "/api/v1/targets" => json!({"status": "success", "data": {"activeTargets": [
                {"labels": {"job": "node_exporter", "host": "app-1", "instance": "172.30.0.13:9100"},
                 "health": "up", "lastError": "", "lastScrape": "2026-12-02T10:00:00Z"},
            ]}}),
            _ => return (StatusCode::INTERNAL_SERVER_ERROR, "rules broke").into_response(),
        };
        axum::Json(body).into_response()
    }
    let app = axum::Router::new()
        .route("/prom/api/v1/{*rest}", get(answer))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/prom"), seen)
}

#[tokio::test]
async fn the_console_is_served_open_with_a_policy_that_refuses_inline_script() {
    let s = common::server().await;
    let resp = s
        .bare
        .get(format!("{}/console/", s.base))
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let etag = resp.headers()["etag"].clone();
    assert!(resp.text().await.expect("body").contains("APM console"));
    let again = s
        .bare
        .get(format!("{}/console/", s.base))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(again.status(), 304, "unchanged: not sent again");
    for (path, ty) in [
        ("/console/console.js", "text/javascript"),
        ("/console/vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let resp = s
            .bare
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .expect("type")
                .starts_with(ty)
        );
    }
    let (status, body) = s.get("/console/../Cargo.toml").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = s.get("/console/missing.js").await;
    assert_eq!(status, 404);
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}/console", s.base))
        .send()
        .await
        .expect("redirect");
    assert_eq!(redirect.status(), 308);
}

#[tokio::test]
async fn the_platform_route_needs_a_read_token_and_says_when_prometheus_is_not_configured() {
    let s = common::server().await;
    let (status, _) = s
        .send_as(None, reqwest::Method::GET, "/api/platform/", None)
        .await;
    assert_eq!(status, 401);
    let pool = sqlx::PgPool::connect(&s.database_url)
        .await
        .expect("connect");
    let ingest = auth::create(&pool, "ingester", &[Scope::Ingest])
        .await
        .expect("token");
    let (status, _) = s
        .send_as(Some(&ingest), reqwest::Method::GET, "/api/platform/", None)
        .await;
    assert_eq!(status, 403, "an ingest token reads nothing");
    let (status, body) = s.get("/api/platform/").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("PROMETHEUS_URL")),
        "{body}"
    );
    let (status, body) = s.get("/api/platform/?window=10").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["window"].is_string(), "{body}");
}

#[tokio::test]
async fn the_platform_route_asks_prometheus_with_its_login_only_its_own_queries() {
    let (url, seen) = fake_prometheus().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("prometheus-password");
    std::fs::write(&password, "secret\n").expect("write");
    let s = common::server_with(|settings| {
        settings.prometheus = Some(apm_api::platform::Settings {
            url: url.parse().expect("url"),
            user: Some("ops".into()),
            password_file: Some(password.display().to_string()),
            ca_file: None,
        });
    })
    .await;
    // A query of the caller's own is not a parameter the route takes.
    let (status, doc) = s.get("/api/platform/?window=3600&query=up&promql=up").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["targets"][0]["host"], "app-1", "{doc}");
    assert_eq!(doc["backups"][0]["value"], 0.25, "{doc}");
    assert_eq!(doc["replication"][0]["state"], "streaming", "{doc}");
    assert_eq!(doc["memory_series"]["series"][0]["host"], "app-1", "{doc}");
    assert_eq!(
        doc["memory_series"]["series"][0]["values"][0], 0.5,
        "the first point, at the window's start: {doc}"
    );
    let window = &doc["window"];
    assert_eq!(
        window["end"].as_i64().expect("end") - window["start"].as_i64().expect("start"),
        3600
    );
    // The rules endpoint failed: named, and the rest of the page is there.
    assert_eq!(doc["alerts"], json!([]), "{doc}");
    let errors = doc["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{doc}");
    assert_eq!(errors[0]["query"], "alerts");
    assert!(
        errors[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("500") && e.contains("rules broke")),
        "{doc}"
    );
    let seen = seen.lock().expect("lock");
    assert!(
        seen.logins
            .iter()
            .all(|l| l.as_deref() == Some("Basic b3BzOnNlY3JldA==")),
        "every request with the login, the password file's line without its newline"
    );
    assert!(
        !seen.queries.iter().any(|q| q == "up"),
        "the caller's query never reaches Prometheus: {:?}",
        seen.queries
    );
    assert!(seen.paths.iter().all(|p| p.starts_with("/prom/api/v1/")));
    assert!(
        !doc.to_string().contains("secret"),
        "the password is never in the answer"
    );
}

#[tokio::test]
async fn a_prometheus_that_refuses_the_login_is_named_in_every_section() {
    let (url, _seen) = fake_prometheus().await;
    let s = common::server_with(|settings| {
        settings.prometheus = Some(apm_api::platform::Settings {
            url: url.parse().expect("url"),
            user: Some("ops".into()),
            password_file: None,
            ca_file: None,
        });
    })
    .await;
    let (status, doc) = s.get("/api/platform/").await;
    assert_eq!(status, 200, "{doc}");
    let errors: Vec<&Value> = doc["errors"].as_array().expect("errors").iter().collect();
    assert!(errors.len() >= 10, "{doc}");
    assert!(
        errors
            .iter()
            .all(|e| e["error"].as_str().is_some_and(|t| t.contains("401"))),
        "{doc}"
    );
}
