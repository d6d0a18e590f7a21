//! `hoist check`: load and check everything, offline, and report every problem with its location.

use hoist_core::diag::{Diagnostics, Kind};
use hoist_core::project;
use hoist_core::render;
use hoist_core::secret::Redactor;
use hoist_core::vars::SecretsMode;
use hoist_core::vault::Keyring;

use crate::cli::Global;
use crate::output::Output;

pub fn run(global: &Global, out: &Output) -> anyhow::Result<u8> {
    let targets = match &global.inventory {
        Some(i) => vec![i.clone()],
        None => super::inventories(&global.project),
    };
    if targets.is_empty() {
        anyhow::bail!(
            "no inventory found under {}/inventory: pass -i <dir>",
            global.project.display()
        );
    }
    let mut diags = Diagnostics::new();
    // One redactor for every inventory: a diagnostic of the first may hold a secret of the last.
    let redactor = Redactor::new();
    out.use_redactor(&redactor);
    for inv in &targets {
        let mut own = Diagnostics::new();
        if let Some(p) = super::load_project(global, inv, SecretsMode::Optional, &mut own)? {
            redactor.absorb(&p.redactor);
            // What a command has yet to generate (the sandbox's keys and certificates) is one line,
            // not every problem its absence causes.
            let pending = p.inventory.missing_generated(&p.source);
            if !pending.is_empty() {
                for (g, missing) in pending {
                    diags.warning(
                        &p.inventory.file,
                        g.loc,
                        "generated",
                        Kind::Io,
                        format!(
                            "`{}` generates {}: run it, then check this inventory",
                            g.by,
                            missing.join(", ")
                        ),
                    );
                }
                // Kept: every problem the missing files do not explain (undefined variables and
                // unreadable files are what their absence causes).
                diags.extend(own.without(&[Kind::UndefinedVariable, Kind::Io]));
                continue;
            }
            project::check(&p, &mut own);
            redactor.absorb(&p.redactor);
        }
        diags.extend(own);
    }
    let errors = diags.error_count();
    if out.json {
        out.print(&render::diagnostics_json(&diags, &redactor));
    } else {
        out.print(&render::diagnostics_text(&diags, out.color(), &redactor));
        let warnings = diags.sorted().len() - errors;
        let names: Vec<String> = targets.iter().map(|p| p.display().to_string()).collect();
        let key_note = if Keyring::from_env().ok().flatten().is_none() {
            " (no age key: encrypted values were checked as placeholders)"
        } else {
            ""
        };
        out.print(&format!(
            "checked {}: {errors} error(s), {warnings} warning(s){key_note}\n",
            names.join(", ")
        ));
    }
    Ok(if errors > 0 { 1 } else { 0 })
}
