//! `build:`: the context, Dockerfile and args of an image built from the repository, and the
//! binaries hoist adds to its context first.

use std::collections::BTreeMap;
use std::path::Path;

use super::super::Defs;
use super::super::files::FileKind;
use super::Build;
use super::environment::string_map;
use crate::desired::{BuildSecret, BuildSession};
use crate::diag::Kind;
use crate::inventory::normalize;
use crate::source::Source;
use crate::yaml::{self, Ctx, Node, Value};

pub(super) fn build(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    stack_dir: &Path,
    root: &Path,
    src: &Source,
    defs: &Defs,
) -> Option<Build> {
    let (context, dockerfile, args, binaries, target, session) = match &v.value {
        Value::Str(s) => (
            s.clone(),
            "Dockerfile".to_owned(),
            BTreeMap::new(),
            BTreeMap::new(),
            None,
            BuildSession::default(),
        ),
        _ => {
            let mut f = ctx.fields(v, p)?;
            let context = f.string(ctx, "context").unwrap_or_else(|| ".".into());
            let dockerfile = f
                .string(ctx, "dockerfile")
                .unwrap_or_else(|| "Dockerfile".into());
            let args = f
                .get("args")
                .map(|a| string_map(ctx, a, &yaml::join(p, "args")))
                .unwrap_or_default();
            let binaries = f
                .get(BINARIES)
                .map(|b| binaries(ctx, b, &yaml::join(p, BINARIES), root, src))
                .unwrap_or_default();
            // The stage of a multi-stage Dockerfile to build.
            let target = f.string(ctx, "target");
            let session = BuildSession {
                secrets: f
                    .get("secrets")
                    .map(|n| secrets(ctx, n, &yaml::join(p, "secrets"), defs))
                    .unwrap_or_default(),
                ssh: f
                    .get("ssh")
                    .is_some_and(|n| ssh(ctx, n, &yaml::join(p, "ssh"))),
            };
            for (key, why) in [
                (
                    "cache_from",
                    "not supported yet: the controller's engine keeps its own layer cache",
                ),
                (
                    "cache_to",
                    "not supported yet: the controller's engine keeps its own layer cache",
                ),
                (
                    "platforms",
                    "not supported yet: hoist builds for the controller's platform",
                ),
                (
                    "tags",
                    "not supported yet: the image is tagged with `image`",
                ),
                ("additional_contexts", "not supported yet"),
                ("network", "not supported yet"),
                ("extra_hosts", "not supported yet"),
                ("shm_size", "not supported yet"),
                (
                    "labels",
                    "not supported yet: the image carries hoist's context hash",
                ),
                (
                    "no_cache",
                    "not supported: the image is rebuilt exactly when its context hash changes",
                ),
                ("pull", "not supported yet"),
                (
                    "dockerfile_inline",
                    "not supported yet: commit the Dockerfile to the context",
                ),
                ("isolation", "Windows containers only"),
                ("privileged", "not supported yet"),
                ("ulimits", "not supported yet"),
                ("entitlements", "not supported yet"),
                ("provenance", "not supported yet"),
                ("sbom", "not supported yet"),
            ] {
                if let Some(n) = f.get(key) {
                    ctx.error(n.loc, &yaml::join(p, key), Kind::Unsupported, why);
                }
            }
            f.finish(ctx, true);
            (context, dockerfile, args, binaries, target, session)
        }
    };
    let dir = normalize(&stack_dir.join(&context));
    if !src.within(root, &dir) {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            super::environment::outside(&context),
        );
        return None;
    }
    if !src.is_file(&dir.join(&dockerfile)) {
        ctx.error(
            v.loc,
            p,
            Kind::UnknownReference,
            format!(
                "no {dockerfile} in build context {context:?} ({})",
                dir.display()
            ),
        );
    }
    let rel = dir
        .strip_prefix(normalize(root))
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| dir.to_string_lossy().into_owned());
    Some(Build {
        context: rel,
        dockerfile,
        args,
        binaries,
        target,
        session,
    })
}

