//! `GET /api/platform/`: the platform's health for the console (crate::platform), read scope.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::AppState;
use crate::json::{field_error, respond};
use crate::platform::{WINDOW, report};

/// `?window=<seconds>` (default 6 hours, 300 to 7 days): the span of the memory chart.
pub async fn platform(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let window = match q.iter().rev().find(|(k, _)| k == "window") {
        None => 6 * 3600,
        Some((_, v)) => match v.trim().parse::<i64>() {
            Ok(w) if WINDOW.contains(&w) => w,
            _ => {
                return field_error(
                    "window",
                    format!(
                        "Must be a number of seconds from {} to {}.",
                        WINDOW.start(),
                        WINDOW.end()
                    ),
                );
            }
        },
    };
    let Some(prometheus) = &state.prometheus else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "detail": "The platform page needs Prometheus: PROMETHEUS_URL is not set.",
                "hint": "hoist sets it when the app host can reach the control host's Prometheus (prometheus_bind_ip, docs/console.md).",
            }),
        );
    };
    respond(
        StatusCode::OK,
        &report(prometheus, chrono::Utc::now(), window).await,
    )
}
