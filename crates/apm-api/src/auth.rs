//! Authentication: API tokens with scopes, sent as `Authorization: Bearer <token>` and checked by
//! the API itself against the hashes in `apm_auth.tokens` (so it is safe behind any proxy).
//!
//! A request needs the scope its method implies: `read` for GET, HEAD and OPTIONS, `ingest` for
//! POST (create and batch ingest), `admin` for PUT, PATCH and DELETE; a scope never implies
//! another. Health and `/metrics` stay open (the proxy allow-lists `/metrics`). A token found is
//! remembered for [`CACHE_TTL`], so a revocation takes effect within that time.
//!
//! Tokens are made by the owner of the database: `apm-api token create|list|revoke`, and the
//! migration step, which makes the tokens of `APM_TOKENS_FILE` exist as listed ([`ensure`]).
//! `APM_AUTH=off` turns authentication off, for local development only.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

use crate::AppState;
use crate::json::detail;

/// How long a token found stays trusted without asking the database again.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Tokens remembered at most; the cache starts again empty when full.
const CACHE_MAX: usize = 4096;
/// What every token made here starts with, so that a leaked one is recognisable (secret scanners).
const TOKEN_PREFIX: &str = "apm_";
/// A token given from outside (the token file) is at least this long.
const MIN_TOKEN_LEN: usize = 32;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Create events (one or a batch).
    Ingest,
    /// List, retrieve, analytics and search.
    Read,
    /// Update and delete events.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    pub fn word(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// The scope a request with `method` needs; `None` for a method no route takes (the router
    /// answers it, to an authenticated caller).
    pub fn for_method(method: &Method) -> Option<Scope> {
        match *method {
            Method::GET | Method::HEAD | Method::OPTIONS => Some(Scope::Read),
            Method::POST => Some(Scope::Ingest),
            Method::PUT | Method::PATCH | Method::DELETE => Some(Scope::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|k| k.word() == s)
            .ok_or_else(|| format!("unknown scope {s:?} (scopes: ingest, read, admin)"))
    }
}

/// Parses `ingest,read`: at least one scope, each known.
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, String> {
    let mut scopes: Vec<Scope> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err("no scope given (scopes: ingest, read, admin)".into());
    }
    Ok(scopes)
}

fn words(scopes: &[Scope]) -> Vec<&'static str> {
    scopes.iter().map(|s| s.word()).collect()
}

/// A new token: `apm_` and 256 random bits in hex.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What the database keeps of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The start of a token, to tell tokens apart in a list (never enough to use it).
fn prefix(token: &str) -> String {
    token.chars().take(TOKEN_PREFIX.len() + 6).collect()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "token name {0:?}: letters, digits, `.`, `_` and `-`, at most 64, starting with a letter or digit"
    )]
    BadName(String),
    #[error("a token named {0:?} exists already (revoke it first, or choose another name)")]
    Exists(String),
    #[error(
        "the token file names {0:?}, a token made with `apm-api token create`: rename the file's line"
    )]
    MadeByHand(String),
    #[error("{file}, line {line}: {message}")]
    File {
        file: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Makes a token named `name` with `scopes`; returns it (the only time it is shown).
pub async fn create(owner: &PgPool, name: &str, scopes: &[Scope]) -> Result<String, TokenError> {
    if !valid_name(name) {
        return Err(TokenError::BadName(name.to_owned()));
    }
    let token = generate();
    let inserted = sqlx::query(
        "INSERT INTO apm_auth.tokens (name, prefix, hash, scopes) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(prefix(&token))
    .bind(&hash(&token)[..])
    .bind(words(scopes))
    .execute(owner)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(TokenError::Exists(name.to_owned()));
    }
    Ok(token)
}

/// A token as `apm-api token list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenInfo {
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub managed: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn list(owner: &PgPool) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(sqlx::query_as(
        "SELECT name, prefix, scopes, managed, created_at, revoked_at \
         FROM apm_auth.tokens ORDER BY name",
    )
    .fetch_all(owner)
    .await?)
}