/// `build.secrets`: names of the stack's top-level secrets, or `{source, target}` where `target`
/// is the id the Dockerfile mounts it by.
fn secrets(ctx: &mut Ctx<'_>, v: &Node, p: &str, defs: &Defs) -> Vec<BuildSecret> {
    let mut out: Vec<BuildSecret> = Vec::new();
    for (i, item) in ctx.seq(v, p).iter().enumerate() {
        let ip = yaml::index(p, i);
        let (source, id, source_path) = match &item.value {
            Value::Map(_) => {
                let Some(mut f) = ctx.fields(item, &ip) else {
                    continue;
                };
                let source = f
                    .require(ctx, "source")
                    .and_then(|n| ctx.string(n, &yaml::join(&ip, "source")));
                let id = f.string(ctx, "target");
                for key in ["uid", "gid", "mode"] {
                    if let Some(n) = f.get(key) {
                        ctx.error(
                            n.loc,
                            &yaml::join(&ip, key),
                            Kind::Unsupported,
                            format!("a build secret's owner and mode are the Dockerfile's: `RUN --mount=type=secret,id=...,{key}=...`"),
                        );
                    }
                }
                f.finish(ctx, true);
                let Some(source) = source else { continue };
                (source, id, yaml::join(&ip, "source"))
            }
            _ => {
                let Some(source) = ctx.string(item, &ip) else {
                    continue;
                };
                (source, None, ip.clone())
            }
        };
        let content = match defs.get(FileKind::Secret).get(&source) {
            Some(Some(def)) => crate::secret::Secret::new(def.content.clone()),
            // Its definition is wrong, and was reported.
            Some(None) => continue,
            None => {
                ctx.error(
                    item.loc,
                    &source_path,
                    Kind::UnknownReference,
                    format!("no `{source}` under the top-level `secrets`"),
                );
                continue;
            }
        };
        let id = id.unwrap_or_else(|| source.clone());
        if out.iter().any(|s| s.id == id) {
            ctx.error(
                item.loc,
                &ip,
                Kind::Duplicate,
                format!("two build secrets have the id `{id}`"),
            );
            continue;
        }
        out.push(BuildSecret {
            id,
            source,
            content,
        });
    }
    out
}

