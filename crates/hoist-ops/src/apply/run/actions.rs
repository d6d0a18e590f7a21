//! A play's actions on one host: waits (a service's gate, a port, a URL) and execs.

use std::future::Future;

use hoist_core::desired::{self, ActionKind};
use hoist_core::playbook::Wait;
use hoist_remote::error::{RemoteError, Result};
use hoist_remote::images::LocalImages;
use hoist_remote::{Engine, Host, script};
use tokio_util::sync::CancellationToken;

use super::gate::{self, Gate};
use super::{Event, Handles};

use super::HostRun;

impl<H: Host> HostRun<'_, H> {
    /// Runs one action; false when it was skipped or runs elsewhere.
    pub(super) async fn action<L: LocalImages>(
        &self,
        a: &desired::ActionSpec,
        handles: &Handles<'_, H, L>,
    ) -> Result<bool> {
        let name = self.name();
        let events = &handles.events;
        match &a.action {
            Some(ActionKind::Wait(Wait::Service {
                service,
                condition,
                timeout_s,
                ..
            })) => {
                let container = self
                    .want
                    .containers
                    .iter()
                    .find(|c| &c.service == service)
                    .map(|c| c.name.clone())
                    .unwrap_or_else(|| service.clone());
                let timeout = std::time::Duration::from_secs(*timeout_s);
                gate::wait(
                    name,
                    self.engine()?,
                    &container,
                    Gate::from(*condition),
                    timeout,
                    &handles.cancel,
                )
                .await?;
            }
            Some(ActionKind::Wait(Wait::Port { port, timeout_s })) => {
                let timeout = std::time::Duration::from_secs(*timeout_s);
                wait_for(
                    &handles.cancel,
                    name,
                    &format!("{}:{port}", self.host.address()),
                    timeout,
                    || async {
                        self.host
                            .port_open(*port)
                            .await
                            .then_some(())
                            .ok_or_else(String::new)
                    },
                )
                .await?;
            }
            Some(ActionKind::Wait(Wait::Url {
                url,
                status,
                timeout_s,
            })) => {
                let timeout = std::time::Duration::from_secs(*timeout_s);
                let argv = script::http_status(url);
                wait_for(
                    &handles.cancel,
                    name,
                    &format!("{url} to answer {status}"),
                    timeout,
                    || async {
                        let out = self
                            .host
                            .run(&argv, None)
                            .await
                            .map_err(|e| e.to_string())?;
                        let code = out.stdout_text().trim().to_owned();
                        if code == status.to_string() {
                            Ok(())
                        } else {
                            Err(format!("last answer {code}"))
                        }
                    },
                )
                .await?;
            }
            Some(ActionKind::Exec {
                container,
                command,
                user,
                unless,
            }) => {
                let d = self.engine()?;
                if let Some(guard) = unless {
                    let (code, _) = d.exec(container, guard, user.as_deref()).await?;
                    if code == 0 {
                        events(Event::Note {
                            host: name.to_owned(),
                            message: format!("{}: skipped, `unless` exited 0", a.describe),
                        });
                        return Ok(false);
                    }
                }
                let (code, output) = d.exec(container, command, user.as_deref()).await?;
                if code != 0 {
                    let lines: Vec<&str> = output.lines().collect();
                    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                    return Err(RemoteError::other(
                        name,
                        format!("{} exited with {code}:\n{tail}", a.describe),
                    ));
                }
            }
            // Run once for the play when all its hosts are done.
            Some(ActionKind::Validate(_)) | None => return Ok(false),
        }
        Ok(true)
    }
}

/// Polls `probe` every half second until it answers, the time is up, or the run is cancelled.
async fn wait_for<F, Fut>(
    cancel: &CancellationToken,
    host: &str,
    what: &str,
    timeout: std::time::Duration,
    probe: F,
) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = std::result::Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            let during = if last.is_empty() {
                format!("waiting for {what}")
            } else {
                format!("waiting for {what} ({last})")
            };
            return Err(RemoteError::timeout(host, &during, timeout));
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            () = cancel.cancelled() => return Err(RemoteError::cancelled(host, &format!("while waiting for {what}"))),
        }
    }
}
