//! Variables: the layers they come from, their precedence, and their resolution per host.
//!
//! Precedence, lowest first: `vars/` of the project (defaults) < inventory `vars:` and
//! `group_vars/all` < `group_vars/<group>` (groups in name order) < host `vars:` and
//! `host_vars/<host>` < `-e name=value`. A later layer replaces a variable whole (no deep merge),
//! as Ansible does by default. String values may be templates over other variables
//! (`"{{ data_node_ip }}:5432"`); they are resolved per host, and cycles are reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use indexmap::IndexMap;
use minijinja::Environment;
use serde_json::Value as Json;

use crate::diag::{Diagnostics, Kind, Loc, SourceName};
use crate::inventory::{Host, Inventory};
use crate::secret::{REDACTED, Redactor, Secret};
use crate::source::{Source, is_yaml};
use crate::template;
use crate::vault::{self, Keyring};
use crate::yaml::{self, Ctx, Node};

/// One variable as written in a file.
#[derive(Debug, Clone)]
pub struct VarValue {
    pub value: Json,
    pub loc: Loc,
}

/// The variables of one file (or one `vars:` block).
#[derive(Clone)]
pub struct VarFile {
    pub source: SourceName,
    pub values: IndexMap<String, VarValue>,
    /// Every value here is secret (a `secrets.yml` file).
    pub secret: bool,
}

impl std::fmt::Debug for VarFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("VarFile");
        d.field("source", &self.source)
            .field("secret", &self.secret);
        if self.secret {
            d.field("values", &self.values.keys().collect::<Vec<_>>());
        } else {
            d.field("values", &self.values);
        }
        d.finish()
    }
}

/// Whether `name` can be a variable name (usable in templates and `${...}`).
pub fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl VarFile {
    /// Reads a map of variables from `node`.
    pub fn from_node(ctx: &mut Ctx<'_>, node: &Node, path: &str, secret: bool) -> VarFile {
        let mut values = IndexMap::new();
        for (name, loc, value) in ctx.entries(node, path) {
            if !valid_var_name(&name) {
                ctx.error(
                    loc,
                    &yaml::join(path, &name),
                    Kind::InvalidValue,
                    "variable names use letters, digits and `_`, and do not start with a digit",
                );
                continue;
            }
            values.insert(
                name,
                VarValue {
                    value: value.to_json(),
                    loc,
                },
            );
        }
        VarFile {
            source: ctx.file.clone(),
            values,
            secret,
        }
    }

    /// Loads a variables file; `secrets.yml` files hold secret values.
    pub fn load(
        src: &Source,
        root: &Path,
        path: &Path,
        diags: &mut Diagnostics,
    ) -> Option<VarFile> {
        let (source, node) = yaml::load(src, root, path, "cannot read: no such file", diags)?;
        let secret = is_secrets_file(path);
        let mut ctx = Ctx::new(source, diags);
        Some(VarFile::from_node(&mut ctx, &node, "", secret))
    }
}

/// `secrets.yml` files (and `<name>.secrets.yml`, such as `pki.secrets.yml`; `.yaml` too) hold
/// secrets.
pub fn is_secrets_file(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        ["secrets.yml", "secrets.yaml"]
            .iter()
            .any(|s| n == *s || n.ends_with(&format!(".{s}")))
    })
}

/// Loads `group_vars/` or `host_vars/`: `<name>.yml` files and `<name>/` folders, keyed by name.
pub fn load_folder(
    src: &Source,
    root: &Path,
    dir: &Path,
    diags: &mut Diagnostics,
) -> BTreeMap<String, Vec<VarFile>> {
    let mut out: BTreeMap<String, Vec<VarFile>> = BTreeMap::new();
    for path in src.children(root, dir, diags) {
        if src.is_dir(&path) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            for file in src.yaml_files(root, &path, diags) {
                if let Some(vf) = VarFile::load(src, root, &file, diags) {
                    out.entry(name.clone()).or_default().push(vf);
                }
            }
        } else if is_yaml(&path) {
            let name = path
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(vf) = VarFile::load(src, root, &path, diags) {
                out.entry(name).or_default().push(vf);
            }
        }
    }
    out
}