/// `build.ssh`: `default` (a list entry, or a key without a value) forwards the SSH agent hoist
/// runs with. A key file or another id is refused: BuildKit's session here serves one agent.
fn ssh(ctx: &mut Ctx<'_>, v: &Node, p: &str) -> bool {
    // (id, key file, where, path): an empty key file is none.
    let mut entries: Vec<(String, Option<String>, crate::diag::Loc, String)> = Vec::new();
    match &v.value {
        Value::Map(_) => {
            for (id, loc, body) in ctx.entries(v, p) {
                let ep = yaml::join(p, &id);
                match body.scalar_text() {
                    Some(path) => entries.push((id, Some(path).filter(|p| !p.is_empty()), loc, ep)),
                    None => ctx.error(
                        body.loc,
                        &ep,
                        Kind::WrongType,
                        "expected a key file's path, or nothing",
                    ),
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let ep = yaml::index(p, i);
                let Some(entry) = ctx.string(item, &ep) else {
                    continue;
                };
                let (id, path) = match entry.split_once('=') {
                    Some((id, path)) => (id.to_owned(), Some(path.to_owned())),
                    None => (entry, None),
                };
                entries.push((id, path.filter(|p| !p.is_empty()), item.loc, ep));
            }
        }
        _ => ctx.error(
            v.loc,
            p,
            Kind::WrongType,
            "expected a list (`[default]`) or a map",
        ),
    }
    let mut default = false;
    for (id, path, loc, ep) in entries {
        match (id.as_str(), path) {
            ("default", None) => default = true,
            ("default", Some(path)) => ctx.error(
                loc,
                &ep,
                Kind::Unsupported,
                format!("hoist forwards the SSH agent it runs with, not a key file: add the key to that agent (`ssh-add {path}`) and write `default`"),
            ),
            (other, _) => ctx.error(
                loc,
                &ep,
                Kind::Unsupported,
                format!("hoist forwards one SSH agent, as `default`: mount it with `RUN --mount=type=ssh` (no id) rather than id `{other}`"),
            ),
        }
    }
    default
}

/// The build key naming binaries hoist adds to a context (an `x-` key: compose ignores it).
pub const BINARIES: &str = "x-hoist-binaries";

/// `name: {cargo: package, inputs: [paths]}` (a package of this workspace, built in release mode;
/// `inputs` are the files and folders its hash covers) or `name: {crate: name, version: x.y.z,
/// features: [..]}` (from crates.io, built once and cached outside the project).
pub(super) fn binaries(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    root: &Path,
    src: &Source,
) -> BTreeMap<String, crate::desired::Binary> {
    use crate::desired::Binary;
    let mut out = BTreeMap::new();
    for (name, loc, body) in ctx.entries(v, p) {
        let bp = yaml::join(p, &name);
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            ctx.error(
                loc,
                &bp,
                Kind::InvalidValue,
                format!("{name:?} is not a file name"),
            );
            continue;
        }
        let Some(mut f) = ctx.fields(body, &bp) else {
            continue;
        };
        let cargo = f.string(ctx, "cargo");
        let krate = f.string(ctx, "crate");
        let version = f.string(ctx, "version");
        let inputs = f
            .get("inputs")
            .map(|n| ctx.string_list(n, &yaml::join(&bp, "inputs")))
            .unwrap_or_default();
        let features = f
            .get("features")
            .map(|n| ctx.string_list(n, &yaml::join(&bp, "features")))
            .unwrap_or_default();
        f.finish(ctx, false);
        let binary = match (cargo, krate) {
            (Some(package), None) => {
                if inputs.is_empty() {
                    ctx.error(
                        body.loc,
                        &bp,
                        Kind::MissingKey,
                        "a workspace binary needs `inputs`: the paths its image hash covers",
                    );
                }
                // The inputs are the package's sources: inside its cargo workspace, which may
                // lie above the project, and never elsewhere on the controller.
                let workspace = src.cargo_workspace(root);
                for (i, input) in inputs.iter().enumerate() {
                    let path = normalize(&root.join(input));
                    let inside = workspace.as_deref().unwrap_or(root);
                    if !src.exists(&path) {
                        ctx.error(
                            body.loc,
                            &yaml::index(&yaml::join(&bp, "inputs"), i),
                            Kind::UnknownReference,
                            format!("{input:?} does not exist in the project"),
                        );
                    } else if !src.within(inside, &path) {
                        ctx.error(
                            body.loc,
                            &yaml::index(&yaml::join(&bp, "inputs"), i),
                            Kind::InvalidValue,
                            match &workspace {
                                Some(_) => format!(
                                    "{input:?} is outside the cargo workspace: a workspace binary is built from its own sources"
                                ),
                                None => format!(
                                    "{input:?} is outside the project, which is in no cargo workspace"
                                ),
                            },
                        );
                    }
                }
                Binary::Workspace { package, inputs }
            }
            (None, Some(name)) => {
                let Some(version) = version else {
                    ctx.error(
                        body.loc,
                        &bp,
                        Kind::MissingKey,
                        "a crates.io binary needs an exact `version`",
                    );
                    continue;
                };
                Binary::Crate {
                    name,
                    version,
                    features,
                }
            }
            _ => {
                ctx.error(
                    body.loc,
                    &bp,
                    Kind::InvalidValue,
                    "expected exactly one of `cargo` (a workspace package) or `crate` (from crates.io)",
                );
                continue;
            }
        };
        out.insert(name, binary);
    }
    out
}
