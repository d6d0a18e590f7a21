//! The ApiRequest resource: list (filters, ordering, search, pagination), create, retrieve, update,
//! delete.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sqlx::{Postgres, QueryBuilder};

use crate::AppState;
use crate::event::{self, Event, Stored};
use crate::json::{detail, respond};

const COLUMNS: &str =
    "id, time, service, endpoint, method, status_code, latency_ms, trace_id, user_ref, tags";
const NOT_FOUND: &str = "No ApiRequest matches the given query.";
const ORDERABLE: [&str; 6] = [
    "time",
    "latency_ms",
    "status_code",
    "service",
    "endpoint",
    "method",
];

fn params(q: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn last<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Adds the list filters to `qb` (which ends in `WHERE true`); errors are DRF form errors.
fn filters(
    qb: &mut QueryBuilder<Postgres>,
    p: &[(String, String)],
) -> Result<(), Map<String, Value>> {
    let mut errors = Map::new();
    let mut fail = |k: &str, m: &str| {
        errors.insert(k.to_owned(), json!([m]));
    };
    for (key, op) in [("time_after", ">="), ("time_before", "<=")] {
        if let Some(v) = last(p, key).filter(|v| !v.is_empty()) {
            match event::parse_datetime(v) {
                Some(t) => {
                    qb.push(format!(" AND time {op} ")).push_bind(t);
                }
                None => fail(key, "Enter a valid date/time."),
            }
        }
    }
    for col in ["service", "endpoint", "method", "trace_id", "user_ref"] {
        if let Some(v) = last(p, col).filter(|v| !v.is_empty()) {
            qb.push(format!(" AND upper({col}) = upper("))
                .push_bind(v.to_owned())
                .push(")");
        }
    }
    for (key, col, op) in [
        ("status_code", "status_code", "="),
        ("latency_ms", "latency_ms", "="),
    ] {
        if let Some(v) = last(p, key).filter(|v| !v.is_empty()) {
            match v.trim().parse::<i64>() {
                Ok(n) => {
                    qb.push(format!(" AND {col} {op} ")).push_bind(n);
                }
                Err(_) => fail(key, "Enter a number."),
            }
        }
    }
    if let Some(v) = last(p, "status_code__in").filter(|v| !v.is_empty()) {
        match v
            .split(',')
            .map(|s| s.trim().parse::<i64>())
            .collect::<Result<Vec<i64>, _>>()
        {
            Ok(list) => {
                qb.push(" AND status_code = ANY(").push_bind(list).push(")");
            }
            Err(_) => fail("status_code__in", "Enter a number."),
        }
    }
    for (key, op) in [("latency_min", ">="), ("latency_max", "<=")] {
        if let Some(v) = last(p, key).filter(|v| !v.is_empty()) {
            match v.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => {
                    qb.push(format!(" AND latency_ms {op} ")).push_bind(n);
                }
                _ => fail(key, "Enter a number."),
            }
        }
    }
    if let Some(v) = last(p, "search") {
        for term in v
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
        {
            let like = format!(
                "%{}%",
                term.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            );
            qb.push(" AND (");
            for (i, col) in ["service", "endpoint", "trace_id", "user_ref"]
                .iter()
                .enumerate()
            {
                if i > 0 {
                    qb.push(" OR ");
                }
                qb.push(format!("{col} ILIKE ")).push_bind(like.clone());
            }
            qb.push(")");
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `ordering=a,-b` over the allowed fields, `-time` by default; `id` breaks ties so pages are stable
/// (the original had no tie-breaker, spec §11 #29).
fn ordering(p: &[(String, String)]) -> String {
    let mut terms: Vec<String> = last(p, "ordering")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter_map(|t| {
            let (desc, name) = t.strip_prefix('-').map(|n| (true, n)).unwrap_or((false, t));
            ORDERABLE
                .contains(&name)
                .then(|| format!("{name} {}", if desc { "DESC" } else { "ASC" }))
        })
        .collect();
    if terms.is_empty() {
        terms.push("time DESC".into());
    }
    let desc = terms[0].ends_with("DESC");
    terms.push(format!("id {}", if desc { "DESC" } else { "ASC" }));
    terms.join(", ")
}

/// DRF's `replace_query_param`: the query with `page` set (or removed), keys sorted.
fn page_url(headers: &HeaderMap, uri: &Uri, p: &[(String, String)], page: Option<i64>) -> String {
    let mut pairs: Vec<(String, String)> = p.iter().filter(|(k, _)| k != "page").cloned().collect();
    if let Some(n) = page {
        pairs.push(("page".into(), n.to_string()));
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let base = super::absolute(headers, uri.path());
    if query.is_empty() {
        base
    } else {
        format!("{base}?{query}")
    }
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(q): RawQuery,
) -> Response {
    let p = params(&q);
    let count_sql = "SELECT count(*) FROM observability_apirequest WHERE true";
    if let Err(errors) = filters(&mut QueryBuilder::<Postgres>::new(count_sql), &p) {
        return respond(StatusCode::BAD_REQUEST, &Value::Object(errors));
    }
    let counted = state
        .db
        .read(|pool| {
            let p = &p;
            async move {
                let mut count_q = QueryBuilder::<Postgres>::new(count_sql);
                let _ = filters(&mut count_q, p);
                count_q.build_query_scalar().fetch_one(&pool).await
            }
        })
        .await;
    let count: i64 = match counted {
        Ok(n) => n,
        Err(e) => return server_error(e),
    };
    let size = state.settings.page_size;
    let pages = ((count + size - 1) / size).max(1);
    let page = match last(&p, "page") {
        None | Some("") => 1,
        Some("last") => pages,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 && n <= pages => n,
            _ => return detail(StatusCode::NOT_FOUND, "Invalid page."),
        },
    };
    let rows: Vec<Stored> = match state
        .db
        .read(|pool| {
            let p = &p;
            async move {
                let mut rows_q = QueryBuilder::<Postgres>::new(format!(
                    "SELECT {COLUMNS} FROM observability_apirequest WHERE true"
                ));
                let _ = filters(&mut rows_q, p);
                rows_q
                    .push(format!(" ORDER BY {} LIMIT ", ordering(p)))
                    .push_bind(size)
                    .push(" OFFSET ")
                    .push_bind((page - 1) * size);
                rows_q.build_query_as().fetch_all(&pool).await
            }
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return server_error(e),
    };
    let next = (page < pages).then(|| page_url(&headers, &uri, &p, Some(page + 1)));
    let previous = match page {
        1 => None,
        2 => Some(page_url(&headers, &uri, &p, None)),
        n => Some(page_url(&headers, &uri, &p, Some(n - 1))),
    };
    let results: Vec<Value> = rows.iter().map(Stored::to_json).collect();
    respond(
        StatusCode::OK,
        &json!({"count": count, "next": next, "previous": previous, "results": results}),
    )
}

/// A database error as the caller sees it: the database unreachable or a statement over its
/// timeout is a 503 with `Retry-After` (try again), anything else a 500; never the error's text,
/// which goes to the log.
pub fn server_error(e: sqlx::Error) -> Response {
    let timed_out = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "57014");
    if crate::db::is_connection_error(&e) || timed_out {
        tracing::warn!("database unavailable: {e}");
        let message = if timed_out {
            "The query took too long; narrow it or try again shortly."
        } else {
            "The database is unavailable; try again shortly."
        };
        let mut r = detail(StatusCode::SERVICE_UNAVAILABLE, message);
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return r;
    }
    tracing::error!("database error: {e}");
    detail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "A server error occurred.",
    )
}

fn object(v: Value) -> Result<Map<String, Value>, Response> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(respond(
            StatusCode::BAD_REQUEST,
            &json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        )),
    }
}

