//! Reaching the databases: a pool through the data host's SSH master, and the replication and
//! roles checks run on it.

use std::time::Duration;

use hoist_core::check::{Check, failed};
use hoist_remote::Host;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use crate::error::{Error, Result};

use super::{Address, DbConfig, Login, Standby, replication, roles};

pub async fn pool<H: Host>(ssh: &H, at: &Address, c: &DbConfig, login: &Login) -> Result<PgPool> {
    let local = ssh.forward_tcp(&at.0, at.1).await?;
    let mut options = PgConnectOptions::new()
        .host(&local.ip().to_string())
        .port(local.port())
        .database(&c.database)
        .username(&login.user)
        .password(login.password.expose())
        .application_name("hoist-validate");
    if let Some(ca) = &c.ca {
        options = options
            .ssl_mode(PgSslMode::VerifyFull)
            .ssl_root_cert_from_pem(ca.as_bytes().to_vec());
    }
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|source| Error::Connect {
            at: format!("{}:{}", at.0, at.1),
            user: login.user.clone(),
            source,
        })
}

/// Replication and roles through `ssh`'s forwarded ports; also returns the primary's WAL segment
/// size, which the backup checks need to count segments.
pub(crate) async fn databases<H: Host>(
    ssh: &H,
    c: &DbConfig,
    replication_checks: bool,
    roles_checks: bool,
) -> (Vec<Check>, Option<u64>) {
    let mut out = Vec::new();
    let primary = match pool(ssh, &c.primary, c, &c.admin).await {
        Ok(p) => p,
        Err(e) => {
            out.push(failed(
                "replication.primary_reachable",
                "primary",
                e,
                "answers",
            ));
            return (out, None);
        }
    };
    let segment_size = Some(segment_size(&primary).await);
    if replication_checks {
        let mut reachable = Vec::new();
        for (name, at) in &c.standbys {
            match pool(ssh, at, c, &c.admin).await {
                Ok(p) => reachable.push(Standby {
                    name: name.clone(),
                    pool: p,
                }),
                Err(e) => out.push(failed("replication.standby_reachable", name, e, "answers")),
            }
        }
        // A standby that does not answer is still looked for on the primary (not streaming);
        // what would be checked on its own connection is left out.
        let mut expected = reachable.clone();
        for (name, _) in &c.standbys {
            if !expected.iter().any(|s| &s.name == name) {
                expected.push(Standby {
                    name: name.clone(),
                    pool: primary.clone(),
                });
            }
        }
        let checks = replication(&primary, &expected, &c.thresholds).await;
        out.extend(checks.into_iter().filter(|k| {
            reachable.iter().any(|p| p.name == k.target)
                || !matches!(
                    k.check.as_str(),
                    "replication.standby_in_recovery"
                        | "replication.archiving_configured"
                        | "replication.canary"
                )
        }));
    }
    if roles_checks {
        let writer = pool(ssh, &c.primary, c, &c.writer).await;
        let reader = pool(ssh, &c.primary, c, &c.reader).await;
        match (writer, reader) {
            (Ok(w), Ok(r)) => {
                out.extend(roles((&c.writer.user, &w), (&c.reader.user, &r), &c.table).await)
            }
            (w, r) => {
                for (login, e) in [(&c.writer, w.err()), (&c.reader, r.err())] {
                    if let Some(e) = e {
                        out.push(failed("roles.login", &login.user, e, "logs in"));
                    }
                }
            }
        }
    }
    if roles_checks && c.ca.is_some() {
        out.extend(tls_clients(&primary, !c.standbys.is_empty()).await);
    }
    (out, segment_size)
}

