//! `apm-api serve` (the default): wait for the database, migrate unless SKIP_MIGRATE, serve on
//! 0.0.0.0:8000, stop gracefully on SIGTERM. `apm-api migrate`: migrate and exit.
//! `apm-api check-cluster`: the state of each database connection.
//! `apm-api embed`, `seed`, `refresh`: the original's management commands.
//! `apm-api token create|list|revoke`: API tokens, as the database's owner.

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
    /// Embed events for semantic search (APM_EMBED_PROVIDER: hashing, gemini or openai)
    Embed(apm_api::backfill::Options),
    /// Generate synthetic events, into the database or through the ingest endpoint
    Seed(apm_api::seed::Options),
    /// Recompute the hourly or daily rollup from the events, for events written around the API
    Refresh(Refresh),
    /// API tokens: create (printed once), list, revoke; as the database's owner
    #[command(subcommand)]
    Token(Token),
}

#[derive(Debug, Subcommand)]
enum Token {
    /// Make a token and print it (the only time it is shown)
    Create {
        /// What the token is for (letters, digits, `.`, `_`, `-`)
        #[arg(long)]
        name: String,
        /// What it may do: ingest, read, admin (comma-separated)
        #[arg(long)]
        scope: String,
    },
    /// Every token: name, first characters, scopes, created, revoked
    List,
    /// Revoke a token by name: requests with it are refused within seconds
    Revoke { name: String },
}

#[derive(Debug, clap::Args)]
struct Refresh {
    /// Which rollup
    #[arg(value_parser = ["hourly", "daily"])]
    rollup: String,
    /// From this ISO datetime (default: 7 days before --end)
    #[arg(long)]
    start: Option<chrono::DateTime<chrono::Utc>>,
    /// To this ISO datetime (default: now)
    #[arg(long)]
    end: Option<chrono::DateTime<chrono::Utc>>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match apm_api::telemetry::init() {
        Ok(t) => t,
        Err(e) => {
            apm_api::complain(&format!("setting up logs and traces: {e:#}"));
            return ExitCode::from(1);
        }
    };
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
            Command::Embed(opts) => {
                let settings = apm_api::config::Settings::from_env()?;
                let provider = apm_api::embed::Provider::from_env()?;
                apm_api::backfill::run(&writer(&settings).await?, &provider, &opts)
                    .await
                    .map(|_| 0)
            }
            Command::Seed(opts) => apm_api::seed::run(&opts).await.map(|()| 0),
            Command::Token(t) => token(&apm_api::config::Settings::from_env()?, t).await,
            Command::Refresh(r) => {
                let settings = apm_api::config::Settings::from_env()?;
                let end = r.end.unwrap_or_else(chrono::Utc::now);
                let start = r.start.unwrap_or(end - chrono::TimeDelta::days(7));
                anyhow::ensure!(start <= end, "`--start` must be <= `--end`.");
                let unit = if r.rollup == "hourly" { "hour" } else { "day" };
                let rows: i64 = sqlx::query_scalar("SELECT apm_rollup_refresh($1, $2, $3)")
                    .bind(unit)
                    .bind(start)
                    .bind(end)
                    .fetch_one(&writer(&settings).await?)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("Failed to refresh apirequest_{}: {e}", r.rollup)
                    })?;
                apm_api::say(&format!(
                    "Refreshed apirequest_{} from {} to {} ({rows} rows)",
                    r.rollup,
                    apm_api::json::utc_z(&start),
                    apm_api::json::utc_z(&end)
                ));
                Ok(0)
            }
        }
    });
    drop(rt);
    telemetry.shutdown();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            apm_api::complain(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

/// `apm-api token ...`, as the owner on the primary (the tokens' table migrated first).
async fn token(s: &apm_api::config::Settings, t: Token) -> anyhow::Result<u8> {
    use apm_api::auth;
    let options = apm_api::db::options(s, &s.primary, &s.admin);
    let owner = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await?;
    apm_api::db::MIGRATOR.run(&owner).await?;
    match t {
        Token::Create { name, scope } => {
            let scopes = auth::parse_scopes(&scope).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
            let token = auth::create(&owner, &name, &scopes).await?;
            apm_api::complain(&format!(
                "token {name} ({}): keep it now, it is not shown again",
                scopes
                    .iter()
                    .map(|s| s.word())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
            apm_api::say(&token);
            Ok(0)
        }
        Token::List => {
            for t in auth::list(&owner).await? {
                let state = match t.revoked_at {
                    Some(at) => format!("revoked {}", apm_api::json::utc_z(&at)),
                    None => "active".into(),
                };
                apm_api::say(&format!(
                    "{:<24} {}...  {:<18} created {}  {state}{}",
                    t.name,
                    t.prefix,
                    t.scopes.join(","),
                    apm_api::json::utc_z(&t.created_at),
                    if t.managed { "  (token file)" } else { "" }
                ));
            }
            Ok(0)
        }
        Token::Revoke { name } => {
            if auth::revoke(&owner, &name).await? {
                apm_api::say(&format!("revoked {name}"));
                Ok(0)
            } else {
                apm_api::complain(&format!("no token {name} in force"));
                Ok(1)
            }
        }
    }
}

/// A connection to the primary as the writer.
async fn writer(s: &apm_api::config::Settings) -> anyhow::Result<sqlx::PgPool> {
    let options = apm_api::db::options(s, &s.primary, &s.writer);
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await?)
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
