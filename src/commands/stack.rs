//! `hoist stack export`: a stack as a plain compose file for one host.

use anyhow::bail;
use hoist_core::diag::Diagnostics;
use hoist_core::render;
use hoist_core::stack::export;
use hoist_core::vars::SecretsMode;

use crate::cli::{Global, StackCommand};
use crate::output::Output;

pub fn run(global: &Global, cmd: StackCommand, out: &Output) -> anyhow::Result<u8> {
    match cmd {
        StackCommand::Export { stack, host } => export_stack(global, &stack, &host, out),
    }
}

fn export_stack(global: &Global, name: &str, host: &str, out: &Output) -> anyhow::Result<u8> {
    let Some(project) = super::load(global, SecretsMode::Optional, out)? else {
        return Ok(1);
    };
    let Some(file) = project.stacks.get(name) else {
        bail!("no stack `{name}` (stacks/{name}.yml)");
    };
    if !project.inventory.hosts.contains_key(host) {
        bail!(
            "no host named `{host}` in inventory {}",
            project.inventory.name
        );
    }
    let mut diags = Diagnostics::new();
    let lowered = project.lower(file, host, &[], &mut diags);
    if !diags.is_empty() {
        out.eprint(&render::diagnostics_text(
            &diags,
            out.stderr_color(),
            &project.redactor,
        ));
    }
    let Some(stack) = lowered.filter(|_| !diags.has_errors()) else {
        return Ok(1);
    };
    let doc = export::export(&stack, &project.vars[host]);
    // A value made from a secret (a filtered form, a secret `.env` value) has no `${name}` to
    // stand for it: it is printed masked, and the file needs it filled in.
    let shown = project.redactor.redact(&doc.to_string());
    if shown.contains(hoist_core::secret::REDACTED) {
        out.eprint(&format!(
            "warning: some values are made from secrets and shown as {}: fill them in before using the file\n",
            hoist_core::secret::REDACTED
        ));
    }
    if out.json {
        out.print(&render::json(&doc, &project.redactor));
    } else {
        out.print(&export::to_yaml(&doc));
    }
    Ok(0)
}
