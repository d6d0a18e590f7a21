//! `apm-api seed`: synthetic events with the original's flags and distributions (spec §5.1),
//! written directly (one transaction per batch, rollups included) or through the ingest endpoint
//! (`--via-api`). With `--seed`, the same flags give the same events.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use crate::event::Event;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Number of events
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Window length in days back from now (or from --end)
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    pub days: u64,
    /// Window start: an ISO datetime or a date
    #[arg(long, value_parser = |v: &str| bound(v, false))]
    pub start: Option<DateTime<Utc>>,
    /// Window end: an ISO datetime or a date (a date means its last microsecond)
    #[arg(long, value_parser = |v: &str| bound(v, true))]
    pub end: Option<DateTime<Utc>>,
    /// Services, comma-separated
    #[arg(long, default_value = "api,web,auth")]
    pub services: String,
    /// Endpoints, comma-separated: replaces every service's own endpoints
    #[arg(long, default_value = "")]
    pub endpoints: String,
    /// Share of errors, 0..1: half 4xx, half 5xx
    #[arg(long, default_value_t = 0.10)]
    pub error_rate: f64,
    /// Seed of the random generator: the same seed and flags give the same events
    #[arg(long)]
    pub seed: Option<u64>,
    /// Events per transaction, or per POST with --via-api (at most 50000 there)
    #[arg(long, env = "APM_INGEST_BATCH_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Delete every event (and embedding) first; needs --confirm-truncate yes
    #[arg(long)]
    pub truncate: bool,
    #[arg(long, default_value = "")]
    pub confirm_truncate: String,
    /// Run each event through the API's validation
    #[arg(long)]
    pub validate: bool,
    /// POST batches to the ingest endpoint instead of writing to the database
    #[arg(long)]
    pub via_api: bool,
    /// The API's base URL with --via-api (BASE_URL, else https://127.0.0.1:${PORT:-8443})
    #[arg(long, env = "BASE_URL")]
    pub base_url: Option<String>,
    /// An API token with the ingest scope, for --via-api
    #[arg(long, env = "APM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Accept any TLS certificate with --via-api (also when SSL_VERIFY is 0, false or no)
    #[arg(long)]
    pub insecure: bool,
    /// Verify the API's certificate against this CA (PEM) with --via-api, instead of the
    /// system's roots: the cluster CA of a hoist deployment
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<std::path::PathBuf>,
    /// HTTP timeout in seconds with --via-api
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
}

fn bound(v: &str, end: bool) -> Result<DateTime<Utc>, String> {
    let v = v.trim();
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        let t = if end {
            d.and_hms_micro_opt(23, 59, 59, 999_999)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        return t.map(|t| t.and_utc()).ok_or_else(|| "not a date".into());
    }
    crate::event::parse_datetime(v)
        .ok_or_else(|| "expected an ISO datetime or a date (YYYY-MM-DD)".into())
}