/// What to do with encrypted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsMode {
    /// Decrypt them; without a key, report an error (plan, apply, show).
    Required,
    /// Decrypt them when a key is available; otherwise stand in a placeholder (check).
    Optional,
}

/// Decrypts every encrypted value in place and registers every secret with the redactor.
pub fn unseal(
    files: &mut [&mut VarFile],
    keyring: Option<&Keyring>,
    mode: SecretsMode,
    redactor: &Redactor,
    diags: &mut Diagnostics,
) {
    for file in files.iter_mut() {
        let mut missing_key = false;
        let source = file.source.clone();
        let secret_file = file.secret;
        for (name, var) in file.values.iter_mut() {
            walk_strings(&mut var.value, &mut |s: &mut String| {
                if vault::is_encrypted(s) {
                    match keyring {
                        Some(k) => match k.decrypt(s) {
                            Ok(plain) => {
                                redactor.add(plain.expose());
                                *s = plain.expose().clone();
                            }
                            Err(e) => diags.error(
                                &source,
                                var.loc,
                                name,
                                Kind::Secret,
                                format!("cannot decrypt: {e}"),
                            ),
                        },
                        None => {
                            missing_key = true;
                            *s = format!("{REDACTED}{name}");
                        }
                    }
                } else if secret_file {
                    redactor.add(s);
                }
            });
        }
        if missing_key {
            let message = format!(
                "encrypted values not decrypted: {}",
                vault::VaultError::NoKey
            );
            match mode {
                SecretsMode::Required => {
                    diags.error(&source, Loc::UNKNOWN, "", Kind::Secret, message)
                }
                SecretsMode::Optional => {}
            }
        }
    }
}

fn walk_strings(v: &mut Json, f: &mut dyn FnMut(&mut String)) {
    match v {
        Json::String(s) => f(s),
        Json::Array(items) => items.iter_mut().for_each(|i| walk_strings(i, f)),
        Json::Object(map) => map.values_mut().for_each(|i| walk_strings(i, f)),
        _ => {}
    }
}

/// The resolved variables of one host. Secret values live apart, as [`Secret`]s, so that no
/// debug print or serialisation of a `HostVars` can show them.
#[derive(Clone, Default)]
pub struct HostVars {
    /// Non-secret values.
    pub values: BTreeMap<String, Json>,
    /// Secret values.
    pub secrets: BTreeMap<String, Secret<Json>>,
    /// Where each variable's winning value was written.
    pub origins: BTreeMap<String, SourceName>,
    /// Variables whose value is secret.
    pub secret: BTreeSet<String>,
    /// What each secret, and each value rendered from one, is in the shadow rendering (every
    /// secret replaced by its [`crate::secret::shadow`]); see [`HostVars::render_tracked`].
    shadow: BTreeMap<String, Json>,
}

/// Values, origins and which variables are secret; never the secrets or their shadows.
impl std::fmt::Debug for HostVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostVars")
            .field("values", &self.values)
            .field("secrets", &self.secrets)
            .field("origins", &self.origins)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl HostVars {
    /// The scalar variables as strings, for `${var}` interpolation in stacks.
    pub fn scalar(&self, name: &str) -> Option<String> {
        let value = self
            .values
            .get(name)
            .or_else(|| self.secrets.get(name).map(Secret::expose))?;
        match value {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(b.to_string()),
            Json::Null => Some(String::new()),
            _ => None,
        }
    }

    /// Renders with [`HostVars::context`], and once more with the shadow context when the host
    /// has secrets: whatever differs between the two came from a secret, and the redactor learns
    /// it. This is how the output of any filter applied to a secret stays masked.
    pub fn render_tracked(
        &self,
        redactor: &Redactor,
        render: impl Fn(&minijinja::Value) -> Result<String, minijinja::Error>,
    ) -> Result<String, minijinja::Error> {
        let real = render(&self.context())?;
        if !self.shadow.is_empty() {
            match render(&self.shadow_context()) {
                Ok(shadow) => redactor.learn_from(&real, &shadow),
                // The shadow cannot say what came from a secret (a filter refused its value):
                // every line is masked.
                Err(_) => redactor.learn_all(&real),
            }
        }
        Ok(real)
    }

    /// The context of the shadow rendering: secrets and what was rendered from them replaced.
    fn shadow_context(&self) -> minijinja::Value {
        let mut all = self.values.clone();
        all.extend(
            self.secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().clone())),
        );
        all.extend(self.shadow.iter().map(|(k, v)| (k.clone(), v.clone())));
        template::to_value(&all)
    }

    /// Every variable, secrets included, as a template context.
    pub fn context(&self) -> minijinja::Value {
        if self.secrets.is_empty() {
            return template::to_value(&self.values);
        }
        let mut all = self.values.clone();
        all.extend(
            self.secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().clone())),
        );
        template::to_value(&all)
    }
}

