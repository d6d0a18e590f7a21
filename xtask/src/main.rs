//! `cargo xtask <task>`: the project's automation, in Rust rather than shell.
//!
//! - `ci`: every check CI runs, in order: formatting, clippy with warnings denied, every test, then
//!   the end-to-end suite on the real sandbox.
//! - `e2e`: the end-to-end suite alone (starts the sandbox; needs root on Debian, or a running
//!   Docker engine).
//! - `fmt`: format the workspace.

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
    cargo(&["test", "--workspace", "--locked"])?;
    e2e()?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

fn e2e() -> anyhow::Result<()> {
    cargo(&["test", "--locked", "--test", "e2e", "--", "--nocapture"])
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
