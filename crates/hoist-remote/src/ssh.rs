//! SSH sessions: one OpenSSH master per host, multiplexed (native mux protocol), reused for every
//! command, every file and the forwarded Docker socket.
//!
//! Host keys are checked strictly unless the caller accepts new ones; the user's `~/.ssh/config`
//! applies (jump hosts, agents, certificates) since the system `ssh` does the connecting. Commands
//! run through `sudo -n` when the inventory says `become` for a non-root user.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hoist_core::inventory;
use openssh::{ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{OnceCell, Semaphore};

use crate::docker::{self, DockerEngine};
use crate::error::{ErrorKind, RemoteError, Result};
use crate::host::{Host, Output};
use crate::script;

/// sshd allows 10 sessions per connection by default; stay under it.
const MAX_SESSIONS: usize = 8;

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Accept and record the key of a host never seen before (`StrictHostKeyChecking=accept-new`).
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    /// Where control sockets and forwarded sockets live (kept short: unix socket paths are limited).
    pub runtime_dir: PathBuf,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        // The user's own: its control sockets and ssh_config are what every connection trusts.
        let uid = rustix::process::geteuid().as_raw();
        ConnectOptions {
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            runtime_dir: std::env::temp_dir().join(format!("hoist-{uid}")),
        }
    }
}

