//! `cargo xtask <task>`: the project's automation, in Rust rather than shell.
//!
//! - `ci`: every check CI runs, in order: formatting, clippy with warnings denied, every test, then
//!   the end-to-end suite on the real sandbox.
//! - `e2e`: the end-to-end suite alone (starts the sandbox; needs root on Debian, or a running
//!   Docker engine).
//!   Then the API's tests again on the platform's database image (TimescaleDB, pgvector).
//! - `fmt`: format the workspace.

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "ci" => ci(),
        "e2e" => e2e(),
        "fmt" => cargo(&["fmt", "--all"]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|e2e|fmt>\n  ci   formatting, clippy (warnings denied), every test, the e2e suite\n  e2e  the end-to-end suite on the sandbox\n  fmt  format the workspace"
            );
            bail!("unknown task {task:?}")
        }
    }
}

fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    // The e2e suite is built only by `cargo xtask e2e` (`test = false`): lint it here, so that it
    // fails in the first minutes rather than after every other test.
    cargo(&[
        "clippy",
        "--workspace",
        "--locked",
        "--test",
        "e2e",
        "--",
        "-D",
        "warnings",
    ])?;
    // The operations on the in-memory fakes and the planner's fixtures first, on their own: no
    // engine, no sshd, no network, in seconds.
    cargo(&[
        "test",
        "--locked",
        "-p",
        "hoist-ops",
        "-p",
        "hoist-remote",
        "--lib",
    ])?;
    cargo(&[
        "test",
        "--locked",
        "-p",
        "hoist-core",
        "--lib",
        "--test",
        "planner",
    ])?;
    cargo(&["test", "--workspace", "--locked"])?;
    e2e()?;
    api_on_database_image()?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

/// The API's tests again, on the platform's database image (TimescaleDB and pgvector), which
/// `scripts/test-postgres-image` builds and starts on the local engine the sandbox set up.
fn api_on_database_image() -> anyhow::Result<()> {
    eprintln!("$ bash scripts/test-postgres-image");
    let out = Command::new("bash")
        .arg("scripts/test-postgres-image")
        .stderr(std::process::Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("scripts/test-postgres-image failed ({})", out.status);
    }
    let url = String::from_utf8(out.stdout)?.trim().to_owned();
    eprintln!("$ cargo test --workspace --test api --test analytics (APM_TEST_POSTGRES={url})");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        // --workspace, so features unify with the earlier runs and nothing is compiled again.
        .args([
            "test",
            "--workspace",
            "--locked",
            "--test",
            "api",
            "--test",
            "analytics",
        ])
        .env("APM_TEST_POSTGRES", &url)
        .env("APM_TEST_EXPECT_EXTENSIONS", "1")
        .status()?;
    if !status.success() {
        bail!("the API tests on the database image failed ({status})");
    }
    Ok(())
}

fn e2e() -> anyhow::Result<()> {
    cargo(&[
        "test",
        "--workspace",
        "--locked",
        "--test",
        "e2e",
        "--",
        "--nocapture",
        // Each test starts from a fresh sandbox: one at a time.
        "--test-threads=1",
    ])
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
