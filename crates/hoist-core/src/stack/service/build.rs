//! `build:`: the context, Dockerfile and args of an image built from the repository, and the
//! binaries hoist adds to its context first.

use std::collections::BTreeMap;
use std::path::Path;

use super::Build;
use super::environment::string_map;
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
) -> Option<Build> {
    let (context, dockerfile, args, binaries, target) = match &v.value {
        Value::Str(s) => (
            s.clone(),
            "Dockerfile".to_owned(),
            BTreeMap::new(),
            BTreeMap::new(),
            None,
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
            for (key, why) in [
                (
                    "ssh",
                    "not supported yet: the build runs on the controller's engine without an SSH agent; copy what it fetches into the context",
                ),
                (
                    "secrets",
                    "not supported yet: pass the value as a build argument from an inventory secret, or fetch it at run time",
                ),
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
            (context, dockerfile, args, binaries, target)
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
    })
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