/// The magic variables every host has.
fn builtins(inv: &Inventory, host: &Host) -> BTreeMap<String, Json> {
    let hostvars: serde_json::Map<String, Json> = inv
        .hosts
        .values()
        .map(|h| {
            let v = serde_json::json!({
                "name": h.name, "address": h.address, "port": h.connection.port,
                "user": h.connection.user, "groups": h.groups,
            });
            (h.name.clone(), v)
        })
        .collect();
    BTreeMap::from([
        (
            "inventory_hostname".to_owned(),
            Json::from(host.name.clone()),
        ),
        ("hoist_address".to_owned(), Json::from(host.address.clone())),
        ("group_names".to_owned(), Json::from(host.groups.clone())),
        (
            "groups".to_owned(),
            serde_json::to_value(inv.group_members()).unwrap_or_default(),
        ),
        ("hostvars".to_owned(), Json::Object(hostvars)),
    ])
}

/// Resolves the variables of `host`: merges the layers, then renders templated values.
pub fn resolve(
    inv: &Inventory,
    host: &Host,
    defaults: &[VarFile],
    extra: &[(String, String)],
    env: &Environment<'static>,
    redactor: &Redactor,
    diags: &mut Diagnostics,
) -> HostVars {
    let mut out = HostVars::default();
    let mut locs: BTreeMap<String, Loc> = BTreeMap::new();
    let mut layers: Vec<&VarFile> = defaults.iter().chain(inv.all_vars.iter()).collect();
    for g in &host.groups {
        layers.extend(inv.group_vars.get(g).into_iter().flatten());
    }
    layers.extend(inv.host_vars.get(&host.name).into_iter().flatten());
    for layer in layers {
        for (name, var) in &layer.values {
            out.values.insert(name.clone(), var.value.clone());
            out.origins.insert(name.clone(), layer.source.clone());
            locs.insert(name.clone(), var.loc);
            if layer.secret {
                out.secret.insert(name.clone());
            } else {
                out.secret.remove(name);
            }
        }
    }
    let cli = SourceName("(command line -e)".into());
    for (name, value) in extra {
        // `-e` overrides a secret's value, not its nature: it stays a secret.
        if out.secret.contains(name) {
            redactor.add(value);
        }
        out.values.insert(name.clone(), Json::String(value.clone()));
        out.origins.insert(name.clone(), cli.clone());
    }
    for (name, value) in builtins(inv, host) {
        out.values.insert(name.clone(), value);
        out.origins.insert(name, SourceName("(built-in)".into()));
    }

    // A secret is its literal value, never a template: `{{` in a password is two braces.
    for name in &out.secret {
        if let Some(v) = out.values.get(name) {
            let mut shadowed = v.clone();
            shadow_values(&mut shadowed);
            out.shadow.insert(name.clone(), shadowed);
        }
    }

    // Render templated values until nothing changes; what still changes after many passes loops.
    const MAX_PASSES: usize = 12;
    let mut pending: BTreeSet<String> = out
        .values
        .iter()
        .filter(|(k, v)| !out.secret.contains(*k) && has_template(v))
        .map(|(k, _)| k.clone())
        .collect();
    for _ in 0..MAX_PASSES {
        if pending.is_empty() {
            break;
        }
        let ctx = out.context();
        let shadow_ctx = (!out.shadow.is_empty()).then(|| out.shadow_context());
        let mut next = BTreeSet::new();
        for name in &pending {
            let mut value = out.values[name].clone();
            let mut shadow = value.clone();
            let mut failed = false;
            render_strings(
                &mut value,
                &mut |s: &str| match template::render_str(env, s, &ctx) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let origin = template::Origin {
                            file: out.origins[name].clone(),
                            line_offset: locs.get(name).map(|l| l.line).unwrap_or(0),
                            field: name.clone(),
                        };
                        template::report(&e, &origin, diags);
                        failed = true;
                        None
                    }
                },
            );
            if failed {
                out.values.insert(name.clone(), Json::Null);
                continue;
            }
            // The same value in the shadow world: a value rendered from a secret is tracked too.
            if let Some(sctx) = &shadow_ctx {
                render_strings(&mut shadow, &mut |s: &str| {
                    template::render_str(env, s, sctx).ok()
                });
                zip_strings(&value, &shadow, &mut |r, s| redactor.learn_from(r, s));
            }
            if shadow_ctx.is_some() && shadow != value {
                out.shadow.insert(name.clone(), shadow);
            } else {
                out.shadow.remove(name);
            }
            if has_template(&value) {
                next.insert(name.clone());
            }
            out.values.insert(name.clone(), value);
        }
        pending = next;
    }
    for name in pending {
        let origin = out.origins[&name].clone();
        let loc = locs.get(&name).copied().unwrap_or_default();
        diags.error(
            &origin,
            loc,
            &name,
            Kind::Cycle,
            "the value keeps referring to itself through other variables",
        );
    }
    for name in &out.secret {
        if let Some(v) = out.values.remove(name) {
            out.secrets.insert(name.clone(), Secret::new(v));
        }
    }
    out
}

