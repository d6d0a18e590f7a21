//! `hoist sandbox`: the local sandbox of test hosts.

use hoist_core::diag::Diagnostics;
use hoist_core::render;
use hoist_core::secret::Redactor;

use crate::cli::{Global, SandboxCommand};
use crate::output::Output;
use crate::sandbox;

pub fn run(global: &Global, cmd: SandboxCommand, out: &Output) -> anyhow::Result<u8> {
    match cmd {
        SandboxCommand::Init => {
            let dir = global.project.join(sandbox::INVENTORY);
            let mut diags = Diagnostics::new();
            let Some(inv) = hoist_core::inventory::load(&global.project, &dir, &mut diags) else {
                out.eprint(&render::diagnostics_text(
                    &diags,
                    out.stderr_color(),
                    &Redactor::new(),
                ));
                return Ok(1);
            };
            let addresses: Vec<String> = inv.hosts.values().map(|h| h.address.clone()).collect();
            let wrote = sandbox::init(&global.project, &addresses)?;
            if wrote.is_empty() {
                out.eprint("sandbox material already present\n");
            }
            for p in wrote {
                out.eprint(&format!("wrote {}\n", p.display()));
            }
            Ok(0)
        }
    }
}
