//! What the black-box tests share: a server on a free port against a fresh database of
//! `APM_TEST_POSTGRES`, and an HTTP client.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use apm_api::config::{Credentials, HostPort, Settings};
use serde_json::{Value, json};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Server {
    pub base: String,
    /// A client that sends [`Server::token`] with every request.
    pub client: reqwest::Client,
    /// A client that sends no token.
    pub bare: reqwest::Client,
    /// The test's own database.
    pub database_url: String,
    pub settings: Settings,
    /// A token with every scope, which `send` gives.
    pub token: String,
}

pub async fn server() -> Server {
    server_with(|_| {}).await
}

/// A server whose settings `adjust` changes first.
pub async fn server_with(adjust: impl FnOnce(&mut Settings)) -> Server {
    let admin_url = std::env::var("APM_TEST_POSTGRES")
        .expect("APM_TEST_POSTGRES must name a PostgreSQL server (scripts/test starts one)");
    let url = url::Url::parse(&admin_url).expect("APM_TEST_POSTGRES is a URL");
    // The process id alone repeats across runs (a leftover database of an earlier run may carry
    // it); the start time does not. scripts/test-postgres drops what earlier runs left.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let name = format!(
        "apm_test_{}_{started}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("connecting to APM_TEST_POSTGRES");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let mut database_url = url.clone();
    database_url.set_path(&name);
    let who = Credentials {
        user: url.username().to_owned(),
        password: url.password().unwrap_or_default().to_owned(),
    };
    let mut settings = Settings {
        database: name,
        primary: HostPort {
            host: url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: url.port().unwrap_or(5432),
        },
        replicas: Vec::new(),
        admin: who.clone(),
        writer: who.clone(),
        reader: who,
        sslmode: None,
        sslrootcert: None,
        page_size: 3,
        read_after_write_ttl: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
        connect_retries: 3,
        connect_delay: Duration::from_millis(200),
        skip_migrate: false,
        bind: "127.0.0.1:0".into(),
        auth: true,
        tokens_file: None,
        prometheus: None,
        allowed_hosts: Vec::new(),
    };
    adjust(&mut settings);
    let router = apm_api::app(settings.clone()).await.expect("app");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let owner = sqlx::PgPool::connect(database_url.as_str())
        .await
        .expect("connecting to the test database");
    let token = apm_api::auth::create(&owner, "tests", &apm_api::auth::Scope::ALL)
        .await
        .expect("a token");
    owner.close().await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("a client"),
        bare: reqwest::Client::new(),
        database_url: database_url.to_string(),
        settings,
        token,
    }
}

impl Server {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.send_as(Some(&self.token), method, path, body).await
    }

    /// A request with `token` (none when `None`).
    pub async fn send_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.bare.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

pub fn event(service: &str, endpoint: &str, status: i64, latency: i64, time: &str) -> Value {
    json!({"time": time, "service": service, "endpoint": endpoint, "method": "GET", "status_code": status, "latency_ms": latency})
}