/// Makes `dir` (mode 0700) if it is missing, then refuses it unless it is a real directory owned by
/// this user that nobody else may enter: another local user who could write there could swap a
/// control socket, the forwarded engine socket or the generated ssh_config.
pub fn private_dir(dir: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let me = rustix::process::geteuid().as_raw();
    if !m.is_dir() {
        return Err(format!(
            "{} is not a directory (a link?): remove it",
            dir.display()
        ));
    }
    if m.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not to this user ({me}): remove it, or set another runtime directory",
            dir.display(),
            m.uid()
        ));
    }
    if m.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is open to others (mode {:04o}): it must be 0700; remove it or `chmod 700` it",
            dir.display(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// A connected host.
#[derive(Debug)]
pub struct SshHost {
    pub name: String,
    pub address: String,
    session: Arc<Session>,
    sudo: bool,
    dir: PathBuf,
    sessions: Semaphore,
    docker_socket: OnceCell<PathBuf>,
    keepalive: KeepAlive,
}

/// How long a master with no open channel outlives its last one (`ControlPersist`): the safety net
/// that ends masters of a hoist that was killed.
const PERSIST_IDLE_S: usize = 120;

/// Runs a no-op on the master well within [`PERSIST_IDLE_S`], so that it stays up while hoist
/// waits on something else (a long local image build, a person reading the plan): OpenSSH counts
/// only open channels as activity, not a port forward's listener. Aborted with its host.
#[derive(Debug)]
struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    fn start(session: std::sync::Weak<Session>) -> KeepAlive {
        KeepAlive(tokio::spawn(async move {
            let every = Duration::from_secs(PERSIST_IDLE_S as u64 / 2);
            loop {
                tokio::time::sleep(every).await;
                let Some(session) = session.upgrade() else {
                    return;
                };
                let _ = session.command("true").status().await;
            }
        }))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SshHost {
    /// Opens the master connection to `host`.
    pub async fn connect(host: &inventory::Host, opts: &ConnectOptions) -> Result<SshHost> {
        private_dir(&opts.runtime_dir).map_err(|e| RemoteError::other(&host.name, e))?;
        let dir = opts
            .runtime_dir
            .join(format!("{}-{}", host.name, std::process::id()));
        private_dir(&dir).map_err(|e| RemoteError::other(&host.name, e))?;
        let c = &host.connection;
        let mut b = SessionBuilder::default();
        b.user(c.user.clone())
            .port(c.port)
            .known_hosts_check(if opts.accept_new_host_keys {
                KnownHosts::Add
            } else {
                KnownHosts::Strict
            })
            .connect_timeout(opts.connect_timeout)
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(&dir)
            .clean_history_control_directory(true)
            // A safety net: if hoist is killed, its masters exit on their own.
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(PERSIST_IDLE_S).unwrap_or(NonZeroUsize::MIN),
            ));
        if let Some(k) = &c.identity_file {
            b.keyfile(k);
        }
        if let Some(k) = &c.known_hosts_file {
            b.user_known_hosts_file(k);
        }
        // The master reads a config of hoist's own (`-F`): the jump host's settings, which the
        // jump's own ssh gets from nothing else of our command line, then the user's and the
        // system's config, then a rule that no variable of hoist's environment (the age key
        // among them) is ever sent to a host, whatever SendEnv those configs ask for.
        let config = dir.join("ssh_config");
        std::fs::write(&config, master_config(c, opts.accept_new_host_keys)).map_err(|e| {
            RemoteError::other(&host.name, format!("writing {}: {e}", config.display()))
        })?;
        b.config_file(&config);
        if let Some(j) = &c.jump {
            b.jump_hosts([j.as_str()]);
        }
        let connect = b.connect_mux(&host.address);
        let session = match tokio::time::timeout(
            opts.connect_timeout + Duration::from_secs(5),
            connect,
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(RemoteError::from_ssh(&host.name, e)),
            Err(_) => {
                return Err(RemoteError::new(
                    &host.name,
                    ErrorKind::Unreachable,
                    format!("no answer within {:?}", opts.connect_timeout),
                ));
            }
        };
        let session = Arc::new(session);
        Ok(SshHost {
            name: host.name.clone(),
            address: host.address.clone(),
            keepalive: KeepAlive::start(Arc::downgrade(&session)),
            session,
            sudo: c.r#become && c.user != "root",
            dir,
            sessions: Semaphore::new(MAX_SESSIONS),
            docker_socket: OnceCell::new(),
        })
    }

    fn argv<'a>(&self, argv: &'a [String]) -> Vec<&'a str> {
        let mut full: Vec<&str> = Vec::new();
        if self.sudo {
            full.extend(script::SUDO);
        }
        full.extend(argv.iter().map(String::as_str));
        full
    }

    /// Runs `argv` (each word escaped for the remote shell), feeding `stdin`; never fails on a
    /// non-zero exit: see [`Host::run_ok`].
    pub async fn run_with_input(&self, argv: &[String], stdin: Option<&[u8]>) -> Result<Output> {
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|e| RemoteError::other(&self.name, e.to_string()))?;
        let full = self.argv(argv);
        let mut cmd = self.session.command(full[0]);
        cmd.args(&full[1..])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .await
            .map_err(|e| RemoteError::from_ssh(&self.name, e))?;
        if let (Some(data), Some(mut input)) = (stdin, child.stdin().take()) {
            // A command that refuses before reading its input (a put onto a symlink) closes the
            // pipe: its exit status and stderr say why, and a put checks what it received.
            if let Err(e) = input.write_all(data).await {
                tracing::debug!(host = %self.name, "stdin not taken whole: {e}");
            }
            input.shutdown().await.ok();
            drop(input);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| RemoteError::from_ssh(&self.name, e))?;
        Ok(Output {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// The local end of the host's forwarded Docker socket (forwarded once, on first use).
    pub async fn docker_socket(&self) -> Result<PathBuf> {
        let path = self
            .docker_socket
            .get_or_try_init(|| async {
                let local = self.dir.join("docker.sock");
                let _ = std::fs::remove_file(&local);
                self.session
                    .request_port_forward(
                        ForwardType::Local,
                        local.as_path(),
                        Path::new(script::DOCKER_SOCKET),
                    )
                    .await
                    .map_err(|e| RemoteError::from_ssh(&self.name, e))?;
                Ok::<PathBuf, RemoteError>(local)
            })
            .await?;
        Ok(path.clone())
    }

    /// A local TCP port forwarded, through the master, to `host:port` as the remote host reaches it
    /// (a database that publishes no port is still reachable at its container address).
    pub async fn forward_tcp(&self, host: &str, port: u16) -> Result<std::net::SocketAddr> {
        let local = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| {
                RemoteError::other(&self.name, format!("choosing a local port to forward: {e}"))
            })?;
        self.session
            .request_port_forward(
                ForwardType::Local,
                local,
                openssh::Socket::TcpSocket {
                    host: host.to_owned().into(),
                    port,
                },
            )
            .await
            .map_err(|e| RemoteError::from_ssh(&self.name, e))?;
        Ok(local)
    }

    /// Closes the master connection and removes the local sockets.
    pub async fn close(mut self) {
        // The keep-alive may hold the session for a moment: end it first.
        self.keepalive.0.abort();
        let _ = (&mut self.keepalive.0).await;
        if let Ok(session) = Arc::try_unwrap(self.session) {
            let _ = session.close().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The ssh_config of a master: the inventory's connection settings for every host the connection
/// goes through (a jump's ssh reads nothing else), then the user's and the system's config, then
/// `SendEnv -*`, which clears every variable those asked to send (it is read last, so it wins).
fn master_config(c: &inventory::Connection, accept_new: bool) -> String {
    let quoted = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        format!("\"{}\"", p.display())
    };
    let mut s = String::new();
    // The jump host's own settings first: for the hop to it, ssh takes the first value of each
    // setting and tries every IdentityFile (its key, then the one of the host behind it).
    if let Some(j) = &c.jump_host {
        s.push_str(&format!("Host \"{}\"\n", j.address));
        if let Some(k) = &j.identity_file {
            s.push_str(&format!("  IdentityFile {}\n", quoted(k)));
        }
        if let Some(k) = &j.known_hosts_file {
            s.push_str(&format!("  UserKnownHostsFile {}\n", quoted(k)));
        }
    }
    s.push_str("Host *\n");
    if let Some(k) = &c.identity_file {
        s.push_str(&format!("  IdentityFile {}\n", quoted(k)));
    }
    if let Some(k) = &c.known_hosts_file {
        s.push_str(&format!("  UserKnownHostsFile {}\n", quoted(k)));
    }
    s.push_str(if accept_new {
        "  StrictHostKeyChecking accept-new\n"
    } else {
        "  StrictHostKeyChecking yes\n"
    });
    s.push_str("  BatchMode yes\n");
    s.push_str(&format!(
        "Include {USER_CONFIG}\nInclude /etc/ssh/ssh_config\n"
    ));
    s.push_str("Host *\n  SendEnv -*\n");
    s
}

/// The user's own ssh_config, which a master started with `-F` would otherwise not read.
const USER_CONFIG: &str = "~/.ssh/config";

impl Host for SshHost {
    type Engine = DockerEngine;

    fn name(&self) -> &str {
        &self.name
    }

    fn address(&self) -> &str {
        &self.address
    }

    async fn run(&self, argv: &[String], stdin: Option<&[u8]>) -> Result<Output> {
        self.run_with_input(argv, stdin).await
    }

    async fn engine(&self) -> Result<DockerEngine> {
        docker::connect(self).await
    }

    async fn port_open(&self, port: u16) -> bool {
        tokio::net::TcpStream::connect((self.address.as_str(), port))
            .await
            .is_ok()
    }

    async fn forward_tcp(&self, host: &str, port: u16) -> Result<std::net::SocketAddr> {
        SshHost::forward_tcp(self, host, port).await
    }
}

#[cfg(test)]
mod private_dir_tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::private_dir;

    #[test]
    fn a_runtime_dir_is_made_private_and_refused_when_it_is_not() {
        let tmp = tempfile::tempdir().expect("tmp");
        let fresh = tmp.path().join("hoist-test");
        private_dir(&fresh).expect("made");
        let mode = std::fs::metadata(&fresh)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        private_dir(&fresh).expect("reused");
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let e = private_dir(&fresh).expect_err("open to others");
        assert!(e.contains("open to others (mode 1777)"), "{e}");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).expect("symlink");
        assert!(
            private_dir(&link)
                .expect_err("a link")
                .contains("not a directory")
        );
    }
}

