//! [`FakeHost`]: a host in memory that interprets hoist's fixed scripts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use hoist_core::desired::sha256_hex;

use super::{FakeEngine, Fault, Rule, Shared};
use crate::error::{ErrorKind, RemoteError, Result};
use crate::host::{Host, Output};
use crate::script::{self, Known};

/// A file on a fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFile {
    pub content: Vec<u8>,
    pub mode: String,
    pub owner: String,
}

#[derive(Debug)]
struct State {
    files: BTreeMap<String, FakeFile>,
    /// Paths that hold a symlink or a directory, by kind.
    others: BTreeMap<String, &'static str>,
    os: String,
    installed: bool,
    running: bool,
    lock: Option<String>,
    open_ports: BTreeSet<u16>,
    http: BTreeMap<String, u16>,
    forwards: BTreeMap<(String, u16), std::net::SocketAddr>,
}

/// A host in memory.
#[derive(Debug, Clone)]
pub struct FakeHost {
    name: String,
    address: String,
    state: Arc<Mutex<State>>,
    shared: Shared,
    engine: FakeEngine,
}

impl FakeHost {
    /// A Debian host with its engine installed and running, and nothing else.
    pub fn new(name: &str) -> FakeHost {
        let shared = Shared::default();
        FakeHost {
            name: name.to_owned(),
            address: format!("{name}.test"),
            state: Arc::new(Mutex::new(State {
                files: BTreeMap::new(),
                others: BTreeMap::new(),
                os: "debian".into(),
                installed: true,
                running: true,
                lock: None,
                open_ports: BTreeSet::new(),
                http: BTreeMap::new(),
                forwards: BTreeMap::new(),
            })),
            engine: FakeEngine::new(name, shared.clone()),
            shared,
        }
    }

    /// A Debian host with no engine yet (apply installs one).
    pub fn bare(name: &str) -> FakeHost {
        let h = FakeHost::new(name);
        {
            let mut s = h.state();
            s.installed = false;
            s.running = false;
        }
        h
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host's engine, to arrange or read its state (shares the host's calls and faults).
    pub fn fake_engine(&self) -> &FakeEngine {
        &self.engine
    }

    /// Every call so far, host and engine, in order (`put /etc/x`, `engine create db`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }

    /// The calls that start with `prefix`.
    pub fn calls_of(&self, prefix: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    }

    /// The next call that starts with `prefix` meets `fault` (once).
    pub fn fault(&self, prefix: &str, fault: Fault) {
        self.shared.lock().rules.push(Rule {
            prefix: prefix.to_owned(),
            fault,
            times: 1,
        });
    }

    /// The next call that starts with `prefix` fails with `kind`.
    pub fn fail(&self, prefix: &str, kind: ErrorKind, detail: &str) {
        self.fault(prefix, Fault::Fail(kind, detail.to_owned()));
    }

    pub fn file(&self, path: &str) -> Option<FakeFile> {
        self.state().files.get(path).cloned()
    }

    pub fn set_file(&self, path: &str, content: &str, mode: &str) {
        self.state().files.insert(
            path.to_owned(),
            FakeFile {
                content: content.as_bytes().to_vec(),
                mode: mode.to_owned(),
                owner: "root".into(),
            },
        );
    }

    /// Puts a symlink or a directory (`kind`) at `path`.
    pub fn set_other(&self, path: &str, kind: &'static str) {
        self.state().others.insert(path.to_owned(), kind);
    }

    pub fn set_os(&self, os: &str) {
        self.state().os = os.to_owned();
    }

    /// Who holds the apply lock, if anyone.
    pub fn lock_holder(&self) -> Option<String> {
        self.state().lock.clone()
    }

    pub fn set_lock_holder(&self, holder: Option<&str>) {
        self.state().lock = holder.map(str::to_owned);
    }

    pub fn engine_installed(&self) -> bool {
        self.state().installed
    }

    pub fn open_port(&self, port: u16) {
        self.state().open_ports.insert(port);
    }

    /// `host:port`, as this host reaches it, is `to` on the controller (a real local service
    /// the test started).
    pub fn forward(&self, host: &str, port: u16, to: std::net::SocketAddr) {
        self.state().forwards.insert((host.to_owned(), port), to);
    }

