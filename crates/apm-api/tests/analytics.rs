//! Black-box tests of hourly, daily, kpis and top-endpoints (spec §1.5-1.8, §3) and of the
//! rollups behind them, against a real PostgreSQL (`APM_TEST_POSTGRES`, see tests/common).

mod common;

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use common::{Server, event, server};
use serde_json::{Value, json};

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The start of the current hour, a little in the past so every event stays inside "the last 24h".
fn this_hour() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("truncate")
}

async fn ingest(s: &Server, events: Vec<Value>) {
    let (code, r) = s
        .post("/api/requests/ingest/?strict=true", json!(events))
        .await;
    assert_eq!(code, 200, "{r}");
}

/// The data of the original's worked example (spec §3.7), all in the current hour.
async fn worked_example(s: &Server) {
    let t = iso(this_hour());
    ingest(
        s,
        vec![
            event("billing", "/x", 200, 120, &t),
            event("billing", "/x", 503, 540, &t),
            event("auth", "/login", 200, 230, &t),
            event("api", "/health", 200, 15, &t),
            event("api", "/health", 200, 15, &t),
            event("api", "/orders", 200, 105, &t),
            event("web", "/home", 200, 33, &t),
        ],
    )
    .await;
}

#[tokio::test]
async fn kpis_match_the_worked_example() {
    let s = server().await;
    worked_example(&s).await;
    assert_eq!(
        s.get("/api/requests/kpis/").await,
        (
            200,
            json!({"hits": 7, "errors": 1, "error_rate": 0.14285714285714285,
                   "avg_latency_ms": 151.14285714285714, "p95_latency_ms": 446.99999999999994,
                   "max_latency_ms": 540, "source": "hourly"})
        )
    );
    assert_eq!(
        s.get("/api/requests/kpis?service=api").await.1,
        json!({"hits": 3, "errors": 0, "error_rate": 0.0, "avg_latency_ms": 45.0,
               "p95_latency_ms": 95.99999999999999, "max_latency_ms": 105, "source": "hourly"})
    );
    assert_eq!(
        s.get("/api/requests/kpis/?service=svc-a").await.1,
        json!({"hits": 0, "errors": 0, "error_rate": 0.0, "avg_latency_ms": null,
               "p95_latency_ms": null, "max_latency_ms": null, "source": "hourly"})
    );
    // Filters only the events have: raw, with the exact window.
    let (code, raw) = s.get("/api/requests/kpis/?method=get&error_from=400").await;
    assert_eq!(code, 200, "{raw}");
    assert_eq!(raw["source"], "raw");
    assert_eq!(raw["hits"], 7);
    assert_eq!(raw["errors"], 1);
    assert_eq!(raw["p95_latency_ms"], 446.99999999999994);
    let daily = s.get("/api/requests/kpis/?granularity=daily").await.1;
    assert_eq!(daily["source"], "daily");
    assert_eq!(daily["hits"], 7);
}