fn csv(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

const FIRST: [&str; 16] = [
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "william",
    "barbara",
    "richard",
    "susan",
    "joseph",
    "jessica",
];
const LAST: [&str; 12] = [
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "martin",
    "lopez", "wilson", "moore",
];

/// The events, generated as the original's command did.
#[derive(Debug)]
pub struct Generator {
    rng: StdRng,
    services: Vec<String>,
    endpoints: Vec<String>,
    error_rate: f64,
    start: DateTime<Utc>,
    span_us: i64,
}

impl Generator {
    pub fn new(o: &Options) -> anyhow::Result<Generator> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&o.error_rate),
            "--error-rate must be between 0 and 1"
        );
        let now = Utc::now();
        let days = TimeDelta::days(o.days as i64);
        let (start, end) = match (o.start, o.end) {
            (Some(s), Some(e)) => (s, e),
            (Some(s), None) => (s, now),
            (None, Some(e)) => (e - days, e),
            (None, None) => (now - days, now),
        };
        anyhow::ensure!(start <= end, "--start must be <= --end");
        let services = csv(&o.services);
        anyhow::ensure!(!services.is_empty(), "--services lists no service");
        Ok(Generator {
            rng: match o.seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_os_rng(),
            },
            services,
            endpoints: csv(&o.endpoints),
            error_rate: o.error_rate,
            start,
            span_us: (end - start).num_microseconds().unwrap_or(i64::MAX),
        })
    }

    pub fn event(&mut self) -> Event {
        let rng = &mut self.rng;
        let service = self.services.choose(rng).cloned().unwrap_or_default();
        let own: &[&str] = match service.as_str() {
            "api" => &["/health", "/orders", "/search"],
            "web" => &["/home", "/search"],
            "auth" => &["/login"],
            _ => &["/health", "/login", "/orders", "/home", "/search"],
        };
        let endpoint = if self.endpoints.is_empty() {
            own.choose(rng).map(|s| (*s).to_owned()).unwrap_or_default()
        } else {
            self.endpoints.choose(rng).cloned().unwrap_or_default()
        };
        let method = match endpoint.as_str() {
            "/health" | "/home" | "/search" => "GET",
            "/login" => "POST",
            "/orders" => ["GET", "POST"].choose(rng).copied().unwrap_or("GET"),
            _ => ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .choose(rng)
                .copied()
                .unwrap_or("GET"),
        };
        let e = self.error_rate;
        let r: f64 = rng.random();
        let status: i16 = if r < 1.0 - e {
            *[200, 201, 202, 204].choose(rng).unwrap_or(&200)
        } else if r < 1.0 - e + e / 2.0 {
            *[400, 401, 403, 404, 409, 429].choose(rng).unwrap_or(&400)
        } else {
            *[500, 502, 503, 504].choose(rng).unwrap_or(&500)
        };
        let latency_ms = match status {
            500.. => rng.random_range(200..=1500),
            400.. => rng.random_range(30..=600),
            _ => rng.random_range(10..=450),
        };
        let time = self.start + TimeDelta::microseconds(rng.random_range(0..=self.span_us));
        let trace_id = rng.random_bool(0.9).then(|| {
            uuid::Builder::from_random_bytes(rng.random())
                .into_uuid()
                .to_string()
        });
        let user_ref = rng.random_bool(0.85).then(|| {
            let first = FIRST.choose(rng).copied().unwrap_or("user");
            let last = LAST.choose(rng).copied().unwrap_or("name");
            match rng.random_range(0..3) {
                0 => format!("{first}{}", rng.random_range(1..100)),
                1 => format!("{first}.{last}"),
                _ => format!("{}{last}", &first[..1]),
            }
        });
        Event {
            time,
            tags: sqlx::types::Json(
                json!({"seed": true, "source": "faker", "service": service, "endpoint": endpoint}),
            ),
            service,
            endpoint,
            method: method.to_owned(),
            status_code: status,
            latency_ms,
            trace_id,
            user_ref,
        }
    }
}

