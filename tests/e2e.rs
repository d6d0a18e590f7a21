//! End to end on the real sandbox: three hosts (containers with sshd, installed with their own
//! Docker engine by hoist itself), reached over SSH, driven through the forwarded Docker socket.
//!
//! Not part of `cargo test`: `cargo xtask e2e` (and `cargo xtask ci`) run it, after making sure a
//! local Docker engine exists, one test at a time: the platform's scenarios run in order in one
//! test, since they share the hosts; the compose corpus has a host of its own.

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Run, hoist_in, repo};

const HOSTS: [(&str, &str); 3] = [
    ("data-1", "172.30.0.11"),
    ("control-1", "172.30.0.12"),
    ("app-1", "172.30.0.13"),
];

/// The e2e fixture's secret (in the rendered file and a container's environment).
const POISON: &str = "p0ison-E2E-token";

fn hoist(args: &[&str]) -> Run {
    let mut full = vec!["--project", "tests/fixtures/e2e", "-i", "inventory/sandbox"];
    full.extend(args);
    clean(hoist_in(&repo(), &full, &[]))
}

/// Every output of hoist on real hosts is checked for the secret.
fn clean(run: Run) -> Run {
    assert!(
        !run.all().contains(POISON),
        "an output shows the secret:\n{}",
        run.all()
    );
    run
}

fn step(name: &str) {
    eprintln!("\n=== e2e: {name}");
}

fn ok(run: &Run, what: &str) {
    assert_eq!(
        run.code, 0,
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
        run.code, run.stdout, run.stderr
    );
}

/// Writes `inventory/<name>/hosts.yml` under `dir` for the e2e fixture: the sandbox's key,
/// `known_hosts`, further `connection` settings (`"key: value, "`), then `body` (hosts and groups).
/// Returns the inventory's path for `-i`.
fn fixture_inventory(
    dir: &std::path::Path,
    name: &str,
    connection: &str,
    known_hosts: &std::path::Path,
    body: &str,
) -> String {
    let inv = dir.join("inventory").join(name);
    std::fs::create_dir_all(&inv).expect("mkdir");
    std::fs::write(
        inv.join("hosts.yml"),
        format!(
            "connection: {{{connection}identity_file: {}, known_hosts_file: {}}}\n{body}",
            repo().join(".hoist/sandbox/id_ed25519").display(),
            known_hosts.display()
        ),
    )
    .expect("write");
    inv.display().to_string()
}

/// hoist on the e2e fixture with another inventory, its outputs checked for the secret.
fn with_inventory(inv: &str, args: &[&str]) -> Run {
    let mut full = vec!["--project", "tests/fixtures/e2e", "-i", inv];
    full.extend(args);
    clean(hoist_in(&repo(), &full, &[]))
}

/// The secret values of an inventory (`inventory/sandbox`, say), line by line for multi-line ones
/// (the private keys), as the outputs of hoist on the platform must never show them.
fn inventory_secrets(inventory: &str) -> Vec<String> {
    let (project, diags) = common::load(&repo(), inventory);
    assert!(!diags.has_errors(), "{:#?}", diags.sorted());
    let mut out = BTreeSet::new();
    for vars in project.vars.values() {
        for secret in vars.secrets.values() {
            let mut strings = Vec::new();
            collect_strings(secret.expose(), &mut strings);
            for s in strings {
                out.extend(
                    s.lines()
                        .map(str::trim)
                        .filter(|l| l.len() >= 8 && !l.starts_with("-----"))
                        .map(str::to_owned),
                );
            }
        }
    }
    assert!(out.len() > 10, "{inventory} has its secrets");
    out.into_iter().collect()
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|i| collect_strings(i, out)),
        serde_json::Value::Object(m) => m.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// The document `validate --json` or `drill ... --json` printed.
fn report(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("--json: {e}\n{}\n{}", run.stdout, run.stderr))
}

/// The report of a run whose every check passed: exit 0, none failed.
fn all_green(run: &Run) -> serde_json::Value {
    let doc = report(run);
    assert_eq!(
        (run.code, doc["failed"].as_u64()),
        (0, Some(0)),
        "{}",
        run.stdout
    );
    doc
}

/// The check of that name on `target` (on any target when None).
fn find_check<'a>(
    doc: &'a serde_json::Value,
    check: &str,
    target: Option<&str>,
) -> Option<&'a serde_json::Value> {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == check && target.is_none_or(|t| c["target"] == t))
}

/// Whether a report has that check on `target` (any when None), passed.
fn passed(doc: &serde_json::Value, check: &str, target: Option<&str>) -> bool {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .any(|c| c["check"] == check && target.is_none_or(|t| c["target"] == t) && c["ok"] == true)
}

/// Every one of `checks` (check, target) passed in `doc`; `output` is shown when one did not.
fn assert_passed(doc: &serde_json::Value, checks: &[(&str, &str)], output: &str) {
    for (check, target) in checks {
        assert!(
            passed(doc, check, Some(target)),
            "{check} {target}: {output}"
        );
    }
}

/// A command on a sandbox host, over the sandbox's own key (not through hoist).
fn on_host(address: &str, command: &str) -> String {
    on_host_with(&repo().join(".hoist/sandbox"), address, command)
}

