//! `kpis` and `top-endpoints`: the figures of a window, and its endpoints ranked.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use sqlx::{PgPool, Postgres, QueryBuilder, Row as _};

use crate::AppState;
use crate::json::respond;
use crate::rollup::Histogram;
use crate::routes::requests::server_error;

use super::EXACT_P95_ROWS;
use super::params::{Form, Params, defaults, window};
use super::source::{By, Filter, Source, choose, exact_p95, float_or_null, push_pairs};

/// What KPIs and top-endpoints share (`KpiQueryParamsSerializer`).
pub(super) struct KpiForm {
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    pub(super) service: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) method: Option<String>,
    pub(super) granularity: &'static str,
    pub(super) error_from: i64,
}

pub(super) fn kpi_form(
    form: &mut Form,
    p: &Params,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>, KpiForm) {
    let (start, end) = window(form, p);
    let service = form.text(p, "service");
    let endpoint = form.text(p, "endpoint");
    let method = form.text(p, "method").map(|m| m.to_ascii_uppercase());
    let granularity = form.choice(p, "granularity", &["auto", "hourly", "daily"], "auto");
    let error_from = form.int(p, "error_from", 500, 100, 599);
    let now = Utc::now();
    (
        start,
        end,
        KpiForm {
            start: now,
            end: now,
            service,
            endpoint,
            method,
            granularity,
            error_from,
        },
    )
}

impl KpiForm {
    pub(super) fn filter(&self) -> Filter<'_> {
        Filter {
            start: self.start,
            end: self.end,
            service: self.service.as_deref(),
            endpoint: self.endpoint.as_deref(),
            method: self.method.as_deref(),
        }
    }
}

pub async fn kpis(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(&q);
    let mut form = Form::default();
    let (start, end, mut k) = kpi_form(&mut form, &p);
    if let Err(r) = form.finish() {
        return r;
    }
    (k.start, k.end) = match defaults(start, end, Duration::hours(24)) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let source = choose(
        k.granularity,
        k.start,
        k.end,
        k.method.is_some() || k.error_from != 500,
    );
    match state
        .db
        .read(|pool| {
            let k = &k;
            async move { kpi_figures(&pool, source, k).await }
        })
        .await
    {
        Ok(v) => respond(StatusCode::OK, &v),
        Err(e) => server_error(e),
    }
}

pub(super) async fn kpi_figures(
    pool: &PgPool,
    source: Source,
    k: &KpiForm,
) -> Result<Value, sqlx::Error> {
    let filter = k.filter();
    let mut qb = if source == Source::Raw {
        let mut qb = QueryBuilder::<Postgres>::new(
            "SELECT count(*)::int8 AS hits, count(*) FILTER (WHERE status_code >= ",
        );
        qb.push_bind(k.error_from as i16).push(
            ")::int8 AS errors, avg(latency_ms)::float8 AS avg, max(latency_ms) AS max \
             FROM observability_apirequest",
        );
        qb
    } else {
        QueryBuilder::<Postgres>::new(format!(
            "SELECT coalesce(sum(hits), 0)::int8 AS hits, coalesce(sum(errors), 0)::int8 AS errors, \
             sum(latency_sum)::float8 / nullif(sum(hits), 0) AS avg, max(max_latency_ms) AS max \
             FROM {}",
            source.table()
        ))
    };
    filter.push(&mut qb, source);
    let row = qb.build().fetch_one(pool).await?;
    let hits: i64 = row.get("hits");
    let errors: i64 = row.get("errors");
    let max: Option<i32> = row.get("max");
    let p95 = if hits == 0 {
        None
    } else if source == Source::Raw || hits <= EXACT_P95_ROWS {
        exact_p95(pool, By::All, |qb| {
            if source == Source::Raw {
                filter.push(qb, source)
            } else {
                filter.push_covered(qb, source)
            }
        })
        .await?
        .into_values()
        .next()
    } else {
        let mut qb =
            QueryBuilder::<Postgres>::new(format!("SELECT latency_hist FROM {}", source.table()));
        filter.push(&mut qb, source);
        let mut h = Histogram::default();
        for dense in qb.build_query_scalar::<Vec<i32>>().fetch_all(pool).await? {
            h.add(&dense);
        }
        h.percentile(0.95, max)
    };
    let error_rate = if hits > 0 {
        errors as f64 / hits as f64
    } else {
        0.0
    };
    Ok(json!({
        "hits": hits,
        "errors": errors,
        "error_rate": error_rate,
        "avg_latency_ms": float_or_null(row.get("avg")),
        "p95_latency_ms": float_or_null(p95),
        "max_latency_ms": max,
        "source": source.name(),
    }))
}

