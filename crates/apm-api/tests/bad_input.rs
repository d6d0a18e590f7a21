//! Bad input, thousands of probes against a real PostgreSQL: every query parameter of every read
//! route with every kind of wrong value, every field of a body with every wrong type, malformed
//! and deeply nested JSON, wrong content types, NUL and unusual unicode, SQL-looking text, extreme
//! pages, unsupported methods. The API must never answer 5xx, must always answer JSON, and its
//! health must still be 200 after each probe.

mod common;

use std::sync::Arc;

use common::{event, server};
use futures_util::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

/// At most this many probes in flight.
const CONCURRENCY: usize = 8;

const READ_ROUTES: &[&str] = &[
    "/api/requests/",
    "/api/requests/hourly/",
    "/api/requests/daily/",
    "/api/requests/kpis/",
    "/api/requests/top-endpoints/",
    "/api/requests/semantic-search/",
];

const PARAMS: &[&str] = &[
    "start",
    "end",
    "service",
    "endpoint",
    "method",
    "status_code",
    "ordering",
    "page",
    "page_size",
    "granularity",
    "limit",
    "by",
    "q",
    "k",
    "min_latency",
    "max_latency",
    "source",
    "search",
];

fn wrong_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "x",
        "-1",
        "0",
        "1.5",
        "99999999999999999999",
        "9223372036854775807",
        "-9223372036854775808",
        "1e309",
        "NaN",
        "Infinity",
        "true",
        "null",
        "[]",
        "{}",
        "' OR 1=1 --",
        "1; DROP TABLE observability_apirequest; --",
        "-id; SELECT pg_sleep(10)",
        "time DESC, (SELECT 1)",
        "%00",
        "a%00b",
        "\u{202e}gnp.exe",
        "😀",
        "\u{fffd}\u{ffff}",
        "e\u{301}",
        "2025-13-45",
        "2025-12-14T25:61:61Z",
        "2025-12-14T10:00:60Z",
        "0000-01-01",
        "9999-12-31T23:59:59+14:00",
        "2025-12-14T10:00:00+99:99",
        "10000-01-01",
        "1970-01-01T00:00:00Z",
    ]
    .map(str::to_owned)
    .to_vec();
    v.push("a".repeat(10_000));
    v
}

/// Encodes a query value, keeping `%00` as written (the NUL probes).
fn encode(v: &str) -> String {
    if v.contains("%00") {
        return v.to_owned();
    }
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

struct Probe {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
}

fn get(path: String) -> Probe {
    Probe {
        method: Method::GET,
        path,
        content_type: None,
        body: None,
    }
}

fn with_json(method: Method, path: &str, body: Vec<u8>) -> Probe {
    Probe {
        method,
        path: path.to_owned(),
        content_type: Some("application/json"),
        body: Some(body),
    }
}

fn probes(id: i64) -> Vec<Probe> {
    let mut out = Vec::new();
    let values = wrong_values();
    for route in READ_ROUTES {
        for param in PARAMS {
            for v in &values {
                out.push(get(format!("{route}?{param}={}", encode(v))));
            }
        }
        // Parameters given twice, and ones no route takes.
        out.push(get(format!(
            "{route}?start=2025-01-01&start=x&end=y&end=2025-01-02"
        )));
        out.push(get(format!("{route}?{}=1", "z".repeat(5000))));
    }
    for page in ["0", "-1", "2", "1000000", "9223372036854775807", "1e3"] {
        for size in ["1", "0", "-5", "1000", "1000000000", "x"] {
            out.push(get(format!("/api/requests/?page={page}&page_size={size}")));
        }
    }
    for path in [
        "/api/requests/0/".to_owned(),
        "/api/requests/-1/".into(),
        "/api/requests/9223372036854775807/".into(),
        "/api/requests/99999999999999999999/".into(),
        "/api/requests/1.5/".into(),
        "/api/requests/%00/".into(),
        "/api/requests/x/".into(),
        format!("/api/requests/{id}/?x=%00"),
    ] {
        out.push(get(path));
    }

    // Bodies: every field of an event with every wrong type, on create, update and ingest.
    let good = event("api", "/a", 200, 10, "2025-12-14T10:00:00Z");
    let wrong: Vec<Value> = vec![
        Value::Null,
        json!(true),
        json!(1.5),
        json!(-1),
        json!(1e300),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("   "),
        json!("a\u{0}b"),
        json!("😀\u{202e}"),
        json!("x".repeat(100_000)),
        json!([]),
        json!([1, 2]),
        json!({}),
        json!({"a": {"b": {"c": "\u{0}"}}}),
        json!("2025-12-14T10:00:60Z"),
        json!("0000-01-01T00:00:00Z"),
        json!("'; DROP TABLE observability_apirequest; --"),
    ];
    let fields = [
        "time",
        "service",
        "endpoint",
        "method",
        "status_code",
        "latency_ms",
        "trace_id",
        "user_ref",
        "tags",
        "id",
    ];
    for field in fields {
        for w in &wrong {
            let mut e = good.clone();
            e[field] = w.clone();
            let body = serde_json::to_vec(&e).expect("json");
            out.push(with_json(Method::POST, "/api/requests/", body.clone()));
            out.push(with_json(
                Method::PATCH,
                &format!("/api/requests/{id}/"),
                body.clone(),
            ));
            out.push(with_json(
                Method::PUT,
                &format!("/api/requests/{id}/"),
                body.clone(),
            ));
            let batch = serde_json::to_vec(&json!([good, e])).expect("json");
            out.push(with_json(
                Method::POST,
                "/api/requests/ingest/",
                batch.clone(),
            ));
            out.push(with_json(
                Method::POST,
                "/api/requests/ingest/?strict=true",
                batch,
            ));
        }
    }
    // Malformed and deeply nested JSON, odd shapes, wrong content types.
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000)).into_bytes();
    let deep_tags = serde_json::to_vec(&json!({
        "time": "2025-12-14T10:00:00Z", "service": "a", "endpoint": "/", "method": "GET",
        "status_code": 200, "latency_ms": 1,
        "tags": (0..100).fold(json!("x"), |acc, _| json!({"n": acc})),
    }))
    .expect("json");
    let malformed: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"{\"time\":".to_vec(),
        b"nul".to_vec(),
        b"\"just a string\"".to_vec(),
        b"42".to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"{\"events\": 5}".to_vec(),
        b"{\"events\": [1, \"x\", null, []]}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{\"a\": \"\\ud800\"}".to_vec(),
        b"{\"a\": 1, \"a\": 2}".to_vec(),
        deep_array,
        deep_object,
        deep_tags,
    ];
    for body in malformed {
        for (m, path) in [
            (Method::POST, "/api/requests/".to_owned()),
            (Method::POST, "/api/requests/ingest/".to_owned()),
            (Method::PUT, format!("/api/requests/{id}/")),
            (Method::PATCH, format!("/api/requests/{id}/")),
        ] {
            out.push(with_json(m, &path, body.clone()));
        }
    }
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/xml",
        "",
    ] {
        out.push(Probe {
            method: Method::POST,
            path: "/api/requests/".into(),
            content_type: Some(ct),
            body: Some(serde_json::to_vec(&good).expect("json")),
        });
    }
    for m in ["TRACE", "PROPFIND", "FOO", "OPTIONS", "HEAD"] {
        for path in [
            "/api/requests/",
            "/api/requests/kpis/",
            "/api/health/",
            "/nope",
        ] {
            out.push(Probe {
                method: m.parse().expect("a method"),
                path: path.into(),
                content_type: None,
                body: None,
            });
        }
    }
    out
}