#[cfg(test)]
mod tests {
    use hoist_core::inventory::{Connection, JumpHost};

    use super::master_config;

    #[test]
    fn the_jump_hosts_settings_come_first() {
        let c = Connection {
            identity_file: Some("/keys/db".into()),
            known_hosts_file: Some("/keys/known".into()),
            jump: Some("ops@10.0.0.1:2222".into()),
            jump_host: Some(JumpHost {
                address: "10.0.0.1".into(),
                identity_file: Some("/keys/bastion".into()),
                known_hosts_file: None,
            }),
            ..Connection::default()
        };
        expect_test::expect![[r#"
            Host "10.0.0.1"
              IdentityFile "/keys/bastion"
            Host *
              IdentityFile "/keys/db"
              UserKnownHostsFile "/keys/known"
              StrictHostKeyChecking yes
              BatchMode yes
            Include ~/.ssh/config
            Include /etc/ssh/ssh_config
            Host *
              SendEnv -*
        "#]]
        .assert_eq(&master_config(&c, false));
    }

    /// Whatever the user's config asks to send, the master sends no variable: `ssh -G` prints the
    /// configuration ssh would use, without connecting.
    #[test]
    fn no_variable_of_hoists_environment_is_sent() {
        let dir = tempfile::tempdir().expect("tmp");
        let user = dir.path().join("user_config");
        std::fs::write(&user, "Host *\n  SendEnv * HOIST_AGE_KEY\n").expect("write");
        let config = master_config(&Connection::default(), false)
            .replace(super::USER_CONFIG, &user.display().to_string());
        let file = dir.path().join("ssh_config");
        std::fs::write(&file, config).expect("write");
        let out = std::process::Command::new("ssh")
            .args(["-G", "-F"])
            .arg(&file)
            .arg("host.example")
            .output()
            .expect("ssh -G");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(!shown.contains("sendenv"), "{shown}");
        assert!(shown.contains("batchmode yes"), "{shown}");
    }
}
