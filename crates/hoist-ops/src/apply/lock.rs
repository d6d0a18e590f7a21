//! The per-host apply lock: a directory on the host naming its holder (this machine's id, its
//! hostname, the process, since when), taken before a run observes the host and released at its
//! end; [`is_stale`] decides when a lock left behind may be broken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures_util::StreamExt as _;

use hoist_remote::error::{ErrorKind, RemoteError, Result};
use hoist_remote::{Host, script};

use super::{Event, Events};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The controller's machine id (`/etc/machine-id`); empty where it has none.
    pub machine: String,
    /// The controller's hostname, for people (two machines may share one).
    pub controller: String,
    pub pid: u32,
    /// Seconds since the epoch.
    pub since: u64,
    /// The kernel's boot id: a lock from an earlier boot was left by a process that is gone.
    pub boot: String,
    /// The PID namespace the pid is counted in (`pid:[4026531836]`): another one's pids mean
    /// nothing here.
    pub pidns: String,
}

impl Holder {
    /// This process on this machine, now.
    pub fn me() -> Holder {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let machine = Some(read("/etc/machine-id"))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| read("/var/lib/dbus/machine-id"));
        let controller = Some(read("/proc/sys/kernel/hostname"))
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        Holder {
            machine,
            controller,
            pid: std::process::id(),
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            boot: read("/proc/sys/kernel/random/boot_id"),
            pidns: std::fs::read_link("/proc/self/ns/pid")
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }

    /// The line written on the host.
    pub fn line(&self) -> String {
        format!(
            "machine={} controller={} pid={} since={} boot={} pidns={}",
            self.machine, self.controller, self.pid, self.since, self.boot, self.pidns
        )
    }

    /// A holder line as written by [`Holder::line`] (fields missing from older lines are empty).
    pub fn parse(line: &str) -> Holder {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_default()
                .to_owned()
        };
        Holder {
            machine: field("machine="),
            controller: field("controller="),
            pid: field("pid=").parse().unwrap_or(0),
            since: field("since=").parse().unwrap_or(0),
            boot: field("boot="),
            pidns: field("pidns="),
        }
    }
}

/// Whether a process of this machine is alive, as far as this machine can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// No way to tell (no /proc: macOS, say).
    Unknown,
}

/// How this machine sees process `pid`.
pub fn liveness(pid: u32) -> Liveness {
    liveness_in(Path::new("/proc"), pid)
}

fn liveness_in(proc: &Path, pid: u32) -> Liveness {
    if !proc.join("self").exists() || hides_pids(proc) {
        return Liveness::Unknown;
    }
    if proc.join(pid.to_string()).exists() {
        Liveness::Alive
    } else {
        Liveness::Dead
    }
}

