//! `apm-api serve` as a process: one JSON log line per request carrying the caller's trace id, and
//! spans exported over OTLP/HTTP to a collector (here a local HTTP server recording what it gets).

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test]
async fn request_logs_carry_trace_ids_and_spans_are_exported() {
    let url = url::Url::parse(&std::env::var("APM_TEST_POSTGRES").expect("APM_TEST_POSTGRES"))
        .expect("url");
    // The collector.
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = received.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(body);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, collector).await;
    });

    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apm-api"))
        .arg("serve")
        .env_clear()
        .env("POSTGRES_DB", url.path().trim_start_matches('/'))
        .env("POSTGRES_HOST", url.host_str().unwrap_or("127.0.0.1"))
        .env("POSTGRES_PORT", url.port().unwrap_or(5432).to_string())
        .env("POSTGRES_USER", url.username())
        .env("POSTGRES_PASSWORD", url.password().unwrap_or_default())
        .env("SKIP_MIGRATE", "1")
        .env("APM_BIND", format!("127.0.0.1:{port}"))
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(Stdio::piped())
        .spawn()
        .expect("apm-api serve");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    let client = reqwest::Client::new();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let started = Instant::now();
    let status = loop {
        let r = client
            .get(format!("http://127.0.0.1:{port}/api/health/"))
            .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
            .send()
            .await;
        match r {
            Ok(r) => break r.status().as_u16(),
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("apm-api did not answer: {e}"),
        }
    };
    assert_eq!(status, 200);

    // The log line of the request, with the caller's trace id.
    let line = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a request log line");
        if line.contains("\"message\":\"request\"") {
            break line;
        }
    };
    let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(log["trace_id"], trace, "{line}");
    assert_eq!(log["route"], "/api/health/", "{line}");
    assert_eq!(log["status"], 200, "{line}");
    assert_eq!(log["span_id"].as_str().map(str::len), Some(16), "{line}");

    // The span reaches the collector, in the caller's trace (protobuf carries the raw 16 bytes).
    let raw: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let exported = loop {
        let found = received
            .lock()
            .expect("lock")
            .iter()
            .any(|b| b.windows(16).any(|w| w == raw.as_slice()));
        if found || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(exported, "no span of trace {trace} reached the collector");
}
