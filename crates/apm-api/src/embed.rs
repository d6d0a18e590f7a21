//! Embeddings for semantic search: the text the original embedded for an event, and the providers
//! that turn text into 768 numbers, chosen by `APM_EMBED_PROVIDER`:
//!
//! - `hashing` (the default): a deterministic feature-hashing embedding computed in process, so
//!   semantic search works with no external service. Each `key=value` field, each word of a value,
//!   and coarse classes (status family, latency order of magnitude) add a signed weight to one
//!   dimension chosen by SHA-256; the vector is L2-normalised, so cosine distance measures shared
//!   features.
//! - `gemini`: the original's client (`GEMINI_API_KEY`, `GEMINI_API_BASE_URL`, `GEMINI_EMBED_MODEL`,
//!   `GEMINI_EMBED_TIMEOUT`, `GEMINI_EMBED_MIN_DELAY_S`, `GEMINI_EMBED_MAX_CHARS`).
//! - `openai`: an OpenAI-compatible `/embeddings` endpoint, such as a local model server
//!   (`OPENAI_BASE_URL`, `OPENAI_API_KEY` if it needs one, `OPENAI_EMBED_MODEL`, `OPENAI_EMBED_TIMEOUT`).

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::event::Event;

pub const DIMENSIONS: usize = 768;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("GEMINI_API_KEY is not set.")]
    NoGeminiKey,
    #[error("OPENAI_BASE_URL is not set.")]
    NoOpenAiUrl,
    #[error("Unknown APM_EMBED_PROVIDER {0:?} (expected hashing, gemini or openai).")]
    UnknownProvider(String),
    #[error("GEMINI_API_BASE_URL is not a URL: {0}")]
    BadUrl(String),
    #[error("Cannot embed empty text.")]
    Empty,
    #[error("Gemini API error ({0}): {1}")]
    GeminiStatus(u16, String),
    #[error("Gemini API request failed: {0}")]
    GeminiRequest(reqwest::Error),
    #[error("Embedding API error ({0}): {1}")]
    OpenAiStatus(u16, String),
    #[error("Embedding API request failed: {0}")]
    OpenAiRequest(reqwest::Error),
    #[error("The embedding response has no vector at {0}.")]
    Malformed(&'static str),
    #[error("The model returned {0} dimensions; the embeddings table holds {DIMENSIONS}.")]
    Dimensions(usize),
}

#[derive(Debug, Clone)]
pub enum Provider {
    Hashing,
    Gemini {
        key: Option<String>,
        base: String,
        model: String,
        max_chars: usize,
        min_delay: Duration,
        client: reqwest::Client,
    },
    OpenAi {
        base: Option<String>,
        key: Option<String>,
        model: String,
        client: reqwest::Client,
    },
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

fn seconds(key: &str, default: f64) -> Duration {
    Duration::from_secs_f64(
        env(key)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(default),
    )
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap_or_default()
}

impl Provider {
    /// The provider the environment chooses. Missing credentials are reported when embedding, as
    /// the original did (the server starts; semantic search answers 503 with the reason).
    pub fn from_env() -> Result<Provider, EmbedError> {
        match env("APM_EMBED_PROVIDER")
            .unwrap_or_else(|| "hashing".into())
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "hashing" => Ok(Provider::Hashing),
            "gemini" => Ok(Provider::Gemini {
                key: env("GEMINI_API_KEY"),
                base: env("GEMINI_API_BASE_URL")
                    .unwrap_or_else(|| "https://generativelanguage.googleapis.com".into()),
                model: env("GEMINI_EMBED_MODEL").unwrap_or_else(|| "text-embedding-004".into()),
                max_chars: env("GEMINI_EMBED_MAX_CHARS")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(8000),
                min_delay: seconds("GEMINI_EMBED_MIN_DELAY_S", 0.0),
                client: client(seconds("GEMINI_EMBED_TIMEOUT", 10.0)),
            }),
            "openai" => Ok(Provider::OpenAi {
                base: env("OPENAI_BASE_URL"),
                key: env("OPENAI_API_KEY"),
                model: env("OPENAI_EMBED_MODEL").unwrap_or_else(|| "nomic-embed-text".into()),
                client: client(seconds("OPENAI_EMBED_TIMEOUT", 10.0)),
            }),
            other => Err(EmbedError::UnknownProvider(other.to_owned())),
        }
    }

    /// The model name stored with each embedding.
    pub fn model(&self) -> &str {
        match self {
            Provider::Hashing => "hashing-768-v1",
            Provider::Gemini { model, .. } | Provider::OpenAi { model, .. } => {
                model.trim_start_matches("models/")
            }
        }
    }

