//! `volumes:` of a service: named volumes, bind mounts of host paths, and repository files hoist
//! places on the host (rendered when `.j2`) and mounts.

use std::path::Path;

use crate::diag::Kind;
use crate::inventory::normalize;
use crate::yaml::{self, Ctx, Node, Value};

use super::super::{FILES_ROOT, LowerCtx, StackFile};
use super::environment::read_source;
use super::{Mount, MountSource, PlacedFile, Service};

pub(super) fn volume(
    ctx: &mut Ctx<'_>,
    v: &Node,
    p: &str,
    svc: &mut Service,
    file: &StackFile,
    stack_dir: &Path,
    lc: &LowerCtx<'_>,
) {
    let (source, target, read_only, kind, placement) = match &v.value {
        Value::Map(_) => {
            let Some(mut f) = ctx.fields(v, p) else {
                return;
            };
            let kind = f.string(ctx, "type").unwrap_or_else(|| "volume".into());
            let source = f.string(ctx, "source").unwrap_or_default();
            let target = f
                .require(ctx, "target")
                .and_then(|n| ctx.string(n, &yaml::join(p, "target")))
                .unwrap_or_default();
            let read_only = f.bool(ctx, "read_only").unwrap_or(false);
            let mut placement = (0o644, None);
            if let Some(x) = f.get("x-hoist") {
                let xp = yaml::join(p, "x-hoist");
                if let Some(mut xf) = ctx.fields(x, &xp) {
                    if let Some(m) = xf.string(ctx, "mode") {
                        match u32::from_str_radix(&m, 8) {
                            Ok(mode) if mode <= 0o7777 => placement.0 = mode,
                            _ => ctx.error(
                                x.loc,
                                &yaml::join(&xp, "mode"),
                                Kind::InvalidValue,
                                format!("{m:?} is not an octal file mode"),
                            ),
                        }
                    }
                    placement.1 = xf.string(ctx, "owner");
                    xf.finish(ctx, false);
                }
            }
            if !matches!(kind.as_str(), "volume" | "bind") {
                ctx.error(
                    v.loc,
                    &yaml::join(p, "type"),
                    Kind::InvalidValue,
                    format!("volume type {kind:?} is not supported (volume, bind)"),
                );
                return;
            }
            f.finish(ctx, true);
            (source, target, read_only, Some(kind), placement)
        }
        _ => {
            let Some(s) = ctx.string(v, p) else { return };
            let parts: Vec<&str> = s.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [t] => (String::new(), t.to_string(), ""),
                [s, t] => (s.to_string(), t.to_string(), ""),
                [s, t, m] => (s.to_string(), t.to_string(), *m),
                _ => {
                    ctx.error(
                        v.loc,
                        p,
                        Kind::InvalidValue,
                        format!("bad volume {s:?} (expected source:target[:ro|rw])"),
                    );
                    return;
                }
            };
            let mut read_only = false;
            for flag in mode.split(',').filter(|f| !f.is_empty()) {
                match flag {
                    "rw" => read_only = false,
                    "ro" => read_only = true,
                    // Docker Desktop's file sharing hints: nothing on a Linux host.
                    "cached" | "delegated" | "consistent" => {}
                    "z" | "Z" => ctx.warning(
                        v.loc,
                        p,
                        Kind::Unsupported,
                        format!("`{flag}` (SELinux relabelling) is not applied: label the host path if the host enforces SELinux"),
                    ),
                    other => {
                        ctx.error(
                            v.loc,
                            p,
                            Kind::InvalidValue,
                            format!("volume option {other:?} is not supported (ro, rw; z, Z and cached are accepted)"),
                        );
                        return;
                    }
                }
            }
            (source, target, read_only, None, (0o644, None))
        }
    };
    if !target.starts_with('/') {
        ctx.error(
            v.loc,
            p,
            Kind::InvalidValue,
            format!("mount target {target:?} must be an absolute path"),
        );
        return;
    }
    let is_path = source.starts_with('/') || source.starts_with('.') || source.starts_with('~');
    let is_bind = kind.as_deref() == Some("bind") || (kind.is_none() && is_path);
    let mount_source = if source.is_empty() {
        if kind.as_deref() == Some("bind") {
            ctx.error(
                v.loc,
                p,
                Kind::MissingKey,
                "a bind mount needs its `source`",
            );
            return;
        }
        MountSource::Volume(format!("{}{}:{target}", super::ANONYMOUS, svc.name))
    } else if !is_bind {
        MountSource::Volume(source)
    } else if source.starts_with('/') {
        MountSource::Bind(source)
    } else if source.starts_with('~') {
        ctx.error(
            v.loc,
            p,
            Kind::Unsupported,
            "`~` in a bind source is ambiguous on a remote host: use an absolute path",
        );
        return;
    } else {
        // A repository path: hoist places it (rendered when .j2) under FILES_ROOT and mounts that.
        let local = normalize(&stack_dir.join(&source));
        let root = normalize(lc.root);
        let Ok(rel) = local.strip_prefix(&root) else {
            ctx.error(
                v.loc,
                p,
                Kind::InvalidValue,
                format!("{source:?} lies outside the project"),
            );
            return;
        };
        if !lc.src.exists(&local) {
            ctx.error(
                v.loc,
                p,
                Kind::UnknownReference,
                format!("{source:?} does not exist ({})", rel.display()),
            );
            return;
        }
        let host_path = host_path(&file.project, rel);
        let files = if lc.src.is_dir(&local) {
            lc.src
                .files_under(&local)
                .into_iter()
                .map(|rel| local.join(rel))
                .collect()
        } else {
            vec![local.clone()]
        };
        for f in files {
            let Some(content) = read_source(ctx, &f, v, p, lc) else {
                continue;
            };
            let frel = f.strip_prefix(&root).unwrap_or(&f);
            svc.files.push(PlacedFile {
                path: host_path_file(&file.project, frel),
                content,
                mode: placement.0,
                owner: placement.1.clone(),
                group: None,
                secret: false,
                origin: frel.to_string_lossy().into_owned(),
            });
        }
        MountSource::Bind(host_path)
    };
    svc.mounts.push(Mount {
        source: mount_source,
        target,
        read_only,
        loc: v.loc,
    });
}

pub(super) fn host_path(project: &str, rel: &Path) -> String {
    let s = rel.to_string_lossy();
    let s = s.strip_suffix(".j2").unwrap_or(&s);
    format!("{FILES_ROOT}/{project}/{s}")
}

pub(super) fn host_path_file(project: &str, rel: &Path) -> String {
    host_path(project, rel)
}
