//! Sandbox benchmark: a no-op `hoist plan` of the three sandbox hosts, against the floor of the same
//! remote reads over one fresh multiplexed SSH master per host (hosts in parallel), measured in the
//! same run; then a full apply from bare hosts and an apply of one changed variable.
//!
//! Run with `cargo bench --bench sandbox` (root on Debian, or a running Docker engine). Prints
//! figures; asserts nothing.

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::print_stdout)] // A benchmark prints its figures on stdout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOSTS: [&str; 3] = ["172.30.0.11", "172.30.0.12", "172.30.0.13"];
const RUNS: usize = 10;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hoist(args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .current_dir(repo())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("hoist");
    let elapsed = t.elapsed();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 2,
        "hoist {args:?} failed ({code}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn e2e(args: &[&str]) -> Duration {
    let mut full = vec!["--project", "tests/fixtures/e2e", "-i", "inventory/sandbox"];
    full.extend(args);
    hoist(&full)
}

/// The floor: per host, in parallel, a fresh SSH master and the reads a plan needs (engine facts,
/// the managed file, the engine's networks, volumes, images and containers, inspected).
fn floor(state: &Path) -> Duration {
    let t = Instant::now();
    let handles: Vec<_> = HOSTS
        .iter()
        .map(|addr| {
            let state = state.to_path_buf();
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let ctl = std::env::temp_dir().join(format!("hoist-bench-{addr}"));
                let common = |cmd: &mut Command| {
                    cmd.arg("-i")
                        .arg(state.join("id_ed25519"))
                        .arg("-o")
                        .arg(format!("UserKnownHostsFile={}", state.join("known_hosts").display()))
                        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-S"])
                        .arg(&ctl);
                };
                let mut master = Command::new("ssh");
                common(&mut master);
                master.args(["-M", "-f", "-N", "-o", "ControlPersist=30", &format!("root@{addr}")]);
                assert!(master.status().expect("ssh").success());
                for remote in [
                    ". /etc/os-release; command -v dockerd; dpkg-query -W docker.io; pgrep -x dockerd; stat -c '%a %U %G %s' /opt/hoist/e2e/templates/index.html /etc/docker/daemon.json; cat /opt/hoist/e2e/templates/index.html /etc/docker/daemon.json",
                    "docker network ls -q | xargs docker network inspect >/dev/null; docker volume ls -q; docker images -q | xargs docker image inspect >/dev/null; docker ps -aq | xargs docker inspect >/dev/null",
                ] {
                    let mut c = Command::new("ssh");
                    common(&mut c);
                    c.args([&format!("root@{addr}"), remote]).stdout(std::process::Stdio::null());
                    assert!(c.status().expect("ssh").success(), "{remote}");
                }
                let mut exit = Command::new("ssh");
                common(&mut exit);
                exit.args(["-O", "exit", &format!("root@{addr}")]).stderr(std::process::Stdio::null());
                let _ = exit.status();
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    t.elapsed()
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (v[0].as_secs_f64(), v[v.len() / 2].as_secs_f64())
}

fn main() {
    let state = repo().join(".hoist/sandbox");
    eprintln!("preparing: fresh sandbox hosts");
    hoist(&["sandbox", "down"]);
    hoist(&["sandbox", "up"]);

    let full = e2e(&["apply", "test", "--yes"]);
    let change = e2e(&["-e", "greeting=bench", "apply", "test", "--yes"]);
    e2e(&["-e", "greeting=bench", "plan", "test"]);

    let mut plans = Vec::new();
    let mut floors = Vec::new();
    for _ in 0..RUNS {
        plans.push(e2e(&["-e", "greeting=bench", "plan", "test"]));
        floors.push(floor(&state));
    }
    let (plan_min, plan_median) = stats(plans);
    let (floor_min, floor_median) = stats(floors);
    println!("sandbox benchmark, 3 hosts, {RUNS} runs each (seconds)");
    println!("  no-op hoist plan           min {plan_min:.3}  median {plan_median:.3}");
    println!(
        "  floor (same reads, 1 master per host, in parallel)  min {floor_min:.3}  median {floor_median:.3}"
    );
    println!(
        "  ratio plan / floor         min {:.2}x  median {:.2}x   (target: at most 1.5x, under 1 s)",
        plan_min / floor_min,
        plan_median / floor_median
    );
    println!(
        "  full apply from bare hosts {:.1}  (engine install, image build and delivery, 3 services each)",
        full.as_secs_f64()
    );
    println!(
        "  apply of one changed variable {:.1}  (1 file, 2 containers recreated per host)",
        change.as_secs_f64()
    );
}
