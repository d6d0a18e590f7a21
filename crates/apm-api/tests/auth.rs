//! Authentication against a real PostgreSQL: no token, a wrong one, a revoked one, each scope's
//! limits, the deployment's token file (rotation), `APM_AUTH=off`, and what the API's own roles
//! may do to the tokens' table.

mod common;

use apm_api::auth::{self, Entry, Scope};
use apm_api::config::Credentials;
use common::{event, server, server_with};
use reqwest::Method;
use serde_json::{Value, json};

/// Every route that must refuse a caller with no token, with a method it takes.
const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/api/requests/"),
    ("POST", "/api/requests/"),
    ("POST", "/api/requests/ingest/"),
    ("GET", "/api/requests/1/"),
    ("PUT", "/api/requests/1/"),
    ("PATCH", "/api/requests/1/"),
    ("DELETE", "/api/requests/1/"),
    ("GET", "/api/requests/hourly/"),
    ("GET", "/api/requests/daily/"),
    ("GET", "/api/requests/kpis/"),
    ("GET", "/api/requests/top-endpoints/"),
    ("GET", "/api/requests/semantic-search/?q=x"),
    ("GET", "/api/requests"),
];

fn method(m: &str) -> Method {
    m.parse().expect("a method")
}

async fn owner(s: &common::Server) -> sqlx::PgPool {
    sqlx::PgPool::connect(&s.database_url)
        .await
        .expect("the test database")
}

#[tokio::test]
async fn without_a_token_every_route_but_health_answers_401() {
    let s = server().await;
    for (m, path) in PROTECTED {
        let r = s
            .bare
            .request(method(m), format!("{}{path}", s.base))
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 401, "{m} {path}");
        let challenge = r.headers().get("www-authenticate").cloned();
        assert_eq!(
            challenge.as_ref().and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"apm\""),
            "{m} {path}"
        );
        let body: Value = r.json().await.expect("a JSON body");
        assert_eq!(
            body,
            json!({"detail": "Authentication credentials were not provided."})
        );
    }
    for open in ["/api/health/", "/api/health/?db=1", "/api/", "/metrics"] {
        let (code, _) = s.send_as(None, Method::GET, open, None).await;
        assert_eq!(code, 200, "{open}");
    }
}

