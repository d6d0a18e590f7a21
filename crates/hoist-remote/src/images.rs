//! Images without a registry: build from the repository on the local engine, then stream
//! `docker save` output from the local engine into `docker load` on the host, over the SSH master.

use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
};
use futures_util::StreamExt as _;
use hoist_core::desired::{ImageSource, ImageSpec, labels};

use crate::error::{RemoteError, Result};

/// The engine on the machine running hoist.
pub fn local() -> Result<Docker> {
    Docker::connect_with_local_defaults().map_err(|e| RemoteError::docker("localhost", e))
}

/// Builds `spec` on the local engine from `root/<context>`, labelled with its context hash.
pub async fn build(local: &Docker, root: &Path, spec: &ImageSpec) -> Result<()> {
    let ImageSource::Build {
        context,
        dockerfile,
        args,
        context_hash,
        binaries,
    } = &spec.source
    else {
        return Ok(());
    };
    let dir = root.join(context);
    let extra = crate::binaries::prepare(root, binaries).await?;
    let tar = tar_context(&dir, &extra).map_err(|e| RemoteError::Other {
        host: "localhost".into(),
        detail: format!("packing {}: {e}", dir.display()),
    })?;
    let build_args: std::collections::HashMap<String, String> =
        args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let label_map =
        std::collections::HashMap::from([(labels::CONTEXT_HASH.to_owned(), context_hash.clone())]);
    let opts = BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .t(&spec.reference)
        .rm(true)
        .forcerm(true)
        .buildargs(&build_args)
        .labels(&label_map)
        .build();
    let replaced = image_id(local, &spec.reference).await;
    let mut stream = local.build_image(opts, None, Some(bollard::body_full(tar.into())));
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| {
            RemoteError::docker("localhost", format!("building {}: {e}", spec.reference))
        })?;
        if let Some(s) = info.stream {
            tail.push(s.trim_end().to_owned());
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
        if let Some(detail) = info.error_detail {
            return Err(RemoteError::docker(
                "localhost",
                format!(
                    "building {}: {}\n{}",
                    spec.reference,
                    detail.message.unwrap_or_default(),
                    tail.join("\n")
                ),
            ));
        }
    }
    if let Some(old) = replaced {
        remove_if_untagged(local, &old).await;
    }
    Ok(())
}

/// Removes an image a rebuild left without a tag, so that rebuilding does not pile up untagged
/// copies on this machine. An image still tagged elsewhere, or used by a container, stays.
async fn remove_if_untagged(local: &Docker, id: &str) {
    let untagged = local
        .inspect_image(id)
        .await
        .is_ok_and(|i| i.repo_tags.unwrap_or_default().is_empty());
    if untagged {
        let opts = bollard::query_parameters::RemoveImageOptionsBuilder::default().build();
        if let Err(e) = local.remove_image(id, Some(opts), None).await {
            tracing::debug!(image = id, error = %e, "keeping the image a rebuild replaced");
        }
    }
}

/// The context folder as a tar, with the prepared binaries added at its top.
fn tar_context(dir: &Path, binaries: &[(String, std::path::PathBuf)]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(true);
    // The engine's tar reader refuses GNU sparse entries, which large binaries with holes become.
    b.sparse(false);
    b.append_dir_all(".", dir)?;
    for (name, path) in binaries {
        b.append_path_with_name(path, name)?;
    }
    b.into_inner()
}

/// The id of `reference` on an engine, if it has it.
pub async fn image_id(d: &Docker, reference: &str) -> Option<String> {
    d.inspect_image(reference).await.ok().and_then(|i| i.id)
}

/// Called with the bytes sent so far, as they go.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Streams `reference` from the local engine to the host's; returns the bytes sent. Skips the
/// transfer when the host already has that image id.
pub async fn transfer(
    local: &Docker,
    remote: &Docker,
    host: &str,
    reference: &str,
    progress: Progress,
) -> Result<u64> {
    let Some(local_id) = image_id(local, reference).await else {
        return Err(RemoteError::Other {
            host: host.into(),
            detail: format!("image {reference} is not on the local engine"),
        });
    };
    if image_id(remote, reference).await.as_deref() == Some(local_id.as_str()) {
        return Ok(0);
    }
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    // A failed export (a full disk on this machine, say) only shows on the host's side as a
    // request cut short: keep the local engine's own words for the error.
    let export_error = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let export_failed = export_error.clone();
    let export = local.export_image(reference).map(move |chunk| {
        match &chunk {
            Ok(bytes) => {
                let n = bytes.len() as u64;
                let total = counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                progress(total);
            }
            Err(e) => {
                if let Ok(mut slot) = export_failed.lock() {
                    *slot = Some(e.to_string());
                }
            }
        }
        chunk
    });
    let mut load = remote.import_image_stream(
        ImportImageOptionsBuilder::default().quiet(true).build(),
        export,
        None,
    );
    while let Some(item) = load.next().await {
        let info = item.map_err(|e| {
            let local_error = export_error.lock().ok().and_then(|mut slot| slot.take());
            match local_error {
                Some(le) => RemoteError::docker(
                    "localhost",
                    format!("exporting {reference} for {host}: {le}"),
                ),
                None => RemoteError::docker(host, format!("loading {reference}: {e}")),
            }
        })?;
        if let Some(detail) = info.error_detail {
            return Err(RemoteError::docker(
                host,
                format!(
                    "loading {reference}: {}",
                    detail.message.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(sent.load(std::sync::atomic::Ordering::Relaxed))
}

/// Pulls `reference` on the host from its registry.
pub async fn pull(remote: &Docker, host: &str, reference: &str) -> Result<()> {
    let opts = CreateImageOptionsBuilder::default()
        .from_image(reference)
        .build();
    let mut stream = remote.create_image(Some(opts), None, None);
    while let Some(item) = stream.next().await {
        item.map_err(|e| RemoteError::docker(host, format!("pulling {reference}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary with holes (as a linker writes large ones) goes in as a regular entry: the
    /// engine's tar reader refuses GNU sparse ones ("unhandled tar header type 83").
    #[test]
    fn sparse_files_are_packed_as_regular_entries() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        let holey = dir.path().join("holey");
        let f = std::fs::File::create(&holey).expect("create");
        f.set_len(8 << 20).expect("a hole");
        drop(f);
        let tar = tar_context(dir.path(), &[("bin".to_owned(), holey)]).expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut names = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            assert_ne!(entry.header().entry_type(), tar::EntryType::GNUSparse);
            names.push(entry.path().expect("path").display().to_string());
        }
        assert!(names.contains(&"bin".to_owned()), "{names:?}");
    }
}
