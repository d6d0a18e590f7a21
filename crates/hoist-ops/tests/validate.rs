//! `hoist validate`'s checks against a real primary and its streaming replica (`APM_TEST_POSTGRES`
//! and `APM_TEST_REPLICA`: scripts/test-postgres and scripts/test-postgres-replica).

use std::time::Duration;

use hoist_ops::validate::{self, Standby, Thresholds};
use sqlx::PgPool;

fn url(var: &str) -> url::Url {
    let value =
        std::env::var(var).unwrap_or_else(|_| panic!("{var} must be set (scripts/test sets it)"));
    url::Url::parse(&value).expect("a URL")
}

fn with(u: &url::Url, user: &str, password: &str, db: &str) -> String {
    let mut u = u.clone();
    u.set_username(user).expect("user");
    u.set_password(Some(password)).expect("password");
    u.set_path(db);
    u.to_string()
}

#[tokio::test]
async fn replication_checks_name_each_standby() {
    let primary = PgPool::connect(url("APM_TEST_POSTGRES").as_str())
        .await
        .expect("primary");
    let replica = PgPool::connect(url("APM_TEST_REPLICA").as_str())
        .await
        .expect("replica");
    let name: String =
        sqlx::query_scalar("SELECT application_name FROM pg_stat_replication LIMIT 1")
            .fetch_one(&primary)
            .await
            .expect("the replica streams from the primary");
    let t = Thresholds {
        max_lag_bytes: 64 << 20,
        max_lag_seconds: 30.0,
        canary_timeout: Duration::from_secs(10),
    };
    let standbys = [
        Standby {
            name: name.clone(),
            pool: replica.clone(),
        },
        Standby {
            name: "replica-gone".into(),
            pool: replica.clone(),
        },
    ];
    let checks = validate::replication(&primary, &standbys, &t).await;
    let of = |check: &str, target: &str| {
        checks
            .iter()
            .find(|c| c.check == check && c.target == target)
            .unwrap_or_else(|| panic!("no {check} for {target}: {checks:#?}"))
            .clone()
    };
    assert!(of("replication.primary_not_in_recovery", "primary").ok);
    for check in [
        "replication.streaming",
        "replication.lag_bytes",
        "replication.lag_seconds",
        "replication.standby_in_recovery",
        "replication.archiving_configured",
        "replication.canary",
    ] {
        let c = of(check, &name);
        assert!(c.ok, "{c:?}");
    }
    assert!(
        of("replication.canary", &name)
            .measured
            .starts_with("seen after")
    );
    let gone = of("replication.streaming", "replica-gone");
    assert!(!gone.ok);
    assert!(
        gone.measured.contains("absent from pg_stat_replication"),
        "{gone:?}"
    );
    let text = hoist_core::check::table(&checks);
    assert!(text.contains("FAIL  replication.streaming"), "{text}");
    assert!(text.contains("1 failed"), "{text}");
}