#[tokio::test]
async fn no_probe_gets_a_5xx_or_a_non_json_answer_and_health_stays_up() {
    let s = Arc::new(server().await);
    let (code, created) = s
        .post(
            "/api/requests/",
            event("api", "/a", 200, 10, "2025-12-14T10:00:00Z"),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_i64().expect("an id");
    let all = probes(id);
    let count = all.len();
    let failures: Vec<String> = futures_util::stream::iter(all)
        .map(|p| {
            let s = s.clone();
            async move {
                let mut req = s
                    .client
                    .request(p.method.clone(), format!("{}{}", s.base, p.path));
                if let Some(ct) = p.content_type {
                    req = req.header("content-type", ct);
                }
                let sent: String = p
                    .body
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(160)]).into_owned())
                    .unwrap_or_default();
                if let Some(b) = p.body {
                    req = req.body(b);
                }
                let what = format!(
                    "{} {} {sent}",
                    p.method,
                    p.path.chars().take(120).collect::<String>()
                );
                let r = match req.send().await {
                    Ok(r) => r,
                    Err(e) => return Some(format!("{what}: no answer: {e}")),
                };
                let status = r.status().as_u16();
                let json = r
                    .headers()
                    .get("content-type")
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                let text = r.text().await.unwrap_or_default();
                let parses =
                    p.method == Method::HEAD || serde_json::from_str::<Value>(&text).is_ok();
                // The one 5xx of the contract: semantic search on a database without pgvector.
                let documented = status == 503
                    && p.path.starts_with("/api/requests/semantic-search/")
                    && text.contains("Semantic search is not available");
                if (status >= 500 && !documented) || !json || !parses {
                    return Some(format!(
                        "{what}: {status} {}",
                        text.chars().take(200).collect::<String>()
                    ));
                }
                let (health, _) = s.send(Method::GET, "/api/health/", None).await;
                (health != 200).then(|| format!("{what}: health {health} afterwards"))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {count} probes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let (code, _) = s.get("/api/health/?db=1").await;
    assert_eq!(code, 200);
}

/// A `Host` that `ALLOWED_HOSTS` does not list never reaches a handler (nor a pagination link).
#[tokio::test]
async fn a_host_not_allowed_is_refused() {
    let s = common::server_with(|settings| {
        settings.allowed_hosts = vec!["127.0.0.1".into(), "apm.example".into()];
    })
    .await;
    let get = |host: &'static str| {
        let s = &s;
        async move {
            let r = s
                .client
                .get(format!("{}/api/requests/?page_size=1", s.base))
                .header("host", host)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("a JSON body"))
        }
    };
    let (code, body) = get("evil.example").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body,
        json!({"detail": "Invalid Host header: add it to ALLOWED_HOSTS to serve it."})
    );
    let (code, body) = get("apm.example:8443").await;
    assert_eq!(code, 200, "{body}");
}

/// A body over the proxy's 20 MiB gets the contract's JSON 413, not axum's plain text.
#[tokio::test]
async fn a_body_too_large_is_a_json_413() {
    let s = server().await;
    let big = vec![b' '; apm_api::routes::BODY_LIMIT + 1];
    let r = s
        .client
        .post(format!("{}/api/requests/ingest/", s.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 413);
    let body: Value = r.json().await.expect("a JSON body");
    assert_eq!(
        body,
        json!({"detail": "Request body too large: the limit is 20 MiB."})
    );
}
