//! The API through its TLS proxy: healthy, and its primary answers.

use std::net::SocketAddr;
use std::time::Instant;

use hoist_core::check::{Check, failed};
use hoist_remote::https;

use super::ApiConfig;

/// The API through its TLS proxy: healthy, and its primary answers (`/api/health/?db=1`).
pub async fn api(local: SocketAddr, c: &ApiConfig) -> Vec<Check> {
    let started = Instant::now();
    let r = https::Endpoint {
        connect: local,
        name: &c.name,
        port: c.port,
        ca: &c.ca,
        authorization: None,
    }
    .request(http::Method::GET, "/api/health/?db=1")
    .await;
    let threshold = "200, db ok, TLS verified";
    vec![match r {
        Ok(r) => {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            Check::new(
                "api.health",
                &c.name,
                r.status == 200 && body["db"] == "ok",
                format!(
                    "HTTP {} db={} in {} ms",
                    r.status,
                    body["db"].as_str().unwrap_or("?"),
                    started.elapsed().as_millis()
                ),
                threshold,
            )
        }
        Err(e) => failed("api.health", &c.name, e, threshold),
    }]
}