pub(super) const SORTABLE: [&str; 6] = [
    "hits",
    "errors",
    "error_rate",
    "avg_latency_ms",
    "p95_latency_ms",
    "max_latency_ms",
];

pub async fn top_endpoints(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(&q);
    let mut form = Form::default();
    let (start, end, mut k) = kpi_form(&mut form, &p);
    let limit = form.int(&p, "limit", 20, 1, 200);
    let sort_by = form.choice(&p, "sort_by", &SORTABLE, "hits");
    let direction = form.choice(&p, "direction", &["asc", "desc"], "desc");
    let with_p95 = form.boolean(&p, "with_p95");
    if let Err(r) = form.finish() {
        return r;
    }
    (k.start, k.end) = match defaults(start, end, Duration::hours(24)) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let source = choose(
        k.granularity,
        k.start,
        k.end,
        k.method.is_some() || k.error_from != 500 || sort_by == "p95_latency_ms",
    );
    let top = Top {
        limit,
        sort_by,
        direction,
        with_p95,
    };
    match state
        .db
        .read(|pool| {
            let (k, top) = (&k, &top);
            async move { ranking(&pool, source, k, top).await }
        })
        .await
    {
        Ok(results) => respond(
            StatusCode::OK,
            &json!({"source": source.name(), "results": results}),
        ),
        Err(e) => server_error(e),
    }
}

pub(super) struct Top {
    pub(super) limit: i64,
    pub(super) sort_by: &'static str,
    pub(super) direction: &'static str,
    pub(super) with_p95: bool,
}

