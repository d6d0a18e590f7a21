//! The binaries hoist adds to an image's build context (`x-hoist-binaries`): a package of this
//! workspace, built in release mode, or a crate from crates.io, installed once per version and
//! features into a cache outside the project (`HOIST_CACHE_DIR`, else `$XDG_CACHE_HOME/hoist`, else
//! `~/.cache/hoist`), so a fresh clone reuses it and nothing built is committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hoist_core::desired::Binary;

use crate::error::{RemoteError, Result};

fn failure(detail: String) -> RemoteError {
    RemoteError::other("localhost", detail)
}

/// Where crates.io binaries are cached.
pub fn cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("HOIST_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("hoist")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/hoist")))
        .unwrap_or_else(|| PathBuf::from(".hoist/cache"))
}

/// The folder a crate's installation lives in: one per name, version and features.
pub fn crate_root(cache: &Path, name: &str, version: &str, features: &[String]) -> PathBuf {
    let mut dir = format!("{name}-{version}");
    if !features.is_empty() {
        dir.push('+');
        dir.push_str(&features.join("+"));
    }
    cache.join("bin").join(dir)
}

/// What a build never inherits from hoist: the key to the secrets, and the SSH agent (a build
/// script can run anything).
const SCRUBBED: [&str; 3] = ["HOIST_AGE_KEY", "HOIST_AGE_KEY_FILE", "SSH_AUTH_SOCK"];

/// `cargo` (or `$CARGO`), with [`SCRUBBED`] removed from its environment.
fn cargo_command(program: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    for name in SCRUBBED {
        c.env_remove(name);
    }
    c
}

async fn cargo(args: &[String], cwd: &Path) -> Result<()> {
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    tracing::info!("running {program} {}", args.join(" "));
    // An apply that ends while a build is under way (its host failed) stops the build too.
    let out = cargo_command(&program)
        .args(args)
        .current_dir(cwd)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            failure(format!(
                "running {program}: {e} (is a Rust toolchain installed?)"
            ))
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(failure(format!(
            "`{program} {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            tail.join("\n")
        )));
    }
    Ok(())
}

/// The workspace's target folder, as cargo reports it (the project may be a folder inside the
/// workspace, and `CARGO_TARGET_DIR` or a config may move it).
async fn target_dir(root: &Path) -> Result<PathBuf> {
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = cargo_command(&program)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .await
        .map_err(|e| failure(format!("running {program} metadata: {e}")))?;
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        failure(format!(
            "reading `cargo metadata` in {}: {e}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| failure("`cargo metadata` names no target directory".into()))
}

/// Builds or finds each binary; returns its file name in the context and its path.
pub async fn prepare(
    root: &Path,
    binaries: &BTreeMap<String, Binary>,
) -> Result<Vec<(String, PathBuf)>> {
    prepare_with_cache(&cache_dir(), root, binaries).await
}

async fn prepare_with_cache(
    cache: &Path,
    root: &Path,
    binaries: &BTreeMap<String, Binary>,
) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for (name, binary) in binaries {
        let path = match binary {
            Binary::Workspace { package, .. } => {
                let args = [
                    "build",
                    "--release",
                    "--locked",
                    "-p",
                    package,
                    "--bin",
                    name,
                ]
                .map(String::from)
                .to_vec();
                cargo(&args, root).await?;
                target_dir(root).await?.join("release").join(name)
            }
            Binary::Crate {
                name: krate,
                version,
                features,
            } => {
                let dir = crate_root(cache, krate, version, features);
                let path = dir.join("bin").join(name);
                if !path.is_file() {
                    install(krate, version, features, &dir, root).await?;
                }
                path
            }
        };
        if !path.is_file() {
            return Err(failure(format!(
                "the build did not produce {}",
                path.display()
            )));
        }
        out.push((name.clone(), path));
    }
    Ok(out)
}

/// `cargo install` into a fresh folder beside `dir`, then renamed into place: an interrupted
/// install never looks complete.
async fn install(
    krate: &str,
    version: &str,
    features: &[String],
    dir: &Path,
    cwd: &Path,
) -> Result<()> {
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent)
        .map_err(|e| failure(format!("creating {}: {e}", parent.display())))?;
    let staging = parent.join(format!(
        ".{}.{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("crate"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let mut args = vec![
        "install".to_owned(),
        krate.to_owned(),
        "--version".into(),
        format!("={version}"),
        "--locked".into(),
        "--root".into(),
        staging.to_string_lossy().into_owned(),
    ];
    if !features.is_empty() {
        args.push("--features".into());
        args.push(features.join(","));
    }
    let result = cargo(&args, cwd).await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        return result;
    }
    match std::fs::rename(&staging, dir) {
        Ok(()) => Ok(()),
        // Another run finished first: keep its copy.
        Err(_) if dir.join("bin").is_dir() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(e) => Err(failure(format!(
            "moving {} into place: {e}",
            staging.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cached_crate_is_used_without_building() {
        let cache = std::env::temp_dir().join(format!("hoist-bin-test-{}", std::process::id()));
        let dir = crate_root(&cache, "garage", "2.5.0", &[]);
        std::fs::create_dir_all(dir.join("bin")).expect("mkdir");
        std::fs::write(dir.join("bin/garage"), b"#!/bin/sh\n").expect("write");
        let binaries = BTreeMap::from([(
            "garage".to_owned(),
            Binary::Crate {
                name: "garage".into(),
                version: "2.5.0".into(),
                features: vec![],
            },
        )]);
        let found = prepare_with_cache(&cache, Path::new("."), &binaries)
            .await
            .expect("prepare");
        assert_eq!(found, vec![("garage".to_owned(), dir.join("bin/garage"))]);
        let _ = std::fs::remove_dir_all(&cache);
    }
}
