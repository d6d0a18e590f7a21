//! The object-store outage drill: the object store stops while the primary keeps committing;
//! WAL archiving must hold the closed segments and catch up once it is back, and the backup checks
//! of `hoist validate` then prove nothing was lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hoist_core::check::Check;
use hoist_remote::{Engine, Host};
use tokio_util::sync::CancellationToken;

use crate::apply::gate::{self, Gate};
use crate::error::Result;
use crate::validate;

/// The object-store outage drill: what stops, for how long, and what proves recovery.
#[derive(Debug, Clone)]
pub struct OutageConfig {
    /// The object store's container on the control host (its TLS front: the S3 endpoint).
    pub container: String,
    /// How long the object store stays down.
    pub hold: Duration,
    /// How long archiving may take to catch up once it is back.
    pub catch_up: Duration,
}

/// pg_stat_archiver: archived and failed counts, last archived and last failed segment.
type Archiver = (i64, i64, String, String);

async fn archiver(primary: &sqlx::PgPool) -> Result<Archiver> {
    sqlx::query_as(
        "SELECT archived_count, failed_count, coalesce(last_archived_wal, ''), \
                coalesce(last_failed_wal, '') FROM pg_stat_archiver",
    )
    .fetch_one(primary)
    .await
    .map_err(Into::into)
}

/// Writes a row (so there is WAL to switch) and switches to a new segment; returns the closed
/// segment's name, which the archiver must push.
async fn write_and_switch(primary: &sqlx::PgPool) -> Result<String> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS hoist_drill_outage (at timestamptz PRIMARY KEY DEFAULT clock_timestamp())",
    )
    .execute(primary)
    .await?;
    sqlx::query("INSERT INTO hoist_drill_outage DEFAULT VALUES")
        .execute(primary)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
            .fetch_one(primary)
            .await?,
    )
}

/// The object-store outage drill with the connected hosts: the primary as `cfg.db` says (through
/// its data host's master), the object store's container on `cfg.backups`' control host; then the
/// backup checks of `hoist validate` (pgbackrest check, WAL continuity) prove nothing was lost.
pub async fn objectstore_outage<H: Host>(
    hosts: &BTreeMap<String, H>,
    cfg: &validate::Config,
    c: &OutageConfig,
    cancel: &CancellationToken,
) -> Vec<Check> {
    let (Some(db), Some(b)) = (&cfg.db, &cfg.backups) else {
        return vec![Check::new(
            "drill.outage",
            &c.container,
            false,
            "needs the database and backup settings",
            "configured",
        )];
    };
    let (Some(data), Some(control)) = (hosts.get(&db.host), hosts.get(&b.host)) else {
        return vec![Check::new(
            "drill.outage",
            &c.container,
            false,
            "hosts not connected",
            "connected",
        )];
    };
    let primary = match validate::pool(data, &db.primary, db, &db.admin).await {
        Ok(p) => p,
        Err(e) => {
            return vec![Check::new(
                "drill.archiver",
                "primary",
                false,
                e,
                "readable",
            )];
        }
    };
    let d = match control.engine().await {
        Ok(d) => d,
        Err(e) => {
            return vec![Check::new(
                "drill.outage",
                &c.container,
                false,
                e,
                "stopped",
            )];
        }
    };
    let mut out = outage(&b.host, &d, &primary, c, cancel).await;
    let segment = validate::segment_size(&primary).await;
    out.extend(validate::backups(&d, b, segment).await);
    out
}

