//! `POST /api/requests/ingest/`: bulk ingest with the original's parameters, payload shapes, limits
//! and per-item errors. Valid rows go in with one `COPY` per batch, all batches in one transaction
//! with the rollups' update: the original's batches were not atomic as a group (spec §11 #3).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::AppState;
use crate::event::{self, Event};
use crate::json::{detail, field_error, respond};

pub const MAX_EVENTS: i64 = 50_000;
pub const MAX_ERRORS: i64 = 25;
pub const BATCH_SIZE: i64 = 1_000;

fn int_param(
    p: &[(String, String)],
    key: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, Response> {
    let Some(v) = p
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
    else {
        return Ok(default);
    };
    if v.is_empty() {
        return Ok(default);
    }
    let n: i64 = v
        .parse()
        .map_err(|_| field_error(key, "Must be an integer."))?;
    if n < min {
        return Err(field_error(key, format!("Must be >= {min}.")));
    }
    if n > max {
        return Err(field_error(key, format!("Must be <= {max}.")));
    }
    Ok(n)
}

fn bool_param(p: &[(String, String)], key: &str) -> Result<bool, Response> {
    match p
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_ascii_lowercase())
    {
        None => Ok(false),
        Some(v) if v.is_empty() => Ok(false),
        Some(v) => match v.as_str() {
            "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
            "0" | "false" | "f" | "no" | "n" | "off" => Ok(false),
            _ => Err(field_error(key, "Must be a boolean (true/false).")),
        },
    }
}

pub async fn ingest(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    state.db.wrote();
    let p: Vec<(String, String)> =
        url::form_urlencoded::parse(q.as_deref().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let max_events = match int_param(&p, "max_events", MAX_EVENTS, 1, MAX_EVENTS) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let max_errors = match int_param(&p, "max_errors", MAX_ERRORS, 0, MAX_ERRORS) {
        Ok(n) => n,
        Err(r) => return r,
    };
    // The original defaulted to 1000 even when max_events was smaller, so `max_events` alone below
    // 1000 always failed (spec §11 #1): the default now follows max_events.
    let batch_size = match int_param(
        &p,
        "batch_size",
        BATCH_SIZE.min(max_events),
        1,
        max_events.max(1),
    ) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let strict = match bool_param(&p, "strict") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let payload = match super::json_body(&headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let items = match payload {
        Value::Array(items) => items,
        Value::Object(mut m) => match m.remove("events") {
            Some(Value::Array(items)) => items,
            Some(_) => return field_error("events", "Must be a list of event objects."),
            None => {
                return detail(
                    StatusCode::BAD_REQUEST,
                    "Expected a list payload or an object with an 'events' list.",
                );
            }
        },
        _ => {
            return detail(
                StatusCode::BAD_REQUEST,
                "Expected JSON list or object payload.",
            );
        }
    };
    let total = items.len() as i64;
    if total > max_events {
        return respond(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"detail": format!("Too many events: got {total}, max allowed is {max_events}."), "max_events": max_events}),
        );
    }
    let mut valid: Vec<Event> = Vec::with_capacity(items.len());
    let mut errors: Vec<Value> = Vec::new();
    let mut invalid = 0i64;
    for (i, item) in items.iter().enumerate() {
        let result = match item {
            Value::Object(obj) => event::validate(obj, None).map_err(Value::Object),
            _ => Err(json!({"non_field_errors": ["Each event must be a JSON object/dict."]})),
        };
        match result {
            Ok(e) => valid.push(e),
            Err(errs) => {
                invalid += 1;
                if (errors.len() as i64) < max_errors {
                    errors.push(json!({"index": i, "errors": errs}));
                }
            }
        }
    }
    if strict && invalid > 0 {
        // `rejected` counts every item: nothing was inserted (kept from the original, §11 #2).
        return respond(
            StatusCode::BAD_REQUEST,
            &json!({
                "detail": "Strict mode enabled: payload contains invalid items. Nothing was inserted.",
                "inserted": 0,
                "rejected": total,
                "errors": errors,
            }),
        );
    }
    let inserted = crate::db::retry_conflicts(|| {
        insert_batches(&state.db.primary, &valid, batch_size as usize)
    })
    .await;
    if let Err(e) = inserted {
        return super::requests::server_error(e);
    }
    metrics::counter!("apm_ingest_events_total", "outcome" => "inserted")
        .increment(valid.len() as u64);
    metrics::counter!("apm_ingest_events_total", "outcome" => "rejected").increment(invalid as u64);
    respond(
        StatusCode::OK,
        &json!({"inserted": valid.len(), "rejected": total - valid.len() as i64, "errors": errors}),
    )
}

/// Inserts every row in one transaction with the rollups' update: one `COPY` per batch.
pub async fn insert_batches(
    pool: &sqlx::PgPool,
    rows: &[Event],
    batch: usize,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    let mut buf = String::new();
    for chunk in rows.chunks(batch.max(1)) {
        buf.clear();
        for e in chunk {
            copy_row(&mut buf, e);
        }
        let mut copy = tx
            .copy_in_raw(
                "COPY observability_apirequest (time, service, endpoint, method, status_code, latency_ms, trace_id, user_ref, tags) FROM STDIN",
            )
            .await?;
        copy.send(buf.as_bytes()).await?;
        copy.finish().await?;
    }
    crate::rollup::add(&mut tx, rows).await?;
    tx.commit().await
}

/// One event as a line of COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_row(out: &mut String, e: &Event) {
    use std::fmt::Write as _;
    fn field(out: &mut String, v: &str) {
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
    }
    let _ = write!(
        out,
        "{}\t",
        e.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    for v in [&e.service, &e.endpoint, &e.method] {
        field(out, v);
        out.push('\t');
    }
    let _ = write!(out, "{}\t{}\t", e.status_code, e.latency_ms);
    for v in [&e.trace_id, &e.user_ref] {
        match v {
            Some(v) => field(out, v),
            None => out.push_str("\\N"),
        }
        out.push('\t');
    }
    field(out, &e.tags.0.to_string());
    out.push('\n');
}
