//! `cargo bench -p apm-api --bench api`: the API's speed figures, against a real PostgreSQL
//! (`APM_BENCH_POSTGRES`, else `APM_TEST_POSTGRES`: an admin URL; a fresh database is created and
//! dropped).
//!
//! 1. Ingest: the same number of seeded events through `POST /api/requests/ingest/` (JSON, batches
//!    of 5000, two clients, rollups included) and through a raw `COPY` into the same table, in the
//!    same run; the ratio is the figure (target: HTTP at least half of COPY).
//! 2. Queries: the table loaded to `APM_BENCH_ROWS` events (default 10 million, over 7 days), then
//!    p50/p95 of `kpis` and `hourly` (their default 24 h windows) and of other analytics calls
//!    (target: p95 under 20 ms).

#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use apm_api::config::{Credentials, HostPort, Settings};
use apm_api::event::Event;
use apm_api::seed::Generator;
use clap::Parser as _;
use sqlx::postgres::PgPoolCopyExt as _;

#[derive(clap::Parser)]
struct SeedCli {
    #[command(flatten)]
    o: apm_api::seed::Options,
}

/// Seeded events over the last 7 days, or over the last hour (`recent`).
fn generator(seed: u64, recent: bool) -> Generator {
    let mut args = vec!["seed".to_owned(), "--seed".into(), seed.to_string()];
    if recent {
        let start = chrono::Utc::now() - chrono::TimeDelta::hours(1);
        args.extend(["--start".into(), start.to_rfc3339()]);
    }
    let cli = SeedCli::parse_from(args);
    Generator::new(&cli.o).expect("generator")
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Events as COPY's CSV.
fn csv(events: &[Event]) -> Vec<u8> {
    let mut out = String::with_capacity(events.len() * 160);
    for e in events {
        let tags = e.tags.0.to_string().replace('"', "\"\"");
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},\"{tags}\"",
            e.time.to_rfc3339(),
            e.service,
            e.endpoint,
            e.method,
            e.status_code,
            e.latency_ms,
            e.trace_id.as_deref().unwrap_or(""),
            e.user_ref.as_deref().unwrap_or(""),
        );
    }
    out.into_bytes()
}

const COPY: &str = "COPY observability_apirequest (time, service, endpoint, method, status_code, latency_ms, trace_id, user_ref, tags) FROM STDIN (FORMAT csv)";

async fn copy(pool: &sqlx::PgPool, events: &[Event]) -> u64 {
    let mut c = pool.copy_in_raw(COPY).await.expect("copy");
    c.send(csv(events)).await.expect("send");
    c.finish().await.expect("finish")
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let Some(admin) = std::env::var("APM_BENCH_POSTGRES")
        .or_else(|_| std::env::var("APM_TEST_POSTGRES"))
        .ok()
    else {
        println!("set APM_BENCH_POSTGRES (or APM_TEST_POSTGRES) to a PostgreSQL admin URL");
        return;
    };
    let rows = env_usize("APM_BENCH_ROWS", 10_000_000);
    let ingest_rows = env_usize("APM_BENCH_INGEST_ROWS", 200_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run(&admin, rows, ingest_rows));
}

