//! Setting up the Docker engine on a host: observe it, install it from the distribution's packages, write its
//! daemon.json, start it (systemd where it runs, the init script otherwise) and wait for its API.

use std::collections::BTreeMap;
use std::time::Duration;

use hoist_core::observed::EngineState;

use crate::engine::Engine as _;
use crate::error::{RemoteError, Result};
use crate::host::Host;
use crate::script;

#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub os: String,
    pub os_like: String,
    pub installed: bool,
    pub version: Option<String>,
    pub systemd: bool,
    pub running: bool,
}

pub async fn facts<H: Host>(host: &H) -> Result<Facts> {
    let out = host.run_ok(&script::engine_facts(), None).await?;
    let kv: BTreeMap<String, String> = out
        .stdout_text()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        })
        .collect();
    let get = |k: &str| kv.get(k).cloned().unwrap_or_default();
    Ok(Facts {
        os: get("os"),
        os_like: get("os_like"),
        installed: get("installed") == "yes",
        version: Some(get("version")).filter(|v| !v.is_empty()),
        systemd: get("init") == "systemd",
        running: get("running") == "yes" && get("socket") == "yes",
    })
}

impl Facts {
    /// The observed engine state, with the daemon.json content when there is one.
    pub fn state(&self, daemon: Option<serde_json::Value>) -> EngineState {
        EngineState {
            installed: self.installed,
            version: self.version.clone(),
            running: self.running,
            daemon,
        }
    }

    /// hoist installs the engine on Debian and its derivatives only.
    pub fn check_supported(&self, host: &str) -> Result<()> {
        let debian_like = matches!(self.os.as_str(), "debian" | "ubuntu")
            || self.os_like.split_whitespace().any(|w| w == "debian");
        if debian_like {
            return Ok(());
        }
        Err(RemoteError::other(
            host,
            format!(
                "unsupported distribution {:?}: hoist installs the Docker engine on Debian and its derivatives; install it yourself and run again",
                self.os
            ),
        ))
    }
}

/// Installs docker.io (and docker-cli where the distribution splits it out).
pub async fn install<H: Host>(host: &H) -> Result<()> {
    host.run_ok(&script::install_engine(), None)
        .await
        .map(|_| ())
}

/// Starts the engine (restarting it when its configuration changed) and waits for its API.
pub async fn start<H: Host>(host: &H, restart: bool, timeout: Duration) -> Result<()> {
    host.run_ok(&script::start_engine(restart), None).await?;
    wait_api(host, timeout).await
}

/// Waits until the engine answers through the forwarded socket.
pub async fn wait_api<H: Host>(host: &H, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last;
        match host.engine().await {
            Ok(d) => match d.ping().await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RemoteError::timeout(
                host.name(),
                &format!("waiting for the Docker API ({last})"),
                timeout,
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The daemon.json path, for reading it with the other managed files.
pub fn daemon_json_path() -> &'static str {
    script::DAEMON_JSON
}
