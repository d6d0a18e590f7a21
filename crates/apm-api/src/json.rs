//! JSON the way the original API writes it: compact, UTF-8, UTC-Z timestamps with microseconds only
//! when non-zero, whole floats with `.0`, and DRF's error shapes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Timelike as _, Utc};
use serde_json::{Value, json};

/// `2025-12-14T01:10:00Z`, or `2025-12-28T22:12:20.014000Z` when there are microseconds.
pub fn utc_z(t: &DateTime<Utc>) -> String {
    let micros = t.nanosecond() / 1_000 % 1_000_000;
    if micros == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        format!("{}.{micros:06}Z", t.format("%Y-%m-%dT%H:%M:%S"))
    }
}

/// A JSON response with `status`.
pub fn respond(status: StatusCode, body: &Value) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    let mut r = (status, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `{"detail": message}`.
pub fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    respond(status, &json!({ "detail": message.into() }))
}

/// A view-level validation error: `{field: "message"}` (a string, as the original's view helpers).
pub fn field_error(field: &str, message: impl Into<String>) -> Response {
    let mut m = serde_json::Map::new();
    m.insert(field.to_owned(), Value::String(message.into()));
    respond(StatusCode::BAD_REQUEST, &Value::Object(m))
}