    /// `url`, asked from the host, answers `status`.
    pub fn answer(&self, url: &str, status: u16) {
        self.state().http.insert(url.to_owned(), status);
    }

    fn interpret(&self, kind: Known, args: &[String], stdin: &[u8]) -> Output {
        let mut s = self.state();
        let ok = |stdout: String| Output {
            status: Some(0),
            stdout: stdout.into_bytes(),
            stderr: Vec::new(),
        };
        let fail = |code: i32, stderr: String| Output {
            status: Some(code),
            stdout: Vec::new(),
            stderr: stderr.into_bytes(),
        };
        match kind {
            Known::ReadFiles => {
                let mut out = Vec::new();
                for path in args {
                    if let Some(kind) = s.others.get(path) {
                        out.extend(format!("{} {kind}\n", script::READ_MARK).bytes());
                    } else if let Some(f) = s.files.get(path) {
                        let mode = f.mode.trim_start_matches('0');
                        out.extend(
                            format!(
                                "{} {mode} {o} {o} {} 0 0\n",
                                script::READ_MARK,
                                f.content.len(),
                                o = f.owner
                            )
                            .bytes(),
                        );
                        out.extend(&f.content);
                    } else {
                        out.extend(format!("{} missing\n", script::READ_MARK).bytes());
                    }
                }
                Output {
                    status: Some(0),
                    stdout: out,
                    stderr: Vec::new(),
                }
            }
            Known::PutFile => {
                let [path, mode, owner, size, sum] = args else {
                    return fail(2, "put_file: bad arguments".into());
                };
                if let Some(kind) = s.others.get(path) {
                    return fail(3, format!("{path} is a {kind}: not writing through it"));
                }
                if stdin.len().to_string() != *size {
                    return fail(
                        4,
                        format!(
                            "{path}: received {} of {size} bytes; the file was not replaced",
                            stdin.len()
                        ),
                    );
                }
                if sha256_hex(stdin) != *sum {
                    return fail(
                        4,
                        format!(
                            "{path}: the content's checksum differs; the file was not replaced"
                        ),
                    );
                }
                s.files.insert(
                    path.clone(),
                    FakeFile {
                        content: stdin.to_vec(),
                        mode: mode.clone(),
                        owner: if owner.is_empty() {
                            "root".into()
                        } else {
                            owner.clone()
                        },
                    },
                );
                ok(String::new())
            }
            Known::RemoveFiles => {
                if let Some((path, kind)) =
                    args.iter().find_map(|a| s.others.get(a).map(|k| (a, k)))
                {
                    return fail(3, format!("{path} is a {kind}: not removing it"));
                }
                for path in args {
                    s.files.remove(path);
                }
                ok(String::new())
            }
            Known::EngineFacts => ok(format!(
                "os={}\nos_like=\ncodename=trixie\ninstalled={}\nversion={}\ninit=other\nrunning={}\nsocket={}\n",
                s.os,
                if s.installed { "yes" } else { "no" },
                if s.installed { "26.1.5" } else { "" },
                if s.running { "yes" } else { "no" },
                if s.running { "yes" } else { "no" },
            )),
            Known::InstallEngine => {
                s.installed = true;
                ok(String::new())
            }
            Known::StartEngine => {
                if !s.installed {
                    return fail(127, "dockerd: not found".into());
                }
                s.running = true;
                ok(String::new())
            }
            Known::Lock => match &s.lock {
                Some(holder) => ok(format!("held\n{holder}\n")),
                None => {
                    s.lock = args.first().cloned();
                    ok("acquired\n".into())
                }
            },
            Known::Unlock => {
                if s.lock.as_ref() == args.first() {
                    s.lock = None;
                    ok("released\n".into())
                } else {
                    ok("kept\n".into())
                }
            }
            Known::HttpStatus => {
                let code = args
                    .first()
                    .and_then(|u| s.http.get(u))
                    .map(u16::to_string)
                    .unwrap_or_else(|| "000".into());
                ok(code)
            }
        }
    }
}