/// Seeds as `o` says. The database's settings come from the environment, and only when the
/// database is written to directly (or truncated): `--via-api` alone needs the API's address.
pub async fn run(o: &Options) -> anyhow::Result<()> {
    let mut generator = Generator::new(o)?;
    if o.truncate && o.confirm_truncate != "yes" {
        anyhow::bail!("--truncate deletes every event: add --confirm-truncate yes");
    }
    let pool = if o.via_api && !o.truncate {
        None
    } else {
        let settings = crate::config::Settings::from_env()?;
        Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect_lazy_with(crate::db::options(
                    &settings,
                    &settings.primary,
                    &settings.writer,
                )),
        )
    };
    if let (true, Some(pool)) = (o.truncate, &pool) {
        sqlx::query(
            "DO $$ BEGIN \
               TRUNCATE observability_apirequest, apirequest_hourly, apirequest_daily; \
               IF to_regclass('observability_apirequestembedding') IS NOT NULL THEN \
                 TRUNCATE observability_apirequestembedding; END IF; END $$",
        )
        .execute(pool)
        .await?;
    }
    let batch = if o.via_api {
        o.batch_size.min(50_000)
    } else {
        o.batch_size
    } as usize;
    let client = if o.via_api {
        let verify_off = std::env::var("SSL_VERIFY")
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no"))
            .unwrap_or(false);
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(o.timeout.max(0.1)))
            .danger_accept_invalid_certs(o.insecure || verify_off);
        if let Some(path) = &o.cacert {
            builder = crate::trust::only(builder, path).context("--cacert")?;
        }
        Some(builder.build()?)
    } else {
        None
    };
    let base = o.base_url.clone().unwrap_or_else(|| {
        format!(
            "https://127.0.0.1:{}",
            std::env::var("PORT").unwrap_or_else(|_| "8443".into())
        )
    });
    let url = format!(
        "{}/api/requests/ingest/?strict=false",
        base.trim_end_matches('/')
    );
    let (mut inserted, mut rejected, mut left) = (0u64, 0u64, o.count);
    while left > 0 {
        let n = (left as usize).min(batch);
        left -= n as u64;
        let events: Vec<Event> = (0..n).map(|_| generator.event()).collect();
        if let Some(client) = &client {
            let body = json!({"events": events.iter().map(Event::to_json).collect::<Vec<_>>()});
            let mut req = client.post(&url).json(&body);
            if let Some(t) = &o.token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("Ingest failed: {e}"))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            anyhow::ensure!(
                status.is_success(),
                "Ingest failed: HTTP {} {text}",
                status.as_u16()
            );
            let r: Value = serde_json::from_str(&text)?;
            inserted += r["inserted"].as_u64().unwrap_or(0);
            rejected += r["rejected"].as_u64().unwrap_or(0);
            continue;
        }
        let events = if o.validate {
            let mut valid = Vec::with_capacity(events.len());
            for e in &events {
                match e.to_json() {
                    Value::Object(m) => match crate::event::validate(&m, None) {
                        Ok(v) => valid.push(v),
                        Err(_) => rejected += 1,
                    },
                    _ => rejected += 1,
                }
            }
            valid
        } else {
            events
        };
        let pool = pool
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no database pool without --via-api"))?;
        crate::routes::ingest::insert_batches(pool, &events, events.len().max(1)).await?;
        inserted += events.len() as u64;
    }
    if o.via_api {
        crate::say(&format!(
            "Seeded via API: inserted={inserted}, rejected={rejected}, url={url}"
        ));
    } else {
        crate::say(&format!("Seeded via ORM: inserted={inserted}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        o: Options,
    }

    fn options(args: &[&str]) -> Options {
        Cli::parse_from(std::iter::once("seed").chain(args.iter().copied())).o
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let o = options(&[
            "--seed",
            "42",
            "--start",
            "2025-12-01",
            "--end",
            "2025-12-07",
        ]);
        let a: Vec<Event> = {
            let mut g = Generator::new(&o).expect("generator");
            (0..200).map(|_| g.event()).collect()
        };
        let mut g = Generator::new(&o).expect("generator");
        let b: Vec<Event> = (0..200).map(|_| g.event()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn distributions_follow_the_original() {
        let o = options(&["--seed", "7", "--error-rate", "0.2", "--days", "2"]);
        let mut g = Generator::new(&o).expect("generator");
        let events: Vec<Event> = (0..20_000).map(|_| g.event()).collect();
        let share = |f: &dyn Fn(&Event) -> bool| {
            events.iter().filter(|e| f(e)).count() as f64 / events.len() as f64
        };
        assert!((share(&|e| e.status_code >= 500) - 0.1).abs() < 0.01);
        assert!((share(&|e| (400..500).contains(&e.status_code)) - 0.1).abs() < 0.01);
        assert!((share(&|e| e.trace_id.is_some()) - 0.9).abs() < 0.01);
        assert!((share(&|e| e.user_ref.is_some()) - 0.85).abs() < 0.01);
        for e in &events {
            let (lo, hi) = match e.status_code {
                500.. => (200, 1500),
                400.. => (30, 600),
                _ => (10, 450),
            };
            assert!((lo..=hi).contains(&e.latency_ms), "{e:?}");
            let allowed: &[&str] = match e.service.as_str() {
                "api" => &["/health", "/orders", "/search"],
                "web" => &["/home", "/search"],
                _ => &["/login"],
            };
            assert!(allowed.contains(&e.endpoint.as_str()), "{e:?}");
            if e.endpoint == "/login" {
                assert_eq!(e.method, "POST");
            }
        }
        let end = Utc::now();
        assert!(
            events.iter().all(
                |e| e.time >= end - TimeDelta::days(2) - TimeDelta::seconds(5) && e.time <= end
            )
        );
    }
}
