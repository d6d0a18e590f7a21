//! Analytics: `hourly`, `daily`, `kpis` and `top-endpoints` (spec §1.5-1.8, §3), read from the
//! rollups (migrations/0004_rollups.sql) or the events table, on a replica when one is healthy.
//!
//! Windows: rollup paths count the buckets that start within `[start, end]`, as the original's
//! aggregates did, and every figure of a response, p95 included, covers those same buckets (the
//! original took p95 from the exact window, so one KPI response could disagree with itself, spec
//! §11 #8). Raw paths use the exact window. A p95 over at most [`EXACT_P95_ROWS`] events is
//! `percentile_cont` in SQL, as the original; over more, it comes from the rollups' histograms
//! (exact below 256 ms, within 1/32 of the value above), so it stays fast over millions of rows.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, DurationRound as _, NaiveDate, TimeDelta, Utc};
use serde_json::{Map, Value, json};
use sqlx::{PgPool, Postgres, QueryBuilder, Row as _};

use super::requests::server_error;
use crate::AppState;
use crate::json::{respond, utc_z};
use crate::rollup::{self, Histogram};

/// Up to this many events, p95 is computed exactly from the events.
pub const EXACT_P95_ROWS: i64 = 10_000;

const DATE_MESSAGE: &str =
    "Must be an ISO datetime or date (e.g. 2025-12-14T10:00:00Z or 2025-12-14).";
const ORDER_MESSAGE: &str = "`start` must be <= `end`.";

// ---------------------------------------------------------------------------------------------
// Parameters

pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(q: &Option<String>) -> Params {
        Params(
            url::form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of `key`, as Django's QueryDict gives it.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A window bound: an ISO datetime (naive means UTC), or a date (its first instant for `start`, its
/// last microsecond for `end`).
fn parse_bound(v: &str, end: bool) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let t = if end {
            d.and_hms_micro_opt(23, 59, 59, 999_999)?
        } else {
            d.and_hms_opt(0, 0, 0)?
        };
        return Some(t.and_utc());
    }
    crate::event::parse_datetime(v)
}

/// Serializer-style validation: every field's errors, as lists, in field order.
#[derive(Default)]
pub(super) struct Form {
    errors: Map<String, Value>,
    order: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Form {
    pub(super) fn fail(&mut self, field: &str, message: impl Into<String>) {
        if let Some(list) = self
            .errors
            .entry(field.to_owned())
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            list.push(Value::String(message.into()));
        }
    }

    fn bound(&mut self, p: &Params, field: &str, end: bool) -> Option<DateTime<Utc>> {
        let v = p.get(field)?;
        let t = parse_bound(v, end);
        if t.is_none() {
            self.fail(field, DATE_MESSAGE);
        }
        t
    }

    /// A CharField that may be absent but not blank (whitespace is trimmed first).
    pub(super) fn text(&mut self, p: &Params, field: &str) -> Option<String> {
        let v = p.get(field)?.trim();
        if v.is_empty() {
            self.fail(field, "This field may not be blank.");
            return None;
        }
        Some(v.to_owned())
    }

    pub(super) fn int(&mut self, p: &Params, field: &str, default: i64, min: i64, max: i64) -> i64 {
        let Some(v) = p.get(field) else {
            return default;
        };
        match v.trim().parse::<i64>() {
            Err(_) => {
                self.fail(field, "A valid integer is required.");
                default
            }
            Ok(n) if n > max => {
                self.fail(
                    field,
                    format!("Ensure this value is less than or equal to {max}."),
                );
                default
            }
            Ok(n) if n < min => {
                self.fail(
                    field,
                    format!("Ensure this value is greater than or equal to {min}."),
                );
                default
            }
            Ok(n) => n,
        }
    }

