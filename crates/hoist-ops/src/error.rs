//! The operations' error: why a step of a check or a drill could not give its answer.
//!
//! A check that fails reports one of these as what it measured; callers that must branch (a
//! timeout is retried, an unreachable host is skipped) match on the variant, never on its text.

use std::time::Duration;

use hoist_remote::RemoteError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host, its engine or a forwarded port failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A database query failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Connecting to a database failed.
    #[error("connecting to {at} as {user}: {source}")]
    Connect {
        at: String,
        user: String,
        source: sqlx::Error,
    },
    /// A tool's JSON output did not parse.
    #[error("{what} JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    /// A command in a container ran and exited non-zero.
    #[error("{what} exit {code}: {output}")]
    Exit {
        what: String,
        code: i64,
        output: String,
    },
    /// A wait ended before its condition held: what was last seen.
    #[error("{seen} after {} s", .after.as_secs())]
    Timeout { seen: String, after: Duration },
    /// The system answered, but not with something usable: what it said.
    #[error("{0}")]
    Unexpected(String),
    /// A host the step needs is not among the connected ones.
    #[error("{0} is not connected")]
    NotConnected(String),
}