/// Over TLS, every client that reached the primary over the network (`pg_stat_ssl`): the API's
/// connections (none before the API is deployed), the standbys' streaming (at least one when
/// standbys are expected), and every one of them together.
async fn tls_clients(primary: &PgPool, standbys: bool) -> Vec<Check> {
    let rows: Result<Vec<(String, String, bool)>, sqlx::Error> = sqlx::query_as(
        "SELECT coalesce(a.application_name, ''), coalesce(a.backend_type, ''), \
                coalesce(s.ssl, false) \
         FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s USING (pid) \
         WHERE a.client_addr IS NOT NULL AND a.pid <> pg_backend_pid()",
    )
    .fetch_all(primary)
    .await;
    match rows {
        Ok(rows) => tls_checks(&rows, standbys),
        Err(e) => vec![failed("tls.clients", "primary", e, "readable")],
    }
}

/// A client connection of the primary: its application, its backend type, whether it uses TLS.
type Connection = (String, String, bool);

/// The TLS checks of the primary's network clients: every connection of the API, every standby's
/// streaming (at least one when standbys are expected), every client at all.
fn tls_checks(rows: &[Connection], standbys: bool) -> Vec<Check> {
    let judge = |check: &str, target: &str, some: bool, of: &dyn Fn(&Connection) -> bool| {
        let mine: Vec<&Connection> = rows.iter().filter(|r| of(r)).collect();
        let tls = mine.iter().filter(|r| r.2).count();
        Check::new(
            check,
            target,
            tls == mine.len() && (!some || !mine.is_empty()),
            format!("{tls} of {} connection(s) over TLS", mine.len()),
            if some {
                "every one, at least one"
            } else {
                "every one"
            },
        )
    };
    vec![
        judge("tls.api", "apm-api", false, &|r| r.0 == "apm-api"),
        judge("tls.streaming", "standbys", standbys, &|r| {
            r.1 == "walsender"
        }),
        judge("tls.clients", "primary", false, &|_| true),
    ]
}

/// PostgreSQL's default WAL segment size, when the primary could not be asked.
pub(crate) const DEFAULT_SEGMENT: u64 = 16 * 1024 * 1024;

/// The primary's WAL segment size (the default when it cannot say).
pub async fn segment_size(primary: &PgPool) -> u64 {
    sqlx::query_scalar::<_, String>(
        "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'",
    )
    .fetch_one(primary)
    .await
    .ok()
    .and_then(|s| s.parse().ok())
    .unwrap_or(DEFAULT_SEGMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(app: &str, kind: &str, tls: bool) -> Connection {
        (app.into(), kind.into(), tls)
    }

    fn verdicts(rows: &[Connection], standbys: bool) -> Vec<(String, bool, String)> {
        tls_checks(rows, standbys)
            .into_iter()
            .map(|c| (c.check, c.ok, c.measured))
            .collect()
    }

    #[test]
    fn every_connection_over_tls_passes() {
        let rows = [
            row("apm-api", "client backend", true),
            row("apm-api", "client backend", true),
            row("replica_1", "walsender", true),
        ];
        assert!(
            verdicts(&rows, true).iter().all(|v| v.1),
            "{:?}",
            verdicts(&rows, true)
        );
    }

    #[test]
    fn one_connection_in_clear_fails_its_check_and_the_total() {
        let rows = [
            row("apm-api", "client backend", true),
            row("apm-api", "client backend", false),
            row("replica_1", "walsender", true),
        ];
        let v = verdicts(&rows, true);
        assert_eq!(
            v[0],
            (
                "tls.api".into(),
                false,
                "1 of 2 connection(s) over TLS".into()
            )
        );
        assert!(v[1].1, "the streaming is over TLS");
        assert_eq!(
            v[2],
            (
                "tls.clients".into(),
                false,
                "2 of 3 connection(s) over TLS".into()
            )
        );
    }

    #[test]
    fn no_streaming_fails_only_when_standbys_are_expected() {
        let rows = [row("apm-api", "client backend", true)];
        assert!(!verdicts(&rows, true)[1].1);
        assert!(verdicts(&rows, false)[1].1);
        // Before the API is deployed, it has no connection: nothing to fail.
        assert!(verdicts(&[], false)[0].1);
    }
}
