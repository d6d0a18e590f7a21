//! `hoist check`: every playbook's desired state on every host it targets, every stack on every
//! host it is bound to, the syntax of every template, and the connection files.

use crate::diag::{Diagnostics, Kind, SourceName};
use crate::inventory::Inventory;
use crate::playbook;
use crate::source::Source;
use crate::template;

use super::Project;

/// A key or known_hosts file the inventory names but that is not there: ssh would only say the
/// host "refused authentication" or its key "is unknown".
fn connection_files(src: &Source, inv: &Inventory, diags: &mut Diagnostics) {
    for h in inv.hosts.values() {
        let c = &h.connection;
        for (field, path) in [
            ("identity_file", &c.identity_file),
            ("known_hosts_file", &c.known_hosts_file),
        ] {
            if let Some(p) = path
                && !src.is_file(p)
            {
                diags.warning(
                    &inv.file,
                    h.loc,
                    &format!("hosts.{}.{field}", h.name),
                    Kind::Io,
                    format!("{} does not exist", p.display()),
                );
            }
        }
    }
}

/// Loads and checks everything: every playbook's desired state on every host it targets, every stack
/// on every host it is bound to, and the syntax of every template.
pub fn check(project: &Project, diags: &mut Diagnostics) {
    connection_files(&project.source, &project.inventory, diags);
    for path in project.playbook_paths(diags) {
        if let Some(book) = playbook::load(&project.source, &project.root, &path, diags) {
            project.desired(&book, None, diags);
        }
    }
    for file in project.stacks.values() {
        if let Ok(hosts) = project.inventory.select(&file.hosts) {
            for h in hosts {
                project.lower(file, &h, &[], diags);
            }
        }
    }
    let dir = template::templates_dir(&project.root);
    for name in project
        .source
        .files_under(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".j2"))
    {
        if let Err(e) = project.env.get_template(&name) {
            let o = template::Origin {
                file: SourceName(format!("templates/{name}")),
                line_offset: 0,
                field: String::new(),
            };
            template::report(&e, &o, diags);
        }
    }
}