/// Inserts one event, with a new id or (when an update moves it) its own.
async fn insert_one<'c>(
    db: impl sqlx::PgExecutor<'c>,
    id: Option<i64>,
    e: &Event,
) -> Result<Stored, sqlx::Error> {
    let q = format!(
        "INSERT INTO observability_apirequest (id, time, service, endpoint, method, status_code, latency_ms, trace_id, user_ref, tags) \
         VALUES (COALESCE($1, nextval(pg_get_serial_sequence('observability_apirequest', 'id'))), $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         RETURNING {COLUMNS}"
    );
    sqlx::query_as::<_, Stored>(sqlx::AssertSqlSafe(q))
        .bind(id)
        .bind(e.time)
        .bind(&e.service)
        .bind(&e.endpoint)
        .bind(&e.method)
        .bind(e.status_code)
        .bind(e.latency_ms)
        .bind(&e.trace_id)
        .bind(&e.user_ref)
        .bind(&e.tags)
        .fetch_one(db)
        .await
}

/// Deletes an event, returning it as it was.
async fn delete_one(tx: &mut sqlx::PgConnection, id: i64) -> Result<Option<Stored>, sqlx::Error> {
    let q = format!("DELETE FROM observability_apirequest WHERE id = $1 RETURNING {COLUMNS}");
    sqlx::query_as::<_, Stored>(sqlx::AssertSqlSafe(q))
        .bind(id)
        .fetch_optional(tx)
        .await
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.db.wrote();
    let obj = match super::json_body(&headers, &body).and_then(object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let e = match event::validate(&obj, None) {
        Ok(e) => e,
        Err(errors) => return respond(StatusCode::BAD_REQUEST, &Value::Object(errors)),
    };
    let created = crate::db::retry_conflicts(|| async {
        let mut tx = state.db.primary.begin().await?;
        let s = insert_one(&mut *tx, None, &e).await?;
        crate::rollup::add(&mut tx, std::slice::from_ref(&s.event)).await?;
        tx.commit().await?;
        Ok::<Stored, sqlx::Error>(s)
    })
    .await;
    match created {
        Ok(s) => respond(StatusCode::CREATED, &s.to_json()),
        Err(e) => server_error(e),
    }
}

async fn fetch(state: &AppState, id: &str, primary: bool) -> Result<Stored, Response> {
    let Ok(id) = id.parse::<i64>() else {
        return Err(detail(StatusCode::NOT_FOUND, NOT_FOUND));
    };
    let one = |pool: sqlx::PgPool| async move {
        let q = format!("SELECT {COLUMNS} FROM observability_apirequest WHERE id = $1 LIMIT 1");
        sqlx::query_as::<_, Stored>(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(&pool)
            .await
    };
    let found = if primary {
        one(state.db.primary.clone()).await
    } else {
        state.db.read(one).await
    };
    match found {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(detail(StatusCode::NOT_FOUND, NOT_FOUND)),
        Err(e) => Err(server_error(e)),
    }
}

pub async fn retrieve(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match fetch(&state, &id, false).await {
        Ok(s) => respond(StatusCode::OK, &s.to_json()),
        Err(r) => r,
    }
}

async fn save(
    state: Arc<AppState>,
    id: String,
    headers: HeaderMap,
    body: Bytes,
    partial: bool,
) -> Response {
    state.db.wrote();
    let current = match fetch(&state, &id, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let obj = match super::json_body(&headers, &body).and_then(object) {
        Ok(o) => o,
        Err(r) => return r,
    };
    // Validated first as the event was read (a bad body is a 400 without a transaction), then
    // again, inside the transaction, against the event as locked and deleted: a concurrent write
    // may have changed it (a PATCH merges with what is there now) or removed it (a 404).
    if let Err(errors) = event::validate(&obj, partial.then_some(&current.event)) {
        return respond(StatusCode::BAD_REQUEST, &Value::Object(errors));
    }
    // The row may move chunk when its time changes: delete and insert it, keeping its id.
    let saved = crate::db::retry_conflicts(|| async {
        let mut tx = state.db.primary.begin().await?;
        lock_event(&mut tx, current.id).await?;
        let Some(old) = delete_one(&mut tx, current.id).await? else {
            return Ok(Saved::Gone);
        };
        let e = match event::validate(&obj, partial.then_some(&old.event)) {
            Ok(e) => e,
            // Dropping the transaction puts the row back.
            Err(errors) => return Ok(Saved::Invalid(errors)),
        };
        crate::rollup::remove(&mut tx, &old.event).await?;
        let s = insert_one(&mut *tx, Some(current.id), &e).await?;
        crate::rollup::add(&mut tx, std::slice::from_ref(&s.event)).await?;
        tx.commit().await?;
        Ok::<Saved, sqlx::Error>(Saved::Done(s))
    })
    .await;
    match saved {
        Ok(Saved::Done(s)) => respond(StatusCode::OK, &s.to_json()),
        Ok(Saved::Gone) => detail(StatusCode::NOT_FOUND, NOT_FOUND),
        Ok(Saved::Invalid(errors)) => respond(StatusCode::BAD_REQUEST, &Value::Object(errors)),
        Err(e) => server_error(e),
    }
}

/// What an update's transaction came to.
enum Saved {
    Done(Stored),
    /// Deleted meanwhile.
    Gone,
    /// Not valid against the event as it is now.
    Invalid(Map<String, Value>),
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    save(state, id, headers, body, false).await
}

pub async fn partial_update(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    save(state, id, headers, body, true).await
}

/// Serialises the writes to one event until the transaction ends. An update deletes and inserts
/// the row: without this, a second update of the same event, blocked on the first one's delete,
/// found nothing to delete once it committed and then inserted a duplicate (a 500). The lock is an
/// advisory one in a key space of its own (two int4 keys); ids 2^31 apart share a lock, which only
/// serialises them.
async fn lock_event(tx: &mut sqlx::PgConnection, id: i64) -> Result<(), sqlx::Error> {
    /// `apm_event` in ASCII, the lock's class.
    const CLASS: i32 = 0x6170_6d65;
    sqlx::query("SELECT pg_advisory_xact_lock($1, ($2 & 2147483647)::int4)")
        .bind(CLASS)
        .bind(id)
        .execute(tx)
        .await
        .map(|_| ())
}

/// Deletes the event and its embedding, in one transaction.
pub async fn destroy(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    state.db.wrote();
    let current = match fetch(&state, &id, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let result = crate::db::retry_conflicts(|| async {
        let mut tx = state.db.primary.begin().await?;
        lock_event(&mut tx, current.id).await?;
        let Some(old) = delete_one(&mut tx, current.id).await? else {
            return Ok(());
        };
        crate::rollup::remove(&mut tx, &old.event).await?;
        let has_embeddings: bool = sqlx::query_scalar(
            "SELECT to_regclass('observability_apirequestembedding') IS NOT NULL",
        )
        .fetch_one(&mut *tx)
        .await?;
        if has_embeddings {
            sqlx::query("DELETE FROM observability_apirequestembedding WHERE request_id = $1")
                .bind(current.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    })
    .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => server_error(e),
    }
}
