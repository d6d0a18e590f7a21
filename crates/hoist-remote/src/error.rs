//! The one error type of the remote layer and of the operations above it: which host, what kind
//! of failure (callers branch on the kind: retry, ask for a flag, report), and the detail.

use std::fmt;
use std::time::Duration;

/// What went wrong, as far as a caller acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection: refused, no route, no answer, closed.
    Unreachable,
    /// The host refused our credentials.
    Auth,
    /// The host's key is unknown or does not match known_hosts.
    HostKey,
    /// Something did not happen within its time.
    Timeout,
    /// A remote command exited non-zero.
    Command,
    /// The SSH layer failed in another way.
    Ssh,
    /// The container engine refused or failed a call.
    Engine,
    /// Another apply holds the host's lock.
    Locked,
    /// The host no longer matches what was reviewed.
    Moved,
    /// The run was cancelled (Ctrl-C, SIGTERM, SIGHUP).
    Cancelled,
    /// A new container failed its gate and the previous one runs again.
    RolledBack,
    /// Anything else (bad output, a local step that failed).
    Other,
}

#[derive(Debug, Clone)]
pub struct RemoteError {
    pub host: String,
    pub kind: ErrorKind,
    pub detail: String,
}

impl std::error::Error for RemoteError {}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (host, detail) = (&self.host, &self.detail);
        match self.kind {
            ErrorKind::Unreachable => write!(f, "{host} is unreachable: {detail}"),
            ErrorKind::Auth => write!(f, "{host} refused authentication: {detail}"),
            ErrorKind::HostKey => write!(
                f,
                "{host}: the host key does not match known_hosts (or is unknown): {detail}; if the host was rebuilt, remove its old key; to trust a new host, pass --accept-new-host-keys"
            ),
            ErrorKind::Ssh => write!(f, "{host}: ssh: {detail}"),
            ErrorKind::Engine => write!(f, "{host}: docker: {detail}"),
            ErrorKind::Timeout
            | ErrorKind::Command
            | ErrorKind::Locked
            | ErrorKind::Moved
            | ErrorKind::Cancelled
            | ErrorKind::RolledBack
            | ErrorKind::Other => write!(f, "{host}: {detail}"),
        }
    }
}

impl RemoteError {
    pub fn new(host: &str, kind: ErrorKind, detail: impl Into<String>) -> RemoteError {
        RemoteError {
            host: host.to_owned(),
            kind,
            detail: detail.into(),
        }
    }

    pub fn other(host: &str, detail: impl Into<String>) -> RemoteError {
        RemoteError::new(host, ErrorKind::Other, detail)
    }

    pub fn timeout(host: &str, during: &str, after: Duration) -> RemoteError {
        RemoteError::new(
            host,
            ErrorKind::Timeout,
            format!("timed out after {after:?} {during}"),
        )
    }

    pub fn cancelled(host: &str, during: &str) -> RemoteError {
        RemoteError::new(host, ErrorKind::Cancelled, format!("cancelled {during}"))
    }

    pub fn docker(host: &str, err: impl fmt::Display) -> RemoteError {
        RemoteError::new(host, ErrorKind::Engine, err.to_string())
    }

    /// Classifies an error from `openssh` by what the master's log says.
    pub fn from_ssh(host: &str, err: openssh::Error) -> RemoteError {
        let detail = match &err {
            openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
            other => other.to_string(),
        };
        let flat = detail
            .replace("\r\n", " ")
            .replace('\n', " ")
            .trim()
            .to_owned();
        RemoteError::new(host, classify(&flat), flat)
    }
}

/// What an SSH failure's text says it is.
fn classify(text: &str) -> ErrorKind {
    let lower = text.to_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if any(&[
        "host key verification failed",
        "remote host identification has changed",
        "no ed25519 host key is known",
        "host key for",
    ]) {
        ErrorKind::HostKey
    } else if any(&["permission denied", "too many authentication failures"]) {
        ErrorKind::Auth
    } else if any(&[
        "connection refused",
        "no route to host",
        "timed out",
        "could not resolve",
        "network is unreachable",
        "connection closed",
    ]) {
        ErrorKind::Unreachable
    } else {
        ErrorKind::Ssh
    }
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_failures_are_classified_by_their_words() {
        let cases = [
            ("Host key verification failed.", ErrorKind::HostKey),
            (
                "root@10.0.0.1: Permission denied (publickey).",
                ErrorKind::Auth,
            ),
            (
                "connect to host 10.0.0.1 port 22: Connection refused",
                ErrorKind::Unreachable,
            ),
            (
                "mux_client_request_session: read from master failed",
                ErrorKind::Ssh,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(classify(text), kind, "{text}");
        }
        let e = RemoteError::new("data-1", ErrorKind::Auth, "no key");
        assert_eq!(e.to_string(), "data-1 refused authentication: no key");
    }
}