    fn choice<'a>(
        &mut self,
        p: &Params,
        field: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> &'a str {
        let Some(v) = p.get(field) else {
            return default;
        };
        match choices.iter().find(|c| **c == v) {
            Some(c) => c,
            None => {
                self.fail(field, format!("\"{v}\" is not a valid choice."));
                default
            }
        }
    }

    /// DRF's BooleanField values.
    fn boolean(&mut self, p: &Params, field: &str) -> bool {
        const TRUE: [&str; 14] = [
            "t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "1",
        ];
        const FALSE: [&str; 15] = [
            "f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
            "0", "",
        ];
        match p.get(field) {
            None => false,
            Some(v) if TRUE.contains(&v) => true,
            Some(v) if FALSE.contains(&v) => false,
            Some(_) => {
                self.fail(field, "Must be a valid boolean.");
                false
            }
        }
    }

    pub(super) fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors, or the cross-field check once every field is valid.
    pub(super) fn finish(mut self) -> Result<(), Response> {
        if self.errors.is_empty()
            && let Some((start, end)) = self.order
            && start > end
        {
            self.fail("detail", ORDER_MESSAGE);
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(respond(
                StatusCode::BAD_REQUEST,
                &Value::Object(self.errors),
            ))
        }
    }
}

/// A view-level error: a string under the key.
fn string_error(field: &str, message: &str) -> Response {
    respond(StatusCode::BAD_REQUEST, &json!({ field: message }))
}

/// The window the serializer validated; out of order when both are given is its cross-field
/// check, a list error made in [`Form::finish`].
fn window(form: &mut Form, p: &Params) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let start = form.bound(p, "start", false);
    let end = form.bound(p, "end", true);
    form.order = start.zip(end);
    (start, end)
}

/// The view's defaults: `end` is now, `start` is `end` minus `span`; out of order after them is the
/// view's string error (spec §11 #7 keeps both shapes).
fn defaults(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    span: TimeDelta,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Response> {
    let end = end.unwrap_or_else(Utc::now);
    let start = start.unwrap_or(end - span);
    if start > end {
        return Err(respond(
            StatusCode::BAD_REQUEST,
            &json!({ "detail": ORDER_MESSAGE }),
        ));
    }
    Ok((start, end))
}

// ---------------------------------------------------------------------------------------------
// Sources and windows

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Raw,
    Hourly,
    Daily,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Raw => "raw",
            Source::Hourly => "hourly",
            Source::Daily => "daily",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Source::Raw => "observability_apirequest",
            Source::Hourly => "apirequest_hourly",
            Source::Daily => "apirequest_daily",
        }
    }

    fn width(self) -> TimeDelta {
        match self {
            Source::Daily => Duration::days(1),
            _ => Duration::hours(1),
        }
    }

    /// The events the buckets starting within `[start, end]` hold: `[first, last + width)`.
    fn covered(self, start: DateTime<Utc>, end: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let w = self.width();
        let floor = |t: DateTime<Utc>| t.duration_trunc(w).unwrap_or(t);
        let first = if floor(start) == start {
            start
        } else {
            floor(start) + w
        };
        (first, floor(end) + w)
    }
}

/// §3.2: raw when a filter only the events have is used, else the granularity's rollup.
fn choose(granularity: &str, start: DateTime<Utc>, end: DateTime<Utc>, raw: bool) -> Source {
    if raw {
        return Source::Raw;
    }
    match granularity {
        "hourly" => Source::Hourly,
        "daily" => Source::Daily,
        _ if end - start <= Duration::hours(48) => Source::Hourly,
        _ => Source::Daily,
    }
}

/// The common filters: the window on `time` or `bucket`, service, endpoint, and (raw only) method.
struct Filter<'a> {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    service: Option<&'a str>,
    endpoint: Option<&'a str>,
    method: Option<&'a str>,
}

impl Filter<'_> {
    fn push(&self, qb: &mut QueryBuilder<Postgres>, source: Source) {
        let col = if source == Source::Raw {
            "time"
        } else {
            "bucket"
        };
        qb.push(format!(" WHERE {col} >= "))
            .push_bind(self.start)
            .push(format!(" AND {col} <= "))
            .push_bind(self.end);
        self.push_keys(qb, source);
    }

    fn push_keys(&self, qb: &mut QueryBuilder<Postgres>, source: Source) {
        if let Some(s) = self.service {
            qb.push(" AND service = ").push_bind(s.to_owned());
        }
        if let Some(e) = self.endpoint {
            qb.push(" AND endpoint = ").push_bind(e.to_owned());
        }
        if let (Some(m), Source::Raw) = (self.method, source) {
            qb.push(" AND method = ").push_bind(m.to_owned());
        }
    }

    /// The raw events the buckets of `source` cover: `time` in `[first, last + width)`.
    fn push_covered(&self, qb: &mut QueryBuilder<Postgres>, source: Source) {
        let (lo, hi) = source.covered(self.start, self.end);
        qb.push(" WHERE time >= ")
            .push_bind(lo)
            .push(" AND time < ")
            .push_bind(hi);
        self.push_keys(qb, Source::Raw);
    }
}

