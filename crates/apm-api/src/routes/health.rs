//! Health, the API root and `/metrics`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::json::respond;

/// `GET /api/health/`: `{"status":"ok"}`, and with `?db=1` a `SELECT 1` on the primary.
pub async fn health(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let check = q.iter().any(|(k, v)| {
        k == "db"
            && matches!(
                v.to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "y" | "on"
            )
    });
    if !check {
        return respond(StatusCode::OK, &json!({"status": "ok"}));
    }
    match sqlx::query("SELECT 1").execute(&state.db.primary).await {
        Ok(_) => respond(StatusCode::OK, &json!({"status": "ok", "db": "ok"})),
        // Health is open to anyone: the error's text (addresses, role names) goes to the log only.
        Err(e) => {
            tracing::warn!("health: the primary does not answer: {e}");
            respond(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "error", "db": "unavailable"}),
            )
        }
    }
}

/// `/api/health` without its slash: the original answered a redirect (APPEND_SLASH).
pub async fn health_redirect(uri: axum::http::Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, format!("/api/health/{query}"))],
    )
        .into_response()
}

/// `GET /api/`: the router root.
pub async fn root(headers: HeaderMap) -> Response {
    respond(
        StatusCode::OK,
        &json!({"requests": super::absolute(&headers, "/api/requests/")}),
    )
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}
