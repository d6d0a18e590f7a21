//! Errors of the remote layer, distinct where callers and users act differently on them.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{host} is unreachable: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("{host} refused authentication: {detail}")]
    Auth { host: String, detail: String },
    #[error(
        "{host}: the host key does not match known_hosts (or is unknown): {detail}; if the host was rebuilt, remove its old key; to trust a new host, pass --accept-new-host-keys"
    )]
    HostKey { host: String, detail: String },
    #[error("{host}: timed out after {after:?} {during}")]
    Timeout {
        host: String,
        during: String,
        after: Duration,
    },
    #[error("{host}: `{command}` failed ({status}): {stderr}")]
    Command {
        host: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{host}: ssh: {detail}")]
    Ssh { host: String, detail: String },
    #[error("{host}: docker: {detail}")]
    Docker { host: String, detail: String },
    #[error("{host}: {detail}")]
    Other { host: String, detail: String },
}

impl RemoteError {
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
        let lower = flat.to_lowercase();
        let host = host.to_owned();
        if lower.contains("host key verification failed")
            || lower.contains("remote host identification has changed")
            || lower.contains("no ed25519 host key is known")
            || lower.contains("host key for")
        {
            RemoteError::HostKey { host, detail: flat }
        } else if lower.contains("permission denied")
            || lower.contains("too many authentication failures")
        {
            RemoteError::Auth { host, detail: flat }
        } else if lower.contains("connection refused")
            || lower.contains("no route to host")
            || lower.contains("timed out")
            || lower.contains("could not resolve")
            || lower.contains("network is unreachable")
            || lower.contains("connection closed")
        {
            RemoteError::Unreachable { host, detail: flat }
        } else {
            RemoteError::Ssh { host, detail: flat }
        }
    }

    pub fn docker(host: &str, err: impl std::fmt::Display) -> RemoteError {
        RemoteError::Docker {
            host: host.to_owned(),
            detail: err.to_string(),
        }
    }
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;
