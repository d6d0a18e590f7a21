//! Black-box HTTP tests: the server on a free port against a real PostgreSQL (a fresh database per
//! test), driven with an HTTP client. `APM_TEST_POSTGRES` names the server (an admin URL such as
//! `postgres://postgres:postgres@127.0.0.1:55440/postgres`); `scripts/test` starts a cluster of the
//! tests' own on a free port.

mod common;

use common::{event, server};
use serde_json::{Value, json};

#[tokio::test]
async fn health_root_and_metrics() {
    let s = server().await;
    assert_eq!(s.get("/api/health/").await, (200, json!({"status": "ok"})));
    assert_eq!(
        s.get("/api/health/?db=1").await,
        (200, json!({"status": "ok", "db": "ok"}))
    );
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = redirect
        .get(format!("{}/api/health", s.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 301);
    let (code, root) = s.get("/api/").await;
    assert_eq!(code, 200);
    assert!(
        root["requests"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/api/requests/"),
        "{root}"
    );
    let (code, text) = s.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        text.as_str()
            .unwrap_or_default()
            .contains("http_requests_total"),
        "{text}"
    );
    assert!(
        text.as_str()
            .unwrap_or_default()
            .contains("apm_db_pool_connections"),
        "{text}"
    );
}

#[tokio::test]
async fn create_retrieve_update_delete() {
    let s = server().await;
    let body = json!({"time": "2025-12-14T01:10:00Z", "service": "auth", "endpoint": "/login", "method": "POST", "status_code": 500, "latency_ms": 150, "trace_id": "tr_a", "user_ref": "u_42", "tags": {"env": "dev"}});
    let (code, created) = s.post("/api/requests/", body).await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let expected = format!(
        r#"{{"id":{id},"time":"2025-12-14T01:10:00Z","service":"auth","endpoint":"/login","method":"POST","status_code":500,"latency_ms":150,"trace_id":"tr_a","user_ref":"u_42","tags":{{"env":"dev"}}}}"#
    );
    assert_eq!(created.to_string(), expected);
    assert_eq!(
        s.get(&format!("/api/requests/{id}")).await,
        (200, created.clone())
    );

    let (code, patched) = s
        .send(
            reqwest::Method::PATCH,
            &format!("/api/requests/{id}/"),
            Some(json!({"latency_ms": 99, "time": "2025-12-15T00:00:00.5Z"})),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(
        (
            patched["id"].as_i64(),
            patched["latency_ms"].as_i64(),
            patched["time"].as_str()
        ),
        (Some(id), Some(99), Some("2025-12-15T00:00:00.500000Z"))
    );
    let (code, put) = s
        .send(
            reqwest::Method::PUT,
            &format!("/api/requests/{id}/"),
            Some(json!({"service": "x"})),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(put["time"], json!(["This field is required."]));

    let (code, _) = s
        .send(
            reqwest::Method::DELETE,
            &format!("/api/requests/{id}/"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    assert_eq!(
        s.get(&format!("/api/requests/{id}/")).await,
        (
            404,
            json!({"detail": "No ApiRequest matches the given query."})
        )
    );
    assert_eq!(s.get("/api/requests/abc/").await.0, 404);
}

#[tokio::test]
async fn bodies_are_json_only() {
    let s = server().await;
    let r = s
        .client
        .post(format!("{}/api/requests/", s.base))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(
        r.text().await.unwrap_or_default(),
        r#"{"detail":"Unsupported media type \"text/plain\" in request."}"#
    );
    let r = s
        .client
        .post(format!("{}/api/requests/", s.base))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        r.text()
            .await
            .unwrap_or_default()
            .starts_with(r#"{"detail":"JSON parse error - "#)
    );
    let (code, errors) = s.post("/api/requests/", json!({"time": "x", "service": "", "endpoint": "/a", "method": "NOPE", "status_code": 700, "latency_ms": -1})).await;
    assert_eq!(code, 400);
    assert_eq!(errors["method"], json!(["\"NOPE\" is not a valid choice."]));
    assert_eq!(
        errors["status_code"],
        json!(["status_code must be a valid HTTP status (100..599)."])
    );
}

#[tokio::test]
async fn list_filters_ordering_search_pagination() {
    let s = server().await;
    let events = json!([
        event("auth", "/login", 200, 10, "2025-12-14T01:00:00Z"),
        event("auth", "/login", 500, 300, "2025-12-14T02:00:00Z"),
        event("billing", "/pay", 201, 50, "2025-12-14T03:00:00Z"),
        event("Billing", "/refund", 404, 70, "2025-12-14T04:00:00Z"),
        event("web", "/home", 200, 5, "2025-12-14T05:00:00Z"),
    ]);
    let (code, r) = s.post("/api/requests/ingest/", events).await;
    assert_eq!((code, r["inserted"].as_i64()), (200, Some(5)), "{r}");

    let (code, page1) = s.get("/api/requests/").await;
    assert_eq!(code, 200);
    assert_eq!(page1["count"], 5);
    assert_eq!(page1["previous"], Value::Null);
    assert!(
        page1["next"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/api/requests/?page=2"),
        "{page1}"
    );
    let times: Vec<&str> = page1["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["time"].as_str())
        .collect();
    assert_eq!(
        times,
        [
            "2025-12-14T05:00:00Z",
            "2025-12-14T04:00:00Z",
            "2025-12-14T03:00:00Z"
        ]
    );
    let (_, page2) = s.get("/api/requests/?page=2&service=").await;
    assert!(
        page2["previous"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/api/requests/?service="),
        "{page2}"
    );
    assert_eq!(page2["next"], Value::Null);
    assert_eq!(
        s.get("/api/requests/?page=9").await,
        (404, json!({"detail": "Invalid page."}))
    );

    let (_, billing) = s
        .get("/api/requests/?service=BILLING&ordering=latency_ms")
        .await;
    let lat: Vec<i64> = billing["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["latency_ms"].as_i64())
        .collect();
    assert_eq!(lat, [50, 70], "iexact service, ascending latency");
    assert_eq!(
        s.get("/api/requests/?status_code__in=500,404").await.1["count"],
        2
    );
    assert_eq!(
        s.get("/api/requests/?time_after=2025-12-14T02:00:00Z&time_before=2025-12-14T04:00:00Z")
            .await
            .1["count"],
        3
    );
    assert_eq!(
        s.get("/api/requests/?latency_min=50.5&latency_max=300")
            .await
            .1["count"],
        2
    );
    assert_eq!(s.get("/api/requests/?search=bill,ref").await.1["count"], 1);
    assert_eq!(
        s.get("/api/requests/?time_after=nope").await,
        (400, json!({"time_after": ["Enter a valid date/time."]}))
    );
    assert_eq!(
        s.get("/api/requests/?status_code=x").await,
        (400, json!({"status_code": ["Enter a number."]}))
    );
}

#[tokio::test]
async fn ingest_shapes_limits_and_strict_mode() {
    let s = server().await;
    let good = event("auth", "/login", 200, 10, "2025-12-14T01:00:00Z");
    let (code, r) = s
        .post(
            "/api/requests/ingest/",
            json!({"events": [good.clone(), {"not": "an event"}, 5]}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(r["inserted"], 1);
    assert_eq!(r["rejected"], 2);
    assert_eq!(
        r["errors"][1],
        json!({"index": 2, "errors": {"non_field_errors": ["Each event must be a JSON object/dict."]}})
    );
    assert_eq!(r["errors"][0]["index"], 1);

    let (code, r) = s
        .post(
            "/api/requests/ingest/?strict=yes",
            json!([good.clone(), {"time": "x"}]),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        r["detail"],
        "Strict mode enabled: payload contains invalid items. Nothing was inserted."
    );
    assert_eq!(
        (r["inserted"].as_i64(), r["rejected"].as_i64()),
        (Some(0), Some(2))
    );
    assert_eq!(
        s.get("/api/requests/").await.1["count"],
        1,
        "strict mode inserted nothing"
    );

    let (code, r) = s
        .post(
            "/api/requests/ingest/?max_events=2",
            json!([good.clone(), good.clone(), good.clone()]),
        )
        .await;
    assert_eq!(
        (code, r),
        (
            413,
            json!({"detail": "Too many events: got 3, max allowed is 2.", "max_events": 2})
        )
    );
    let (code, r) = s
        .post("/api/requests/ingest/?max_events=5", json!([good.clone()]))
        .await;
    assert_eq!(
        (code, r["inserted"].as_i64()),
        (200, Some(1)),
        "max_events below 1000 alone works (spec §11 #1)"
    );
    assert_eq!(
        s.post("/api/requests/ingest/?max_errors=x", json!([]))
            .await,
        (400, json!({"max_errors": "Must be an integer."}))
    );
    assert_eq!(
        s.post("/api/requests/ingest/?strict=maybe", json!([]))
            .await,
        (400, json!({"strict": "Must be a boolean (true/false)."}))
    );
    assert_eq!(
        s.post("/api/requests/ingest/", json!({})).await,
        (
            400,
            json!({"detail": "Expected a list payload or an object with an 'events' list."})
        )
    );
    assert_eq!(
        s.post("/api/requests/ingest/", json!({"events": 1})).await,
        (400, json!({"events": "Must be a list of event objects."}))
    );
    assert_eq!(
        s.post("/api/requests/ingest/", json!("x")).await,
        (
            400,
            json!({"detail": "Expected JSON list or object payload."})
        )
    );
    assert_eq!(
        s.post("/api/requests/ingest/", json!([])).await,
        (200, json!({"inserted": 0, "rejected": 0, "errors": []}))
    );

    let many: Vec<Value> = (0..30).map(|_| json!({})).collect();
    let (_, r) = s
        .post("/api/requests/ingest/?max_errors=3", Value::Array(many))
        .await;
    assert_eq!(
        (r["rejected"].as_i64(), r["errors"].as_array().map(Vec::len)),
        (Some(30), Some(3))
    );
}

/// The migrations adapt to the server: a hypertable with 1-day chunks where TimescaleDB is
/// preloaded, the embeddings table with its HNSW index where pgvector is available, plain tables
/// otherwise. `APM_TEST_EXPECT_EXTENSIONS=1` (set when testing the platform's database image) makes
/// the extensions mandatory, so CI proves the TimescaleDB and pgvector paths.
#[tokio::test]
async fn schema_matches_the_server() {
    let s = server().await;
    let pool = sqlx::PgPool::connect(&s.database_url)
        .await
        .expect("connect to the test database");
    let timescale: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    let vector: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')")
            .fetch_one(&pool)
            .await
            .expect("query");
    if std::env::var("APM_TEST_EXPECT_EXTENSIONS").as_deref() == Ok("1") {
        assert!(
            timescale && vector,
            "the database image must give TimescaleDB and pgvector"
        );
    }
    if timescale {
        let interval: String = sqlx::query_scalar(
            "SELECT time_interval::text FROM timescaledb_information.dimensions WHERE hypertable_name = 'observability_apirequest'",
        )
        .fetch_one(&pool)
        .await
        .expect("a hypertable");
        assert_eq!(interval, "1 day");
    } else {
        let is_table: bool =
            sqlx::query_scalar("SELECT to_regclass('observability_apirequest') IS NOT NULL")
                .fetch_one(&pool)
                .await
                .expect("query");
        assert!(is_table);
    }
    let embeddings: bool =
        sqlx::query_scalar("SELECT to_regclass('api_req_emb_hnsw_idx') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("query");
    assert_eq!(
        embeddings, vector,
        "the embeddings table and its HNSW index exist exactly where pgvector does"
    );
    // The API works the same either way.
    let (code, r) = s
        .post(
            "/api/requests/ingest/",
            json!([event("a", "/b", 200, 1, "2025-12-14T00:00:00Z")]),
        )
        .await;
    assert_eq!((code, r["inserted"].as_i64()), (200, Some(1)));
}

/// Semantic search: 503 without pgvector; with it, `apm-api embed` (the hashing provider, offline)
/// backfills error events and the nearest come first.
#[tokio::test]
async fn semantic_search_and_embed() {
    let s = server().await;
    assert_eq!(
        s.get("/api/requests/semantic-search/").await,
        (
            400,
            json!({"detail": ["Missing query. Use ?q=... or ?query=..."]})
        )
    );
    assert_eq!(
        s.get("/api/requests/semantic-search/?q=x&limit=0").await,
        (
            400,
            json!({"limit": ["Ensure this value is greater than or equal to 1."]})
        )
    );
    let pool = sqlx::PgPool::connect(&s.database_url)
        .await
        .expect("connect");
    let vector: bool =
        sqlx::query_scalar("SELECT to_regclass('observability_apirequestembedding') IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("query");
    if !vector {
        let (code, body) = s.get("/api/requests/semantic-search/?q=timeout").await;
        assert_eq!(code, 503, "{body}");
        return;
    }
    let t = "2025-12-14T01:00:00Z";
    let (code, _) = s
        .post(
            "/api/requests/ingest/",
            json!([
                event("billing", "/pay", 503, 900, t),
                event("billing", "/pay", 502, 1100, t),
                event("web", "/home", 500, 40, t),
                event("web", "/home", 200, 20, t),
            ]),
        )
        .await;
    assert_eq!(code, 200);
    let options = |force: bool| apm_api::backfill::Options {
        status_from: 500,
        since: None,
        limit: 1000,
        batch_size: 2,
        sleep: 0.0,
        include_tags: false,
        force,
        dry_run: false,
    };
    let provider = apm_api::embed::Provider::Hashing;
    let written = apm_api::backfill::run(&pool, &provider, &options(false))
        .await
        .expect("embed");
    assert_eq!(written, 3);
    // Nothing left to embed; --force rewrites every one.
    let again = apm_api::backfill::run(&pool, &provider, &options(false))
        .await
        .expect("embed");
    assert_eq!(again, 0);
    let forced = apm_api::backfill::run(&pool, &provider, &options(true))
        .await
        .expect("embed");
    assert_eq!(forced, 3);
    let (code, r) = s
        .get("/api/requests/semantic-search/?q=billing%20pay%20503&limit=2")
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["query"], "billing pay 503");
    assert_eq!(r["count"], 2);
    assert_eq!(r["results"][0]["service"], "billing");
    assert_eq!(r["results"][0]["status_code"], 503);
    let d = r["results"][0]["distance"].as_f64().expect("distance");
    assert_eq!(r["results"][0]["score"].as_f64(), Some((1.0 - d).max(0.0)));
    let web = s
        .get("/api/requests/semantic-search/?query=slow&service=web")
        .await
        .1;
    assert_eq!(web["count"], 1);
    // Deleting an event deletes its embedding.
    let id = web["results"][0]["id"].as_i64().expect("id");
    let (code, _) = s
        .send(
            reqwest::Method::DELETE,
            &format!("/api/requests/{id}/"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM observability_apirequestembedding")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(left, 2);
}

/// Replicas that do not answer are skipped: reads answer 200 from the primary, and a read right
/// after a write sees it.
#[tokio::test]
async fn reads_survive_a_dead_replica() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let s = common::server_with(|settings| {
        settings.replicas = vec![apm_api::config::HostPort {
            host: "127.0.0.1".into(),
            port,
        }];
        settings.connect_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let (code, created) = s
        .post(
            "/api/requests/",
            event("api", "/orders", 200, 12, "2025-12-14T01:00:00Z"),
        )
        .await;
    assert_eq!(code, 201);
    let id = created["id"].as_i64().expect("id");
    assert_eq!(s.get(&format!("/api/requests/{id}/")).await.0, 200);
    // Past the read-after-write window, reads would go to replicas: none is healthy.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    for path in [
        format!("/api/requests/{id}/"),
        "/api/requests/".to_owned(),
        "/api/requests/kpis/?start=2025-12-14&end=2025-12-14".to_owned(),
        "/api/requests/hourly/?start=2025-12-14&end=2025-12-14".to_owned(),
    ] {
        let (code, body) = s.get(&path).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    let kpis = s
        .get("/api/requests/kpis/?start=2025-12-14&end=2025-12-14")
        .await
        .1;
    assert_eq!(kpis["hits"], 1);
}

/// `apm-api seed --via-api` posts batches to the ingest endpoint and counts what it inserted.
#[tokio::test]
async fn seed_through_the_api() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        o: apm_api::seed::Options,
    }
    let s = server().await;
    let cli = Cli::parse_from([
        "seed",
        "--count",
        "2500",
        "--seed",
        "42",
        "--batch-size",
        "1000",
        "--via-api",
        "--base-url",
        &s.base,
        "--token",
        &s.token,
    ]);
    apm_api::seed::run(&cli.o).await.expect("seed");
    let (code, list) = s.get("/api/requests/").await;
    assert_eq!(code, 200);
    assert_eq!(list["count"], 2500);
    let kpis = s
        .get("/api/requests/kpis/?granularity=daily&start=2000-01-01")
        .await
        .1;
    assert_eq!(kpis["hits"], 2500);
}

/// Ingest writes with COPY: values with tabs, newlines, backslashes and quotes come back as sent.
#[tokio::test]
async fn ingest_keeps_every_character() {
    let s = server().await;
    let awkward = json!({
        "time": "2025-12-14T01:00:00.123456Z", "service": "svc\\with\ttab", "endpoint": "/a\nb\\N",
        "method": "GET", "status_code": 200, "latency_ms": 1, "trace_id": "\\N", "user_ref": "é\r\"q\"",
        "tags": {"k": "v\\\t\n", "nested": {"n": [1, null, "\\N"]}}
    });
    let (code, r) = s
        .post("/api/requests/ingest/", json!([awkward.clone()]))
        .await;
    assert_eq!((code, r["inserted"].clone()), (200, json!(1)), "{r}");
    let (_, list) = s.get("/api/requests/").await;
    let got = &list["results"][0];
    for key in [
        "time", "service", "endpoint", "trace_id", "user_ref", "tags",
    ] {
        assert_eq!(got[key], awkward[key], "{key}");
    }
}

/// The writer and reader roles the settings name are created with the grants each needs.
#[tokio::test]
async fn writer_and_reader_roles() {
    let tag = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let (writer, reader) = (format!("apm_w_{tag}"), format!("apm_r_{tag}"));
    let s = common::server_with(|settings| {
        settings.writer = apm_api::config::Credentials {
            user: writer.clone(),
            password: "writer-pass".into(),
        };
        settings.reader = apm_api::config::Credentials {
            user: reader.clone(),
            password: "reader-pass".into(),
        };
    })
    .await;
    // Writes go through the writer role.
    let (code, body) = s
        .post(
            "/api/requests/",
            event("api", "/orders", 200, 12, "2025-12-14T01:00:00Z"),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let pool = sqlx::PgPool::connect(&s.database_url)
        .await
        .expect("connect");
    for (role, privilege, table, expected) in [
        (&writer, "INSERT", "observability_apirequest", true),
        (&writer, "UPDATE", "apirequest_hourly", true),
        (&reader, "SELECT", "apirequest_daily", true),
        (&reader, "INSERT", "observability_apirequest", false),
        (&reader, "DELETE", "apirequest_hourly", false),
    ] {
        let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, $3)")
            .bind(role)
            .bind(table)
            .bind(privilege)
            .fetch_one(&pool)
            .await
            .expect("privilege");
        assert_eq!(has, expected, "{role} {privilege} {table}");
    }
}

/// Concurrent updates of one event: each waits for the one before it (an update deletes and
/// inserts the row; the second used to find nothing to delete and insert a duplicate: a 500).
#[tokio::test]
async fn concurrent_updates_of_one_event_all_succeed() {
    let s = std::sync::Arc::new(server().await);
    let (code, created) = s
        .post(
            "/api/requests/",
            event("api", "/a", 200, 10, "2025-12-14T10:00:00Z"),
        )
        .await;
    assert_eq!(code, 201);
    let id = created["id"].as_i64().expect("id");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let method = if i % 2 == 0 {
                    reqwest::Method::PATCH
                } else {
                    reqwest::Method::PUT
                };
                let body = event("api", "/a", 200 + i, 10, "2025-12-14T10:00:00Z");
                s.send(method, &format!("/api/requests/{id}/"), Some(body))
                    .await
            })
        })
        .collect();
    for t in tasks {
        let (code, body) = t.await.expect("task");
        assert_eq!(code, 200, "{body}");
    }
    let (code, list) = s.get("/api/requests/").await;
    assert_eq!(code, 200);
    assert_eq!(list["count"], 1, "{list}");
    let (_, kpis) = s
        .get("/api/requests/kpis/?start=2025-12-14&end=2025-12-14")
        .await;
    assert_eq!(kpis["hits"], 1, "{kpis}");
}

/// After a rollback the previous release starts on a database a later one migrated: its
/// migrations only expanded it (docs/releases.md), so a version this binary does not know is no
/// reason to refuse.
#[tokio::test]
async fn a_database_migrated_by_a_later_release_still_runs_this_one() {
    let s = server().await;
    let pool = sqlx::PgPool::connect(&s.database_url)
        .await
        .expect("the test database");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'a later release', true, decode('00', 'hex'), 1)",
    )
    .execute(&pool)
    .await
    .expect("a later release's migration");
    pool.close().await;
    let _router = apm_api::app(s.settings.clone())
        .await
        .expect("this release starts, and migrates, on it");
}