#[tokio::test]
async fn top_endpoints_order_ties_and_p95() {
    let s = server().await;
    worked_example(&s).await;
    let (code, r) = s
        .get("/api/requests/top-endpoints/?limit=10&sort_by=hits&direction=desc")
        .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["source"], "hourly");
    let order: Vec<String> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| {
            format!(
                "{}{}",
                x["service"].as_str().unwrap_or(""),
                x["endpoint"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            "api/health",
            "billing/x",
            "api/orders",
            "auth/login",
            "web/home"
        ]
    );
    assert_eq!(
        r["results"][1],
        json!({"service": "billing", "endpoint": "/x", "hits": 2, "errors": 1, "error_rate": 0.5,
               "avg_latency_ms": 330.0, "p95_latency_ms": null, "max_latency_ms": 540})
    );
    let by_rate = s
        .get("/api/requests/top-endpoints/?sort_by=error_rate")
        .await
        .1;
    assert_eq!(by_rate["results"][0]["endpoint"], "/x");
    let with_p95 = s
        .get("/api/requests/top-endpoints/?with_p95=True&service=billing")
        .await
        .1;
    assert_eq!(with_p95["source"], "hourly");
    assert_eq!(with_p95["results"][0]["p95_latency_ms"], 519.0);
    let by_p95 = s
        .get("/api/requests/top-endpoints/?sort_by=p95_latency_ms&direction=asc&limit=2")
        .await
        .1;
    assert_eq!(by_p95["source"], "raw");
    assert_eq!(by_p95["results"][0]["endpoint"], "/health");
    assert_eq!(by_p95["results"][0]["p95_latency_ms"], 15.0);
    assert_eq!(by_p95["results"].as_array().map(Vec::len), Some(2));
    // On the rollups, methods of one endpoint merge; the raw path keeps the method filter.
    let t = iso(this_hour());
    let mut post = event("api", "/orders", 201, 50, &t);
    post["method"] = json!("POST");
    ingest(&s, vec![post]).await;
    let merged = s
        .get("/api/requests/top-endpoints/?service=api&sort_by=avg_latency_ms")
        .await
        .1;
    assert_eq!(merged["results"][0]["endpoint"], "/orders");
    assert_eq!(merged["results"][0]["hits"], 2);
    let posts = s.get("/api/requests/top-endpoints/?method=post").await.1;
    assert_eq!(posts["source"], "raw");
    assert_eq!(posts["results"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn hourly_and_daily_rows() {
    let s = server().await;
    ingest(
        &s,
        vec![
            event("web", "/home", 200, 35, "2025-12-28T10:15:00Z"),
            event("web", "/home", 200, 40, "2025-12-28T11:15:00Z"),
            event("billing", "/x", 503, 540, "2025-12-29T00:10:00Z"),
            event("billing", "/x", 200, 120, "2025-12-29T00:20:00Z"),
        ],
    )
    .await;
    let (code, hourly) = s
        .get("/api/requests/hourly/?start=2025-12-28&end=2025-12-29")
        .await;
    assert_eq!(code, 200, "{hourly}");
    assert_eq!(
        hourly,
        json!([
            {"bucket": "2025-12-29T00:00:00Z", "service": "billing", "endpoint": "/x", "hits": 2, "errors": 1, "avg_latency_ms": 330.0, "max_latency_ms": 540},
            {"bucket": "2025-12-28T11:00:00Z", "service": "web", "endpoint": "/home", "hits": 1, "errors": 0, "avg_latency_ms": 40.0, "max_latency_ms": 40},
            {"bucket": "2025-12-28T10:00:00Z", "service": "web", "endpoint": "/home", "hits": 1, "errors": 0, "avg_latency_ms": 35.0, "max_latency_ms": 35},
        ])
    );
    let (code, daily) = s
        .get("/api/requests/daily/?start=2025-12-28&end=2025-12-29&limit=1")
        .await;
    assert_eq!(code, 200, "{daily}");
    assert_eq!(daily.as_array().map(Vec::len), Some(1));
    let daily = s
        .get("/api/requests/daily?start=2025-12-28&end=2025-12-29&service=web")
        .await
        .1;
    assert_eq!(
        daily,
        json!([{"bucket": "2025-12-28T00:00:00Z", "service": "web", "endpoint": "/home", "hits": 2,
                "errors": 0, "avg_latency_ms": 37.5, "p95_latency_ms": 39.75, "max_latency_ms": 40}])
    );
    // Rollup windows count the buckets that start inside them.
    let partial = s
        .get("/api/requests/hourly/?start=2025-12-28T10:30:00Z&end=2025-12-28T11:00:00Z")
        .await
        .1;
    assert_eq!(partial.as_array().map(Vec::len), Some(1));
    assert_eq!(partial[0]["bucket"], "2025-12-28T11:00:00Z");
}

#[tokio::test]
async fn late_events_show_in_their_past_hour_at_once() {
    let s = server().await;
    let past = this_hour() - Duration::hours(30);
    let window = format!(
        "start={}&end={}",
        iso(past - Duration::hours(1)).replace('+', "%2B"),
        iso(past + Duration::hours(1)).replace('+', "%2B")
    );
    ingest(&s, vec![event("api", "/orders", 200, 100, &iso(past))]).await;
    let hourly = s.get(&format!("/api/requests/hourly/?{window}")).await.1;
    assert_eq!(hourly[0]["hits"], 1, "{hourly}");
    // A back-dated event, below anything a scheduled refresh would have materialised: visible in
    // the next read, in the hourly and daily rollups and in the KPIs.
    ingest(
        &s,
        vec![event(
            "api",
            "/orders",
            502,
            300,
            &iso(past + Duration::minutes(5)),
        )],
    )
    .await;
    let hourly = s.get(&format!("/api/requests/hourly/?{window}")).await.1;
    assert_eq!(hourly[0]["hits"], 2, "{hourly}");
    assert_eq!(hourly[0]["errors"], 1);
    assert_eq!(hourly[0]["max_latency_ms"], 300);
    let kpis = s.get(&format!("/api/requests/kpis/?{window}")).await.1;
    assert_eq!(
        (kpis["hits"].clone(), kpis["source"].clone()),
        (json!(2), json!("hourly"))
    );
    let day = past.duration_trunc(Duration::days(1)).expect("day");
    let daily = s
        .get(&format!(
            "/api/requests/daily/?start={}",
            day.format("%Y-%m-%d")
        ))
        .await
        .1;
    let row = daily
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["bucket"] == json!(iso(day).replace("+00:00", "Z")))
        })
        .cloned();
    assert_eq!(row.map(|r| r["hits"].clone()), Some(json!(2)), "{daily}");
}