/// Revokes the token `name`; false when there is no such token still in force.
pub async fn revoke(owner: &PgPool, name: &str) -> Result<bool, TokenError> {
    let done = sqlx::query(
        "UPDATE apm_auth.tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name)
    .execute(owner)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One line of a token file: `<name> <scope,scope> <token>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub token: String,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Reads a token file (`file` names it in errors): one `<name> <scopes> <token>` per line, blank
/// lines and `#` comments skipped. An error names the line and the field, never the token.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Entry>, TokenError> {
    let mut out: Vec<Entry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let bad = |message: String| TokenError::File {
            file: file.to_owned(),
            line: line_no,
            message,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, scopes, token] = fields[..] else {
            return Err(bad(format!(
                "expected `<name> <scopes> <token>`, found {} field(s)",
                fields.len()
            )));
        };
        // Never a field's value in a message: columns in the wrong order would show the token.
        if !valid_name(name) {
            return Err(bad(
                "the name (first field): letters, digits, `.`, `_` and `-`, at most 64".into(),
            ));
        }
        let scopes = parse_scopes(scopes).map_err(|_| {
            bad(format!(
                "{name}: the scopes (second field): ingest, read, admin, comma-separated"
            ))
        })?;
        if token.len() < MIN_TOKEN_LEN {
            return Err(bad(format!(
                "{name}: the token is shorter than {MIN_TOKEN_LEN} characters"
            )));
        }
        if out.iter().any(|e| e.name == name) {
            return Err(bad(format!("{name}: listed twice")));
        }
        if out.iter().any(|e| e.token == token) {
            return Err(bad(format!("{name}: the same token as another line")));
        }
        out.push(Entry {
            name: name.to_owned(),
            scopes,
            token: token.to_owned(),
        });
    }
    Ok(out)
}

/// Makes the managed tokens exactly `entries`, in one transaction: each exists with its hash and
/// scopes (a changed token is a rotation: the old one stops working), and a managed token no
/// longer listed is revoked. A token revoked by hand stays revoked while its value is the same
/// (a new value is a new token). A name that a token made with `apm-api token create` holds is
/// refused: those are never touched.
pub async fn ensure(owner: &PgPool, entries: &[Entry]) -> Result<(), TokenError> {
    let mut tx = owner.begin().await?;
    for e in entries {
        let done = sqlx::query(
            "INSERT INTO apm_auth.tokens (name, prefix, hash, scopes, managed) \
             VALUES ($1, $2, $3, $4, true) \
             ON CONFLICT (name) DO UPDATE SET prefix = EXCLUDED.prefix, hash = EXCLUDED.hash, \
                 scopes = EXCLUDED.scopes, \
                 revoked_at = CASE WHEN apm_auth.tokens.hash = EXCLUDED.hash \
                                   THEN apm_auth.tokens.revoked_at END, \
                 created_at = CASE WHEN apm_auth.tokens.hash = EXCLUDED.hash \
                                   THEN apm_auth.tokens.created_at ELSE now() END \
             WHERE apm_auth.tokens.managed",
        )
        .bind(&e.name)
        .bind(prefix(&e.token))
        .bind(&hash(&e.token)[..])
        .bind(words(&e.scopes))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(TokenError::MadeByHand(e.name.clone()));
        }
    }
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    sqlx::query(
        "UPDATE apm_auth.tokens SET revoked_at = now() \
         WHERE managed AND revoked_at IS NULL AND NOT (name = ANY($1))",
    )
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A token found: its scopes, and when.
type Found = (Vec<Scope>, Instant);

/// The tokens found lately, by hash, with their scopes.
#[derive(Debug, Default)]
pub struct Cache {
    found: Mutex<HashMap<[u8; 32], Found>>,
}

impl Cache {
    fn get(&self, h: &[u8; 32]) -> Option<Vec<Scope>> {
        let found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        found
            .get(h)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(s, _)| s.clone())
    }

    fn put(&self, h: [u8; 32], scopes: Vec<Scope>) {
        let mut found = self.found.lock().unwrap_or_else(|p| p.into_inner());
        if found.len() >= CACHE_MAX {
            found.clear();
        }
        found.insert(h, (scopes, Instant::now()));
    }
}

/// The scopes of the token with hash `h`, if one is in force: asked of the primary (a token just
/// made is there first), of a replica when the primary does not answer.
async fn lookup(state: &AppState, h: &[u8; 32]) -> Result<Option<Vec<Scope>>, sqlx::Error> {
    if let Some(scopes) = state.tokens.get(h) {
        return Ok(Some(scopes));
    }
    let query = |pool: PgPool| async move {
        sqlx::query_scalar::<_, Vec<String>>(
            "SELECT scopes FROM apm_auth.tokens WHERE hash = $1 AND revoked_at IS NULL",
        )
        .bind(&h[..])
        .fetch_optional(&pool)
        .await
    };
    let found = match query(state.db.primary.clone()).await {
        Err(e) if crate::db::is_connection_error(&e) => state.db.read(query).await?,
        other => other?,
    };
    let Some(words) = found else {
        return Ok(None);
    };
    let scopes: Vec<Scope> = words.iter().filter_map(|w| w.parse().ok()).collect();
    state.tokens.put(*h, scopes.clone());
    Ok(Some(scopes))
}

