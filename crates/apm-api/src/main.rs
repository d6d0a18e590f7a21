//! `apm-api serve` (the default): wait for the database, migrate unless SKIP_MIGRATE, serve on
//! 0.0.0.0:8000, stop gracefully on SIGTERM. `apm-api migrate`: migrate and exit.
//! `apm-api check-cluster`: the state of each database connection.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "apm-api", version, about = "The APM HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Wait for the database, migrate (unless SKIP_MIGRATE=1), serve on APM_BIND (0.0.0.0:8000)
    Serve,
    /// Run the migrations and exit
    Migrate,
    /// Connect to every database host and report its role (primary or replica)
    CheckCluster(apm_api::check_cluster::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => apm_api::serve(apm_api::config::Settings::from_env()?, shutdown())
                .await
                .map(|()| 0),
            Command::Migrate => apm_api::db::Db::connect(&apm_api::config::Settings::from_env()?)
                .await
                .map(|_| 0),
            Command::CheckCluster(opts) => apm_api::check_cluster::run(opts).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            apm_api::complain(&format!("{e:#}"));
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