fn has_template(v: &Json) -> bool {
    match v {
        Json::String(s) => template::is_template(s),
        Json::Array(items) => items.iter().any(has_template),
        Json::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

/// `v` with every string and number replaced by its shadow ([`crate::secret::shadow`]).
fn shadow_values(v: &mut Json) {
    match v {
        Json::String(s) => *s = crate::secret::shadow(s),
        Json::Number(n) => {
            if let Ok(shadowed) =
                crate::secret::shadow(&n.to_string()).parse::<serde_json::Number>()
            {
                *n = shadowed;
            }
        }
        Json::Array(items) => items.iter_mut().for_each(shadow_values),
        Json::Object(map) => map.values_mut().for_each(shadow_values),
        _ => {}
    }
}

/// Calls `f` on each pair of strings at the same place in two values of the same shape.
fn zip_strings(a: &Json, b: &Json, f: &mut dyn FnMut(&str, &str)) {
    match (a, b) {
        (Json::String(x), Json::String(y)) => f(x, y),
        (Json::Array(xs), Json::Array(ys)) => {
            xs.iter().zip(ys).for_each(|(x, y)| zip_strings(x, y, f));
        }
        (Json::Object(xs), Json::Object(ys)) => {
            for (k, x) in xs {
                if let Some(y) = ys.get(k) {
                    zip_strings(x, y, f);
                }
            }
        }
        _ => {}
    }
}

fn render_strings(v: &mut Json, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        Json::String(s) if template::is_template(s) => {
            if let Some(r) = f(s) {
                *s = r;
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|i| render_strings(i, f)),
        Json::Object(map) => map.values_mut().for_each(|i| render_strings(i, f)),
        _ => {}
    }
}

/// Parses `-e name=value` arguments.
pub fn parse_extra(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if valid_var_name(k.trim()) => Ok((k.trim().to_owned(), v.to_owned())),
            _ => Err(format!(
                "-e expects name=value with a valid variable name, got {a:?}"
            )),
        })
        .collect()
}
