//! The hash of an image's build context: what decides whether an image is built again.

use std::path::Path;

use crate::desired;
use crate::source::Source;

/// A hash of a build context: every file's path and content, the Dockerfile name and target, the build args,
/// what the added binaries are made from (a workspace binary's input files, a crate's name,
/// version and features), and which secrets (by id and source, never by value) and agent the
/// build reads.
pub fn context_hash(src: &Source, root: &Path, build: &crate::stack::Build) -> String {
    let crate::stack::Build {
        context,
        dockerfile,
        args,
        binaries,
        target,
        session,
    } = build;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    hash_tree(src, &mut h, &root.join(context));
    h.update(dockerfile.as_bytes());
    // Left out when unset, so the hash of a build without a target stays what it was.
    if let Some(t) = target.as_deref() {
        h.update(format!("\0target={t}").as_bytes());
    }
    for (k, v) in args {
        h.update(format!("\0{k}={v}").as_bytes());
    }
    for (name, binary) in binaries {
        h.update(format!("\0binary {name}\0").as_bytes());
        match binary {
            desired::Binary::Workspace { package, inputs } => {
                h.update(format!("cargo {package}\0").as_bytes());
                for input in inputs {
                    h.update(format!("{input}\0").as_bytes());
                    let path = root.join(input);
                    if src.is_dir(&path) {
                        hash_tree(src, &mut h, &path);
                    } else if let Ok(bytes) = src.read(&path) {
                        h.update(&bytes);
                    }
                }
            }
            desired::Binary::Crate {
                name,
                version,
                features,
            } => h.update(format!("crate {name} {version} {}", features.join(",")).as_bytes()),
        }
    }
    // Left out when empty, as the target: the hashes of builds without them stay what they were.
    for secret in &session.secrets {
        h.update(format!("\0secret {}\0{}", secret.id, secret.source).as_bytes());
    }
    if session.ssh {
        h.update(b"\0ssh default");
    }
    hex::encode(h.finalize())
}

/// Every file's path (relative to `dir`) and content, in order.
fn hash_tree(src: &Source, h: &mut sha2::Sha256, dir: &Path) {
    use sha2::Digest as _;
    for rel in src.files_under(dir) {
        h.update(rel.as_bytes());
        h.update([0]);
        if let Ok(bytes) = src.read(&dir.join(&rel)) {
            h.update(&bytes);
        }
        h.update([0]);
    }
}
