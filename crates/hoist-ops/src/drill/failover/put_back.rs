//! The put-back: the promoted standby set aside and emptied, the primary started, the standby
//! cloned again and streaming.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hoist_core::check::{Check, failed};
use hoist_remote::Engine;
use hoist_remote::engine::Scratch;
use tokio_util::sync::CancellationToken;

use super::{RESET, Run};
use crate::apply::gate::{self, Gate};
use crate::drill::LABEL;
use crate::error::{Error, Result};

impl<E: Engine> Run<'_, E> {
    /// Puts the declared topology back: the primary starts and must be healthy first; only then
    /// is the target, if it left recovery, stopped and emptied (until the primary is proven back,
    /// the promoted standby is the one copy that takes writes, so it is kept); the target starts
    /// again (cloning the primary when emptied) and streams.
    pub(super) async fn put_back(&self, out: &mut Vec<Check>) {
        let t = self.target();
        let started = Instant::now();
        // Started whatever state it is in (an interrupted drill may not have stopped it): its
        // health says whether it is back. Put back whatever happened: a cancellation no longer
        // applies.
        let _ = self.d.start(&self.c.primary).await;
        let healthy = gate::wait(
            self.host,
            self.d,
            &self.c.primary,
            Gate::Healthy,
            self.c.timeout,
            &CancellationToken::new(),
        )
        .await;
        let primary_back = healthy.is_ok();
        out.push(match healthy {
            Ok(()) => Check::new(
                "drill.primary_back",
                &self.c.primary,
                true,
                format!("healthy after {:.1} s", started.elapsed().as_secs_f64()),
                "healthy",
            ),
            Err(e) => failed("drill.primary_back", &self.c.primary, e, "healthy"),
        });
        let in_recovery: Option<bool> = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&t.pool)
            .await
            .ok();
        if in_recovery == Some(true) {
            // Never promoted: it only needs archiving back and the primary to stream from.
            let reset = self
                .psql(
                    &t.container,
                    &[
                        "ALTER SYSTEM RESET archive_command",
                        "SELECT pg_reload_conf()",
                    ],
                )
                .await;
            if let Err(e) = reset {
                out.push(failed(
                    "drill.archiving_back",
                    &t.name,
                    e,
                    "archive_command reset",
                ));
            }
        } else if !primary_back {
            out.push(failed(
                "drill.set_aside",
                &t.name,
                "kept as it is (promoted): the primary did not come back",
                "the primary healthy first",
            ));
            return;
        } else {
            // Emptied: its data directory, and with it the archive_command set on it, is gone.
            let emptied = match self.d.stop(&t.container, Some(60)).await {
                Ok(()) => self.empty(&t.container).await,
                Err(e) => Err(e.into()),
            };
            out.push(match emptied {
                Ok(()) => Check::new(
                    "drill.set_aside",
                    &t.name,
                    true,
                    "stopped, data directory emptied",
                    "to clone again",
                ),
                Err(e) => failed("drill.set_aside", &t.name, e, "to clone again"),
            });
        }
        let cloning = Instant::now();
        let _ = self.d.start(&t.container).await;
        let streaming = self.streaming(&t.name).await;
        out.push(match streaming {
            Ok(()) => Check::new(
                "drill.standby_back",
                &t.name,
                true,
                format!(
                    "streaming from the primary {:.1} s after its start",
                    cloning.elapsed().as_secs_f64()
                ),
                format!("within {} s", self.c.timeout.as_secs()),
            ),
            Err(e) => failed("drill.standby_back", &t.name, e, "streaming"),
        });
    }

    /// Empties a stopped PostgreSQL container's data directory, in a container sharing its volumes.
    async fn empty(&self, container: &str) -> Result<()> {
        let inspected = self
            .d
            .inspect(container)
            .await?
            .ok_or_else(|| Error::Unexpected(format!("no container {container}")))?;
        let scratch = Scratch {
            image: inspected.image,
            user: Some("root".into()),
            argv: [
                "sh",
                "-c",
                "find \"${PGDATA:-/var/lib/postgresql/data}\" -mindepth 1 -delete",
            ]
            .map(str::to_owned)
            .to_vec(),
            labels: BTreeMap::from([(LABEL.to_owned(), "failover".to_owned())]),
            volumes_from: Some(container.to_owned()),
            ..Scratch::default()
        };
        let ran = self.d.run_scratch(RESET, &scratch, self.c.timeout).await;
        let _ = self.d.remove(RESET).await;
        match ran? {
            (0, _) => Ok(()),
            (code, logs) => Err(Error::Exit {
                what: "emptying".into(),
                code,
                output: logs.trim().to_owned(),
            }),
        }
    }

    /// Waits until `name` streams in the primary's pg_stat_replication.
    async fn streaming(&self, name: &str) -> Result<()> {
        let deadline = Instant::now() + self.c.timeout;
        loop {
            let state: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
                "SELECT state FROM pg_stat_replication WHERE application_name = $1",
            )
            .bind(name)
            .fetch_optional(self.primary)
            .await;
            match state {
                Ok(Some(s)) if s == "streaming" => return Ok(()),
                other if Instant::now() >= deadline => {
                    let seen = match other {
                        Ok(Some(s)) => s,
                        Ok(None) => "absent from pg_stat_replication".into(),
                        Err(e) => e.to_string(),
                    };
                    return Err(Error::Timeout {
                        seen,
                        after: self.c.timeout,
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}
