//! `hoist plan`: what applying a playbook would change, against live hosts or a recorded snapshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hoist_core::desired::Desired;
use hoist_core::diag::Diagnostics;
use hoist_core::observed::{self, Observed};
use hoist_core::plan::{self, Plan};
use hoist_core::playbook::{self, Playbook};
use hoist_core::project::Project;
use hoist_core::render;
use hoist_core::secret::Redactor;
use hoist_core::vars::SecretsMode;
use hoist_remote::{RemoteError, SshHost};

use crate::cli::{Global, PlanArgs};
use crate::commands::remote;
use crate::output::Output;

/// Finds a playbook given as a path or as a name under playbooks/.
pub fn playbook_path(root: &Path, given: &Path) -> PathBuf {
    let candidates = [
        given.to_path_buf(),
        root.join(given),
        root.join("playbooks").join(given),
        root.join("playbooks").join(given).with_extension("yml"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| root.join(given))
}

/// A loaded project, the playbook, and the desired state of the hosts it touches (after --limit).
pub struct Loaded {
    pub project: Project,
    pub book: Playbook,
    pub desired: Desired,
}

/// Loads everything; on input errors prints them and returns the exit code.
pub fn load(
    global: &Global,
    playbook: &Path,
    limit: Option<&str>,
    out: &Output,
) -> anyhow::Result<Result<Loaded, u8>> {
    let inv = super::inventory_dir(global)?;
    let mut diags = Diagnostics::new();
    let project = super::load_project(global, &inv, SecretsMode::Required, &mut diags)?;
    let path = playbook_path(&global.project, playbook);
    let book = playbook::load(
        &hoist_core::source::Source::disk(),
        &global.project,
        &path,
        &mut diags,
    );
    let Some(project) = project else {
        return report(&diags, out, &Redactor::new()).map(Err);
    };
    out.use_redactor(&project.redactor);
    let Some(book) = book else {
        return report(&diags, out, &project.redactor).map(Err);
    };
    let limit = match limit {
        Some(p) => Some(project.inventory.select(p).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let desired = project.desired(&book, limit.as_deref(), &mut diags);
    if diags.has_errors() {
        let code = report(&diags, out, &project.redactor);
        super::note_generated(&project, out);
        return code.map(Err);
    }
    if !diags.is_empty() {
        out.eprint(&render::diagnostics_text(
            &diags,
            out.stderr_color(),
            &project.redactor,
        ));
    }
    Ok(Ok(Loaded {
        project,
        book,
        desired,
    }))
}

/// Connects to the desired hosts and observes them; unreachable hosts are returned apart.
pub async fn observe_live(
    global: &Global,
    loaded: &Loaded,
) -> (
    BTreeMap<String, SshHost>,
    Observed,
    BTreeMap<String, RemoteError>,
) {
    let names: Vec<String> = loaded.desired.hosts.keys().cloned().collect();
    let (hosts, mut failed) = remote::connect(&loaded.project.inventory, &names, global).await;
    let (observed, obs_failed) =
        hoist_ops::observe::all(&hosts, &loaded.desired, global.forks).await;
    failed.extend(obs_failed);
    (hosts, observed, failed)
}

/// The plan of the hosts that could be observed.
pub fn make_plan(
    loaded: &Loaded,
    observed: &Observed,
    failed: &BTreeMap<String, RemoteError>,
) -> Plan {
    let mut desired = loaded.desired.clone();
    desired.hosts.retain(|h, _| !failed.contains_key(h));
    plan::diff(
        &desired,
        observed,
        &loaded.book.source.0,
        &loaded.project.inventory.name,
        &loaded.project.redactor,
    )
}

pub fn run(global: &Global, args: &PlanArgs, out: &Output) -> anyhow::Result<u8> {
    let loaded = match load(global, &args.playbook, args.limit.as_deref(), out)? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let redactor = loaded.project.redactor.clone();
    let (plan, failed) = match &args.observed {
        Some(dir) => {
            let hosts: Vec<String> = loaded.desired.hosts.keys().cloned().collect();
            let observed = observed::load_snapshot(dir, &hosts)
                .map_err(anyhow::Error::msg)
                .context("reading the observed snapshot")?;
            (
                make_plan(&loaded, &observed, &BTreeMap::new()),
                BTreeMap::new(),
            )
        }
        None => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let (hosts, observed, failed) = observe_live(global, &loaded).await;
                let plan = make_plan(&loaded, &observed, &failed);
                remote::close(hosts).await;
                (plan, failed)
            })
        }
    };
    let json = render::plan_json(&plan, &redactor);
    if let Some(file) = &args.out {
        // 0600: a plan holds the inventory's layout, diffs and hashes, for its owner only.
        super::secrets::write_atomic_private(file, &json)?;
    }
    if out.json {
        out.print(&json);
    } else {
        out.print(&render::plan_text(&plan, out.color(), &redactor));
    }
    for e in failed.values() {
        out.error(&e.to_string());
    }
    if !failed.is_empty() {
        return Ok(1);
    }
    Ok(if plan.has_changes() { 2 } else { 0 })
}

pub fn report(diags: &Diagnostics, out: &Output, redactor: &Redactor) -> anyhow::Result<u8> {
    if out.json {
        out.print(&render::diagnostics_json(diags, redactor));
    } else {
        out.eprint(&render::diagnostics_text(
            diags,
            out.stderr_color(),
            redactor,
        ));
        out.eprint(&format!(
            "{} error(s): nothing was planned\n",
            diags.error_count()
        ));
    }
    Ok(1)
}
