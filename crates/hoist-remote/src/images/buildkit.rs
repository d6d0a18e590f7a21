//! A build that reads secrets or the SSH agent: BuildKit, through the local engine's own session
//! endpoints (`/session`, `/grpc`). The classic builder has no session to serve them from.
//!
//! A secret reaches BuildKit from a private file that lives only while the build runs (a folder
//! of 0700 with files of 0600, removed whatever the outcome); the SSH agent is the one hoist runs
//! with (`SSH_AUTH_SOCK`), forwarded as `default`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use bollard::grpc::build::{ImageBuildFrontendOptions, ImageBuildLoadInput, SecretSource};
use bollard::grpc::driver::Build as _;
use bollard::grpc::driver::moby::Moby;
use hoist_core::desired::BuildSession;

use super::Build;
use crate::error::{RemoteError, Result};

pub(super) async fn build(b: &Build<'_>, session: &BuildSession, tar: Vec<u8>) -> Result<()> {
    let fail = |detail: String| RemoteError::other("localhost", detail);
    let mut opts = ImageBuildFrontendOptions::builder()
        .dockerfile(Path::new(b.dockerfile))
        // FROM images the local engine has are used as they are: there may be no registry.
        .pull(false);
    if let Some(t) = b.target {
        opts = opts.target(t);
    }
    for (k, v) in b.args {
        opts = opts.buildarg(k, v);
    }
    for (k, v) in b.labels {
        opts = opts.label(k, v);
    }
    let secrets = tempfile::Builder::new()
        .prefix("hoist-build-secrets-")
        .tempdir()
        .map_err(|e| {
            fail(format!(
                "building {}: a private folder for its secrets: {e}",
                b.reference
            ))
        })?;
    for (i, secret) in session.secrets.iter().enumerate() {
        let path = secrets.path().join(i.to_string());
        write_private(&path, secret.content.as_bytes()).map_err(|e| {
            fail(format!(
                "building {}: writing secret `{}` for the build: {e}",
                b.reference, secret.source
            ))
        })?;
        opts = opts.set_secret(&secret.id, &SecretSource::File(path));
    }
    if session.ssh {
        agent(std::env::var_os("SSH_AUTH_SOCK"))
            .map_err(|why| fail(format!("building {}: build.ssh: {why}", b.reference)))?;
        opts = opts.enable_ssh(true);
    }
    let result = solve(b.reference.to_owned(), opts.build(), tar).await;
    drop(secrets);
    result.map_err(|e| RemoteError::docker("localhost", format!("building {}: {e}", b.reference)))
}

/// Runs the build on a thread of its own: bollard's session driver holds futures that are not
/// `Send` across its awaits, which no task of the shared runtime may do. It gets a client of its
/// own too, whose connections live on that thread's runtime.
async fn solve(
    reference: String,
    opts: ImageBuildFrontendOptions,
    tar: Vec<u8>,
) -> std::result::Result<(), String> {
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime for the build: {e}"))?;
        rt.block_on(async {
            let docker = super::local().map_err(|e| e.to_string())?;
            Moby::new(&docker)
                .docker_build(
                    &reference,
                    opts,
                    ImageBuildLoadInput::Upload(tar.into()),
                    None,
                    None,
                )
                .await
                .map_err(|e| e.to_string())
        })
    };
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| format!("the build's thread: {e}"))?
}

/// A new file only its owner reads.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Whether the SSH agent hoist runs with (at `sock`, its `SSH_AUTH_SOCK`) is there to forward,
/// or why not.
fn agent(sock: Option<std::ffi::OsString>) -> std::result::Result<(), String> {
    let Some(sock) = sock.filter(|s| !s.is_empty()) else {
        return Err(
            "the build forwards the SSH agent hoist runs with, and SSH_AUTH_SOCK is not set: start one (`eval $(ssh-agent)`, then `ssh-add`)".into(),
        );
    };
    match std::fs::metadata(&sock) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "SSH_AUTH_SOCK names {}, which is not there ({e})",
            Path::new(&sock).display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_agent_is_said_before_the_build() {
        let unset = agent(None).expect_err("no agent");
        assert!(unset.contains("SSH_AUTH_SOCK is not set"), "{unset}");
        assert_eq!(agent(Some("".into())).expect_err("no agent"), unset);
        let gone = agent(Some("/nonexistent/agent.sock".into())).expect_err("no socket");
        assert!(
            gone.starts_with("SSH_AUTH_SOCK names /nonexistent/agent.sock, which is not there"),
            "{gone}"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        assert_eq!(agent(Some(sock.into_os_string())), Ok(()));
    }

    #[test]
    fn a_secret_for_the_build_is_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0");
        write_private(&path, b"s3cret").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"s3cret");
        assert!(
            write_private(&path, b"other").is_err(),
            "an existing file is never written through"
        );
    }
}
