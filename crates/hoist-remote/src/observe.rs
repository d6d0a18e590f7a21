//! Observing a host: its engine, the files hoist manages, and what its engine holds, in as few round
//! trips as possible (one command for the engine facts, one for every file, then the Docker API).

use hoist_core::desired::HostDesired;
use hoist_core::observed::HostObserved;

use crate::engine;
use crate::error::Result;
use crate::files;
use crate::ssh::SshHost;
use crate::{docker, script};

/// What `host` has, for the resources `want` names (and what hoist owns there).
pub async fn host(ssh: &SshHost, want: &HostDesired) -> Result<HostObserved> {
    let mut paths: Vec<&str> = want.files.keys().map(String::as_str).collect();
    paths.push(script::DAEMON_JSON);
    let (facts, mut found) = tokio::try_join!(engine::facts(ssh), files::read(ssh, &paths))?;
    let daemon = found
        .remove(script::DAEMON_JSON)
        .and_then(|(_, bytes)| serde_json::from_slice(&bytes).ok());
    let files = found
        .into_iter()
        .map(|(path, (file, _))| (path, file))
        .collect();
    let docker = if facts.installed && facts.running {
        match docker::connect(ssh).await {
            Ok(d) => Some(docker::observe(&ssh.name, &d, want).await?),
            Err(e) => {
                tracing::warn!(host = %ssh.name, "engine not answering: {e}");
                None
            }
        }
    } else {
        None
    };
    Ok(HostObserved {
        engine: Some(facts.state(daemon)),
        files,
        docker,
    })
}
