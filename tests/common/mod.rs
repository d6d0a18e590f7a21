//! Helpers shared by the CLI tests: run the real `hoist` binary, find fixtures, load projects.

// Tests and tools run programs (hoist, openssl, cargo, docker) by design.
#![allow(clippy::disallowed_methods)]
#![allow(dead_code)]

pub mod guide;

use std::path::{Path, PathBuf};
use std::process::Command;

use hoist_core::diag::Diagnostics;
use hoist_core::project::{self, LoadOptions, Project};
use hoist_core::vars::SecretsMode;

/// The poison secret planted in the demo fixture; no output may ever contain it.
pub const POISON: &str = "p0ison-S3CRET-value";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn demo() -> PathBuf {
    repo().join("tests/fixtures/demo")
}

/// The test-only age key that decrypts the fixtures' encrypted values.
pub fn test_key() -> PathBuf {
    repo().join("tests/fixtures/keys/test.agekey")
}

/// The second poison: an encrypted value, once decrypted.
pub const POISON_ENCRYPTED: &str = "p0ison-ENCRYPTED-token";

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout and stderr together, for "appears nowhere" checks.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `hoist` with `args` in `dir`: no colour, the fixtures' test key, no inherited settings.
/// An `env` entry with an empty value removes that variable.
pub fn hoist_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("HOIST_AGE_KEY")
        .env_remove("HOIST_AGE_KEY_FILE")
        .env_remove("HOIST_LOG")
        .env("NO_COLOR", "1");
    cmd.env_remove("HOIST_PROJECT")
        .env_remove("HOIST_INVENTORY");
    cmd.env("HOIST_AGE_KEY_FILE", test_key());
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().expect("running hoist");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn hoist(args: &[&str]) -> Run {
    hoist_in(&repo(), args, &[])
}

/// Loads a fixture project the way the CLI does.
pub fn load(root: &Path, inventory: &str) -> (Project, Diagnostics) {
    load_with(root, inventory, &[])
}

/// Loads a project with extra variables (`NAME=VALUE`, as `-e` takes them).
pub fn load_with(root: &Path, inventory: &str, extra: &[&str]) -> (Project, Diagnostics) {
    let mut diags = Diagnostics::new();
    let extra: Vec<String> = extra.iter().map(|e| (*e).to_owned()).collect();
    let opts = LoadOptions {
        root: root.to_path_buf(),
        inventory: PathBuf::from(inventory),
        extra_vars: hoist_core::vars::parse_extra(&extra).expect("extra vars"),
        secrets: SecretsMode::Required,
        keyring: Some(
            hoist_core::vault::Keyring::parse(
                &std::fs::read_to_string(test_key()).expect("key"),
                "test key",
            )
            .expect("key"),
        ),
        source: hoist_core::source::Source::disk(),
        home: None,
    };
    let p = project::load(opts, &mut diags).expect("project loads");
    (p, diags)
}

/// Replaces a temporary folder in output with a stable name.
pub fn scrub(text: &str, tmp: &Path) -> String {
    text.replace(&tmp.display().to_string(), "$TMP")
}

/// Copies a folder recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A scratch copy of the repository's deployment (and `extra` folders), with what the apm-api
/// image's binary is built from (stacks/app.yml, `x-hoist-binaries`).
pub fn deployment_copy(extra: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    for dir in [
        "inventory",
        "vars",
        "templates",
        "stacks",
        "playbooks",
        "images",
    ]
    .iter()
    .chain(extra)
    {
        copy_dir(&repo().join(dir), &tmp.path().join(dir));
    }
    copy_api_inputs(tmp.path());
    tmp
}

/// What the apm-api image's binary is built from (stacks/app.yml, `x-hoist-binaries`).
pub fn copy_api_inputs(to: &Path) {
    for dir in ["crates/apm-api", "migrations", "vendor"] {
        copy_dir(&repo().join(dir), &to.join(dir));
    }
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(repo().join(file), to.join(file)).expect("copy");
    }
}

/// Where `doc` breaks the compose specification's own schema (`tests/fixtures/compose-spec`).
pub fn compose_errors(doc: &serde_json::Value) -> Vec<String> {
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/compose-spec/compose-spec.json"))
            .expect("schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}