/// How a call is written in the log.
fn describe(kind: Option<Known>, args: &[String], argv: &[String]) -> String {
    match kind {
        Some(Known::ReadFiles) => format!("read {}", args.join(" ")),
        Some(Known::PutFile) => format!("put {}", args.first().cloned().unwrap_or_default()),
        Some(Known::RemoveFiles) => format!("remove {}", args.join(" ")),
        Some(Known::EngineFacts) => "facts".into(),
        Some(Known::InstallEngine) => "install engine".into(),
        Some(Known::StartEngine) => format!("start engine {}", args.join(" ")),
        Some(Known::Lock) => "lock".into(),
        Some(Known::Unlock) => "unlock".into(),
        Some(Known::HttpStatus) => format!("http {}", args.join(" ")),
        None => format!("run {}", script::display(argv)),
    }
}

impl Host for FakeHost {
    type Engine = FakeEngine;

    fn name(&self) -> &str {
        &self.name
    }

    fn address(&self) -> &str {
        &self.address
    }

    async fn run(&self, argv: &[String], stdin: Option<&[u8]>) -> Result<Output> {
        let known = script::known(argv);
        let (kind, args) = match known {
            Some((k, a)) => (Some(k), a),
            None => (None, &argv[..0]),
        };
        let cut = self
            .shared
            .enter(&self.name, describe(kind, args, argv))
            .await?;
        let mut input = stdin.unwrap_or_default();
        if let Some(n) = cut {
            input = &input[..n.min(input.len())];
        }
        Ok(match kind {
            Some(k) => self.interpret(k, args, input),
            None => Output {
                status: Some(127),
                stdout: Vec::new(),
                stderr: b"the fake host runs hoist's fixed scripts only".to_vec(),
            },
        })
    }

    async fn engine(&self) -> Result<FakeEngine> {
        self.shared
            .enter(&self.name, "connect engine".into())
            .await?;
        let running = self.state().running;
        if !running {
            return Err(RemoteError::new(
                &self.name,
                ErrorKind::Engine,
                "the engine is not running",
            ));
        }
        Ok(self.engine.clone())
    }

    async fn port_open(&self, port: u16) -> bool {
        self.shared.record(format!("port {port}"));
        self.state().open_ports.contains(&port)
    }

    async fn forward_tcp(&self, host: &str, port: u16) -> Result<std::net::SocketAddr> {
        self.shared
            .enter(&self.name, format!("forward {host}:{port}"))
            .await?;
        let to = self.state().forwards.get(&(host.to_owned(), port)).copied();
        to.ok_or_else(|| {
            RemoteError::new(
                &self.name,
                ErrorKind::Unreachable,
                format!("{host}:{port} does not answer"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files;
    use hoist_core::desired::FileSpec;

    fn spec(path: &str, content: &str) -> FileSpec {
        FileSpec {
            path: path.into(),
            content: content.into(),
            mode: 0o640,
            owner: None,
            group: None,
            origin: "test".into(),
            sensitive: false,
        }
    }

    #[tokio::test]
    async fn files_go_through_the_scripts() {
        let h = FakeHost::new("h");
        files::put(&h, &spec("/etc/a", "A=1\n")).await.expect("put");
        let read = files::read(&h, &["/etc/a", "/etc/b"]).await.expect("read");
        assert_eq!(read["/etc/a"].0.content.as_deref(), Some("A=1\n"));
        assert_eq!(read["/etc/a"].0.mode, "0640");
        assert!(!read.contains_key("/etc/b"));
        assert_eq!(h.calls(), ["put /etc/a", "read /etc/a /etc/b"]);
    }

    #[tokio::test]
    async fn a_cut_transfer_leaves_the_old_file() {
        let h = FakeHost::new("h");
        h.set_file("/etc/a", "OLD\n", "0640");
        h.fault("put /etc/a", Fault::Truncate(2));
        let e = files::put(&h, &spec("/etc/a", "NEW=1\n"))
            .await
            .expect_err("refused");
        assert_eq!(e.kind, ErrorKind::Command);
        assert!(e.to_string().contains("received 2 of 6 bytes"), "{e}");
        assert_eq!(h.file("/etc/a").map(|f| f.content), Some(b"OLD\n".to_vec()));
    }
}
