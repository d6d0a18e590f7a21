//! `hoist sandbox`: the local sandbox of test hosts.

use hoist_core::diag::Diagnostics;
use hoist_core::render;
use hoist_core::secret::Redactor;
use hoist_core::source::Source;
use hoist_ops::sandbox;

use crate::cli::{Global, SandboxCommand};
use crate::output::Output;

pub fn run(global: &Global, cmd: SandboxCommand, out: &Output) -> anyhow::Result<u8> {
    let dir = global.project.join(sandbox::INVENTORY);
    let mut diags = Diagnostics::new();
    let Some(inv) = hoist_core::inventory::load(
        &Source::disk(),
        &global.project,
        &dir,
        super::home().as_deref(),
        &mut diags,
    ) else {
        out.eprint(&render::diagnostics_text(
            &diags,
            out.stderr_color(),
            &Redactor::new(),
        ));
        return Ok(1);
    };
    let progress = |m: &str| out.eprint(&format!("sandbox: {m}\n"));
    let rt = tokio::runtime::Runtime::new()?;
    match cmd {
        SandboxCommand::Init => {
            let hosts = sandbox::hosts(&inv, None)?;
            let addresses: Vec<String> = hosts.iter().map(|h| h.address.clone()).collect();
            let wrote = sandbox::material::init(&global.project, &addresses)?;
            if wrote.is_empty() {
                progress("key and TLS material already present");
            }
            for p in wrote {
                progress(&format!("wrote {}", p.display()));
            }
        }
        SandboxCommand::Up { hosts } => {
            let hosts = sandbox::hosts(&inv, hosts)?;
            rt.block_on(sandbox::up(&global.project, &hosts, &progress))?;
            let names: Vec<String> = hosts
                .iter()
                .map(|h| format!("{} ({})", h.name, h.address))
                .collect();
            out.print(&format!(
                "sandbox up: {}\nnext: hoist -i {} plan playbooks/site.yml\n",
                names.join(", "),
                sandbox::INVENTORY
            ));
        }
        SandboxCommand::Down => {
            rt.block_on(sandbox::down(&progress))?;
            out.print("sandbox down\n");
        }
        SandboxCommand::Status => {
            let hosts = sandbox::hosts(&inv, None)?;
            for (h, state) in rt.block_on(sandbox::status(&hosts))? {
                out.print(&format!("{:<12} {:<15} {state}\n", h.name, h.address));
            }
        }
    }
    Ok(0)
}