fn float_or_null(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |f| json!(f))
}

// ---------------------------------------------------------------------------------------------
// hourly and daily

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
async fn rollup_rows(
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
async fn buckets(
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

/// How an exact p95 groups the events.
#[derive(Debug, Clone, Copy)]
enum By {
    All,
    Pair,
    BucketPair(&'static str),
}

type Key = (Option<DateTime<Utc>>, Option<String>, Option<String>);

/// p95 per group, exactly as `percentile_cont(0.95)` (see [`crate::rollup::percentile`]): SQL
/// finds the two values around the rank, Rust interpolates. `conditions` adds the WHERE clause.
async fn exact_p95(
    pool: &PgPool,
    by: By,
    conditions: impl FnOnce(&mut QueryBuilder<Postgres>),
) -> Result<HashMap<Key, f64>, sqlx::Error> {
    let (bucket, keys, partition) = match by {
        By::All => (
            "NULL::timestamptz".to_owned(),
            "NULL::text AS service, NULL::text AS endpoint",
            String::new(),
        ),
        By::Pair => (
            "NULL::timestamptz".to_owned(),
            "service, endpoint",
            "PARTITION BY service, endpoint".to_owned(),
        ),
        By::BucketPair(unit) => {
            let bucket = format!("date_trunc('{unit}', time, 'UTC')");
            let partition = format!("PARTITION BY {bucket}, service, endpoint");
            (bucket, "service, endpoint", partition)
        }
    };
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT bucket, service, endpoint, latency_ms, rn, n FROM (\
         SELECT {bucket} AS bucket, {keys}, latency_ms, \
         row_number() OVER ({partition} ORDER BY latency_ms) - 1 AS rn, \
         count(*) OVER ({partition}) AS n FROM observability_apirequest"
    ));
    conditions(&mut qb);
    qb.push(
        ") AS ranked WHERE rn = floor(0.95::float8 * (n - 1)) OR rn = ceil(0.95::float8 * (n - 1))",
    );
    let mut around: HashMap<Key, (i64, Vec<(i64, f64)>)> = HashMap::new();
    for r in qb.build().fetch_all(pool).await? {
        let key: Key = (r.get("bucket"), r.get("service"), r.get("endpoint"));
        let entry = around
            .entry(key)
            .or_insert_with(|| (r.get("n"), Vec::new()));
        entry
            .1
            .push((r.get("rn"), f64::from(r.get::<i32, _>("latency_ms"))));
    }
    Ok(around
        .into_iter()
        .filter_map(|(key, (n, values))| {
            let (first, second) = rollup::ranks(0.95, n)?;
            let at = |rank| values.iter().find(|(r, _)| *r == rank).map(|(_, v)| *v);
            Some((key, rollup::percentile(0.95, n, at(first)?, at(second)?)))
        })
        .collect())
}

fn push_pairs(qb: &mut QueryBuilder<Postgres>, services: Vec<String>, endpoints: Vec<String>) {
    qb.push(" AND (service, endpoint) IN (SELECT * FROM unnest(")
        .push_bind(services)
        .push("::text[], ")
        .push_bind(endpoints)
        .push("::text[]))");
}

// ---------------------------------------------------------------------------------------------
// kpis and top-endpoints

/// What KPIs and top-endpoints share (`KpiQueryParamsSerializer`).
struct KpiForm {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    service: Option<String>,
    endpoint: Option<String>,
    method: Option<String>,
    granularity: &'static str,
    error_from: i64,
}

fn kpi_form(
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
    fn filter(&self) -> Filter<'_> {
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

async fn kpi_figures(pool: &PgPool, source: Source, k: &KpiForm) -> Result<Value, sqlx::Error> {
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

const SORTABLE: [&str; 6] = [
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

struct Top {
    limit: i64,
    sort_by: &'static str,
    direction: &'static str,
    with_p95: bool,
}

async fn ranking(
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
async fn pair_p95(
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
