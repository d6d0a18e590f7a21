//! `hoist inventory show` and `hoist inventory import`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context as _;
use hoist_core::diag::{Diagnostics, SourceName};
use hoist_core::inventory::ini;
use hoist_core::project::Project;
use hoist_core::render;
use hoist_core::secret::{REDACTED, Redactor};
use hoist_core::stack;
use hoist_core::vars::{HostVars, SecretsMode};
use serde::Serialize;

use crate::cli::{Global, InventoryCommand};
use crate::output::Output;

/// Built-in variables, left out of `show` (they describe the whole inventory, not the host).
const HIDDEN: &[&str] = &["groups", "hostvars"];

#[derive(Serialize)]
struct ShownHost {
    address: String,
    user: String,
    port: u16,
    groups: Vec<String>,
    vars: BTreeMap<String, ShownVar>,
    /// Per stack with a `.env` beside it: each of its values as this host's interpolation sees
    /// it (the inventory's variable of that name wins over the `.env`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    stacks: BTreeMap<String, BTreeMap<String, ShownVar>>,
}

#[derive(Serialize)]
struct ShownVar {
    value: serde_json::Value,
    origin: String,
    secret: bool,
}

pub fn run(global: &Global, cmd: InventoryCommand, out: &Output) -> anyhow::Result<u8> {
    match cmd {
        InventoryCommand::Show { host } => show(global, host.as_deref(), out),
        InventoryCommand::Import { ini, out: dir } => import(&ini, dir.as_deref(), out),
    }
}

fn show(global: &Global, only: Option<&str>, out: &Output) -> anyhow::Result<u8> {
    let Some(project) = super::load(global, SecretsMode::Optional, out)? else {
        return Ok(1);
    };
    let redactor = project.redactor.clone();
    if let Some(h) = only
        && !project.inventory.hosts.contains_key(h)
    {
        anyhow::bail!(
            "no host named `{h}` in inventory {}",
            project.inventory.name
        );
    }
    let mut hosts = BTreeMap::new();
    for (name, host) in &project.inventory.hosts {
        if only.is_some_and(|h| h != name) {
            continue;
        }
        let vars = &project.vars[name];
        let plain = vars.values.iter().map(|(k, v)| (k, v.clone(), false));
        let secret = vars
            .secrets
            .keys()
            .map(|k| (k, serde_json::Value::String(REDACTED.into()), true));
        let shown = plain
            .chain(secret)
            .filter(|(k, _, _)| !HIDDEN.contains(&k.as_str()))
            .map(|(k, value, secret)| {
                (
                    k.clone(),
                    ShownVar {
                        value,
                        origin: vars.origins[k].0.clone(),
                        secret,
                    },
                )
            })
            .collect();
        hosts.insert(
            name.clone(),
            ShownHost {
                address: host.address.clone(),
                user: host.connection.user.clone(),
                port: host.connection.port,
                groups: host.groups.clone(),
                vars: shown,
                stacks: dotenv_values(&project, vars),
            },
        );
    }
    if out.json {
        let doc = serde_json::json!({"schema": "hoist.inventory/v1", "inventory": project.inventory.name, "hosts": hosts});
        out.print(&render::json(&doc, &redactor));
        return Ok(0);
    }
    out.print(&text(&hosts, &redactor));
    Ok(0)
}

/// The values of each stack's `.env` as `vars`' host interpolates them ([`stack::lookup`]: the
/// inventory's variable of the same name wins). A value whose name says it is a secret is shown
/// redacted, as the inventory's secrets are.
fn dotenv_values(
    project: &Project,
    vars: &HostVars,
) -> BTreeMap<String, BTreeMap<String, ShownVar>> {
    let mut stacks = BTreeMap::new();
    for file in project.stacks.values() {
        let Some(env_file) = &file.dotenv_file else {
            continue;
        };
        let values = file
            .dotenv
            .keys()
            .filter_map(|k| {
                let (value, from) = stack::lookup(vars, &file.dotenv, k)?;
                let origin = match from {
                    stack::ValueOrigin::Inventory => {
                        format!("{} (over {env_file})", vars.origins[k].0)
                    }
                    stack::ValueOrigin::DotEnv => env_file.clone(),
                };
                let secret = vars.secrets.contains_key(k) || stack::names_a_secret(k);
                let value = if secret { REDACTED.to_owned() } else { value };
                let shown = ShownVar {
                    value: value.into(),
                    origin,
                    secret,
                };
                Some((k.clone(), shown))
            })
            .collect();
        stacks.insert(file.name.clone(), values);
    }
    stacks
}

fn text(hosts: &BTreeMap<String, ShownHost>, redactor: &Redactor) -> String {
    let mut s = String::new();
    for (name, h) in hosts {
        let _ = writeln!(
            s,
            "{name} ({}@{}:{}) groups: {}",
            h.user,
            h.address,
            h.port,
            if h.groups.is_empty() {
                "-".to_owned()
            } else {
                h.groups.join(", ")
            }
        );
        vars_text(&mut s, "  ", &h.vars);
        for (stack, values) in &h.stacks {
            let _ = writeln!(s, "  stack {stack}, from its .env:");
            vars_text(&mut s, "    ", values);
        }
        let _ = writeln!(s);
    }
    redactor.redact(&s)
}

fn vars_text(s: &mut String, indent: &str, vars: &BTreeMap<String, ShownVar>) {
    let width = vars.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in vars {
        let value = if v.secret {
            REDACTED.to_owned()
        } else {
            serde_json::to_string(&v.value).unwrap_or_default()
        };
        let _ = writeln!(s, "{indent}{k:<width$} = {value}  # {}", v.origin);
    }
}

fn import(
    path: &std::path::Path,
    dir: Option<&std::path::Path>,
    out: &Output,
) -> anyhow::Result<u8> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut diags = Diagnostics::new();
    let file = SourceName(path.display().to_string());
    let Some(imported) = ini::import(&file, &text, &mut diags) else {
        out.eprint(&render::diagnostics_text(
            &diags,
            out.stderr_color(),
            &Redactor::new(),
        ));
        return Ok(1);
    };
    for note in &imported.notes {
        out.eprint(&format!("note: {note}\n"));
    }
    match dir {
        None => out.print(&imported.hosts_yml),
        Some(dir) => {
            let target = dir.join("hosts.yml");
            if target.exists() {
                anyhow::bail!("{} already exists: not overwriting it", target.display());
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(&target, &imported.hosts_yml)
                .with_context(|| format!("writing {}", target.display()))?;
            out.eprint(&format!("wrote {}\n", target.display()));
        }
    }
    Ok(0)
}