/// `on_host` for a host of another sandbox project: its key and known_hosts are under `state`.
fn on_host_with(state: &std::path::Path, address: &str, command: &str) -> String {
    let out = Command::new("ssh")
        .args(["-i"])
        .arg(state.join("id_ed25519"))
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            state.join("known_hosts").display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            &format!("root@{address}"),
            command,
        ])
        .output()
        .expect("ssh");
    assert!(
        out.status.success(),
        "ssh {address} {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http_get(address: &str, port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect((address, port))
        .unwrap_or_else(|e| panic!("{address}:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET /index.html HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).ok();
    body
}

/// Container name -> start time, for every container on every host.
fn start_times() -> BTreeSet<String> {
    HOSTS
        .iter()
        .flat_map(|(name, addr)| {
            on_host(addr, "docker ps -a --format '{{.Names}}' | sort | xargs -r docker inspect -f '{{.Name}} {{.State.StartedAt}}'")
                .lines()
                .map(|l| format!("{name}{l}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn containers(address: &str) -> BTreeSet<String> {
    on_host(address, "docker ps -a --format '{{.Names}}'")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Stops or starts a sandbox host container on the local engine: a real node loss.
fn host_power(container: &str, on: bool) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let d = bollard::Docker::connect_with_local_defaults().expect("local engine");
        let r = if on {
            d.start_container(
                container,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        } else {
            d.stop_container(
                container,
                None::<bollard::query_parameters::StopContainerOptions>,
            )
            .await
        };
        r.unwrap_or_else(|e| panic!("{container}: {e}"));
    });
}

/// Runs a command in a sandbox host's container on the local engine (not over SSH): for changing
/// the host's own firewall, which SSH to it must not depend on.
fn host_exec(container: &str, argv: &[&str]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use futures_util::StreamExt as _;
        let d = bollard::Docker::connect_with_local_defaults().expect("local engine");
        let exec = d
            .create_exec(
                container,
                bollard::models::ExecConfig {
                    cmd: Some(argv.iter().map(|a| (*a).to_owned()).collect()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .expect("exec");
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            d.start_exec(&exec.id, None).await.expect("start exec")
        {
            while output.next().await.is_some() {}
        }
        let code = d.inspect_exec(&exec.id).await.expect("inspect").exit_code;
        assert_eq!(code, Some(0), "{container}: {argv:?}");
    });
}

/// What bounded traffic through the API's proxy saw.
struct Seen {
    requests: u64,
    /// Every request that did not get its expected status, with what it got.
    failures: Vec<String>,
    /// Ingests the API acknowledged (201).
    acked: u64,
    slowest_ms: u128,
}

/// Reads and ingests through the app host's proxy, from the controller, one after the other
/// until `stop` is set (or 3000 requests, or ten minutes): each ingest is tagged with `service`
/// so the database can be asked for exactly those afterwards.
fn traffic(
    ca: &std::path::Path,
    service: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Seen> {
    let (ca, service) = (ca.to_owned(), service.to_owned());
    std::thread::spawn(move || {
        let mut seen = Seen {
            requests: 0,
            failures: Vec::new(),
            acked: 0,
            slowest_ms: 0,
        };
        let started = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::SeqCst)
            && seen.requests < 3000
            && started.elapsed() < Duration::from_secs(600)
        {
            let ingest = seen.requests % 2 == 1;
            let mut curl = Command::new("curl");
            curl.args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "30",
            ])
            .arg("--cacert")
            .arg(&ca);
            if ingest {
                let body = format!(
                    r#"{{"time":"2025-12-14T10:00:00Z","service":"{service}","endpoint":"/r/{}","method":"POST","status_code":201,"latency_ms":3}}"#,
                    seen.requests
                );
                curl.args([
                    "-X",
                    "POST",
                    "-H",
                    "Authorization: Bearer sandbox-only-ingest-token-0000000000000000",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    &body,
                    "https://172.30.0.13/api/requests/",
                ]);
            } else {
                curl.args([
                    "-H",
                    "Authorization: Bearer sandbox-only-read-token-00000000000000000000",
                    "https://172.30.0.13/api/requests/kpis/",
                ]);
            }
            let t = Instant::now();
            let out = curl.output().expect("curl");
            seen.slowest_ms = seen.slowest_ms.max(t.elapsed().as_millis());
            let code = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let want = if ingest { "201" } else { "200" };
            if code == want {
                seen.acked += u64::from(ingest);
            } else {
                seen.failures.push(format!(
                    "request {} ({}): {code} {}",
                    seen.requests,
                    if ingest { "ingest" } else { "read" },
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            seen.requests += 1;
        }
        seen
    })
}

#[test]
fn sandbox_end_to_end() {
    step("fresh sandbox: three bare hosts");
    ok(
        &hoist_in(&repo(), &["sandbox", "down"], &[]),
        "sandbox down",
    );
    ok(&hoist_in(&repo(), &["sandbox", "up"], &[]), "sandbox up");
    for (_, addr) in HOSTS {
        assert!(
            on_host(addr, "command -v dockerd || echo none").contains("none"),
            "{addr} starts without an engine"
        );
    }

    step("apply from bare hosts: engine, image delivery, rendered file, health-gated stack");
    let t = Instant::now();
    let first = hoist(&["apply", "test", "--yes"]);
    ok(&first, "first apply");
    eprintln!("first apply took {:.1} s", t.elapsed().as_secs_f64());
    for (name, addr) in HOSTS {
        assert!(
            first.stderr.contains(&format!("{name}: ok")),
            "{}",
            first.stderr
        );
        for port in [8080, 8081] {
            let body = http_get(addr, port);
            assert!(
                body.contains(&format!("hello from {name}")),
                "{addr}:{port} answered {body:?}"
            );
        }
    }

    step("the compose runtime keys, as the engine runs them");
    let inspect = on_host(
        HOSTS[0].1,
        "docker inspect -f '{{json .HostConfig}} {{json .Config.Labels}}' e2e-front-1",
    );
    let (host_config, labels) = inspect.trim().split_once(' ').expect("two documents");
    let hc: serde_json::Value = serde_json::from_str(host_config).expect("HostConfig");
    let labels: serde_json::Value = serde_json::from_str(labels).expect("labels");
    assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]), "{hc}");
    assert_eq!(hc["ReadonlyRootfs"], true, "{hc}");
    assert!(hc["Tmpfs"].get("/tmp").is_some(), "{hc}");
    assert_eq!(
        hc["SecurityOpt"],
        serde_json::json!(["no-new-privileges:true"]),
        "{hc}"
    );
    assert_eq!(
        hc["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}]),
        "{hc}"
    );
    assert_eq!(hc["NanoCpus"], 500_000_000, "{hc}");
    assert_eq!(hc["Memory"], 64 * 1024 * 1024, "{hc}");
    assert_eq!(hc["MemoryReservation"], 16 * 1024 * 1024, "{hc}");
    assert_eq!(hc["PidsLimit"], 64, "{hc}");
    // The secret: a file of its own at compose's place, the owner's alone, the value intact.
    let stat = on_host(
        HOSTS[0].1,
        "docker exec e2e-front-1 busybox stat -c '%a %u' /run/secrets/api_token",
    );
    assert_eq!(stat.trim(), "400 0", "the secret's mode and owner");
    let sum = on_host(
        HOSTS[0].1,
        "docker exec e2e-front-1 busybox sha256sum /run/secrets/api_token",
    );
    {
        use sha2::Digest as _;
        let want = hex::encode(sha2::Sha256::digest(POISON.as_bytes()));
        assert!(sum.starts_with(&want), "the secret's content: {sum}");
    }
    // Two replicas of the worker, numbered as compose numbers them, each bounded.
    let workers = on_host(
        HOSTS[0].1,
        "docker ps --filter label=com.docker.compose.service=worker --format '{{.Names}} {{.Label \"com.docker.compose.container-number\"}}' | sort",
    );
    assert_eq!(
        workers.trim(),
        "e2e-worker-1 1\ne2e-worker-2 2",
        "{workers}"
    );
    let memory = on_host(
        HOSTS[0].1,
        "docker inspect -f '{{.HostConfig.Memory}}' e2e-worker-2",
    );
    assert_eq!(memory.trim(), (32 * 1024 * 1024).to_string());
    // compose's own labels: `docker compose -p e2e ps` on the host lists the stack.
    assert_eq!(labels["com.docker.compose.project"], "e2e", "{labels}");
    assert_eq!(labels["com.docker.compose.service"], "front", "{labels}");
    assert_eq!(labels["com.docker.compose.oneoff"], "False", "{labels}");

    step("status and logs");
    let status = hoist(&["status"]);
    ok(&status, "status");
    assert!(
        status.stdout.contains("e2e-api-1") && status.stdout.contains("running"),
        "{}",
        status.stdout
    );
    ok(&hoist(&["logs", "data-1", "api", "--tail", "5"]), "logs");

    step("second plan: no changes; second apply restarts nothing");
    let before = start_times();
    let plan = hoist(&["plan", "test"]);
    ok(&plan, "second plan");
    assert!(
        plan.stdout.contains("No changes: 3 host(s)"),
        "{}",
        plan.stdout
    );
    let again = hoist(&["apply", "test", "--yes"]);
    ok(&again, "second apply");
    assert_eq!(start_times(), before, "a no-op apply restarts nothing");
    assert!(
        again.stderr.contains("skipped, `unless` exited 0"),
        "{}",
        again.stderr
    );
    for (_, addr) in HOSTS {
        assert_eq!(
            on_host(addr, "docker exec e2e-api-1 cat /tmp/first-run"),
            "ran\n",
            "the guarded exec ran once on {addr}"
        );
    }

    step(
        "one changed variable: that file's diff, and a recreate of exactly the containers mounting it",
    );
    let plan = hoist(&["-e", "greeting=bonjour", "plan", "test"]);
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains("-<p>hello from data-1</p>\n")
            && plan.stdout.contains("+<p>bonjour from data-1</p>"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 3 host(s), 0 to create, 3 to update, 6 to recreate, 0 to delete"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("container e2e-api-1 (recreate)")
            && plan.stdout.contains("container e2e-front-1 (recreate)"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("e2e-setup-1 (recreate)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("mounted file: /opt/hoist/e2e/templates/index.html content changed"),
        "{}",
        plan.stdout
    );
    ok(
        &hoist(&["-e", "greeting=bonjour", "apply", "test", "--yes"]),
        "apply of the change",
    );
    assert!(http_get("172.30.0.12", 8081).contains("bonjour from control-1"));
    ok(
        &hoist(&["-e", "greeting=bonjour", "plan", "test"]),
        "converged after the change",
    );

    step("a saved plan applies only to hosts as they were when it was made");
    let tmp = tempfile::tempdir().expect("tmp");
    let saved = tmp.path().join("plan.json");
    let saved = saved.display().to_string();
    let planned = hoist(&["-e", "greeting=servus", "plan", "test", "--out", &saved]);
    assert_eq!(planned.code, 2, "{}", planned.stderr);
    on_host(
        "172.30.0.11",
        "echo drift >> /opt/hoist/e2e/templates/index.html",
    );
    let refused = hoist(&["-e", "greeting=servus", "apply", &saved, "--yes"]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("data-1: the host changed since the plan was made"),
        "{}",
        refused.stderr
    );
    let planned = hoist(&["-e", "greeting=servus", "plan", "test", "--out", &saved]);
    assert_eq!(planned.code, 2, "{}", planned.stderr);
    let applied = hoist(&["-e", "greeting=servus", "--json", "apply", &saved, "--yes"]);
    ok(&applied, "apply of a saved plan");
    let events: Vec<serde_json::Value> = applied
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "change_done" && e["kind"] == "container"),
        "{}",
        applied.stdout
    );
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some(serde_json::json!("summary"))
    );
    assert_eq!(
        events.last().map(|e| e["ok"].clone()),
        Some(serde_json::json!(true))
    );
    assert!(http_get("172.30.0.11", 8081).contains("servus from data-1"));

    step("SIGKILL in the middle of an apply, then apply again: converges, no orphans");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
        .current_dir(repo())
        .args([
            "--project",
            "tests/fixtures/e2e",
            "-i",
            "inventory/sandbox",
            "-e",
            "greeting=salut",
            "apply",
            "test",
            "--yes",
        ])
        .env("NO_COLOR", "1")
        .env_remove("HOIST_AGE_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Kill it as soon as one host has recreated its first container: the others are mid-way.
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("recreate container") {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(
        seen.contains("recreate container"),
        "the apply was killed mid-way: {seen}"
    );
    let again = hoist(&["-e", "greeting=salut", "apply", "test", "--yes"]);
    ok(&again, "apply after SIGKILL");
    ok(
        &hoist(&["-e", "greeting=salut", "plan", "test"]),
        "converged after SIGKILL",
    );
    let expected: BTreeSet<String> = [
        "e2e-api-1",
        "e2e-front-1",
        "e2e-setup-1",
        "e2e-worker-1",
        "e2e-worker-2",
    ]
    .map(String::from)
    .into();
    for (name, addr) in HOSTS {
        assert_eq!(
            containers(addr),
            expected,
            "{name} has exactly the stack's containers"
        );
        assert!(http_get(addr, 8080).contains(&format!("salut from {name}")));
    }

    step("a stopped host: a clear per-host error and a failure exit, the others complete");
    host_power("hoist-sandbox-control-1", false);
    let partial = hoist(&["-e", "greeting=ciao", "apply", "test", "--yes"]);
    host_power("hoist-sandbox-control-1", true);
    assert_eq!(partial.code, 1, "{}\n{}", partial.stdout, partial.stderr);
    assert!(
        partial.stderr.contains("error: control-1 is unreachable"),
        "{}",
        partial.stderr
    );
    assert!(
        partial.stderr.contains("data-1: ok") && partial.stderr.contains("app-1: ok"),
        "{}",
        partial.stderr
    );
    assert!(http_get("172.30.0.13", 8080).contains("ciao from app-1"));
    ok(
        &hoist_in(&repo(), &["sandbox", "up"], &[]),
        "sandbox up after the stop",
    );
    ok(
        &hoist(&["-e", "greeting=ciao", "apply", "test", "--yes"]),
        "the stopped host catches up",
    );

    step(
        "a non-root user with become: files and engine through sudo, the socket through its group",
    );
    let state = repo().join(".hoist/sandbox");
    let deploy = fixture_inventory(
        tmp.path(),
        "deploy",
        "user: deploy, become: true, ",
        &state.join("known_hosts"),
        "hosts:\n  app-1: {address: 172.30.0.13}\ngroups:\n  web: {hosts: [app-1]}\n",
    );
    let as_deploy = |args: &[&str]| with_inventory(&deploy, args);
    ok(
        &as_deploy(&["-e", "greeting=ciao", "plan", "test"]),
        "plan as deploy sees the converged host",
    );
    ok(
        &as_deploy(&["-e", "greeting=hola", "apply", "test", "--yes"]),
        "apply as deploy",
    );
    assert!(http_get("172.30.0.13", 8080).contains("hola from app-1"));
    assert!(
        on_host(
            "172.30.0.13",
            "stat -c '%U %a' /opt/hoist/e2e/templates/index.html"
        )
        .starts_with("root 644"),
        "files are put as root"
    );

    step(
        "a host behind a jump host: direct SSH to it refused, reached through another host with that host's own key",
    );
    // data-1 takes only a key of its own meanwhile: the hop to it must use the inventory's key
    // for data-1, not the one for app-1.
    let jump_key = tmp.path().join("jump_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&jump_key)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let public = std::fs::read_to_string(tmp.path().join("jump_key.pub")).expect("public key");
    let jump = fixture_inventory(
        tmp.path(),
        "jump",
        "",
        &state.join("known_hosts"),
        &format!(
            "hosts:\n  data-1: {{address: 172.30.0.11, identity_file: {}}}\n  app-1: {{address: 172.30.0.13, jump: data-1}}\ngroups:\n  web: {{hosts: [app-1]}}\n",
            jump_key.display()
        ),
    );
    host_exec(
        "hoist-sandbox-data-1",
        &[
            "sh",
            "-c",
            &format!(
                "cp /root/.ssh/authorized_keys /root/.ssh/authorized_keys.e2e && printf '%s\\n' '{}' > /root/.ssh/authorized_keys",
                public.trim()
            ),
        ],
    );
    let only_from_data_1 = [
        "-p",
        "tcp",
        "--dport",
        "22",
        "!",
        "-s",
        "172.30.0.11",
        "-j",
        "REJECT",
    ];
    let firewall = |op: &str| {
        let mut argv = vec!["iptables", op, "INPUT"];
        argv.extend(only_from_data_1);
        host_exec("hoist-sandbox-app-1", &argv);
    };
    firewall("-I");
    let jumped = with_inventory(
        &jump,
        &["-e", "greeting=hola", "plan", "test", "--limit", "app-1"],
    );
    firewall("-D");
    host_exec(
        "hoist-sandbox-data-1",
        &[
            "mv",
            "/root/.ssh/authorized_keys.e2e",
            "/root/.ssh/authorized_keys",
        ],
    );
    assert_eq!(
        jumped.code, 0,
        "plan through the jump host sees the converged host:\n{}\n{}",
        jumped.stdout, jumped.stderr
    );

    step("a host key mismatch is refused");
    let known = std::fs::read_to_string(state.join("known_hosts")).expect("known_hosts");
    let other = known
        .lines()
        .find(|l| l.starts_with("172.30.0.12 "))
        .expect("control-1 key")
        .split_once(' ')
        .expect("line")
        .1
        .to_owned();
    let forged: String = known
        .lines()
        .map(|l| {
            if l.starts_with("172.30.0.11 ") {
                format!("172.30.0.11 {other}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(tmp.path().join("known_hosts"), forged).expect("write");
    let forged = fixture_inventory(
        tmp.path(),
        "forged",
        "",
        &tmp.path().join("known_hosts"),
        "hosts:\n  data-1: {address: 172.30.0.11}\ngroups:\n  web: {hosts: [data-1]}\n",
    );
    let refused = with_inventory(&forged, &["plan", "test"]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("data-1: the host key does not match known_hosts"),
        "{}",
        refused.stderr
    );

    step(
        "the repository's DATA stack: a primary and two streaming standbys, proven by hoist validate",
    );
    // The repository's own deployment (not the fixture), its data play alone: the CONTROL role
    // needs Grafana, which has no package this machine can install.
    let data_play = tmp.path().join("data.yml");
    let yaml = r#"- name: engine
  hosts: all
  steps:
    - engine: {}
    - file: {template: env.cluster.j2, dest: /etc/apm/cluster.env, mode: "0600", owner: root}
- name: data
  hosts: data
  steps:
    - stack: data
    - wait: {stack: data, service: db-init, condition: completed, timeout: 180s}
    - wait: {stack: data, service: db-replica-1, condition: healthy, timeout: 10m}
    - wait: {stack: data, service: db-replica-2, condition: healthy, timeout: 10m}
"#;
    std::fs::write(&data_play, yaml).expect("write");
    let play = data_play.display().to_string();
    // Every output of hoist on the platform (apply, validate, the drills, status, logs) is checked
    // for every secret of the sandbox inventory, and for the certificates' private keys.
    let secrets = inventory_secrets("inventory/sandbox");
    let platform = |args: &[&str]| checked("inventory/sandbox", args, &secrets);
    ok(
        &platform(&["apply", &play, "--yes"]),
        "apply the data stack",
    );
    // The roles are tried on the canary table: the API's table comes with the APP role.
    let validate = || {
        platform(&[
            "-e",
            "validate_roles_table=hoist_validate_canary",
            "--json",
            "validate",
            "--only",
            "replication,roles",
        ])
    };
    let green = validate();
    let doc = all_green(&green);
    for standby in ["replica_1", "replica_2"] {
        for check in ["replication.streaming", "replication.canary"] {
            assert!(
                passed(&doc, check, Some(standby)),
                "{check} for {standby}: {}",
                green.stdout
            );
        }
    }

    step("applying again changes nothing and does not re-clone the standbys");
    let standbys_started = || {
        on_host(
            "172.30.0.11",
            "docker inspect -f '{{.State.StartedAt}}' apm-data-db-replica-1-1 apm-data-db-replica-2-1",
        )
    };
    let before = standbys_started();
    let plan = platform(&["plan", &play]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    ok(
        &platform(&["apply", &play, "--yes"]),
        "apply the data stack again",
    );
    assert_eq!(
        standbys_started(),
        before,
        "the standbys were not restarted"
    );

    step("a stopped standby fails validate, by name; started again, validate is green");
    on_host("172.30.0.11", "docker stop apm-data-db-replica-2-1");
    let red = validate();
    assert_eq!(red.code, 1, "{}", red.stdout);
    let failed: Vec<String> = report(&red)["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            format!(
                "{} {}",
                c["check"].as_str().unwrap_or(""),
                c["target"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failed.contains(&"replication.streaming replica_2".to_owned()),
        "{failed:?}"
    );
    assert!(
        failed.iter().all(|f| f.ends_with("replica_2")),
        "{failed:?}"
    );
    on_host("172.30.0.11", "docker start apm-data-db-replica-2-1");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let again = validate();
        if again.code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "validate stays red:\n{}",
            again.stdout
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    step("the whole site from the repository (DATA, CONTROL, APP), its validate step all green");
    // Without the grafana profile: Grafana comes only from a registry. Garage's binary is built
    // once (about 14 minutes) into hoist's cache outside the clone, then reused; the API is built
    // from this repository.
    let original = std::fs::read_to_string(repo().join("playbooks/site.yml")).expect("site.yml");
    let text = original.replace(
        "stack: {name: control, profiles: [garage, grafana]}",
        "stack: {name: control, profiles: [garage]}",
    );
    assert_ne!(
        text, original,
        "site.yml enables the grafana profile on the control stack"
    );
    let site_play = tmp.path().join("site.yml");
    std::fs::write(&site_play, text).expect("write");
    let site = site_play.display().to_string();
    let applied = platform(&["--json", "apply", &site, "--yes"]);
    ok(&applied, "apply the site");
    let events: Vec<serde_json::Value> = applied
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let validated: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "validated")
        .collect();
    assert_eq!(validated.len(), 1, "one validate step: {}", applied.stdout);
    assert_eq!(validated[0]["failed"], 0, "{}", applied.stdout);
    let everything = [
        ("replication.streaming", "replica_1"),
        ("replication.streaming", "replica_2"),
        ("replication.canary", "replica_2"),
        ("backups.check", "apm"),
        ("backups.recent", "repo1"),
        ("backups.recent", "repo2"),
        ("backups.wal_continuous", "repo1"),
        ("backups.wal_continuous", "repo2"),
        ("object_store.tls", "objectstore"),
        ("object_store.bucket", "pgbackrest"),
        ("object_store.bucket", "pgbackrest-cold"),
        ("roles.reader_cannot_write", "apm_reader"),
        ("roles.writer_can_write", "apm_writer"),
        ("api.health", "172.30.0.13"),
        ("monitoring.node_exporters", "every host"),
        ("monitoring.rules", "alerts"),
        ("monitoring.target", "node_exporter app-1"),
        ("monitoring.target", "postgres_exporter data-1"),
        ("tls.api", "apm-api"),
        ("tls.streaming", "standbys"),
        ("tls.clients", "primary"),
    ];
    assert_passed(validated[0], &everything, &applied.stdout);
    let green = platform(&["--json", "validate"]);
    let doc = all_green(&green);
    assert_passed(&doc, &everything, &green.stdout);
    // The API is up: its connections are there, every one over TLS.
    let api_tls = find_check(&doc, "tls.api", Some("apm-api"))
        .and_then(|c| c["measured"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(!api_tls.starts_with("0 of"), "tls.api: {api_tls}");

    step(
        "the API through its proxy: no token 401, each platform token within its scope; the app host holds no backup passphrase and no object-store key",
    );
    // From inside the proxy's container, verified against the cluster CA, as a client would.
    let status = |method: &str, token: Option<&str>, path: &str| -> String {
        let auth = token
            .map(|t| format!("-H 'Authorization: Bearer {t}' "))
            .unwrap_or_default();
        let body = if method == "POST" {
            r#"-H 'Content-Type: application/json' -d '{"time":"2025-12-14T10:00:00Z","service":"e2e","endpoint":"/x","method":"GET","status_code":200,"latency_ms":5}' "#
        } else {
            ""
        };
        on_host(
            "172.30.0.13",
            &format!(
                "docker exec apm-app-proxy-1 curl -s -o /dev/null -w '%{{http_code}}' -X {method} {auth}{body}--cacert /etc/nginx/tls/ca.crt https://localhost{path}"
            ),
        )
        .trim()
        .to_owned()
    };
    let (ingest, read) = (
        "sandbox-only-ingest-token-0000000000000000",
        "sandbox-only-read-token-00000000000000000000",
    );
    assert_eq!(status("GET", None, "/api/health/"), "200");
    assert_eq!(status("GET", None, "/api/requests/"), "401");
    assert_eq!(status("POST", None, "/api/requests/"), "401");
    assert_eq!(status("GET", Some("apm_forged"), "/api/requests/"), "401");
    assert_eq!(status("POST", Some(ingest), "/api/requests/"), "201");
    assert_eq!(status("GET", Some(ingest), "/api/requests/"), "403");
    assert_eq!(status("GET", Some(read), "/api/requests/kpis/"), "200");
    assert_eq!(status("POST", Some(read), "/api/requests/"), "403");
    assert_eq!(status("DELETE", Some(read), "/api/requests/1/"), "403");
    // Not in a file hoist wrote, not in a container's environment or command line.
    let kept = [
        "sandbox-only-repo1-cipher-pass",
        "sandbox-only-repo2-cipher-pass",
        "000000000000000000000000000000000000000000000000000000000000dead",
        "GK00000000000000000000dead",
    ];
    let patterns: String = kept.iter().map(|k| format!(" -e {k}")).collect();
    let found = on_host(
        "172.30.0.13",
        &format!(
            "grep -rlsF{patterns} /etc /var/lib/hoist /root /home /run 2>/dev/null; \
             docker inspect $(docker ps -aq) | grep -cF{patterns} || true"
        ),
    );
    assert_eq!(
        found.trim(),
        "0",
        "secrets of the backups on the app host: {found}"
    );

    step(
        "Prometheus through the monitoring proxy: a login needed, its lifecycle endpoints off, health open, a node-exporter on every host",
    );
    let prometheus = |args: &str, path: &str| -> String {
        on_host(
            "172.30.0.12",
            &format!(
                "docker exec apm-control-monitoring-proxy-1 curl -s -o /dev/null -w '%{{http_code}}' {args} --cacert /etc/nginx/tls/ca.crt https://localhost:9090{path}"
            ),
        )
        .trim()
        .to_owned()
    };
    let login = "-u ops:sandbox-only-prometheus-pass";
    assert_eq!(prometheus("", "/api/v1/targets"), "401");
    assert_eq!(prometheus("-u ops:wrong", "/api/v1/targets"), "401");
    assert_eq!(prometheus(login, "/api/v1/targets"), "200");
    assert_eq!(prometheus("", "/-/healthy"), "200");
    assert_eq!(prometheus(&format!("{login} -X POST"), "/-/reload"), "403");
    assert_eq!(prometheus(&format!("{login} -X POST"), "/-/quit"), "403");
    // A node-exporter per host, each named by its host and up (after its first scrape).
    let node_targets = || -> BTreeSet<(String, String)> {
        let body = on_host(
            "172.30.0.12",
            &format!(
                "docker exec apm-control-monitoring-proxy-1 curl -s {login} --cacert /etc/nginx/tls/ca.crt https://localhost:9090/api/v1/targets"
            ),
        );
        let doc: serde_json::Value = serde_json::from_str(&body).expect("targets JSON");
        doc["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["labels"]["job"] == "node_exporter")
            .map(|t| {
                (
                    t["labels"]["host"].as_str().unwrap_or_default().to_owned(),
                    t["health"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let all_up: BTreeSet<(String, String)> = ["app-1", "control-1", "data-1"]
        .iter()
        .map(|h| ((*h).to_owned(), "up".to_owned()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = node_targets();
    while seen != all_up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(3));
        seen = node_targets();
    }
    assert_eq!(seen, all_up, "a node-exporter target per host, all up");

    step(
        "a week of events through the proxy, then the console in Chromium: the API's numbers, a filter, every target",
    );
    // The shipped binary's seed generator, as a client: through the proxy, verified by the CA.
    let seeded = on_host(
        "172.30.0.13",
        &format!(
            "docker exec apm-app-apm-api-1 apm-api seed --via-api --base-url https://172.30.0.13 \
             --cacert /etc/apm/tls/ca.crt --count 20000 --days 7 --seed 7 --batch-size 5000 --token {ingest}"
        ),
    );
    assert!(seeded.contains("inserted=20000"), "{seeded}");
    // The console's login alone may read Prometheus through the proxy, and only read.
    let console_login = "-u console:sandbox-only-console-prometheus-pass";
    assert_eq!(prometheus(console_login, "/api/v1/targets"), "200");
    assert_eq!(prometheus(console_login, "/api/v1/query?query=up"), "200");
    assert_eq!(prometheus(console_login, "/api/v1/status/config"), "403");
    assert_eq!(prometheus(console_login, "/graph"), "403");
    assert_eq!(
        prometheus(
            &format!("{console_login} -X POST"),
            "/api/v1/query?query=up"
        ),
        "403"
    );
    assert_eq!(prometheus("-u console:wrong", "/api/v1/targets"), "401");
    // Not by another method, nor a path that decodes or resolves into another.
    assert_eq!(
        prometheus(&format!("{console_login} -I"), "/api/v1/targets"),
        "403"
    );
    for sly in [
        "/api/v1/rules%0A",
        "/api/v1/admin/tsdb/snapshot%2F..%2F..%2F..%2Fquery",
        "/api/v1/query/../status/config",
        "/api/v1/%71uery?query=up",
    ] {
        assert_eq!(
            prometheus(&format!("{console_login} --path-as-is"), sly),
            "403",
            "{sly}"
        );
    }
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo().join("target"), std::path::PathBuf::from)
        .join("console-screenshots");
    let browser = Command::new("node")
        .arg(repo().join("tests/browser/console.mjs"))
        .env("CONSOLE_URL", "https://172.30.0.13/console/")
        .env("APM_TOKEN", read)
        .env("SERVER_CERT", repo().join(".hoist/sandbox/server.crt"))
        .env("SCREENSHOTS", &shots)
        .output()
        .expect("node tests/browser/console.mjs (scripts/browser-setup installs what it needs)");
    let said = String::from_utf8_lossy(&browser.stdout);
    eprintln!("console in Chromium: {said}");
    eprintln!("console screenshots: {}", shots.display());
    assert!(
        browser.status.success(),
        "the console's browser test: {said}\n{}",
        String::from_utf8_lossy(&browser.stderr)
    );
    for page in ["login", "apm", "apm-filtered", "platform"] {
        let png = shots.join(format!("{page}.png"));
        let size = std::fs::metadata(&png).map_or(0, |m| m.len());
        assert!(
            size > 10_000,
            "{} is a screenshot ({size} bytes)",
            png.display()
        );
    }

    step("the operator guide's commands that only read, as written, on the sandbox inventory");
    // inventory/prod is the guide's; the sandbox is the inventory here, and `site` is the site
    // without Grafana. The commands that change hosts are the steps around this one.
    let guide = std::fs::read_to_string(repo().join("docs/operator-guide.md")).expect("the guide");
    let mut ran = Vec::new();
    for (line, words) in common::guide::commands(&guide) {
        let mut args: Vec<String> = Vec::new();
        let mut it = words.iter().peekable();
        while let Some(w) = it.next() {
            if w == "-i" && it.peek().is_some_and(|i| *i == "inventory/prod") {
                it.next();
                args.extend(["-i".to_owned(), "inventory/sandbox".to_owned()]);
            } else if w == "site" {
                args.push(site.clone());
            } else {
                args.push(w.clone());
            }
        }
        let verb = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.starts_with("inventory/"))
            .cloned()
            .unwrap_or_default();
        let reads = [
            "check",
            "plan",
            "validate",
            "status",
            "logs",
            "releases",
            "inventory",
        ];
        if !reads.contains(&verb.as_str()) || args.iter().any(|a| a == "--out") {
            continue;
        }
        // `hoist check` alone checks every inventory, each with its own age key: here the
        // sandbox's, whose key the suite has.
        if !args.iter().any(|a| a == "-i") {
            args.splice(0..0, ["-i".to_owned(), "inventory/sandbox".to_owned()]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = hoist_in(&repo(), &argv, &[]);
        let fine = match verb.as_str() {
            "plan" => matches!(run.code, 0 | 2),
            _ => run.code == 0,
        };
        assert!(
            fine,
            "docs/operator-guide.md:{line}: `hoist {}` as `hoist {}`: exit {}\n{}",
            words.join(" "),
            args.join(" "),
            run.code,
            run.all()
        );
        ran.push(args.join(" "));
    }
    assert!(ran.len() >= 8, "the guide's reading commands: {ran:#?}");
    eprintln!("ran the operator guide's {} reading commands", ran.len());

    step("applying the site again changes nothing: no restart, no new backup, the same stanza");
    let info = || -> serde_json::Value {
        let text = on_host(
            "172.30.0.12",
            "docker exec apm-control-scheduler-1 pgbackrest --stanza=apm --output=json info",
        );
        serde_json::from_str(&text).expect("pgbackrest info JSON")
    };
    let backups = |info: &serde_json::Value| -> Vec<(u64, String)> {
        info[0]["backup"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|x| {
                        (
                            x["database"]["repo-key"].as_u64().unwrap_or(0),
                            x["label"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = info();
    let taken = backups(&before);
    assert!(
        taken.iter().any(|b| b.0 == 1) && taken.iter().any(|b| b.0 == 2),
        "a backup in repo1 and repo2: {taken:?}"
    );
    let started = start_times();
    let plan = platform(&["plan", &site]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    ok(
        &platform(&["apply", &site, "--yes"]),
        "apply the site again",
    );
    assert_eq!(start_times(), started, "no container was restarted");
    let after = info();
    assert_eq!(backups(&after), taken, "a second apply takes no backup");
    assert_eq!(
        after[0]["db"], before[0]["db"],
        "the stanza was not created again"
    );

    step(
        "a new API release under traffic: started beside the running one, no request fails, every acknowledged ingest is stored",
    );
    let ca = tmp.path().join("cluster-ca.crt");
    std::fs::write(
        &ca,
        on_host(
            "172.30.0.13",
            "docker exec apm-app-proxy-1 cat /etc/nginx/tls/ca.crt",
        ),
    )
    .expect("write the CA");
    let stored = |service: &str| -> u64 {
        on_host(
            "172.30.0.11",
            &format!(
                "docker exec -u postgres apm-data-db-1 psql -d apm -qAt -c \"SELECT count(*) FROM observability_apirequest WHERE service = '{service}'\""
            ),
        )
        .trim()
        .parse()
        .expect("a count")
    };
    let api_env = |name: &str| -> String {
        on_host(
            "172.30.0.13",
            &format!("docker exec apm-app-apm-api-1 printenv {name}"),
        )
        .trim()
        .to_owned()
    };
    let under_traffic = |service: &str, args: &[&str]| -> (Run, Seen, Duration) {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load = traffic(&ca, service, stop.clone());
        // Traffic flows before the apply starts.
        std::thread::sleep(Duration::from_secs(2));
        let t = Instant::now();
        let run = platform(args);
        let took = t.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen = load.join().expect("traffic");
        (run, seen, took)
    };
    let releases = || -> Vec<serde_json::Value> {
        let run = platform(&["--json", "releases", "--limit", "app-1"]);
        ok(&run, "hoist releases");
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("releases JSON");
        doc["hosts"][0]["releases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let before = releases().len();
    let (applied, seen, took) = under_traffic(
        "e2e-release-1",
        &["apply", &site, "--yes", "-e", "read_after_write_ttl=3"],
    );
    ok(&applied, "apply a new API environment");
    assert_eq!(api_env("READ_AFTER_WRITE_TTL"), "3", "the new release runs");
    assert!(
        seen.requests > 20,
        "traffic ran: {} requests",
        seen.requests
    );
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:#?}",
        seen.failures
    );
    assert_eq!(
        stored("e2e-release-1"),
        seen.acked,
        "every acknowledged ingest is stored"
    );
    eprintln!(
        "rolling update of the API (start-first): apply took {:.1} s under traffic; {} requests, 0 failed, slowest {} ms",
        took.as_secs_f64(),
        seen.requests,
        seen.slowest_ms
    );

    step(
        "a release that cannot become healthy is rolled back: apply fails naming it, no request fails, the change stays planned",
    );
    let broken = ["-e", "read_after_write_ttl=soon"];
    let (failed, seen, _) = under_traffic(
        "e2e-release-2",
        &["apply", &site, "--yes", broken[0], broken[1]],
    );
    assert_ne!(failed.code, 0, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("service apm-api of apm-app")
            && failed
                .stderr
                .contains("rolled back: the previous container runs as apm-app-apm-api-1"),
        "{}",
        failed.stderr
    );
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:#?}",
        seen.failures
    );
    assert_eq!(stored("e2e-release-2"), seen.acked);
    eprintln!(
        "a release rolled back under traffic: {} requests, 0 failed, slowest {} ms",
        seen.requests, seen.slowest_ms
    );
    assert_eq!(
        api_env("READ_AFTER_WRITE_TTL"),
        "3",
        "the previous release serves"
    );
    assert!(
        !containers("172.30.0.13")
            .iter()
            .any(|c| c.contains(".hoist-")),
        "no scratch container left: {:?}",
        containers("172.30.0.13")
    );
    let pending = platform(&["plan", &site, broken[0], broken[1]]);
    assert!(
        pending.stdout.contains("apm-app-apm-api-1"),
        "the failed release is still planned: {}",
        pending.stdout
    );

    step(
        "the baseline: back to the inventory's environment with a plain stop-first recreate, under the same traffic",
    );
    let (back, seen, took) = under_traffic(
        "e2e-release-3",
        &[
            "apply",
            &site,
            "--yes",
            "-e",
            "apm_api_update_order=stop-first",
        ],
    );
    ok(&back, "apply the inventory's API environment, stop-first");
    assert_eq!(api_env("READ_AFTER_WRITE_TTL"), "2");
    // Requests fail while no API runs; those acknowledged are stored all the same.
    assert_eq!(stored("e2e-release-3"), seen.acked);
    eprintln!(
        "plain recreate of the API (stop-first): apply took {:.1} s under traffic; {} requests, {} failed, slowest {} ms",
        took.as_secs_f64(),
        seen.requests,
        seen.failures.len(),
        seen.slowest_ms
    );
    // Two releases more (the failed one is none), newest first: each changed the API's
    // configuration and no other container (and env.cluster, which lists the setting too).
    let now = releases();
    assert_eq!(now.len(), (before + 2).min(10), "{now:#?}");
    for r in &now[..2] {
        let containers: Vec<&serde_json::Value> = r["differences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"] == "container")
            .collect();
        assert_eq!(
            containers,
            [
                &serde_json::json!({"kind": "container", "name": "apm-app-apm-api-1", "what": ["configuration"]})
            ],
            "{r:#}"
        );
        assert!(r["by"].as_str().is_some_and(|b| b.contains('@')), "{r:#}");
    }
    assert_eq!(now[0]["current"], true);
    let text = platform(&["releases", "--limit", "app-1"]);
    assert!(
        text.stdout
            .contains("container apm-app-apm-api-1: configuration"),
        "{}",
        text.stdout
    );
    // The update order is not part of the container: going back to start-first changes nothing.
    let plan = platform(&["plan", &site]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);

    step(
        "hoist rollback: the hosts the latest apply changed go back to their previous release, under traffic; a second rollback moves forward again",
    );
    let (back, seen, took) = under_traffic("e2e-rollback", &["rollback", &site, "--yes"]);
    ok(&back, "hoist rollback");
    // The latest apply changed every host (env.cluster lists the setting): each goes back.
    for host in ["app-1", "control-1", "data-1"] {
        assert!(
            back.stderr.contains(&format!("{host}: release ")),
            "{}",
            back.stderr
        );
    }
    assert_eq!(
        api_env("READ_AFTER_WRITE_TTL"),
        "3",
        "the previous release's environment"
    );
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:#?}",
        seen.failures
    );
    assert_eq!(stored("e2e-rollback"), seen.acked);
    eprintln!(
        "rollback of the API: {:.1} s under traffic; {} requests, 0 failed, slowest {} ms",
        took.as_secs_f64(),
        seen.requests,
        seen.slowest_ms
    );
    let after = releases();
    assert!(
        after[0]["restores"].is_u64(),
        "recorded as a rollback: {:#}",
        after[0]
    );
    assert_ne!(
        platform(&["plan", &site]).code,
        0,
        "the inputs ask for the newer release"
    );
    ok(
        &platform(&["rollback", &site, "--yes"]),
        "a second hoist rollback",
    );
    assert_eq!(api_env("READ_AFTER_WRITE_TTL"), "2", "forward again");
    let plan = platform(&["plan", &site]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);

    step("hoist drill restore: repo1's latest backup in a scratch container matches the primary");
    let sql = |statement: &str| {
        on_host(
            "172.30.0.11",
            &format!(
                "docker exec -u postgres apm-data-db-1 psql -d apm -qAt -v ON_ERROR_STOP=1 -c \"{statement}\""
            ),
        )
    };
    // Computed on the primary as the drill computes it on the restored copy.
    const PROBE: &str = "SELECT count(*) || ' ' || md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM restore_probe AS t";
    sql(
        "DROP TABLE IF EXISTS restore_probe; CREATE TABLE restore_probe AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g",
    );
    let at_backup = sql(PROBE).trim().to_owned();
    assert!(at_backup.starts_with("5000 "), "{at_backup}");
    on_host(
        "172.30.0.12",
        "docker exec apm-control-scheduler-1 apm-backup incr 1",
    );
    // That backup by its label: the schedule's own incremental (minute 15 of the hour) may run
    // right after it, and would hold the row written next.
    let label = backups(&info())
        .into_iter()
        .rev()
        .find(|(repo, _)| *repo == 1)
        .map(|(_, label)| label)
        .expect("the backup just taken");
    // Written after the backup: a restore of that backup must not have it.
    sql("INSERT INTO restore_probe VALUES (5001, 'after'); SELECT pg_switch_wal()");
    assert_ne!(sql(PROBE).trim(), at_backup);
    let drill = platform(&[
        "--json",
        "drill",
        "restore",
        "--repo",
        "1",
        "--set",
        &label,
        "--checksum",
        "restore_probe",
        "--yes",
    ]);
    let doc = all_green(&drill);
    let measured = |check: &str, target: &str| -> String {
        find_check(&doc, check, Some(target))
            .and_then(|c| c["measured"].as_str())
            .unwrap_or_else(|| panic!("{check} {target}: {}", drill.stdout))
            .to_owned()
    };
    assert_eq!(
        measured("drill.checksum", "restore_probe"),
        at_backup,
        "rows and checksum of the restore"
    );
    assert!(measured("drill.recovery", "repo1").starts_with("recovered"));
    assert!(
        measured("drill.rows", "observability_apirequest")
            .parse::<u64>()
            .is_ok()
    );
    assert!(
        !containers("172.30.0.11").contains("hoist-drill-restore"),
        "the scratch container is gone"
    );

    step(
        "hoist drill objectstore-outage: writes go on, archiving waits, then catches up with no gap",
    );
    let outage = platform(&[
        "--json",
        "drill",
        "objectstore-outage",
        "--for",
        "15",
        "--yes",
    ]);
    let doc = all_green(&outage);
    for check in [
        "drill.writes_during_outage",
        "drill.archive_held",
        "drill.restarted",
        "drill.catch_up",
        "backups.wal_continuous",
    ] {
        assert!(passed(&doc, check, None), "{check}: {}", outage.stdout);
    }
    assert!(
        containers("172.30.0.12").contains("apm-control-objectstore-1")
            && on_host(
                "172.30.0.12",
                "docker inspect -f '{{.State.Running}}' apm-control-objectstore-1"
            )
            .trim()
                == "true",
        "the object store runs again"
    );

    step(
        "hoist drill failover: the primary stops, replica_2 takes over with the last commit, the topology comes back",
    );
    let refused = platform(&["drill", "failover"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    let running = |container: &str| {
        on_host(
            "172.30.0.11",
            &format!("docker inspect -f '{{{{.State.Running}}}}' {container}"),
        )
        .trim()
            == "true"
    };
    assert!(running("apm-data-db-1"), "without --yes nothing stops");
    let failover = platform(&["--json", "drill", "failover", "--to", "replica_2", "--yes"]);
    let doc = all_green(&failover);
    for c in doc["checks"].as_array().expect("checks") {
        eprintln!("  {} {}: {}", c["check"], c["target"], c["measured"]);
    }
    let drilled = [
        ("drill.primary_stopped", "apm-data-db-1"),
        ("drill.no_data_loss", "replica_2"),
        ("drill.archiving_off", "replica_2"),
        ("drill.promoted", "replica_2"),
        ("drill.writes", "replica_2"),
        ("drill.standby_can_follow", "replica_1"),
        ("drill.set_aside", "replica_2"),
        ("drill.primary_back", "apm-data-db-1"),
        ("drill.standby_back", "replica_2"),
        ("replication.canary", "replica_1"),
        ("replication.canary", "replica_2"),
    ];
    assert_passed(&doc, &drilled, &failover.stdout);
    assert!(running("apm-data-db-1") && running("apm-data-db-replica-2-1"));
    // The promoted standby's timeline never reached the repositories.
    let archived = on_host(
        "172.30.0.12",
        "docker exec -u pgbackrest apm-control-scheduler-1 pgbackrest --stanza=apm --repo=1 repo-ls --recurse archive/apm",
    );
    assert!(
        !archived.contains(".history"),
        "no timeline history archived:\n{archived}"
    );
    all_green(&platform(&[
        "--json",
        "validate",
        "--only",
        "replication,roles,backups",
    ]));
    ok(&platform(&["status"]), "status of the platform");
    ok(&platform(&["--json", "status"]), "status of the platform");
    for service in ["db", "pgbackrest"] {
        // The database's and the backups' logs print what their containers print.
        let logs = platform(&["logs", "data-1", service, "--tail", "200"]);
        assert!(
            logs.code == 0 || logs.stderr.contains("no container"),
            "{}",
            logs.all()
        );
    }

    single_host(&site, &secrets);

    // Passed: the hosts' engines and their images (gigabytes) go. A failed run keeps them for a look.
    ok(
        &hoist_in(&repo(), &["sandbox", "down"], &[]),
        "sandbox down",
    );
}

/// hoist with `-i inventory` in the repository, its outputs checked for every one of `secrets`.
fn checked(inventory: &str, args: &[&str], secrets: &[String]) -> Run {
    let mut full = vec!["-i", inventory];
    full.extend(args);
    let run = hoist_in(&repo(), &full, &[]);
    if let Some(leak) = secrets.iter().find(|s| run.all().contains(s.as_str())) {
        let at = leak.get(..4).unwrap_or_default();
        panic!("hoist {full:?} shows a secret of the inventory (starting {at:?})");
    }
    run
}

/// The single-host layout (`inventory/single`: every role on one machine) set up as the operator
/// guide's "One machine" says, on a sandbox host of its own (the other three stopped meanwhile),
/// then applied with the site and validated: every check green.
fn single_host(site: &str, secrets: &[String]) {
    step("inventory/single on one sandbox host: every role on one machine, applied and validated");
    const ADDRESS: &str = "172.30.0.14";
    for (name, _) in HOSTS {
        host_power(&format!("hoist-sandbox-{name}"), false);
    }
    // Under .hoist (out of git), kept when the step fails, with the host, to look at.
    let dir = repo().join(".hoist/single");
    let _ = std::fs::remove_dir_all(&dir);
    // The host: `hoist sandbox up` in a project of its own, whose sandbox inventory is that one
    // host (its own key and known_hosts, on the same network).
    let hostdir = dir.join("host");
    std::fs::create_dir_all(hostdir.join("inventory/sandbox")).expect("mkdir");
    std::fs::write(
        hostdir.join("inventory/sandbox/hosts.yml"),
        format!("hosts:\n  apm-node:\n    address: {ADDRESS}\n"),
    )
    .expect("write");
    let host = hostdir.display().to_string();
    ok(
        &hoist_in(&repo(), &["--project", &host, "sandbox", "up"], &[]),
        "sandbox up: the single host",
    );
    let state = hostdir.join(".hoist/sandbox");

    // The guide's steps on a copy of inventory/single: the address, the user and the network
    // edited, the secrets written in clear then encrypted, the PKI issued.
    let inv = dir.join("prod");
    common::copy_dir(&repo().join("inventory/single"), &inv);
    let edit = |file: &str, edits: &[(&str, &str)]| {
        let path = inv.join(file);
        let mut text = std::fs::read_to_string(&path).expect("read");
        for (from, to) in edits {
            assert!(
                text.contains(from),
                "inventory/single/{file} holds {from:?}"
            );
            text = text.replace(from, to);
        }
        std::fs::write(&path, text).expect("write");
    };
    let identity = format!(
        "  port: 22\n  identity_file: {}\n  known_hosts_file: {}\n",
        state.join("id_ed25519").display(),
        state.join("known_hosts").display()
    );
    edit(
        "hosts.yml",
        &[
            ("address: 192.0.2.10", &format!("address: {ADDRESS}")),
            ("user: deploy", "user: root"),
            ("become: true", "become: false"),
            ("  port: 22\n", &identity),
        ],
    );
    edit(
        "group_vars/all/vars.yml",
        &[(
            "cluster_subnet_cidr: 192.0.2.0/24",
            "cluster_subnet_cidr: 172.30.0.0/24",
        )],
    );
    let clear =
        std::fs::read_to_string(repo().join("inventory/sandbox/group_vars/all/secrets.yml"))
            .expect("the sandbox's secrets");
    let secrets_file = inv.join("group_vars/all/secrets.yml");
    std::fs::write(&secrets_file, clear).expect("write");
    let inv = inv.display().to_string();
    let encrypt = checked(
        &inv,
        &["secrets", "encrypt", &secrets_file.display().to_string()],
        secrets,
    );
    ok(&encrypt, "secrets encrypt");
    let encrypted = std::fs::read_to_string(&secrets_file).expect("read");
    assert!(
        secrets.iter().all(|s| !encrypted.contains(s.as_str())),
        "secrets.yml is encrypted"
    );
    ok(&checked(&inv, &["pki", "issue"], secrets), "pki issue");
    // From here on, its own secrets too: the keys `pki issue` made.
    let secrets = inventory_secrets(&inv);
    let single = |args: &[&str]| checked(&inv, args, &secrets);

    let t = Instant::now();
    let applied = single(&["--json", "apply", site, "--yes"]);
    ok(&applied, "apply the site on one machine");
    eprintln!(
        "single host: site applied in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let validated = single(&["--json", "validate"]);
    let doc = all_green(&validated);
    let checks = [
        ("replication.streaming", "replica_1"),
        ("replication.streaming", "replica_2"),
        ("backups.recent", "repo1"),
        ("backups.recent", "repo2"),
        ("object_store.bucket", "pgbackrest"),
        ("roles.reader_cannot_write", "apm_reader"),
        ("monitoring.node_exporters", "every host"),
        ("monitoring.rules", "alerts"),
        // The host's own name: the certificate's names are no secrets, so nothing hides it.
        ("monitoring.target", "node_exporter apm-node"),
        ("tls.api", "apm-api"),
    ];
    assert_passed(&doc, &checks, &validated.stdout);
    let again = single(&["plan", site]);
    assert_eq!(again.code, 0, "nothing left to change:\n{}", again.all());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two files of the compose corpus deployed as they are, on a sandbox host of their own:
/// nginx-golang-mysql (a build's `target`, a secret from a file for two services, a database the
/// backend waits for until it is healthy, a proxy in front) and github-actions-runner (four
/// replicas from an `env_file` in a `.env`, bounded in CPU and memory). The registry images they
/// name come from stand-ins built here (the sandbox reaches no registry); what the corpus entries
/// reference but do not copy is in tests/fixtures/e2e/corpus.
#[test]
fn corpus_files_on_a_sandbox_host() {
    const ADDRESS: &str = "172.30.0.15";
    step("two corpus files as they are, on a sandbox host of their own");
    ok(
        &hoist_in(&repo(), &["sandbox", "down"], &[]),
        "sandbox down",
    );
    // Under .hoist (out of git), kept when the test fails, with the host, to look at.
    let dir = repo().join(".hoist/corpus");
    let _ = std::fs::remove_dir_all(&dir);
    let hostdir = dir.join("host");
    std::fs::create_dir_all(hostdir.join("inventory/sandbox")).expect("mkdir");
    std::fs::write(
        hostdir.join("inventory/sandbox/hosts.yml"),
        format!("hosts:\n  corpus-1:\n    address: {ADDRESS}\n"),
    )
    .expect("write");
    let host = hostdir.display().to_string();
    ok(
        &hoist_in(&repo(), &["--project", &host, "sandbox", "up"], &[]),
        "sandbox up: the corpus host",
    );
    let state = hostdir.join(".hoist/sandbox");
    let on = |command: &str| on_host_with(&state, ADDRESS, command);

    let parts = repo().join("tests/fixtures/e2e/corpus");
    build_stand_ins(&parts.join("stand-ins"));
    a_failed_buildkit_step_is_named();
    let project = dir.join("project");
    common::copy_dir(&parts.join("stacks"), &project.join("stacks"));
    let corpus = repo().join("tests/fixtures/compose");
    for (from, to) in [
        (
            "01-nginx-golang-mysql/compose.yaml",
            "nginx-golang-mysql.yml",
        ),
        (
            "35-github-actions-runner/compose.yaml",
            "github-actions-runner.yml",
        ),
        ("35-github-actions-runner/.env", ".env"),
    ] {
        std::fs::copy(corpus.join(from), project.join("stacks").join(to)).expect("copy");
    }
    let write = |rel: &str, text: &str| {
        let p = project.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "playbooks/site.yml",
        "- name: corpus\n  hosts: all\n  steps:\n    - engine: {}\n    - stack: nginx-golang-mysql\n    - stack: github-actions-runner\n    - stack: session\n",
    );
    write(
        "inventory/sandbox/hosts.yml",
        &format!(
            "connection: {{user: root, identity_file: {}, known_hosts_file: {}}}\nhosts:\n  corpus-1: {{address: {ADDRESS}}}\n",
            state.join("id_ed25519").display(),
            state.join("known_hosts").display()
        ),
    );
    let nonce = format!("{:?} {}", std::time::SystemTime::now(), std::process::id());
    std::fs::write(project.join("stacks/fetcher/nonce"), nonce).expect("nonce");
    let session_yml = project.join("stacks/session.yml");
    let project = project.display().to_string();
    // The session stack's build forwards the agent hoist runs with: one of the test's own, with
    // a key made for it.
    let agent = SshAgent::start("hoist-e2e-build");
    let sock = agent.socket.display().to_string();
    let corpus_hoist = |args: &[&str]| {
        let mut full = vec!["--project", project.as_str(), "-i", "inventory/sandbox"];
        full.extend(args);
        hoist_in(&repo(), &full, &[("SSH_AUTH_SOCK", sock.as_str())])
    };
    let t = Instant::now();
    ok(
        &corpus_hoist(&["apply", "site", "--yes"]),
        "apply the corpus files",
    );
    eprintln!("corpus files applied in {:.1} s", t.elapsed().as_secs_f64());

    // nginx-golang-mysql: the proxy answers from the backend's `builder` stage, the database is
    // healthy (its health check reads the secret), and the secret is where compose puts it.
    let body = http_get(ADDRESS, 80);
    assert!(body.contains("from the builder stage"), "{body}");
    let health = on("docker inspect -f '{{.State.Health.Status}}' nginx-golang-mysql-db-1");
    assert_eq!(health.trim(), "healthy");
    let password = std::fs::read(parts.join("stacks/db/password.txt")).expect("password");
    let want = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&password))
    };
    for service in ["backend", "db"] {
        let container = format!("nginx-golang-mysql-{service}-1");
        let seen = on(&format!(
            "docker exec {container} stat -c '%a %u' /run/secrets/db-password && docker exec {container} sha256sum /run/secrets/db-password"
        ));
        assert!(seen.starts_with("400 0\n"), "{container}: {seen}");
        assert!(
            seen.contains(&want),
            "{container}: the secret's content: {seen}"
        );
    }
    let databases = on(
        "docker exec nginx-golang-mysql-db-1 sh -c 'mariadb -uroot -p\"$(cat /run/secrets/db-password)\" -N -e \"show databases\"'",
    );
    assert!(
        databases.lines().any(|l| l == "example"),
        "MYSQL_DATABASE made: {databases}"
    );
    assert_eq!(
        on("docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' nginx-golang-mysql-db-1").trim(),
        "always"
    );

    // github-actions-runner: four replicas, numbered as compose numbers them, each bounded as the
    // file says (1GB as compose reads it: GiB), each with the env_file's settings.
    let runners = on(
        "docker ps --filter label=com.docker.compose.project=github-actions-runner --format '{{.Names}}' | sort",
    );
    let names: Vec<String> = (1..=4)
        .map(|n| format!("github-actions-runner-runner-{n}"))
        .collect();
    assert_eq!(runners.lines().collect::<Vec<_>>(), names, "{runners}");
    for name in &names {
        let hc: serde_json::Value = serde_json::from_str(&on(&format!(
            "docker inspect -f '{{{{json .HostConfig}}}}' {name}"
        )))
        .expect("HostConfig");
        assert_eq!(hc["NanoCpus"], 350_000_000, "{name}: {hc}");
        assert_eq!(hc["Memory"], 1024 * 1024 * 1024, "{name}: {hc}");
        assert_eq!(hc["MemoryReservation"], 128 * 1024 * 1024, "{name}: {hc}");
        assert_eq!(hc["RestartPolicy"]["Name"], "always", "{name}: {hc}");
        let logs = on(&format!("docker logs {name} 2>&1"));
        assert!(
            logs.contains("runner for example-org/example-app"),
            "{name}: {logs}"
        );
    }

    // session: the image was built with the secret and the agent (BuildKit), and keeps neither;
    // the secret's private folder on the controller is gone.
    let uid = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").expect("/proc/self").uid()
    };
    let runtime = std::env::temp_dir().join(format!("hoist-{uid}"));
    let left: Vec<_> = std::fs::read_dir(&runtime)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("build-secrets-")
        })
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "a build's secrets left behind: {left:?}");
    let token = std::fs::read(parts.join("stacks/session-token.txt")).expect("token");
    let token_sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&token))
    };
    assert_eq!(
        on("docker exec session-fetcher-1 cat /token.sha256").trim(),
        token_sha,
        "the build read the secret"
    );
    let keys = on("docker exec session-fetcher-1 cat /agent-keys");
    assert!(
        keys.contains(&agent.fingerprint),
        "the build listed this run's agent key {}: {keys}",
        agent.fingerprint
    );
    let token_text = String::from_utf8_lossy(&token).trim().to_owned();
    let kept = on(&format!(
        "docker exec session-fetcher-1 sh -c 'test ! -e /run/secrets/token && echo none'; docker history --no-trunc hoist-e2e/fetcher:1 | grep -c {token_text} || true"
    ));
    assert_eq!(kept.trim(), "none\n0", "the image keeps no secret: {kept}");
    let namespaces = |fetcher: &str| {
        let mode = on("docker inspect -f '{{.HostConfig.NetworkMode}}' session-sidecar-1");
        assert_eq!(mode.trim(), format!("container:{fetcher}"));
        let ns = on(
            "for c in session-fetcher-1 session-sidecar-1; do readlink /proc/$(docker inspect -f '{{.State.Pid}}' $c)/ns/net; done",
        );
        let ns: Vec<&str> = ns.lines().collect();
        assert!(
            ns.len() == 2 && ns[0] == ns[1],
            "one network namespace: {ns:?}"
        );
    };
    let fetcher_id = || {
        on("docker inspect -f '{{.Id}}' session-fetcher-1")
            .trim()
            .to_owned()
    };
    let first_fetcher = fetcher_id();
    namespaces(&first_fetcher);
    let mtu = || {
        on("docker network inspect -f '{{index .Options \"com.docker.network.driver.mtu\"}}' session_back")
            .trim()
            .to_owned()
    };
    assert_eq!(mtu(), "1400");

    // As compose would have run them, the host's engine knows nothing more: the next plan is empty.
    let again = corpus_hoist(&["plan", "site"]);
    assert_eq!(again.code, 0, "nothing left to change:\n{}", again.all());

    // A network option changed: the network is recreated, with the containers on it and the one in
    // their namespace after them; the image is not built again.
    let yml = std::fs::read_to_string(&session_yml).expect("session.yml");
    std::fs::write(&session_yml, yml.replace("mtu: \"1400\"", "mtu: \"1450\"")).expect("write");
    let planned = corpus_hoist(&["plan", "site"]);
    assert_eq!(planned.code, 2, "{}", planned.all());
    for want in [
        "network session_back (recreate)",
        "driver_opts.com.docker.network.driver.mtu: 1400 -> 1450",
        "container session-fetcher-1 (recreate)",
        "container session-sidecar-1 (recreate)",
    ] {
        assert!(planned.stdout.contains(want), "{want}:\n{}", planned.stdout);
    }
    assert!(
        !planned.stdout.contains("image hoist-e2e/fetcher"),
        "the image stays:\n{}",
        planned.stdout
    );
    ok(
        &corpus_hoist(&["apply", "site", "--yes"]),
        "apply the network's new MTU",
    );
    assert_eq!(mtu(), "1450");
    let second_fetcher = fetcher_id();
    assert_ne!(second_fetcher, first_fetcher, "fetcher was recreated");
    namespaces(&second_fetcher);
    let again = corpus_hoist(&["plan", "site"]);
    assert_eq!(again.code, 0, "nothing left to change:\n{}", again.all());
    drop(agent);

    ok(
        &hoist_in(&repo(), &["sandbox", "down"], &[]),
        "sandbox down",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A BuildKit build (one that reads a secret) that fails says which step, and not the secret.
fn a_failed_buildkit_step_is_named() {
    use hoist_core::desired::{BuildSecret, BuildSession, Content, ImageSource, ImageSpec};
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM debian:trixie-slim\nRUN --mount=type=secret,id=token test \"$(cat /run/secrets/token)\" = other\n",
    )
    .expect("Dockerfile");
    let spec = ImageSpec {
        reference: "hoist-e2e/fails:1".into(),
        source: ImageSource::Build {
            context: ".".into(),
            dockerfile: "Dockerfile".into(),
            args: Default::default(),
            context_hash: "fails".into(),
            binaries: Default::default(),
            target: None,
            session: BuildSession {
                secrets: vec![BuildSecret {
                    id: "token".into(),
                    source: "token".into(),
                    content: hoist_core::secret::Secret::new(Content::from("e2e-s3cret-value")),
                }],
                ssh: false,
            },
        },
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let err = rt
        .block_on(async {
            let local = hoist_remote::images::local().expect("local engine");
            hoist_remote::images::build(&local, dir.path(), &spec).await
        })
        .expect_err("the step fails");
    let err = err.to_string();
    assert!(
        err.contains("building hoist-e2e/fails:1: ")
            && err.contains(r#"test "$(cat /run/secrets/token)" = other"#)
            && err.contains("exit code: 1")
            && !err.contains("Grpc"),
        "{err}"
    );
    assert!(!err.contains("e2e-s3cret-value"), "{err}");
}

/// An `ssh-agent` of the test's own, holding one new key with `comment`; stopped when dropped.
struct SshAgent {
    socket: std::path::PathBuf,
    /// The key's, as `ssh-add -l` shows it (`SHA256:...`).
    fingerprint: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    fn start(comment: &str) -> SshAgent {
        let dir = tempfile::Builder::new()
            .prefix("hoist-e2e-agent-")
            .tempdir()
            .expect("tempdir");
        let key = dir.path().join("key");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(made.success(), "ssh-keygen");
        let listed = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&key)
            .output()
            .expect("ssh-keygen -l");
        let fingerprint = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .nth(1)
            .expect("a fingerprint")
            .to_owned();
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent");
        let agent = SshAgent {
            socket,
            fingerprint,
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            if agent.socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let added = Command::new("ssh-add")
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .status()
            .expect("ssh-add");
        assert!(added.success(), "ssh-add");
        agent
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the stand-ins for the registry images the corpus files name (`mariadb:10-focal`,
/// `nginx`) on the local engine, from their folders under `dir`.
fn build_stand_ins(dir: &std::path::Path) {
    use hoist_core::desired::{ImageSource, ImageSpec};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let local = hoist_remote::images::local().expect("local engine");
        for (folder, reference) in [("mariadb", "mariadb:10-focal"), ("nginx", "nginx:latest")] {
            let spec = ImageSpec {
                reference: reference.into(),
                source: ImageSource::Build {
                    context: folder.into(),
                    dockerfile: "Dockerfile".into(),
                    args: Default::default(),
                    context_hash: "stand-in".into(),
                    binaries: Default::default(),
                    target: None,
                    session: Default::default(),
                },
            };
            hoist_remote::images::build(&local, dir, &spec)
                .await
                .unwrap_or_else(|e| panic!("stand-in {reference}: {e}"));
        }
    });
}
