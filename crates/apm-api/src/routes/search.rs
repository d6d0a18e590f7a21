//! `GET /api/requests/semantic-search/` (spec §1.9): the error events nearest to a text, by cosine
//! distance between embeddings (pgvector, HNSW index). Without pgvector the embeddings table is
//! absent and the endpoint answers 503 (the original answered 500, spec §11 #15).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{Postgres, QueryBuilder, Row as _};

use super::analytics::{Form, Params};
use super::requests::server_error;
use crate::AppState;
use crate::json::{detail, respond, utc_z};

pub async fn semantic_search(
    State(state): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(&q);
    let mut form = Form::default();
    let text = ["q", "query"]
        .iter()
        .find_map(|k| p.get(k).map(str::trim).filter(|v| !v.is_empty()))
        .map(str::to_owned);
    let limit = form.int(&p, "limit", 20, 1, 200);
    let status_from = form.int(&p, "status_from", 500, 100, 599);
    let service = form.text(&p, "service");
    let endpoint = form.text(&p, "endpoint");
    if text.is_none() && form.is_valid() {
        form.fail("detail", "Missing query. Use ?q=... or ?query=...");
    }
    if let Err(r) = form.finish() {
        return r;
    }
    let text = text.unwrap_or_default();
    let present = state
        .db
        .read(|pool| async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT to_regclass('observability_apirequestembedding') IS NOT NULL",
            )
            .fetch_one(&pool)
            .await
        })
        .await;
    match present {
        Ok(true) => {}
        Ok(false) => {
            return detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Semantic search is not available: the database has no pgvector extension.",
            );
        }
        Err(e) => return server_error(e),
    }
    let vector = match state.embedder.embed(&text).await {
        Ok(v) => v,
        Err(e) => {
            // The provider's error can carry its URL and key: logged, never answered.
            tracing::warn!("embedding failed: {e}");
            return detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Embedding failed: the embedding provider did not answer.",
            );
        }
    };
    let literal = crate::embed::literal(&vector);
    let found = state
        .db
        .read(|pool| {
            let (literal, service, endpoint) = (&literal, &service, &endpoint);
            async move {
            let mut qb = QueryBuilder::<Postgres>::new(
                "SELECT r.id, r.time, r.service, r.endpoint, r.method, r.status_code, r.latency_ms, \
                 (e.embedding <=> q.v)::float8 AS distance \
                 FROM observability_apirequestembedding e \
                 JOIN observability_apirequest r ON r.id = e.request_id, (SELECT ",
            );
            qb.push_bind(literal.to_owned())
                .push("::vector AS v) AS q WHERE e.source = 'error' AND r.status_code >= ")
                .push_bind(status_from as i16);
            if let Some(s) = service {
                qb.push(" AND r.service = ").push_bind(s.clone());
            }
            if let Some(e) = endpoint {
                qb.push(" AND r.endpoint = ").push_bind(e.clone());
            }
            qb.push(" ORDER BY e.embedding <=> q.v LIMIT ")
                .push_bind(limit);
            qb.build().fetch_all(&pool).await
            }
        })
        .await;
    let rows = match found {
        Ok(rows) => rows,
        Err(e) => return server_error(e),
    };
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let distance: f64 = r.get("distance");
            json!({
                "id": r.get::<i64, _>("id"),
                "time": utc_z(&r.get::<DateTime<Utc>, _>("time")),
                "service": r.get::<String, _>("service"),
                "endpoint": r.get::<String, _>("endpoint"),
                "method": r.get::<String, _>("method"),
                "status_code": r.get::<i16, _>("status_code"),
                "latency_ms": r.get::<i32, _>("latency_ms"),
                "distance": distance,
                "score": (1.0 - distance).max(0.0),
            })
        })
        .collect();
    respond(
        StatusCode::OK,
        &json!({"query": text, "count": results.len(), "results": results}),
    )
}
