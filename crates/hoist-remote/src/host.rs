//! The host seam: what every operation needs of a machine it manages. Run an argument vector
//! (with optional standard input) and read its status and output; reach the host's container
//! engine; tell whether a port of the host answers from here.
//!
//! [`crate::ssh::SshHost`] is the real implementation, [`crate::fake::FakeHost`] the in-memory one
//! the operations' tests use. Files are put and read through the same `run`, with the command
//! lines of [`crate::script`], so both implementations see exactly what a real host would.

use std::future::Future;

use crate::engine::Engine;
use crate::error::{ErrorKind, RemoteError, Result};
use crate::script;

/// The output of a remote command.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }
}

/// A machine hoist manages.
pub trait Host: Send + Sync {
    /// The host's container engine, as a handle of its own.
    type Engine: Engine;

    /// The inventory name.
    fn name(&self) -> &str;

    /// The address hoist reaches it at.
    fn address(&self) -> &str;

    /// Runs `argv` (each word an argument, never parsed by a shell), feeding `stdin`; a non-zero
    /// exit is an [`Output`], not an error: see [`Host::run_ok`].
    fn run(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> impl Future<Output = Result<Output>> + Send;

    /// Connects to the host's container engine.
    fn engine(&self) -> impl Future<Output = Result<Self::Engine>> + Send;

    /// Whether `port` of the host accepts a TCP connection from the controller.
    fn port_open(&self, port: u16) -> impl Future<Output = bool> + Send;

    /// A local address that reaches `host:port` as this host reaches it (a service that publishes
    /// no port is still reachable at its container's address).
    fn forward_tcp(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = Result<std::net::SocketAddr>> + Send;

    /// Runs `argv` and turns a non-zero exit into an error of kind [`ErrorKind::Command`] with the
    /// last lines of its stderr.
    fn run_ok(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> impl Future<Output = Result<Output>> + Send {
        async move {
            let out = self.run(argv, stdin).await?;
            if out.success() {
                return Ok(out);
            }
            let status = out
                .status
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "killed".into());
            Err(RemoteError::new(
                self.name(),
                ErrorKind::Command,
                format!(
                    "`{}` failed ({status}): {}",
                    script::display(argv),
                    last_lines(&out.stderr_text(), 20)
                ),
            ))
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