#[tokio::test]
async fn a_wrong_malformed_or_revoked_token_is_refused() {
    let s = server().await;
    let (code, body) = s
        .send_as(Some("apm_not-a-token"), Method::GET, "/api/requests/", None)
        .await;
    assert_eq!((code, body), (401, json!({"detail": "Invalid token."})));
    let r = s
        .bare
        .get(format!("{}/api/requests/", s.base))
        .header("authorization", format!("Basic {}", s.token))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let pool = owner(&s).await;
    let revoked = auth::create(&pool, "gone", &[Scope::Read])
        .await
        .expect("a token");
    assert!(auth::revoke(&pool, "gone").await.expect("revoke"));
    assert!(!auth::revoke(&pool, "gone").await.expect("revoke again"));
    let (code, _) = s
        .send_as(Some(&revoked), Method::GET, "/api/requests/", None)
        .await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn each_scope_allows_its_methods_only() {
    let s = server().await;
    let pool = owner(&s).await;
    let read = auth::create(&pool, "reader", &[Scope::Read])
        .await
        .expect("read");
    let ingest = auth::create(&pool, "ingester", &[Scope::Ingest])
        .await
        .expect("ingest");
    let admin = auth::create(&pool, "admin", &[Scope::Admin])
        .await
        .expect("admin");
    let one = event("api", "/a", 200, 10, "2025-12-14T10:00:00Z");
    let forbidden = json!({"detail": "You do not have permission to perform this action."});

    // An ingest token ingests and cannot read.
    let (code, created) = s
        .send_as(
            Some(&ingest),
            Method::POST,
            "/api/requests/",
            Some(one.clone()),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_i64().expect("an id");
    let (code, _) = s
        .send_as(
            Some(&ingest),
            Method::POST,
            "/api/requests/ingest/",
            Some(json!([one])),
        )
        .await;
    assert_eq!(code, 200);
    for path in [
        "/api/requests/".to_owned(),
        format!("/api/requests/{id}/"),
        "/api/requests/kpis/".into(),
    ] {
        let r = s.send_as(Some(&ingest), Method::GET, &path, None).await;
        assert_eq!(r, (403, forbidden.clone()), "{path}");
    }

    // A read token reads, and can neither ingest nor change nor delete.
    assert_eq!(
        s.send_as(
            Some(&read),
            Method::GET,
            &format!("/api/requests/{id}/"),
            None
        )
        .await
        .0,
        200
    );
    let r = s
        .send_as(
            Some(&read),
            Method::POST,
            "/api/requests/",
            Some(one.clone()),
        )
        .await;
    assert_eq!(r, (403, forbidden.clone()));
    let r = s
        .send_as(
            Some(&read),
            Method::DELETE,
            &format!("/api/requests/{id}/"),
            None,
        )
        .await;
    assert_eq!(r, (403, forbidden.clone()));
    let r = s
        .send_as(
            Some(&read),
            Method::PATCH,
            &format!("/api/requests/{id}/"),
            Some(json!({"status_code": 201})),
        )
        .await;
    assert_eq!(r, (403, forbidden.clone()));

    // Only admin changes and deletes.
    let (code, patched) = s
        .send_as(
            Some(&admin),
            Method::PATCH,
            &format!("/api/requests/{id}/"),
            Some(json!({"status_code": 201})),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    let (code, _) = s
        .send_as(
            Some(&admin),
            Method::DELETE,
            &format!("/api/requests/{id}/"),
            None,
        )
        .await;
    assert_eq!(code, 204);
}

#[tokio::test]
async fn names_are_checked_and_unique() {
    let s = server().await;
    let pool = owner(&s).await;
    assert!(matches!(
        auth::create(&pool, "tests", &[Scope::Read]).await,
        Err(auth::TokenError::Exists(_))
    ));
    assert!(matches!(
        auth::create(&pool, "bad name; --", &[Scope::Read]).await,
        Err(auth::TokenError::BadName(_))
    ));
    let listed = auth::list(&pool).await.expect("list");
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["tests"]);
    assert!(s.token.starts_with(&listed[0].prefix));
    assert!(listed[0].prefix.len() < s.token.len() / 4);
}

fn entry(name: &str, scopes: &[Scope], token: &str) -> Entry {
    Entry {
        name: name.into(),
        scopes: scopes.to_vec(),
        token: token.into(),
    }
}

#[tokio::test]
async fn the_token_file_rotates_and_revokes_only_its_own_tokens() {
    let s = server().await;
    let pool = owner(&s).await;
    let (first, second) = ("a".repeat(40), "b".repeat(40));
    auth::ensure(
        &pool,
        &[
            entry("platform-ingest", &[Scope::Ingest], &first),
            entry("console", &[Scope::Read], &"c".repeat(40)),
        ],
    )
    .await
    .expect("ensure");
    let ingest = |token: String| {
        let s = &s;
        async move {
            s.send_as(
                Some(&token),
                Method::POST,
                "/api/requests/",
                Some(event("api", "/a", 200, 1, "2025-12-14T10:00:00Z")),
            )
            .await
            .0
        }
    };
    assert_eq!(ingest(first.clone()).await, 201);
    // A rotation: the same name with a new token; the console is no longer listed.
    auth::ensure(
        &pool,
        &[entry("platform-ingest", &[Scope::Ingest], &second)],
    )
    .await
    .expect("ensure again");
    assert_eq!(ingest(second.clone()).await, 201);
    let listed = auth::list(&pool).await.expect("list");
    let state: Vec<(&str, bool, bool)> = listed
        .iter()
        .map(|t| (t.name.as_str(), t.managed, t.revoked_at.is_some()))
        .collect();
    assert_eq!(
        state,
        [
            ("console", true, true),
            ("platform-ingest", true, false),
            // Made by hand: never touched by the file.
            ("tests", false, false),
        ]
    );
    // The old token's hash is gone from the table (the cache forgets it within its TTL).
    let old: i64 = sqlx::query_scalar("SELECT count(*) FROM apm_auth.tokens WHERE hash = $1")
        .bind(&auth::hash(&first)[..])
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(old, 0);
}

#[tokio::test]
async fn auth_off_serves_without_a_token() {
    let s = server_with(|settings| settings.auth = false).await;
    let (code, _) = s.send_as(None, Method::GET, "/api/requests/", None).await;
    assert_eq!(code, 200);
}

/// The API's own roles read the tokens and cannot make one; the writer cannot TRUNCATE.
#[tokio::test]
async fn the_api_roles_cannot_write_tokens_or_truncate() {
    let writer = Credentials {
        user: "apm_test_writer".into(),
        password: "writer-pass".into(),
    };
    let reader = Credentials {
        user: "apm_test_reader".into(),
        password: "reader-pass".into(),
    };
    let s = server_with(|settings| {
        settings.writer = writer.clone();
        settings.reader = reader.clone();
    })
    .await;
    // The server itself works with those roles.
    let (code, _) = s.get("/api/requests/").await;
    assert_eq!(code, 200);
    let mut url = url::Url::parse(&s.database_url).expect("url");
    for who in [&writer, &reader] {
        url.set_username(&who.user).expect("user");
        url.set_password(Some(&who.password)).expect("password");
        let pool = sqlx::PgPool::connect(url.as_str()).await.expect(&who.user);
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM apm_auth.tokens")
            .fetch_one(&pool)
            .await
            .expect("the roles read the tokens");
        assert_eq!(seen, 1);
        for sql in [
            "INSERT INTO apm_auth.tokens (name, prefix, hash, scopes) \
             VALUES ('x', 'x', sha256('x'), ARRAY['admin'])",
            "UPDATE apm_auth.tokens SET scopes = ARRAY['admin', 'read', 'ingest']",
            "DELETE FROM apm_auth.tokens",
            "TRUNCATE observability_apirequest",
        ] {
            let e = sqlx::query(sql)
                .execute(&pool)
                .await
                .expect_err(&format!("{} may not: {sql}", who.user));
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .unwrap_or_default();
            assert_eq!(code, "42501", "{}: {sql}: {e}", who.user);
        }
    }
}

#[tokio::test]
async fn the_token_file_keeps_a_revocation_and_never_takes_a_hand_made_name() {
    let s = server().await;
    let pool = owner(&s).await;
    let leaked = "l".repeat(40);
    let file = [entry("platform-read", &[Scope::Read], &leaked)];
    auth::ensure(&pool, &file).await.expect("ensure");
    // Revoked after a leak: the next apply with the same value does not bring it back.
    assert!(auth::revoke(&pool, "platform-read").await.expect("revoke"));
    auth::ensure(&pool, &file).await.expect("ensure again");
    let (code, _) = s
        .send_as(Some(&leaked), Method::GET, "/api/requests/", None)
        .await;
    assert_eq!(code, 401);
    // A new value is a new token, in force.
    let fresh = "f".repeat(40);
    auth::ensure(&pool, &[entry("platform-read", &[Scope::Read], &fresh)])
        .await
        .expect("rotated");
    let (code, _) = s
        .send_as(Some(&fresh), Method::GET, "/api/requests/", None)
        .await;
    assert_eq!(code, 200);
    // `tests` was made with `token create`: the file may not take it over.
    let clash = auth::ensure(&pool, &[entry("tests", &[Scope::Admin], &"t".repeat(40))]).await;
    assert!(
        matches!(clash, Err(auth::TokenError::MadeByHand(ref n)) if n == "tests"),
        "{clash:?}"
    );
    let (code, _) = s.get("/api/requests/").await;
    assert_eq!(code, 200, "the hand-made token still works");
}

#[tokio::test]
async fn the_scheme_is_case_insensitive() {
    let s = server().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = s
            .bare
            .get(format!("{}/api/requests/", s.base))
            .header("authorization", format!("{scheme} {}", s.token))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 200, "{scheme}");
    }
}
