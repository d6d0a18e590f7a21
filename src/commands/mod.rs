//! One file per command. Each turns its flags into options, calls into `hoist-core`, and prints
//! through [`Output`]; it returns the exit code its outcome means.

mod apply;
mod check;
mod drill;
mod inventory;
mod pki;
mod plan;
mod reference;
mod releases;
mod remote;
mod sandbox;
mod secrets;
mod stack;
mod status;
mod validate;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hoist_core::diag::Diagnostics;
use hoist_core::project::{self, LoadOptions, Project};
use hoist_core::vars::{self, SecretsMode};
use hoist_core::vault::Keyring;

use crate::cli::{Cli, Command, Global};
use crate::output::Output;

pub fn run(cli: Cli, out: &Output) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check => check::run(&cli.global, out),
        Command::Plan(args) => plan::run(&cli.global, &args, out),
        Command::Apply(args) => apply::run(&cli.global, &args, out),
        Command::Status { limit } => status::status(&cli.global, limit.as_deref(), out),
        Command::Rollback { to, apply } => apply::rollback(&cli.global, &apply, to, out),
        Command::Releases { limit } => releases::run(&cli.global, limit.as_deref(), out),
        Command::Logs {
            host,
            service,
            tail,
        } => status::logs(&cli.global, &host, &service, tail, out),
        Command::Inventory(cmd) => inventory::run(&cli.global, cmd, out),
        Command::Stack(cmd) => stack::run(&cli.global, cmd, out),
        Command::Secrets(cmd) => secrets::run(cmd, out),
        Command::Pki(cmd) => pki::run(&cli.global, cmd, out),
        Command::Drill(cmd) => drill::run(&cli.global, cmd, out),
        Command::Validate { only } => validate::run(&cli.global, &only, out),
        Command::Sandbox(cmd) => sandbox::run(&cli.global, cmd, out),
        Command::Completions { shell } => reference::completions(shell, out),
        Command::Man { out: dir } => reference::man(&dir, out),
        Command::Reference => reference::markdown(out),
    }
}

/// A cancellation token that Ctrl-C, SIGTERM and SIGHUP cancel: operations stop at their next step
/// and put back what they must (locks released, a drill's topology restored). Called inside the
/// runtime.
pub fn cancellation() -> tokio_util::sync::CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    let kinds = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ];
    let mut streams: Vec<_> = kinds.into_iter().filter_map(|k| signal(k).ok()).collect();
    tokio::spawn(async move {
        any_signal(&mut streams).await;
        cancel.cancel();
        // A second signal ends hoist at once, for a host that does not answer any more; a lock
        // left behind is broken by the next run (its process is gone).
        any_signal(&mut streams).await;
        std::process::exit(130);
    });
    token
}

/// The user's home, for `~/` in inventory paths.
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

async fn any_signal(streams: &mut [tokio::signal::unix::Signal]) {
    if streams.is_empty() {
        return std::future::pending().await;
    }
    futures_util::future::select_all(streams.iter_mut().map(|s| Box::pin(s.recv()))).await;
}

/// The inventory folder to use: `-i`, or the only one the project has.
fn inventory_dir(global: &Global) -> anyhow::Result<PathBuf> {
    if let Some(i) = &global.inventory {
        return Ok(i.clone());
    }
    let all = inventories(&global.project);
    match all.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!("no inventory: pass -i <dir> (a folder holding hosts.yml)"),
        many => anyhow::bail!(
            "several inventories ({}): choose one with -i",
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Every `inventory/<name>/` of the project that holds a hosts.yml.
fn inventories(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root.join("inventory"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("hosts.yml").is_file())
        .map(|p| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p))
        .collect();
    out.sort();
    out
}

/// Loads the project of the chosen inventory: the one loading path of the commands that reach
/// hosts. The project's redactor is installed on `out` before anything is printed, and every
/// diagnostic is printed (warnings too); on an error, None (exit 1).
fn load(global: &Global, secrets: SecretsMode, out: &Output) -> anyhow::Result<Option<Project>> {
    let inv = inventory_dir(global)?;
    let mut diags = Diagnostics::new();
    let project = load_project(global, &inv, secrets, &mut diags)?;
    let redactor = project
        .as_ref()
        .map(|p| p.redactor.clone())
        .unwrap_or_default();
    out.use_redactor(&redactor);
    if !diags.is_empty() {
        out.eprint(&hoist_core::render::diagnostics_text(
            &diags,
            out.stderr_color(),
            &redactor,
        ));
    }
    if diags.has_errors() {
        if let Some(p) = &project {
            note_generated(p, out);
        }
        return Ok(None);
    }
    Ok(project)
}

/// After errors: what commands generate for this inventory that is still missing (the
/// sandbox's certificates, before `hoist sandbox init`), likely the cause.
pub(super) fn note_generated(p: &Project, out: &Output) {
    for (g, missing) in p.inventory.missing_generated(&p.source) {
        out.eprint(&format!(
            "note: `{}` generates what {} lacks ({})\n",
            g.by,
            p.inventory.dir.display(),
            missing.join(", ")
        ));
    }
}

/// Loads the project for `inventory`; diagnostics are collected, not printed.
fn load_project(
    global: &Global,
    inventory: &Path,
    secrets: SecretsMode,
    diags: &mut Diagnostics,
) -> anyhow::Result<Option<Project>> {
    let keyring = Keyring::from_env().context("loading the age key")?;
    let extra_vars = vars::parse_extra(&global.extra_vars).map_err(anyhow::Error::msg)?;
    let opts = LoadOptions {
        root: global.project.clone(),
        inventory: inventory.to_path_buf(),
        extra_vars,
        secrets,
        keyring,
        source: hoist_core::source::Source::disk(),
        home: home(),
    };
    Ok(project::load(opts, diags))
}
