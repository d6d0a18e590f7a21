//! `apm-api serve` (the default): wait for the database, migrate unless SKIP_MIGRATE, serve on
//! 0.0.0.0:8000, stop gracefully on SIGTERM. `apm-api migrate`: migrate and exit.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let settings = apm_api::config::Settings::from_env()?;
        match command.as_str() {
            "serve" => apm_api::serve(settings, shutdown()).await,
            "migrate" => apm_api::db::Db::connect(&settings).await.map(|_| ()),
            other => anyhow::bail!("unknown command {other:?} (serve, migrate)"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
