//! `hourly` and `daily`: a rollup's rows, newest bucket first.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use sqlx::{PgPool, Postgres, QueryBuilder, Row as _};

use crate::AppState;
use crate::json::{respond, utc_z};
use crate::rollup::Histogram;
use crate::routes::requests::server_error;

use super::params::{Form, Params, defaults, parse_bound, string_error, window};
use super::source::{By, Filter, Source, exact_p95, float_or_null};
use super::{DATE_MESSAGE, EXACT_P95_ROWS};

pub async fn hourly(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(&q);
    // View-level helpers: the first problem, as a string.
    let limit = match p.get("limit").map(str::trim).filter(|v| !v.is_empty()) {
        None => 500,
        Some(v) => match v.parse::<i64>() {
            Err(_) => return string_error("limit", "Must be an integer."),
            Ok(n) if n < 1 => return string_error("limit", "Must be >= 1."),
            Ok(n) if n > 5000 => return string_error("limit", "Must be <= 5000."),
            Ok(n) => n,
        },
    };
    let mut bounds = [None, None];
    for (i, (field, end)) in [("start", false), ("end", true)].into_iter().enumerate() {
        if let Some(v) = p.get(field).filter(|v| !v.trim().is_empty()) {
            match parse_bound(v, end) {
                Some(t) => bounds[i] = Some(t),
                None => return string_error(field, DATE_MESSAGE),
            }
        }
    }
    let (start, end) = match defaults(bounds[0], bounds[1], Duration::hours(24)) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let keep = |k: &str| p.get(k).filter(|v| !v.is_empty());
    let filter = Filter {
        start,
        end,
        service: keep("service"),
        endpoint: keep("endpoint"),
        method: None,
    };
    rollup_rows(&state, Source::Hourly, &filter, limit).await
}

pub async fn daily(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(&q);
    let mut form = Form::default();
    let (start, end) = window(&mut form, &p);
    let service = form.text(&p, "service");
    let endpoint = form.text(&p, "endpoint");
    let limit = form.int(&p, "limit", 500, 1, 5000);
    if let Err(r) = form.finish() {
        return r;
    }
    let (start, end) = match defaults(start, end, Duration::days(7)) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let filter = Filter {
        start,
        end,
        service: service.as_deref(),
        endpoint: endpoint.as_deref(),
        method: None,
    };
    rollup_rows(&state, Source::Daily, &filter, limit).await
}

/// The hourly and daily responses: the rollup's rows, read where reads go.
pub(super) async fn rollup_rows(
    state: &AppState,
    source: Source,
    filter: &Filter<'_>,
    limit: i64,
) -> Response {
    match state
        .db
        .read(|pool| async move { buckets(&pool, source, filter, limit).await })
        .await
    {
        Ok(rows) => respond(StatusCode::OK, &Value::Array(rows)),
        Err(e) => server_error(e),
    }
}

/// Rows of a rollup, newest bucket first; daily rows carry p95.
pub(super) async fn buckets(
    pool: &PgPool,
    source: Source,
    filter: &Filter<'_>,
    limit: i64,
) -> Result<Vec<Value>, sqlx::Error> {
    let daily = source == Source::Daily;
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT bucket, service, endpoint, hits, errors, latency_sum::float8 / hits AS avg, \
         max_latency_ms, {} AS hist, sum(hits) OVER ()::int8 AS total FROM {}",
        if daily { "latency_hist" } else { "NULL::int[]" },
        source.table()
    ));
    filter.push(&mut qb, source);
    qb.push(" ORDER BY bucket DESC, service ASC, endpoint ASC LIMIT ")
        .push_bind(limit);
    let rows = qb.build().fetch_all(pool).await?;
    let total: i64 = rows.first().map_or(0, |r| r.get("total"));
    let exact = if daily && total > 0 && total <= EXACT_P95_ROWS {
        exact_p95(pool, By::BucketPair("day"), |qb| {
            filter.push_covered(qb, source)
        })
        .await?
    } else {
        HashMap::new()
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let bucket: DateTime<Utc> = r.get("bucket");
        let service: String = r.get("service");
        let endpoint: String = r.get("endpoint");
        let max: i32 = r.get("max_latency_ms");
        let mut row = Map::new();
        row.insert("bucket".into(), json!(utc_z(&bucket)));
        row.insert("service".into(), json!(&service));
        row.insert("endpoint".into(), json!(&endpoint));
        row.insert("hits".into(), json!(r.get::<i64, _>("hits")));
        row.insert("errors".into(), json!(r.get::<i64, _>("errors")));
        row.insert("avg_latency_ms".into(), json!(r.get::<f64, _>("avg")));
        if daily {
            let p95 = if exact.is_empty() {
                let mut h = Histogram::default();
                h.add(&r.get::<Vec<i32>, _>("hist"));
                h.percentile(0.95, Some(max))
            } else {
                exact
                    .get(&(Some(bucket), Some(service), Some(endpoint)))
                    .copied()
            };
            row.insert("p95_latency_ms".into(), float_or_null(p95));
        }
        row.insert("max_latency_ms".into(), json!(max));
        out.push(Value::Object(row));
    }
    Ok(out)
}