fn refuse(
    status: StatusCode,
    message: &str,
    challenge: &'static str,
    reason: &'static str,
) -> Response {
    metrics::counter!("apm_auth_refused_total", "reason" => reason).increment(1);
    let mut r = detail(status, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// The middleware in front of every route but health and metrics.
pub async fn require(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if !state.settings.auth {
        return next.run(req).await;
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials were not provided.",
            "Bearer realm=\"apm\"",
            "missing",
        );
    };
    // The scheme's name is case-insensitive (RFC 7235).
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "Invalid token header. Use `Authorization: Bearer <token>`.",
            "Bearer realm=\"apm\", error=\"invalid_request\"",
            "malformed",
        );
    };
    let scopes = match lookup(&state, &hash(token)).await {
        Ok(Some(scopes)) => scopes,
        Ok(None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "Invalid token.",
                "Bearer realm=\"apm\", error=\"invalid_token\"",
                "invalid",
            );
        }
        Err(e) => {
            tracing::warn!("checking a token: {e}");
            let mut r = detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable; try again shortly.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return r;
        }
    };
    match Scope::for_method(req.method()) {
        Some(needed) if !scopes.contains(&needed) => refuse(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
            "Bearer realm=\"apm\", error=\"insufficient_scope\"",
            "scope",
        ),
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_needs_its_scope() {
        assert_eq!(Scope::for_method(&Method::GET), Some(Scope::Read));
        assert_eq!(Scope::for_method(&Method::POST), Some(Scope::Ingest));
        for m in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(Scope::for_method(&m), Some(Scope::Admin));
        }
        assert_eq!(Scope::for_method(&Method::TRACE), None);
    }

    #[test]
    fn scopes_parse_sorted_and_known() {
        assert_eq!(
            parse_scopes("read, ingest,read"),
            Ok(vec![Scope::Ingest, Scope::Read])
        );
        assert!(parse_scopes("").is_err());
        assert!(parse_scopes("root").is_err());
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("apm_") && a.len() == 4 + 64, "{a}");
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(a.starts_with(&prefix(&a)) && prefix(&a).len() < 12);
    }

    #[test]
    fn a_token_file_error_names_the_line_never_the_token() {
        let secret = "s3cr3t-but-far-too-short";
        let text = format!(
            "# platform tokens\n\nplatform-ingest ingest {}\nshort read {secret}\n",
            "x".repeat(40)
        );
        let e = parse_file("/run/secrets/apm-tokens", &text).expect_err("short token");
        let shown = e.to_string();
        assert!(
            shown.starts_with("/run/secrets/apm-tokens, line 4: short:"),
            "{shown}"
        );
        assert!(!shown.contains(secret), "{shown}");
        let e = parse_file("f", &format!("a read {secret} extra")).expect_err("four fields");
        assert!(!e.to_string().contains(secret));
        let e = parse_file("f", &format!("a root {}", "y".repeat(40))).expect_err("scope");
        assert!(
            e.to_string().contains("a: the scopes (second field)"),
            "{e}"
        );
        // Columns in the wrong order: the token is in the name's or the scopes' place.
        let token = format!("apm_{}", "9".repeat(64));
        for swapped in [format!("name {token} read"), format!("{token} read name")] {
            let e = parse_file("f", &swapped).expect_err("swapped");
            assert!(!e.to_string().contains("9999"), "{e}");
        }
        let twice = format!("a read {t}\nb read {t}\n", t = "z".repeat(40));
        assert!(parse_file("f", &twice).is_err());
    }

    #[test]
    fn a_token_file_reads_each_line() {
        let text = format!(
            "ingest-1 ingest {}\nconsole read,admin {}\n",
            "a".repeat(40),
            "b".repeat(40)
        );
        let entries = parse_file("f", &text).expect("valid");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].name, "console");
        assert_eq!(entries[1].scopes, [Scope::Read, Scope::Admin]);
        assert!(!format!("{entries:?}").contains("aaaa"));
    }
}
