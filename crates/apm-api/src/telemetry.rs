//! Logs and traces: JSON log lines on stderr (tracing), one per request with its trace and span
//! ids, and, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
//! the spans exported over OTLP/HTTP (protobuf) under `OTEL_SERVICE_NAME` (default `apm-api`).
//! An incoming W3C `traceparent` header makes the request a child of the caller's trace, with or
//! without export, so the ids in the logs match the caller's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The tracer provider to flush at exit, when exporting.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

fn configured(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| !v.trim().is_empty())
}

/// Installs the process's subscriber: JSON logs filtered by `RUST_LOG` (default `info`), plus the
/// OTLP exporter when an endpoint is configured.
pub fn init() -> anyhow::Result<Telemetry> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr);
    let provider = if configured("OTEL_EXPORTER_OTLP_ENDPOINT")
        || configured("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()?;
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "apm-api".into());
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        EXPORTING.store(true, Ordering::Relaxed);
        Some(provider)
    } else {
        None
    };
    let traces = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("apm-api")));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init()?;
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Exports the spans still buffered.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            crate::complain(&format!("exporting the last traces: {e}"));
        }
    }
}

/// The caller's trace context from `traceparent`, if any.
fn parent(headers: &HeaderMap) -> opentelemetry::Context {
    struct Carrier<'a>(&'a HeaderMap);
    impl opentelemetry::propagation::Extractor for Carrier<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    TraceContextPropagator::new().extract(&Carrier(headers))
}

/// Runs a request in a span and logs one line for it: method, route, status, duration, and the
/// trace and span ids (from the exported span, else the caller's trace id or a new one).
pub async fn trace(req: Request, next: Next) -> Response {
    let route = crate::metrics::route(&req);
    let method = req.method().to_string();
    let caller = parent(req.headers());
    let span = tracing::info_span!(
        "request",
        otel.name = %format!("{method} {route}"),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let (trace_id, span_id) = if EXPORTING.load(Ordering::Relaxed) {
        let _ = span.set_parent(caller);
        let context = span.context();
        let ids = context.span().span_context().clone();
        (ids.trace_id().to_string(), ids.span_id().to_string())
    } else {
        let from_caller = caller.span().span_context().clone();
        let trace_id = if from_caller.is_valid() {
            from_caller.trace_id().to_string()
        } else {
            format!("{:032x}", rand::random::<u128>())
        };
        (trace_id, format!("{:016x}", rand::random::<u64>()))
    };
    span.record("trace_id", trace_id.as_str());
    span.record("span_id", span_id.as_str());
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            method,
            route,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            trace_id,
            span_id,
            "request"
        );
    });
    response
}