pub(super) async fn ranking(
    pool: &PgPool,
    source: Source,
    k: &KpiForm,
    top: &Top,
) -> Result<Vec<Value>, sqlx::Error> {
    let filter = k.filter();
    // Ordering by p95 needs it in SQL; the values returned are computed as everywhere else.
    let sql_p95 = source == Source::Raw && top.sort_by == "p95_latency_ms";
    let mut qb = if source == Source::Raw {
        let mut qb = QueryBuilder::<Postgres>::new(
            "SELECT service, endpoint, count(*)::int8 AS hits, count(*) FILTER (WHERE status_code >= ",
        );
        qb.push_bind(k.error_from as i16)
            .push(")::int8 AS errors, (count(*) FILTER (WHERE status_code >= ")
            .push_bind(k.error_from as i16)
            .push(format!(
                "))::float8 / count(*) AS error_rate, avg(latency_ms)::float8 AS avg_latency_ms, \
                 {} AS p95_latency_ms, max(latency_ms) AS max_latency_ms \
                 FROM observability_apirequest",
                if sql_p95 {
                    "percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)"
                } else {
                    "NULL::float8"
                }
            ));
        qb
    } else {
        QueryBuilder::<Postgres>::new(format!(
            "SELECT service, endpoint, sum(hits)::int8 AS hits, sum(errors)::int8 AS errors, \
             sum(errors)::float8 / sum(hits) AS error_rate, \
             sum(latency_sum)::float8 / sum(hits) AS avg_latency_ms, NULL::float8 AS p95_latency_ms, \
             max(max_latency_ms) AS max_latency_ms FROM {}",
            source.table()
        ))
    };
    filter.push(&mut qb, source);
    // `sort_by` and `direction` come from allow-lists.
    qb.push(format!(
        " GROUP BY service, endpoint ORDER BY {} {}, service ASC, endpoint ASC LIMIT ",
        top.sort_by,
        top.direction.to_ascii_uppercase()
    ))
    .push_bind(top.limit);
    let rows = qb.build().fetch_all(pool).await?;
    let mut results: Vec<(String, String, i64, Map<String, Value>)> = rows
        .iter()
        .map(|r| {
            let service: String = r.get("service");
            let endpoint: String = r.get("endpoint");
            let hits: i64 = r.get("hits");
            let mut m = Map::new();
            m.insert("service".into(), json!(service));
            m.insert("endpoint".into(), json!(endpoint));
            m.insert("hits".into(), json!(hits));
            m.insert("errors".into(), json!(r.get::<i64, _>("errors")));
            m.insert(
                "error_rate".into(),
                json!(r.get::<Option<f64>, _>("error_rate").unwrap_or(0.0)),
            );
            m.insert(
                "avg_latency_ms".into(),
                float_or_null(r.get("avg_latency_ms")),
            );
            m.insert(
                "p95_latency_ms".into(),
                float_or_null(r.get("p95_latency_ms")),
            );
            m.insert(
                "max_latency_ms".into(),
                json!(r.get::<Option<i32>, _>("max_latency_ms")),
            );
            (service, endpoint, hits, m)
        })
        .collect();
    if (top.with_p95 || sql_p95) && !results.is_empty() {
        let p95 = pair_p95(pool, source, &filter, &results).await?;
        for (s, e, _, m) in &mut results {
            if let Some(v) = p95.get(&(s.clone(), e.clone())) {
                m.insert("p95_latency_ms".into(), float_or_null(*v));
            }
        }
    }
    Ok(results
        .into_iter()
        .map(|(_, _, _, m)| Value::Object(m))
        .collect())
}

/// p95 of the listed (service, endpoint) pairs: over the exact window on the raw path, over the
/// buckets of a rollup otherwise.
pub(super) async fn pair_p95(
    pool: &PgPool,
    source: Source,
    filter: &Filter<'_>,
    pairs: &[(String, String, i64, Map<String, Value>)],
) -> Result<HashMap<(String, String), Option<f64>>, sqlx::Error> {
    let services: Vec<String> = pairs.iter().map(|p| p.0.clone()).collect();
    let endpoints: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    let hits: i64 = pairs.iter().map(|p| p.2).sum();
    if source == Source::Raw || hits <= EXACT_P95_ROWS {
        let exact = exact_p95(pool, By::Pair, |qb| {
            if source == Source::Raw {
                filter.push(qb, source);
            } else {
                filter.push_covered(qb, source);
            }
            push_pairs(qb, services, endpoints);
        })
        .await?;
        return Ok(exact
            .into_iter()
            .filter_map(|((_, s, e), v)| Some(((s?, e?), Some(v))))
            .collect());
    }
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT service, endpoint, latency_hist, max_latency_ms FROM {}",
        source.table()
    ));
    filter.push(&mut qb, source);
    push_pairs(&mut qb, services, endpoints);
    let mut hists: HashMap<(String, String), (Histogram, i32)> = HashMap::new();
    for r in qb.build().fetch_all(pool).await? {
        let entry = hists
            .entry((r.get("service"), r.get("endpoint")))
            .or_insert_with(|| (Histogram::default(), 0));
        entry.0.add(&r.get::<Vec<i32>, _>("latency_hist"));
        entry.1 = entry.1.max(r.get("max_latency_ms"));
    }
    Ok(hists
        .into_iter()
        .map(|(k, (h, max))| (k, h.percentile(0.95, Some(max))))
        .collect())
}
