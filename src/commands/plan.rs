//! `hoist plan`: what applying a playbook would change, against observed state.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hoist_core::diag::Diagnostics;
use hoist_core::observed;
use hoist_core::plan;
use hoist_core::playbook;
use hoist_core::render;
use hoist_core::vars::SecretsMode;

use crate::cli::{Global, PlanArgs};
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

pub fn run(global: &Global, args: &PlanArgs, out: &Output) -> anyhow::Result<u8> {
    let inv = super::inventory_dir(global)?;
    let mut diags = Diagnostics::new();
    let project = super::load_project(global, &inv, SecretsMode::Required, &mut diags)?;
    let path = playbook_path(&global.project, &args.playbook);
    let (Some(project), book) = (project, playbook::load(&global.project, &path, &mut diags))
    else {
        return report(&diags, out);
    };
    out.use_redactor(&project.redactor);
    let Some(book) = book else {
        return report_with(&diags, out, &project.redactor);
    };
    let limit = match &args.limit {
        Some(p) => Some(project.inventory.select(p).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let desired = project.desired(&book, limit.as_deref(), &mut diags);
    if diags.has_errors() {
        return report_with(&diags, out, &project.redactor);
    }
    let Some(dir) = &args.observed else {
        anyhow::bail!(
            "observing live hosts is not available yet: pass --observed <dir> with a recorded snapshot (<dir>/<host>.json per host)"
        );
    };
    let hosts: Vec<String> = desired.hosts.keys().cloned().collect();
    let observed = observed::load_snapshot(dir, &hosts)
        .map_err(anyhow::Error::msg)
        .context("reading the observed snapshot")?;
    let plan = plan::diff(
        &desired,
        &observed,
        &book.source.0,
        &project.inventory.name,
        &project.redactor,
    );
    if !diags.is_empty() {
        out.eprint(&render::diagnostics_text(
            &diags,
            out.stderr_color(),
            &project.redactor,
        ));
    }
    let json = render::plan_json(&plan, &project.redactor);
    if let Some(file) = &args.out {
        std::fs::write(file, &json).with_context(|| format!("writing {}", file.display()))?;
    }
    if out.json {
        out.print(&json);
    } else {
        out.print(&render::plan_text(&plan, out.color(), &project.redactor));
    }
    Ok(if plan.has_changes() { 2 } else { 0 })
}

fn report(diags: &Diagnostics, out: &Output) -> anyhow::Result<u8> {
    report_with(diags, out, &hoist_core::secret::Redactor::new())
}

fn report_with(
    diags: &Diagnostics,
    out: &Output,
    redactor: &hoist_core::secret::Redactor,
) -> anyhow::Result<u8> {
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