/// Stops the object store for `c.hold` while the primary keeps writing, starts it again, and
/// proves that WAL archived during the outage caught up: writes commit while it is down, the
/// segments closed meanwhile are not archived (the outage was real), and once it is back every one
/// of them is, within `c.catch_up`. The object store is started again whatever happens.
async fn outage(
    host: &str,
    d: &impl Engine,
    primary: &sqlx::PgPool,
    c: &OutageConfig,
    cancel: &CancellationToken,
) -> Vec<Check> {
    let target = c.container.as_str();
    let mut out = Vec::new();
    let before = match archiver(primary).await {
        Ok(a) => a,
        Err(e) => {
            return vec![Check::new(
                "drill.archiver",
                "primary",
                false,
                e,
                "readable",
            )];
        }
    };
    if let Err(e) = d.stop(target, Some(10)).await {
        return vec![Check::new("drill.outage", target, false, e, "stopped")];
    }
    let down = Instant::now();
    // While it is down: the primary still commits, and the closed segment waits.
    let written = Instant::now();
    let during = write_and_switch(primary).await;
    out.push(match &during {
        Ok(seg) => Check::new(
            "drill.writes_during_outage",
            "primary",
            true,
            format!(
                "committed in {} ms, closed {seg}",
                written.elapsed().as_millis()
            ),
            "commit",
        ),
        Err(e) => Check::new("drill.writes_during_outage", "primary", false, e, "commit"),
    });
    // A cancellation (Ctrl-C, SIGTERM, SIGHUP) ends the outage early: the store is started
    // again below either way.
    let interrupted = tokio::select! {
        () = tokio::time::sleep(c.hold.saturating_sub(down.elapsed())) => false,
        () = cancel.cancelled() => true,
    };
    if interrupted {
        out.push(Check::new(
            "drill.outage",
            target,
            false,
            format!("interrupted after {:.0} s", down.elapsed().as_secs_f64()),
            format!("held {} s", c.hold.as_secs()),
        ));
    }
    let held = archiver(primary).await;
    let started = d.start(target).await;
    let back = Instant::now();
    if let (Ok(seg), Ok(a)) = (&during, &held) {
        let pending = a.2.as_str() < seg.as_str();
        out.push(Check::new(
            "drill.archive_held",
            "primary",
            pending,
            format!(
                "last archived {}, {} failed attempt(s) in {:.0} s",
                if a.2.is_empty() { "none" } else { &a.2 },
                a.1 - before.1,
                down.elapsed().as_secs_f64()
            ),
            format!("{seg} not archived while down"),
        ));
    }
    if let Err(e) = started {
        out.push(Check::new(
            "drill.restarted",
            target,
            false,
            e.to_string(),
            "healthy",
        ));
        return out;
    }
    // Started again whatever happened: a cancellation no longer applies.
    let healthy = gate::wait(
        host,
        d,
        target,
        Gate::Healthy,
        Duration::from_secs(120),
        &CancellationToken::new(),
    )
    .await;
    out.push(match healthy {
        Ok(()) => Check::new(
            "drill.restarted",
            target,
            true,
            format!("healthy after {:.1} s", back.elapsed().as_secs_f64()),
            "healthy",
        ),
        Err(e) => Check::new("drill.restarted", target, false, e.to_string(), "healthy"),
    });
    // A new segment wakes the archiver at once instead of at its next timeout.
    let last = match write_and_switch(primary).await {
        Ok(seg) => seg,
        Err(e) => {
            out.push(Check::new(
                "drill.catch_up",
                "primary",
                false,
                e,
                "archived",
            ));
            return out;
        }
    };
    let threshold = format!("{last} archived within {} s", c.catch_up.as_secs());
    loop {
        match archiver(primary).await {
            Ok(a) if a.2.as_str() >= last.as_str() => {
                out.push(Check::new(
                    "drill.catch_up",
                    "primary",
                    true,
                    format!(
                        "{} segment(s) archived {:.1} s after the store was back",
                        a.0 - before.0,
                        back.elapsed().as_secs_f64()
                    ),
                    &threshold,
                ));
                break;
            }
            Ok(a) if back.elapsed() >= c.catch_up => {
                out.push(Check::new(
                    "drill.catch_up",
                    "primary",
                    false,
                    format!("last archived {} after {} s", a.2, c.catch_up.as_secs()),
                    &threshold,
                ));
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => {
                out.push(Check::new(
                    "drill.catch_up",
                    "primary",
                    false,
                    e,
                    &threshold,
                ));
                break;
            }
        }
    }
    out
}
