//! Read routing against a real streaming replica (`APM_TEST_REPLICA`, scripts/test-postgres-replica,
//! a standby of `APM_TEST_POSTGRES` managed by Debian's cluster tools): reads go to it, a read right
//! after a write sees the write, and when the replica is stopped every read still answers 200; once
//! it is started again, reads return to it.

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, event};

/// The replica's cluster (scripts/test-postgres-replica's `hoist-test-replica`, or
/// `APM_TEST_REPLICA_CLUSTER`), restarted when the test ends however it ends.
struct Cluster {
    version: String,
    name: String,
}

impl Cluster {
    fn ctl(&self, action: &str) {
        let status = Command::new("pg_ctlcluster")
            .args([&self.version, &self.name, action, "-m", "fast"])
            .status()
            .expect("pg_ctlcluster (the test needs root on Debian)");
        assert!(status.success(), "pg_ctlcluster {action}: {status}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args([&self.version, &self.name, "start"])
            .status();
    }
}

/// A counter or gauge of /metrics, summed over the series whose labels contain `labels`.
async fn metric(s: &Server, name: &str, labels: &str) -> f64 {
    let (_, text) = s.get("/metrics").await;
    text.as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn reads_follow_a_live_replica_and_survive_its_stop() {
    let replica_url = url::Url::parse(
        &std::env::var("APM_TEST_REPLICA")
            .expect("APM_TEST_REPLICA must name the replica (scripts/test starts one)"),
    )
    .expect("a URL");
    let s = common::server_with(|settings| {
        settings.replicas = vec![apm_api::config::HostPort {
            host: replica_url.host_str().unwrap_or("127.0.0.1").to_owned(),
            port: replica_url.port().unwrap_or(5432),
        }];
        settings.read_after_write_ttl = Duration::from_secs(1);
        settings.connect_timeout = Duration::from_secs(2);
    })
    .await;
    let mut on_replica = replica_url.clone();
    on_replica.set_path(url::Url::parse(&s.database_url).expect("url").path());
    // The test database was just created on the primary: the replica has it once it replays that.
    let deadline = Instant::now() + Duration::from_secs(20);
    let replica = loop {
        match sqlx::PgPool::connect(on_replica.as_str()).await {
            Ok(pool) => break pool,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the test database on the replica: {e}"),
        }
    };
    let version: i32 =
        sqlx::query_scalar("SELECT current_setting('server_version_num')::int / 10000")
            .fetch_one(&replica)
            .await
            .expect("version");
    let cluster = Cluster {
        version: version.to_string(),
        name: std::env::var("APM_TEST_REPLICA_CLUSTER")
            .unwrap_or_else(|_| "hoist-test-replica".to_owned()),
    };
    // The probe's metrics name the replica by its port.
    let port_label = format!(":{}", replica_url.port().unwrap_or(5432));

    // Read right after a write: the primary answers, with the write.
    let (code, created) = s
        .post(
            "/api/requests/",
            event("api", "/orders", 200, 12, "2025-12-14T01:00:00Z"),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    assert_eq!(s.get(&format!("/api/requests/{id}/")).await.0, 200);

    // Past the window, once the replica has replayed the write, reads go to it.
    eventually("the replica to replay the write", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM observability_apirequest")
            .fetch_one(&replica)
            .await
            .is_ok_and(|n| n == 1)
    })
    .await;
    replica.close().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    eventually("the probe to find the replica healthy", async || {
        metric(&s, "apm_db_replica_healthy", &port_label).await == 1.0
    })
    .await;
    let before = metric(&s, "apm_db_reads_total", "to=\"replica\"").await;
    let (code, list) = s.get("/api/requests/").await;
    assert_eq!((code, list["count"].clone()), (200, serde_json::json!(1)));
    assert!(metric(&s, "apm_db_reads_total", "to=\"replica\"").await > before);

    // The replica stops: no read fails, not even the first ones after the stop.
    cluster.ctl("stop");
    let paths = [
        format!("/api/requests/{id}/"),
        "/api/requests/".to_owned(),
        "/api/requests/kpis/?start=2025-12-14&end=2025-12-14".to_owned(),
        "/api/requests/hourly/?start=2025-12-14&end=2025-12-14".to_owned(),
        "/api/requests/top-endpoints/?start=2025-12-14&end=2025-12-14".to_owned(),
    ];
    for round in 0..4 {
        for path in &paths {
            let (code, body) = s.get(path).await;
            assert_eq!(code, 200, "round {round}, {path}: {body}");
        }
    }
    assert_eq!(metric(&s, "apm_db_replica_healthy", &port_label).await, 0.0);

    // Back: the probe finds it again and reads return to it.
    cluster.ctl("start");
    eventually("the probe to find the replica back", async || {
        metric(&s, "apm_db_replica_healthy", &port_label).await == 1.0
    })
    .await;
    let before = metric(&s, "apm_db_reads_total", "to=\"replica\"").await;
    assert_eq!(s.get("/api/requests/").await.0, 200);
    assert!(metric(&s, "apm_db_reads_total", "to=\"replica\"").await > before);
}