/// Whether this /proc hides other users' processes (`hidepid=`): their absence proves nothing.
fn hides_pids(proc: &Path) -> bool {
    std::fs::read_to_string(proc.join("mounts"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("proc"))
        .any(|l| {
            l.contains("hidepid=1")
                || l.contains("hidepid=2")
                || l.contains("hidepid=invisible")
                || l.contains("hidepid=noaccess")
        })
}

/// A lock is stale only when it was taken on this very machine (same machine id, never merely the
/// same hostname) by a process that is gone: in an earlier boot, or, in this boot and this PID
/// namespace, a pid this machine sees no more. Anything else (another controller, no machine id,
/// another PID namespace, no way to see processes) is held until someone breaks it on purpose.
pub fn is_stale(holder: &Holder, me: &Holder, holder_alive: Liveness) -> bool {
    if me.machine.is_empty() || holder.machine != me.machine {
        return false;
    }
    if !holder.boot.is_empty() && !me.boot.is_empty() && holder.boot != me.boot {
        return true;
    }
    holder.pidns == me.pidns && holder.pid != me.pid && holder_alive == Liveness::Dead
}

/// Takes `host`'s lock for `me`; breaks a stale one, or any one with `break_lock`, by comparing and
/// deleting exactly the holder read (a lock taken meanwhile by someone else stays).
pub async fn acquire<H: Host>(
    host: &H,
    me: &Holder,
    break_lock: bool,
    events: &Events,
) -> Result<()> {
    let mine = me.line();
    for _ in 0..2 {
        let out = host.run_ok(&script::lock(&mine), None).await?;
        let text = out.stdout_text();
        let mut lines = text.lines();
        if lines.next() == Some("acquired") {
            return Ok(());
        }
        let line = lines.next().unwrap_or_default().to_owned();
        let holder = Holder::parse(&line);
        if !break_lock && !is_stale(&holder, me, liveness(holder.pid)) {
            return Err(RemoteError::new(
                host.name(),
                ErrorKind::Locked,
                format!("another apply holds the lock ({line}); pass --break-lock if it is gone"),
            ));
        }
        events(Event::Note {
            host: host.name().to_owned(),
            message: format!("breaking the lock held by {line}"),
        });
        let out = host.run_ok(&script::unlock(&line), None).await?;
        if out.stdout_text().trim() != "released" {
            return Err(RemoteError::new(
                host.name(),
                ErrorKind::Locked,
                "the lock changed hands while it was being broken; run again",
            ));
        }
    }
    Err(RemoteError::new(
        host.name(),
        ErrorKind::Locked,
        "could not take the lock",
    ))
}

/// Releases `host`'s lock if `me` still holds it.
pub async fn release<H: Host>(host: &H, me: &Holder) {
    let _ = host.run(&script::unlock(&me.line()), None).await;
}

/// The hosts this run holds the lock of, and as whom.
#[derive(Debug)]
pub struct Locks {
    me: Holder,
    held: BTreeSet<String>,
}

impl Locks {
    pub fn holds(&self, host: &str) -> bool {
        self.held.contains(host)
    }

    pub fn holder(&self) -> &Holder {
        &self.me
    }
}

/// Takes the lock of every host, `forks` at once; the hosts that could not be locked are
/// returned apart, as results.
pub async fn acquire_all<H: Host>(
    hosts: &BTreeMap<String, H>,
    break_lock: bool,
    forks: usize,
    events: &Events,
) -> (Locks, BTreeMap<String, RemoteError>) {
    let me = Holder::me();
    let results: Vec<(String, Result<()>)> = futures_util::stream::iter(hosts.iter())
        .map(|(name, h)| {
            let me = &me;
            async move { (name.clone(), acquire(h, me, break_lock, events).await) }
        })
        .buffer_unordered(forks.max(1))
        .collect()
        .await;
    let mut held = BTreeSet::new();
    let mut failed = BTreeMap::new();
    for (name, r) in results {
        match r {
            Ok(()) => {
                held.insert(name);
            }
            Err(e) => {
                failed.insert(name, e);
            }
        }
    }
    (Locks { me, held }, failed)
}

/// Releases every lock this run holds.
pub async fn release_all<H: Host>(hosts: &BTreeMap<String, H>, locks: Locks) {
    let me = &locks.me;
    futures_util::future::join_all(
        hosts
            .iter()
            .filter(|(name, _)| locks.held.contains(*name))
            .map(|(_, h)| release(h, me)),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(machine: &str, controller: &str, pid: u32) -> Holder {
        Holder {
            machine: machine.into(),
            controller: controller.into(),
            pid,
            since: 1,
            boot: "b1".into(),
            pidns: "pid:[1]".into(),
        }
    }

    #[test]
    fn a_lock_of_an_earlier_boot_is_stale_another_pid_namespace_is_not_judged() {
        let me = holder("m1", "ci", 10);
        let earlier = Holder {
            boot: "b0".into(),
            ..holder("m1", "ci", 7)
        };
        assert!(
            is_stale(&earlier, &me, Liveness::Alive),
            "its pid is another process now"
        );
        let other_ns = Holder {
            pidns: "pid:[2]".into(),
            ..holder("m1", "ci", 7)
        };
        assert!(!is_stale(&other_ns, &me, Liveness::Dead));
    }

    #[test]
    fn a_proc_that_hides_pids_proves_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(dir.path().join("self")).expect("self");
        std::fs::write(
            dir.path().join("mounts"),
            "proc /proc proc rw,nosuid,hidepid=invisible 0 0\n",
        )
        .expect("mounts");
        assert_eq!(liveness_in(dir.path(), 7), Liveness::Unknown);
        std::fs::write(dir.path().join("mounts"), "proc /proc proc rw,nosuid 0 0\n")
            .expect("mounts");
        assert_eq!(liveness_in(dir.path(), 7), Liveness::Dead);
    }

    #[test]
    fn a_dead_process_of_this_machine_holds_a_stale_lock() {
        let me = holder("m1", "ci", 10);
        assert!(is_stale(&holder("m1", "ci", 7), &me, Liveness::Dead));
        assert!(!is_stale(&holder("m1", "ci", 7), &me, Liveness::Alive));
    }

    #[test]
    fn another_machine_with_the_same_hostname_keeps_its_lock() {
        let me = holder("m1", "ci", 10);
        assert!(!is_stale(&holder("m2", "ci", 7), &me, Liveness::Dead));
    }

    #[test]
    fn without_proc_or_a_machine_id_no_lock_looks_stale() {
        let dir = std::env::temp_dir().join("hoist-no-proc-here");
        assert_eq!(liveness_in(&dir, 7), Liveness::Unknown);
        let me = holder("m1", "mac", 10);
        assert!(!is_stale(&holder("m1", "mac", 7), &me, Liveness::Unknown));
        let nameless = holder("", "mac", 10);
        assert!(!is_stale(&holder("", "mac", 7), &nameless, Liveness::Dead));
    }

    #[test]
    fn holder_lines_round_trip_and_older_lines_have_no_machine() {
        let h = holder("abc", "ci-1", 42);
        assert_eq!(Holder::parse(&h.line()), h);
        let old = Holder::parse("controller=ci-1 pid=42 since=1");
        assert_eq!(old.machine, "");
        assert_eq!(old.boot, "");
        assert_eq!(old.pid, 42);
    }
}
