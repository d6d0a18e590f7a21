//! `secrets:` and `configs:`, at the top level (where each file's content comes from) and in a
//! service (where it is mounted). hoist ships each as a file on the host, under
//! `/opt/hoist/<project>/<secrets|configs>/<service>/<name>`, and bind-mounts it read-only where
//! compose mounts it: `/run/secrets/<name>` for a secret, `/<name>` for a config. A secret's file
//! is private (0400 by default), owned by the service's user, and its content is a secret to the
//! redactor; a change recreates exactly the services that mount it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::desired::Content;
use crate::diag::{Kind, Loc};
use crate::inventory::normalize;
use crate::yaml::{self, Ctx, Node, Value};

use super::{FILES_ROOT, LowerCtx};

/// Secrets or configs: the two kinds differ in where they mount and how private they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Secret,
    Config,
}

impl FileKind {
    pub fn key(self) -> &'static str {
        match self {
            FileKind::Secret => "secrets",
            FileKind::Config => "configs",
        }
    }

    fn default_mode(self) -> u32 {
        match self {
            FileKind::Secret => 0o400,
            FileKind::Config => 0o444,
        }
    }

    /// Where a target that is not absolute goes.
    fn mount_dir(self) -> &'static str {
        match self {
            FileKind::Secret => "/run/secrets",
            FileKind::Config => "",
        }
    }
}

/// A top-level secret or config, its content resolved for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDef {
    pub content: Content,
    /// The repository file it comes from, when it does.
    pub origin: String,
}

/// The top-level `secrets:` or `configs:` of a stack: `file:` (a repository file, rendered when
/// `.j2`), `environment:` (the inventory's variable of that name) or, for configs, `content:`.
/// A definition that failed (reported here) is None, so its uses are not reported again.
pub(super) fn definitions(
    ctx: &mut Ctx<'_>,
    v: &Node,
    kind: FileKind,
    stack_dir: &Path,
    lc: &LowerCtx<'_>,
) -> BTreeMap<String, Option<FileDef>> {
    let mut out = BTreeMap::new();
    for (name, _, body) in ctx.entries(v, kind.key()) {
        let p = yaml::join(kind.key(), &name);
        if !valid_file_name(&name) {
            ctx.error(
                body.loc,
                &p,
                Kind::InvalidValue,
                format!("{name:?} is not a file name (letters, digits, '.', '_', '-')"),
            );
            continue;
        }
        let Some(mut f) = ctx.fields(body, &p) else {
            continue;
        };
        let file = f.string(ctx, "file");
        let variable = f.string(ctx, "environment");
        let content = match kind {
            FileKind::Config => f.string(ctx, "content"),
            FileKind::Secret => None,
        };
        let external = f.get("external");
        if let Some(n) = external {
            ctx.error(
                n.loc,
                &yaml::join(&p, "external"),
                Kind::Unsupported,
                "an external secret or config is swarm's: give its `file` or `environment`",
            );
        }
        for key in ["name", "driver", "driver_opts", "template_driver", "labels"] {
            if let Some(n) = f.get(key) {
                ctx.warning(
                    n.loc,
                    &yaml::join(&p, key),
                    Kind::Unsupported,
                    "swarm's: ignored for a file shipped to the host",
                );
            }
        }
        f.finish(ctx, true);
        if external.is_some() {
            out.insert(name, None);
            continue;
        }
        let def = match (file, variable, content) {
            (Some(rel), None, None) => from_file(ctx, body, &p, &rel, stack_dir, lc),
            (None, Some(var), None) => match lc.vars.scalar(&var) {
                Some(content) => Some(FileDef {
                    content: Content::Text(content),
                    origin: String::new(),
                }),
                None => {
                    ctx.error(
                        body.loc,
                        &yaml::join(&p, "environment"),
                        Kind::UndefinedVariable,
                        format!("variable `{var}` is not set (host {})", lc.host),
                    );
                    None
                }
            },
            (None, None, Some(content)) => Some(FileDef {
                content: Content::Text(content),
                origin: String::new(),
            }),
            _ => {
                ctx.error(
                    body.loc,
                    &p,
                    Kind::InvalidValue,
                    match kind {
                        FileKind::Secret => "a secret needs exactly one of `file` or `environment`",
                        FileKind::Config => {
                            "a config needs exactly one of `file`, `environment` or `content`"
                        }
                    },
                );
                None
            }
        };
        if let Some(text) = def.as_ref().and_then(|d| d.content.text())
            && kind == FileKind::Secret
        {
            lc.redactor.add(text.trim_end());
        }
        out.insert(name, def);
    }
    out
}

fn from_file(
    ctx: &mut Ctx<'_>,
    body: &Node,
    p: &str,
    rel: &str,
    stack_dir: &Path,
    lc: &LowerCtx<'_>,
) -> Option<FileDef> {
    let path = normalize(&stack_dir.join(rel));
    let fp = yaml::join(p, "file");
    if !lc.src.within(lc.root, &path) {
        ctx.error(
            body.loc,
            &fp,
            Kind::InvalidValue,
            super::service::outside(rel),
        );
        return None;
    }
    if !lc.src.is_file(&path) {
        ctx.error(
            body.loc,
            &fp,
            Kind::UnknownReference,
            format!("{rel:?} does not exist"),
        );
        return None;
    }
    let content = super::service::read_source(ctx, &path, body, &fp, lc)?;
    let origin = path
        .strip_prefix(normalize(lc.root))
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(FileDef { content, origin })
}

/// One `secrets:` or `configs:` entry of a service, resolved: the file to place and its mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub name: String,
    pub target: String,
    pub mode: u32,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub loc: Loc,
}

/// A service's `secrets:` or `configs:`: names, or `{source, target, uid, gid, mode}`.
pub(super) fn uses(ctx: &mut Ctx<'_>, v: &Node, p: &str, kind: FileKind) -> Vec<Use> {
    let mut out = Vec::new();
    for (i, item) in ctx.seq(v, p).iter().enumerate() {
        let ip = yaml::index(p, i);
        let (name, target, mode, uid, gid) = match &item.value {
            Value::Map(_) => {
                let Some(mut f) = ctx.fields(item, &ip) else {
                    continue;
                };
                let name = f
                    .require(ctx, "source")
                    .and_then(|n| ctx.string(n, &yaml::join(&ip, "source")));
                let target = f.string(ctx, "target");
                let mode = f.string(ctx, "mode");
                let uid = f.string(ctx, "uid");
                let gid = f.string(ctx, "gid");
                f.finish(ctx, true);
                let Some(name) = name else { continue };
                (name, target, mode, uid, gid)
            }
            _ => {
                let Some(name) = ctx.string(item, &ip) else {
                    continue;
                };
                (name, None, None, None, None)
            }
        };
        let mode = match mode {
            None => kind.default_mode(),
            Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
                Ok(mode) if mode <= 0o777 => mode,
                _ => {
                    ctx.error(
                        item.loc,
                        &yaml::join(&ip, "mode"),
                        Kind::InvalidValue,
                        format!("{m:?} is not an octal file mode (like \"0440\")"),
                    );
                    continue;
                }
            },
        };
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("{}/{t}", kind.mount_dir()),
            None => format!("{}/{name}", kind.mount_dir()),
        };
        out.push(Use {
            name,
            target,
            mode,
            uid,
            gid,
            loc: item.loc,
        });
    }
    out
}

/// Where hoist places a service's secret or config on the host.
pub fn host_path(project: &str, kind: FileKind, service: &str, name: &str) -> String {
    format!("{FILES_ROOT}/{project}/{}/{service}/{name}", kind.key())
}

fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
