//! A build that reads secrets or the SSH agent: BuildKit, through the local engine's own session
//! endpoints (`/session`, `/grpc`). The classic builder has no session to serve them from.
//!
//! A secret reaches BuildKit from a private file (0600, in a folder of 0700 inside hoist's private
//! runtime directory) that lives while the build runs; one left by a hoist that was killed is
//! removed by the next build. The SSH agent is the one hoist runs with (`SSH_AUTH_SOCK`),
//! forwarded as `default`. The driver streams no build output: a failed step is known by the
//! status BuildKit ends with, which names its command and exit code.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use bollard::grpc::build::{ImageBuildFrontendOptions, ImageBuildLoadInput, SecretSource};
use bollard::grpc::driver::Build as _;
use bollard::grpc::driver::moby::Moby;
use hoist_core::desired::BuildSession;

use super::Build;
use crate::error::{RemoteError, Result};

/// The folders of build secrets, by the id of the process that made them:
/// `build-secrets-<pid>-<random>`.
const SECRETS_PREFIX: &str = "build-secrets-";

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
    let secrets = secrets_dir().map_err(|e| {
        fail(format!(
            "building {}: a private folder for its secrets: {e}",
            b.reference
        ))
    })?;
    for (i, secret) in session.secrets.iter().enumerate() {
        let path = secrets.path().join(i.to_string());
        write_private(&path, secret.content.expose().as_bytes()).map_err(|e| {
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
/// own too, whose connections live on that thread's runtime. Dropped (the apply stopped, or every
/// host that needed the image failed), it stops the build: the thread sees its caller gone, drops
/// its runtime and with it the session.
async fn solve(
    reference: String,
    opts: ImageBuildFrontendOptions,
    tar: Vec<u8>,
) -> std::result::Result<(), String> {
    let (_running, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime for the build: {e}"))?;
        rt.block_on(async {
            let docker = super::local().map_err(|e| e.to_string())?;
            let build = Moby::new(&docker).docker_build(
                &reference,
                opts,
                ImageBuildLoadInput::Upload(tar.into()),
                None,
                None,
            );
            tokio::select! {
                done = build => done.map_err(|e| match e {
                    // BuildKit's own words: the failed step and its exit code.
                    bollard::grpc::error::GrpcError::TonicStatus { err } => err.message().to_owned(),
                    other => other.to_string(),
                }),
                _ = stopped => Err("stopped".to_owned()),
            }
        })
    };
    tokio::task::spawn_blocking(run)
        .await
        .map_err(|e| format!("the build's thread: {e}"))?
}

/// A new folder for one build's secrets, in hoist's private runtime directory, after removing the
/// folders of processes that are gone.
fn secrets_dir() -> std::result::Result<tempfile::TempDir, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let runtime = crate::ConnectOptions::default().runtime_dir;
    crate::ssh::private_dir(&runtime)?;
    remove_left_over(&runtime, |pid| Path::new(&format!("/proc/{pid}")).exists());
    tempfile::Builder::new()
        .prefix(&format!("{SECRETS_PREFIX}{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&runtime)
        .map_err(|e| format!("in {}: {e}", runtime.display()))
}

/// Removes the secrets folders in `dir` whose process is not `alive`.
fn remove_left_over(dir: &Path, alive: impl Fn(u32) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(SECRETS_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !alive(pid)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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
    use std::os::unix::fs::FileTypeExt as _;
    let Some(sock) = sock.filter(|s| !s.is_empty()) else {
        return Err(
            "the build forwards the SSH agent hoist runs with, and SSH_AUTH_SOCK is not set: start one (`eval $(ssh-agent)`, then `ssh-add`)".into(),
        );
    };
    let path = Path::new(&sock);
    if sock.to_str().is_none() {
        return Err(format!(
            "SSH_AUTH_SOCK names {}, which is not UTF-8: the build's session cannot use it",
            path.display()
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        Ok(_) => Err(format!(
            "SSH_AUTH_SOCK names {}, which is not a socket",
            path.display()
        )),
        Err(e) => Err(format!(
            "SSH_AUTH_SOCK names {}, which is not there ({e})",
            path.display()
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
        let file = dir.path().join("file");
        std::fs::write(&file, "").expect("write");
        let not_socket = agent(Some(file.clone().into_os_string())).expect_err("a file");
        assert!(
            not_socket.ends_with("which is not a socket"),
            "{not_socket}"
        );
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

    #[test]
    fn the_secrets_of_a_build_whose_hoist_is_gone_are_removed() {
        let dir = tempfile::tempdir().expect("tmp");
        for name in [
            "build-secrets-11-abc",
            "build-secrets-22-def",
            "build-secrets-x-1",
            "ssh-config",
        ] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        remove_left_over(dir.path(), |pid| pid == 22);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["build-secrets-22-def", "build-secrets-x-1", "ssh-config"]
        );
    }

    #[test]
    fn a_builds_secrets_folder_is_private_and_its_own() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = secrets_dir().expect("secrets dir");
        let mode = std::fs::metadata(dir.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let name = dir
            .path()
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&format!("build-secrets-{}-", std::process::id())),
            "{name}"
        );
    }
}