    /// Waits the configured delay between two texts (Gemini's rate limit).
    pub async fn pause(&self) {
        if let Provider::Gemini { min_delay, .. } = self
            && !min_delay.is_zero()
        {
            tokio::time::sleep(*min_delay).await;
        }
    }

    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(EmbedError::Empty);
        }
        let vector = match self {
            Provider::Hashing => hashing(text),
            Provider::Gemini {
                key,
                base,
                model,
                max_chars,
                client,
                ..
            } => {
                let key = key.as_deref().ok_or(EmbedError::NoGeminiKey)?;
                let text: String = text.chars().take(*max_chars).collect();
                let model = model.trim_start_matches("models/");
                let url = format!(
                    "{}/v1beta/models/{model}:embedContent",
                    base.trim_end_matches('/')
                );
                let url = url::Url::parse(&url).map_err(|_| EmbedError::BadUrl(base.clone()))?;
                // The key goes in a header, never in the URL: a URL is logged, and a request
                // error carries it.
                let resp = client
                    .post(url)
                    .header("x-goog-api-key", key)
                    .json(&json!({"content": {"parts": [{"text": text}]}}))
                    .send()
                    .await
                    .map_err(EmbedError::GeminiRequest)?;
                let status = resp.status();
                let body = resp.text().await.map_err(EmbedError::GeminiRequest)?;
                if !status.is_success() {
                    return Err(EmbedError::GeminiStatus(status.as_u16(), body));
                }
                numbers(&body, "/embedding/values")?
            }
            Provider::OpenAi {
                base,
                key,
                model,
                client,
            } => {
                let base = base.as_deref().ok_or(EmbedError::NoOpenAiUrl)?;
                let mut req = client
                    .post(format!("{}/embeddings", base.trim_end_matches('/')))
                    .json(&json!({"model": model, "input": text}));
                if let Some(k) = key {
                    req = req.bearer_auth(k);
                }
                let resp = req.send().await.map_err(EmbedError::OpenAiRequest)?;
                let status = resp.status();
                let body = resp.text().await.map_err(EmbedError::OpenAiRequest)?;
                if !status.is_success() {
                    return Err(EmbedError::OpenAiStatus(status.as_u16(), body));
                }
                numbers(&body, "/data/0/embedding")?
            }
        };
        if vector.len() != DIMENSIONS {
            return Err(EmbedError::Dimensions(vector.len()));
        }
        Ok(vector)
    }
}

fn numbers(body: &str, pointer: &'static str) -> Result<Vec<f32>, EmbedError> {
    let v: Value = serde_json::from_str(body).map_err(|_| EmbedError::Malformed(pointer))?;
    v.pointer(pointer)
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
        })
        .ok_or(EmbedError::Malformed(pointer))
}

/// The deterministic offline embedding (see the module documentation).
pub fn hashing(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMENSIONS];
    let mut add = |feature: &str, weight: f32| {
        let digest = Sha256::digest(feature.as_bytes());
        let index = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
        let sign = if digest[8] & 1 == 0 { 1.0 } else { -1.0 };
        v[(index % DIMENSIONS as u64) as usize] += sign * weight;
    };
    for field in text.split_whitespace() {
        let field = field.to_lowercase();
        let (key, value) = field.split_once('=').unwrap_or(("", field.as_str()));
        if !key.is_empty() {
            add(&field, 1.0);
        }
        for word in value
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            add(&format!("w:{word}"), 1.0);
        }
        if let Ok(n) = value.parse::<u64>() {
            match key {
                "status" => add(&format!("status:{}xx", n / 100), 1.5),
                "latency_ms" => add(&format!("latency:2^{}", 64 - n.leading_zeros()), 0.75),
                _ => {}
            }
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Tag keys never embedded: they may hold personal data or credentials.
const PRIVATE: [&str; 8] = [
    "user", "email", "token", "auth", "password", "session", "secret", "key",
];

/// The text the original embedded for an event: `service=.. endpoint=.. method=.. status=..
/// latency_ms=..`, and with `tags`, ` tags=k=v,...` without private keys.
pub fn text(e: &Event, tags: bool) -> String {
    let mut t = format!(
        "service={} endpoint={} method={} status={} latency_ms={}",
        e.service, e.endpoint, e.method, e.status_code, e.latency_ms
    );
    if tags && let Value::Object(m) = &e.tags.0 {
        let kept: Vec<String> = m
            .iter()
            .filter(|(k, _)| {
                let k = k.to_lowercase();
                !PRIVATE.iter().any(|p| k.contains(p))
            })
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        if !kept.is_empty() {
            t.push_str(" tags=");
            t.push_str(&kept.join(","));
        }
    }
    t
}

/// sha256 hex of the embedded text.
pub fn content_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// pgvector's text form, `[a,b,...]`, bound as text and cast to `vector`.
pub fn literal(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(f32::to_string).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn hashing_is_deterministic_normalised_and_meaningful() {
        let a = hashing("service=billing endpoint=/pay method=POST status=503 latency_ms=900");
        assert_eq!(
            a,
            hashing("service=billing endpoint=/pay method=POST status=503 latency_ms=900")
        );
        assert_eq!(a.len(), DIMENSIONS);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        let near = hashing("service=billing endpoint=/pay method=POST status=502 latency_ms=1100");
        let far = hashing("service=web endpoint=/home method=GET status=200 latency_ms=20");
        assert!(cosine(&a, &near) > cosine(&a, &far) + 0.3);
        let query = hashing("billing pay 503");
        assert!(cosine(&query, &a) > cosine(&query, &far));
    }

    #[test]
    fn text_skips_private_tags() {
        let e = Event {
            time: chrono::Utc::now(),
            service: "auth".into(),
            endpoint: "/login".into(),
            method: "POST".into(),
            status_code: 500,
            latency_ms: 42,
            trace_id: None,
            user_ref: None,
            tags: sqlx::types::Json(
                json!({"region": "eu", "user_email": "a@b", "API_KEY": "x", "n": 3}),
            ),
        };
        assert_eq!(
            text(&e, true),
            "service=auth endpoint=/login method=POST status=500 latency_ms=42 tags=region=eu,n=3"
        );
        assert_eq!(
            text(&e, false),
            "service=auth endpoint=/login method=POST status=500 latency_ms=42"
        );
    }
}