async fn run(admin_url: &str, rows: usize, ingest_rows: usize) {
    let url = url::Url::parse(admin_url).expect("a URL");
    let name = format!("apm_bench_{}", std::process::id());
    let admin = sqlx::PgPool::connect(admin_url).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    let who = Credentials {
        user: url.username().to_owned(),
        password: url.password().unwrap_or_default().to_owned(),
    };
    let settings = Settings {
        database: name.clone(),
        primary: HostPort {
            host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: url.port().unwrap_or(5432),
        },
        replicas: Vec::new(),
        admin: who.clone(),
        writer: who.clone(),
        reader: who,
        sslmode: None,
        sslrootcert: None,
        page_size: 50,
        read_after_write_ttl: Duration::from_secs(0),
        statement_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(10),
        connect_retries: 3,
        connect_delay: Duration::from_millis(200),
        skip_migrate: false,
        bind: "127.0.0.1:0".into(),
        auth: true,
        tokens_file: None,
        prometheus: None,
        allowed_hosts: Vec::new(),
    };
    let router = apm_api::app(settings).await.expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut db_url = url.clone();
    db_url.set_path(&name);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(db_url.as_str())
        .await
        .expect("connect to the bench database");
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .expect("version");
    println!("PostgreSQL {server_version}, database {name}");

    // 1. Ingest through HTTP, then COPY the same number of events into the same table: events
    //    spread over 7 days (a backfill: ~1000 rollup rows per request), then recent ones.
    // Every request carries a token, as in production: its check is part of what is measured.
    let token = apm_api::auth::create(&pool, "bench", &apm_api::auth::Scope::ALL)
        .await
        .expect("a token");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client");
    for (label, recent, seed) in [("over 7 days", false, 1), ("in the last hour", true, 11)] {
        let mut g = generator(seed, recent);
        let bodies: Vec<Vec<u8>> = (0..ingest_rows.div_ceil(5000))
            .map(|i| {
                let n = 5000.min(ingest_rows - i * 5000);
                let events: Vec<_> = (0..n).map(|_| g.event().to_json()).collect();
                serde_json::to_vec(&events).expect("json")
            })
            .collect();
        let ingest_url = format!("{base}/api/requests/ingest/");
        let started = Instant::now();
        let mut lanes = Vec::new();
        let lanes_n = env_usize("APM_BENCH_CLIENTS", 2);
        for lane in 0..lanes_n {
            let mine: Vec<Vec<u8>> = bodies.iter().skip(lane).step_by(lanes_n).cloned().collect();
            let (client, url) = (client.clone(), ingest_url.clone());
            lanes.push(tokio::spawn(async move {
                for body in mine {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("ingest");
                    assert_eq!(r.status().as_u16(), 200);
                }
            }));
        }
        for lane in lanes {
            lane.await.expect("lane");
        }
        let http = started.elapsed();
        let mut g = generator(seed + 1, recent);
        let events: Vec<Event> = (0..ingest_rows).map(|_| g.event()).collect();
        let started = Instant::now();
        let copied = copy(&pool, &events).await;
        let raw = started.elapsed();
        assert_eq!(copied as usize, ingest_rows);
        let http_rate = ingest_rows as f64 / http.as_secs_f64();
        let copy_rate = ingest_rows as f64 / raw.as_secs_f64();
        println!(
            "ingest {ingest_rows} events {label}: HTTP {http_rate:.0} rows/s ({:.2} s), COPY {copy_rate:.0} rows/s ({:.2} s): HTTP/COPY = {:.2} (target >= 0.5)",
            http.as_secs_f64(),
            raw.as_secs_f64(),
            http_rate / copy_rate
        );
    }

    // 2. Load to `rows` events, rebuild the rollups for the COPYed events, query.
    let started = Instant::now();
    let mut loaded = 4 * ingest_rows;
    let mut g = generator(3, false);
    while loaded < rows {
        let n = 200_000.min(rows - loaded);
        let events: Vec<Event> = (0..n).map(|_| g.event()).collect();
        copy(&pool, &events).await;
        loaded += n;
    }
    sqlx::query(
        "SELECT apm_rollup_refresh(u, now() - interval '8 days', now()) FROM unnest(ARRAY['hour', 'day']) u",
    )
    .execute(&pool)
    .await
    .expect("refresh");
    sqlx::query("VACUUM ANALYZE")
        .execute(&pool)
        .await
        .expect("vacuum");
    println!(
        "loaded {loaded} events over 7 days and rebuilt the rollups in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for path in [
        "/api/requests/kpis/",
        "/api/requests/hourly/",
        "/api/requests/kpis/?service=api&endpoint=/orders",
        "/api/requests/daily/",
        "/api/requests/top-endpoints/?with_p95=true",
    ] {
        let url = format!("{base}{path}");
        let mut times = Vec::with_capacity(200);
        for i in 0..220 {
            let started = Instant::now();
            let r = client.get(&url).send().await.expect("get");
            assert_eq!(r.status().as_u16(), 200, "{path}");
            let _ = r.bytes().await.expect("body");
            if i >= 20 {
                times.push(started.elapsed());
            }
        }
        times.sort();
        println!(
            "{path}: p50 {}, p95 {}, max {} over {} calls",
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 0.95)),
            ms(*times.last().expect("times")),
            times.len()
        );
    }
    pool.close().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
}
