//! The HTTP surface: the original's routes, with its optional trailing slashes, JSON-only bodies,
//! and error shapes.

// Helpers return the finished error response for handlers to send as they are; boxing every one
// would add noise on a path that is not hot.
#![allow(clippy::result_large_err)]

mod analytics;
mod health;
pub mod ingest;
mod platform;
mod requests;
mod search;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use serde_json::Value;

use crate::AppState;
use crate::json::detail;

/// Registers `path` with and without its trailing slash, as the original's router did.
fn both(
    router: Router<Arc<AppState>>,
    path: &str,
    route: MethodRouter<Arc<AppState>>,
) -> Router<Arc<AppState>> {
    let bare = path.trim_end_matches('/');
    router
        .route(bare, route.clone())
        .route(&format!("{bare}/"), route)
}

pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new();
    // Every route of the resource needs a token with the scope its method implies.
    r = both(
        r,
        "/api/requests/",
        get(requests::list).post(requests::create),
    );
    r = both(
        r,
        "/api/requests/ingest/",
        axum::routing::post(ingest::ingest),
    );
    r = both(r, "/api/requests/hourly/", get(analytics::hourly));
    r = both(r, "/api/requests/daily/", get(analytics::daily));
    r = both(r, "/api/requests/kpis/", get(analytics::kpis));
    r = both(
        r,
        "/api/requests/top-endpoints/",
        get(analytics::top_endpoints),
    );
    r = both(
        r,
        "/api/requests/semantic-search/",
        get(search::semantic_search),
    );
    r = both(
        r,
        "/api/requests/{id}/",
        get(requests::retrieve)
            .put(requests::update)
            .patch(requests::partial_update)
            .delete(requests::destroy),
    );
    r = both(r, "/api/platform/", get(platform::platform));
    r = r.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::auth::require,
    ));
    // Open: health for probes and load balancers, metrics (allow-listed at the proxy).
    r = r
        .route("/api/health/", get(health::health))
        .route("/api/health", get(health::health_redirect))
        .route("/api/", get(health::root))
        .route("/metrics", get(health::metrics));
    // The console's page and assets: open, as a login page must be; every number on it comes
    // from the routes above, with the token its user gives.
    r = r.merge(crate::console::router());
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_bad_input,
        ))
        .with_state(state)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(axum::middleware::from_fn(crate::telemetry::trace))
}

/// The largest request body: the proxy's `client_max_body_size` (templates/nginx/app.conf.j2).
pub const BODY_LIMIT: usize = 20 * 1024 * 1024;

/// What no route may see, answered in the contract's JSON: a `Host` that `ALLOWED_HOSTS` does not
/// list (it would reach pagination links), a query string holding U+0000 (which PostgreSQL text
/// cannot hold), a body over [`BODY_LIMIT`] (axum's own refusal is plain text), and a request
/// still running after the request timeout.
async fn refuse_bad_input(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !state.settings.host_allowed(host) {
        return detail(
            StatusCode::BAD_REQUEST,
            "Invalid Host header: add it to ALLOWED_HOSTS to serve it.",
        );
    }
    let nul = req
        .uri()
        .query()
        .is_some_and(|q| q.to_ascii_lowercase().contains("%00") || q.contains('\0'));
    if nul {
        return detail(StatusCode::BAD_REQUEST, crate::event::NULL_CHARACTERS);
    }
    let Ok(response) = tokio::time::timeout(state.settings.request_timeout, next.run(req)).await
    else {
        let mut r = detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "The request took too long; narrow it or try again shortly.",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return r;
    };
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !json {
        return detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Request body too large: the limit is {} MiB.",
                BODY_LIMIT / 1024 / 1024
            ),
        );
    }
    response
}

async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

async fn method_not_allowed(method: axum::http::Method) -> Response {
    detail(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method \"{method}\" not allowed."),
    )
}

/// A request body as DRF's JSON parser reads it: no content type or an empty body is an empty
/// object; a content type other than JSON is a 415; malformed JSON is a 400.
pub fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(Value::Object(Default::default()));
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" && !media.ends_with("+json") {
        return Err(detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported media type \"{ct}\" in request."),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body)
        .map_err(|e| detail(StatusCode::BAD_REQUEST, format!("JSON parse error - {e}")))
}

/// The URL of this request as the client sees it (scheme from `X-Forwarded-Proto`, host from `Host`).
pub fn absolute(headers: &HeaderMap, path: &str) -> String {
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}{path}")
}