#[tokio::test]
async fn roles_checks_try_each_privilege() {
    let admin_url = url("APM_TEST_POSTGRES");
    let admin = PgPool::connect(admin_url.as_str()).await.expect("admin");
    let tag = std::process::id();
    let (db, writer, reader) = (
        format!("hoist_validate_{tag}"),
        format!("hoist_w_{tag}"),
        format!("hoist_r_{tag}"),
    );
    for sql in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
        format!("DROP ROLE IF EXISTS {writer}"),
        format!("DROP ROLE IF EXISTS {reader}"),
        format!("CREATE ROLE {writer} LOGIN PASSWORD 'w'"),
        format!("CREATE ROLE {reader} LOGIN PASSWORD 'r'"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&admin)
            .await
            .expect("setup");
    }
    let owner = PgPool::connect(&with(
        &admin_url,
        admin_url.username(),
        admin_url.password().unwrap_or_default(),
        &db,
    ))
    .await
    .expect("the test database");
    for sql in [
        "CREATE TABLE events (id int)".to_owned(),
        format!("GRANT SELECT, INSERT ON events TO {writer}"),
        format!("GRANT SELECT ON events TO {reader}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&owner)
            .await
            .expect("grants");
    }
    let w = PgPool::connect(&with(&admin_url, &writer, "w", &db))
        .await
        .expect("writer");
    let r = PgPool::connect(&with(&admin_url, &reader, "r", &db))
        .await
        .expect("reader");

    let checks = validate::roles((&writer, &w), (&reader, &r), &events()).await;
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    let refused = checks
        .iter()
        .find(|c| c.check == "roles.reader_cannot_write")
        .expect("check");
    assert!(refused.measured.contains("42501"), "{refused:?}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&owner)
        .await
        .expect("count");
    assert_eq!(count, 0, "the checks write nothing");

    // A reader that can write is a failure, named.
    let swapped = validate::roles((&writer, &w), (&writer, &w), &events()).await;
    let bad = swapped
        .iter()
        .find(|c| c.check == "roles.reader_cannot_write")
        .expect("check");
    assert!(!bad.ok && bad.measured == "allowed", "{bad:?}");
    for p in [w, r, owner] {
        p.close().await;
    }
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
    for role in [writer, reader] {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
            .execute(&admin)
            .await;
    }
}

fn events() -> hoist_core::sql::TableName {
    "events".parse().expect("a table name")
}

/// `run` through a host seam: the checks reach the databases only by the forwards the data host
/// gives (here a fake host forwarding to the live test cluster), and a forward that fails is the
/// check that fails.
#[tokio::test]
async fn run_reaches_the_cluster_through_the_data_hosts_forwards() {
    use hoist_core::playbook::Topic;
    use hoist_remote::fake::FakeHost;
    use std::collections::BTreeMap;

    let (p, r) = (url("APM_TEST_POSTGRES"), url("APM_TEST_REPLICA"));
    let addr = |u: &url::Url| {
        format!(
            "{}:{}",
            u.host_str().expect("host"),
            u.port().unwrap_or(5432)
        )
        .parse::<std::net::SocketAddr>()
        .expect("an address")
    };
    let primary = PgPool::connect(p.as_str()).await.expect("primary");
    let name: String =
        sqlx::query_scalar("SELECT application_name FROM pg_stat_replication LIMIT 1")
            .fetch_one(&primary)
            .await
            .expect("the replica streams from the primary");
    let login = validate::Login {
        user: p.username().to_owned(),
        password: hoist_core::secret::Secret::new(p.password().unwrap_or_default().to_owned()),
    };
    let cfg = validate::Config {
        db: Some(validate::DbConfig {
            host: "data-1".into(),
            primary: ("db".into(), 5432),
            standbys: vec![(name.clone(), ("replica".into(), 5432))],
            database: p.path().trim_start_matches('/').to_owned(),
            admin: login.clone(),
            writer: login.clone(),
            reader: login,
            table: "events".parse().expect("a table name"),
            ca: None,
            thresholds: Thresholds {
                max_lag_bytes: 64 << 20,
                max_lag_seconds: 30.0,
                canary_timeout: Duration::from_secs(10),
            },
        }),
        backups: None,
        object_store: None,
        api: None,
        monitoring: None,
    };
    let data = FakeHost::new("data-1");
    data.forward("db", 5432, addr(&p));
    data.forward("replica", 5432, addr(&r));
    let hosts = BTreeMap::from([("data-1".to_owned(), data.clone())]);
    let checks = validate::run(&hosts, &cfg, &[Topic::Replication]).await;
    assert!(checks.iter().all(|c| c.ok), "{checks:#?}");
    assert!(
        checks
            .iter()
            .any(|c| c.check == "replication.canary" && c.target == name)
    );
    assert_eq!(
        data.calls_of("forward"),
        ["forward db:5432", "forward replica:5432"]
    );

    let cut_off = FakeHost::new("data-1");
    let hosts = BTreeMap::from([("data-1".to_owned(), cut_off)]);
    let checks = validate::run(&hosts, &cfg, &[Topic::Replication]).await;
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert!(
        !checks[0].ok && checks[0].measured.contains("db:5432 does not answer"),
        "{checks:#?}"
    );
}
