//! A project: the folder holding `inventory/`, `vars/`, `templates/`, `stacks/` and `playbooks/`,
//! loaded for one inventory, and the desired state a playbook asks of it.
//!
//! - this module: loading (`load`, `Project`, lowering a stack, rendering a template).
//! - `steps`: a playbook's steps into each host's desired state ([`Project::desired`]).
//! - `stacks`: a stack step lowered into images, networks, volumes, containers and files.
//! - `context`: [`context_hash`], what decides whether an image is built again.
//! - `check`: [`check`], everything at once, for `hoist check`.

mod check;
mod context;
mod stacks;
mod steps;

pub use check::check;
pub use context::context_hash;
pub use stacks::container_name;

use std::collections::BTreeMap;
use std::path::PathBuf;

use minijinja::Environment;

use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::inventory::{self, Inventory, normalize};
use crate::secret::Redactor;
use crate::source::Source;
use crate::stack::{self, LowerCtx, Stack, StackFile};
use crate::template;
use crate::vars::{self, HostVars, SecretsMode, VarFile};
use crate::vault::Keyring;

#[derive(Debug)]
pub struct LoadOptions {
    pub root: PathBuf,
    /// The inventory folder (`-i`).
    pub inventory: PathBuf,
    /// `-e name=value`, in order.
    pub extra_vars: Vec<(String, String)>,
    pub secrets: SecretsMode,
    pub keyring: Option<Keyring>,
    /// Where the files are read from (the disk, or a test's fixture).
    pub source: Source,
    /// The user's home, for `~/` in inventory paths (the command layer knows it).
    pub home: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Project {
    pub root: PathBuf,
    pub source: Source,
    pub inventory: Inventory,
    pub defaults: Vec<VarFile>,
    pub stacks: BTreeMap<String, StackFile>,
    pub env: Environment<'static>,
    pub redactor: Redactor,
    /// Resolved variables per host.
    pub vars: BTreeMap<String, HostVars>,
}

/// Loads the project for one inventory. Problems go to `diags`; `None` only when nothing usable remains.
pub fn load(opts: LoadOptions, diags: &mut Diagnostics) -> Option<Project> {
    let root = opts.root.clone();
    let src = opts.source.clone();
    let inv_dir = if opts.inventory.is_absolute() {
        opts.inventory.clone()
    } else {
        root.join(&opts.inventory)
    };
    let mut inventory = inventory::load(
        &src,
        &root,
        &normalize(&inv_dir),
        opts.home.as_deref(),
        diags,
    )?;
    let mut defaults: Vec<VarFile> = src
        .yaml_files(&root, &root.join("vars"), diags)
        .iter()
        .filter_map(|p| VarFile::load(&src, &root, p, diags))
        .collect();

    let redactor = Redactor::new();
    // The key that decrypts the secrets is one: it never shows, whatever file names it.
    for key in opts.keyring.iter().flat_map(Keyring::secret_texts) {
        redactor.add(key.expose());
    }
    {
        let mut all: Vec<&mut VarFile> = defaults.iter_mut().collect();
        all.extend(inventory.all_vars.iter_mut());
        all.extend(inventory.group_vars.values_mut().flatten());
        all.extend(inventory.host_vars.values_mut().flatten());
        vars::unseal(
            &mut all,
            opts.keyring.as_ref(),
            opts.secrets,
            &redactor,
            diags,
        );
    }
    let env = template::environment(Some((&src, &template::templates_dir(&root))), &redactor);
    let vars: BTreeMap<String, HostVars> = inventory
        .hosts
        .values()
        .map(|h| {
            (
                h.name.clone(),
                vars::resolve(
                    &inventory,
                    h,
                    &defaults,
                    &opts.extra_vars,
                    &env,
                    &redactor,
                    diags,
                ),
            )
        })
        .collect();

    let mut stacks = BTreeMap::new();
    for path in src.yaml_files(&root, &root.join("stacks"), diags) {
        if let Some(s) = stack::load(&src, &root, &path, diags) {
            // A `.env` often holds the passwords of a compose file: those of its values whose key
            // names a secret are masked in every output.
            for (key, value) in &s.dotenv {
                if stack::names_a_secret(key) {
                    redactor.add(value);
                }
            }
            if !s.hosts.is_empty()
                && let Err(e) = inventory.select(&s.hosts)
            {
                diags.error(
                    &s.source,
                    s.hosts_loc,
                    "x-hoist.hosts",
                    Kind::UnknownReference,
                    e,
                );
            }
            stacks.insert(s.name.clone(), s);
        }
    }
    // The plan's hash key: from what every run of this inventory knows, not from what rendering
    // the hosts of one run happens to learn (a saved plan and its apply may render other hosts).
    redactor.seal_plan_key();
    Some(Project {
        root,
        source: src,
        inventory,
        defaults,
        stacks,
        env,
        redactor,
        vars,
    })
}

impl Project {
    /// Lowers a stack for a host.
    pub fn lower(
        &self,
        stack: &StackFile,
        host: &str,
        profiles: &[String],
        diags: &mut Diagnostics,
    ) -> Option<Stack> {
        let vars = self.vars.get(host)?;
        let lc = LowerCtx {
            root: &self.root,
            src: &self.source,
            env: &self.env,
            vars,
            host,
            redactor: &self.redactor,
            profiles,
        };
        stack::lower(stack, &lc, diags)
    }

    /// Every playbook of the project.
    pub fn playbook_paths(&self, diags: &mut Diagnostics) -> Vec<PathBuf> {
        self.source
            .yaml_files(&self.root, &self.root.join("playbooks"), diags)
    }

    /// Renders a template file of `templates/` for a host.
    pub fn render_template(
        &self,
        name: &str,
        host: &str,
        origin: &SourceName,
        loc: Loc,
        field: &str,
        diags: &mut Diagnostics,
    ) -> Option<String> {
        let vars = self.vars.get(host)?;
        if !self
            .source
            .is_file(&template::templates_dir(&self.root).join(name))
        {
            diags.error(
                origin,
                loc,
                field,
                Kind::UnknownReference,
                format!("no template templates/{name}"),
            );
            return None;
        }
        match vars.render_tracked(&self.redactor, |ctx| {
            template::render_file(&self.env, name, ctx)
        }) {
            Ok(s) => Some(s),
            Err(e) => {
                let o = template::Origin {
                    file: SourceName(format!("templates/{name}")),
                    line_offset: 0,
                    field: String::new(),
                };
                template::report(&e, &o, diags);
                None
            }
        }
    }

    /// Renders a playbook string field (`dest: "{{ apm_dir }}/x"`) for a host.
    fn render_field(
        &self,
        s: &str,
        host: &str,
        origin: &SourceName,
        loc: Loc,
        field: &str,
        diags: &mut Diagnostics,
    ) -> Option<String> {
        if !template::is_template(s) {
            return Some(s.to_owned());
        }
        let vars = self.vars.get(host)?;
        match vars.render_tracked(&self.redactor, |ctx| {
            template::render_str(&self.env, s, ctx)
        }) {
            Ok(r) => Some(r),
            Err(e) => {
                let o = template::Origin {
                    file: origin.clone(),
                    line_offset: loc.line,
                    field: field.to_owned(),
                };
                template::report(&e, &o, diags);
                None
            }
        }
    }
}
