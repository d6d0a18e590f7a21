//! `apm-api check-cluster` against a real PostgreSQL (`APM_TEST_POSTGRES`) and a dead address.

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

fn run(hosts: &str) -> (i32, String, String) {
    let url = url::Url::parse(&std::env::var("APM_TEST_POSTGRES").expect("APM_TEST_POSTGRES"))
        .expect("url");
    let out = Command::new(env!("CARGO_BIN_EXE_apm-api"))
        .args(["check-cluster", "--hosts", hosts, "--timeout", "3"])
        .env_clear()
        .env("POSTGRES_DB", url.path().trim_start_matches('/'))
        .env("POSTGRES_USER", url.username())
        .env("POSTGRES_PASSWORD", url.password().unwrap_or_default())
        .output()
        .expect("apm-api");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn reports_each_host_like_the_original() {
    let url = url::Url::parse(&std::env::var("APM_TEST_POSTGRES").expect("APM_TEST_POSTGRES"))
        .expect("url");
    let primary = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let (code, out, err) = run(&primary);
    assert_eq!(code, 0, "{out}{err}");
    let line = regex::Regex::new(&format!(
        r"^{} ok \(role=primary, temp rows=1, \d+ms\)\n$",
        regex::escape(&primary)
    ))
    .expect("re");
    assert!(line.is_match(&out), "{out:?}");

    let (code, out, err) = run(&format!("{primary},127.0.0.1:9"));
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!("{primary} ok (role=primary")),
        "{out}"
    );
    assert!(err.contains("127.0.0.1:9 failed: "), "{err}");
    assert!(
        err.trim_end().ends_with("1 host(s) failed: 127.0.0.1:9"),
        "{err}"
    );
}
