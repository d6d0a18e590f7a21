//! apm-api: the APM HTTP API, compatible with the original Django/DRF service (spec §1-5).
//!
//! - [`config`]: settings from the original's environment variables.
//! - [`auth`]: API tokens with scopes, checked on every route but health and metrics.
//! - [`db`]: connections, migrations and read routing to healthy replicas.
//! - [`event`]: the ApiRequest resource and its validation.
//! - [`routes`]: the HTTP routes; [`json`] the response formats; [`metrics`] `/metrics`.
//! - [`check_cluster`]: `apm-api check-cluster`.
//! - [`console`]: the web console at `/console/`; [`platform`] its platform page's data, from
//!   Prometheus.
//! - [`trust`]: HTTPS clients that trust the cluster's CA alone.

pub mod auth;
pub mod backfill;
pub mod check_cluster;
pub mod config;
pub mod console;
pub mod db;
pub mod embed;
pub mod event;
pub mod json;
pub mod metrics;
pub mod platform;
pub mod rollup;
pub mod routes;
pub mod seed;
pub mod telemetry;
pub mod trust;

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub db: Arc<db::Db>,
    pub settings: config::Settings,
    pub metrics: PrometheusHandle,
    pub embedder: embed::Provider,
    /// The API tokens found lately.
    pub tokens: auth::Cache,
    /// Prometheus, for the console's platform page, when configured.
    pub prometheus: Option<platform::Prometheus>,
}

/// Connects (waiting for the database and migrating) and builds the router.
pub async fn app(settings: config::Settings) -> anyhow::Result<axum::Router> {
    let embedder = embed::Provider::from_env()?;
    // The recorder first: connecting publishes the pools' gauges.
    let metrics = metrics::handle();
    let prometheus = settings
        .prometheus
        .as_ref()
        .map(platform::Prometheus::new)
        .transpose()?;
    let db = db::Db::connect(&settings).await?;
    if !settings.auth {
        tracing::warn!(
            "APM_AUTH=off: every request is served without a token; for local development only"
        );
    }
    let state = Arc::new(AppState {
        db,
        settings,
        metrics,
        embedder,
        tokens: auth::Cache::default(),
        prometheus,
    });
    Ok(routes::router(state))
}

/// Serves on `settings.bind` until `shutdown` resolves, finishing the requests in flight.
pub async fn serve(
    settings: config::Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bind = settings.bind.clone();
    let router = app(settings).await?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    tracing::info!("serving on {bind}");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// A result line on stdout (commands, not the server: its output is the JSON log).
pub fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A problem line on stderr.
pub fn complain(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
