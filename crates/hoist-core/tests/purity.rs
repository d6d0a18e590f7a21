//! The planner's crate stays pure: no async runtime, SSH, Docker, SQL or HTTP client among its
//! dependencies, however deep. Checked over `cargo tree`, not by good intentions.

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "openssh",
    "bollard",
    "sqlx",
    "reqwest",
    "hyper",
    "russh",
    "async-std",
    "mio",
];

#[test]
fn hoist_core_depends_on_no_io_stack() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--package",
            "hoist-core",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"minijinja"),
        "cargo tree output looks wrong: {tree}"
    );
    for f in FORBIDDEN {
        assert!(!names.contains(f), "hoist-core depends on {f}:\n{tree}");
    }
}