#[tokio::test]
async fn updates_and_deletes_keep_the_rollups_exact() {
    let s = server().await;
    let t = "2025-12-28T10:15:00Z";
    let window = "start=2025-12-28T10:00:00Z&end=2025-12-28T10:00:00Z";
    ingest(&s, vec![event("web", "/home", 200, 35, t)]).await;
    let (code, created) = s
        .post("/api/requests/", event("web", "/home", 500, 900, t))
        .await;
    assert_eq!(code, 201, "{created}");
    let row = &s.get(&format!("/api/requests/hourly/?{window}")).await.1[0];
    assert_eq!(
        (
            row["hits"].clone(),
            row["errors"].clone(),
            row["max_latency_ms"].clone()
        ),
        (json!(2), json!(1), json!(900))
    );
    // Move the slow error to another hour: the maximum goes back to the remaining event's.
    let id = created["id"].as_i64().expect("id");
    let (code, _) = s
        .send(
            reqwest::Method::PATCH,
            &format!("/api/requests/{id}/"),
            Some(json!({"time": "2025-12-28T12:00:00Z", "latency_ms": 800})),
        )
        .await;
    assert_eq!(code, 200);
    let hourly = s
        .get("/api/requests/hourly/?start=2025-12-28&end=2025-12-28")
        .await
        .1;
    assert_eq!(hourly.as_array().map(Vec::len), Some(2), "{hourly}");
    assert_eq!(hourly[0]["bucket"], "2025-12-28T12:00:00Z");
    assert_eq!(hourly[0]["max_latency_ms"], 800);
    assert_eq!(hourly[1]["max_latency_ms"], 35);
    assert_eq!(hourly[1]["errors"], 0);
    let (code, _) = s
        .send(
            reqwest::Method::DELETE,
            &format!("/api/requests/{id}/"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let hourly = s
        .get("/api/requests/hourly/?start=2025-12-28&end=2025-12-28")
        .await
        .1;
    assert_eq!(hourly.as_array().map(Vec::len), Some(1), "{hourly}");
    let daily = s
        .get("/api/requests/daily/?start=2025-12-28&end=2025-12-28")
        .await
        .1;
    assert_eq!(daily[0]["hits"], 1);
    assert_eq!(daily[0]["p95_latency_ms"], 35.0);
}

#[tokio::test]
async fn rollups_agree_with_a_rebuild_after_concurrent_ingest() {
    let s = server().await;
    let base = DateTime::parse_from_rfc3339("2025-12-20T00:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let client = s.client.clone();
        let url = format!("{}/api/requests/ingest/?batch_size=50", s.base);
        tasks.push(tokio::spawn(async move {
            for round in 0..5i64 {
                let events: Vec<Value> = (0..200i64)
                    .map(|i| {
                        let n = w * 10_000 + round * 1_000 + i;
                        event(
                            ["api", "web"][(n % 2) as usize],
                            ["/a", "/b", "/c"][(n % 3) as usize],
                            if n % 7 == 0 { 503 } else { 200 },
                            (n * 37) % 3000,
                            &iso(base + Duration::minutes((n * 13) % (3 * 24 * 60))),
                        )
                    })
                    .collect();
                let r = client
                    .post(&url)
                    .json(&events)
                    .send()
                    .await
                    .expect("ingest");
                assert_eq!(r.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let db = sqlx::PgPool::connect(&s.database_url).await.expect("db");
    for table in ["apirequest_hourly", "apirequest_daily"] {
        let q = format!(
            "SELECT bucket, service, endpoint, hits, errors, latency_sum, max_latency_ms, latency_hist FROM {table} ORDER BY 1, 2, 3"
        );
        type Row = (DateTime<Utc>, String, String, i64, i64, i64, i32, Vec<i32>);
        let live: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(q.clone()))
            .fetch_all(&db)
            .await
            .expect("live");
        let unit = if table.ends_with("hourly") {
            "hour"
        } else {
            "day"
        };
        sqlx::query("SELECT apm_rollup_refresh($1, '2025-12-19', '2025-12-24')")
            .bind(unit)
            .execute(&db)
            .await
            .expect("refresh");
        let rebuilt: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(q))
            .fetch_all(&db)
            .await
            .expect("rebuilt");
        assert_eq!(live.iter().map(|r| r.3).sum::<i64>(), 4000);
        assert_eq!(live, rebuilt, "{table}");
    }
}

#[tokio::test]
async fn sql_and_rust_bin_latencies_alike() {
    let s = server().await;
    let db = sqlx::PgPool::connect(&s.database_url).await.expect("db");
    let mut values: Vec<i32> = (0..5000).collect();
    for e in 8..31 {
        let p = 1i32 << e;
        values.extend([p - 1, p, p + 1, p + p / 3]);
    }
    values.push(i32::MAX);
    let bins: Vec<i32> = sqlx::query_scalar("SELECT apm_latency_bin(v) FROM unnest($1::int[]) v")
        .bind(&values)
        .fetch_all(&db)
        .await
        .expect("bins");
    for (v, b) in values.iter().zip(bins) {
        assert_eq!(apm_api::rollup::bin(*v), b as usize, "latency {v}");
    }
}

#[tokio::test]
async fn parameter_errors_have_the_original_shapes() {
    let s = server().await;
    let cases: [(&str, Value); 14] = [
        ("hourly/?limit=0", json!({"limit": "Must be >= 1."})),
        ("hourly/?limit=5001", json!({"limit": "Must be <= 5000."})),
        (
            "hourly/?start=2025-12-14T10:00:00 01:00",
            json!({"start": "Must be an ISO datetime or date (e.g. 2025-12-14T10:00:00Z or 2025-12-14)."}),
        ),
        (
            "hourly/?start=2025-12-15&end=2025-12-14",
            json!({"detail": "`start` must be <= `end`."}),
        ),
        (
            "daily/?service=",
            json!({"service": ["This field may not be blank."]}),
        ),
        (
            "daily/?limit=x",
            json!({"limit": ["A valid integer is required."]}),
        ),
        (
            "daily/?limit=9999",
            json!({"limit": ["Ensure this value is less than or equal to 5000."]}),
        ),
        (
            "daily/?start=2025-12-15&end=2025-12-14",
            json!({"detail": ["`start` must be <= `end`."]}),
        ),
        (
            "daily/?start=2999-01-01",
            json!({"detail": "`start` must be <= `end`."}),
        ),
        (
            "kpis/?granularity=weekly&error_from=99",
            json!({"granularity": ["\"weekly\" is not a valid choice."],
                   "error_from": ["Ensure this value is greater than or equal to 100."]}),
        ),
        (
            "kpis/?method=%20",
            json!({"method": ["This field may not be blank."]}),
        ),
        (
            "top-endpoints/?with_p95=maybe",
            json!({"with_p95": ["Must be a valid boolean."]}),
        ),
        (
            "top-endpoints/?sort_by=name&direction=up",
            json!({"sort_by": ["\"name\" is not a valid choice."], "direction": ["\"up\" is not a valid choice."]}),
        ),
        (
            "top-endpoints/?limit=201",
            json!({"limit": ["Ensure this value is less than or equal to 200."]}),
        ),
    ];
    for (path, expected) in cases {
        let (code, body) = s.get(&format!("/api/requests/{path}")).await;
        assert_eq!((code, &body), (400, &expected), "{path}");
    }
}
