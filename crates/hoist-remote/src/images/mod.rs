//! Images without a registry: build from the repository on the local engine, then stream
//! `docker save` output from the local engine into `docker load` on the host, over the SSH master,
//! without the layers the host already has ([`thin`]).

mod buildkit;
mod thin;

pub use thin::thin;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt as _;
use hoist_core::desired::{ImageSource, ImageSpec, labels};

use crate::engine::{Engine, TarStream};
use crate::error::{RemoteError, Result};

/// The engine on the machine running hoist.
pub fn local() -> Result<Docker> {
    Docker::connect_with_local_defaults().map_err(|e| RemoteError::docker("localhost", e))
}

/// Builds `spec` on the local engine from `root/<context>`, labelled with its context hash: with
/// the engine's classic builder, or with BuildKit when the build reads secrets or the SSH agent.
pub async fn build(local: &Docker, root: &Path, spec: &ImageSpec) -> Result<()> {
    let ImageSource::Build {
        context,
        dockerfile,
        args,
        context_hash,
        binaries,
        target,
        session,
    } = &spec.source
    else {
        return Ok(());
    };
    let dir = root.join(context);
    let extra = crate::binaries::prepare(root, binaries).await?;
    let tar = tar_context(&dir, &extra)
        .map_err(|e| RemoteError::other("localhost", format!("packing {}: {e}", dir.display())))?;
    let labels = BTreeMap::from([
        (labels::CONTEXT_HASH.to_owned(), context_hash.clone()),
        (
            labels::FROM_IDS.to_owned(),
            from_ids(local, &dir, dockerfile).await,
        ),
    ]);
    let build = Build {
        reference: &spec.reference,
        dockerfile,
        target: target.as_deref(),
        args,
        labels: &labels,
    };
    let replaced = local
        .inspect_image(&spec.reference)
        .await
        .ok()
        .and_then(|i| i.id);
    if session.is_empty() {
        classic(local, &build, tar).await?;
    } else {
        buildkit::build(&build, session, tar).await?;
    }
    if let Some(old) = replaced {
        remove_if_untagged(local, &old).await;
    }
    Ok(())
}

/// What both builders are given.
struct Build<'a> {
    reference: &'a str,
    dockerfile: &'a str,
    target: Option<&'a str>,
    args: &'a BTreeMap<String, String>,
    labels: &'a BTreeMap<String, String>,
}

/// A build with the engine's classic builder (`POST /build`), its output's last lines kept for
/// the error.
async fn classic(local: &Docker, b: &Build<'_>, tar: Vec<u8>) -> Result<()> {
    let hash_map = |m: &BTreeMap<String, String>| -> std::collections::HashMap<String, String> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut opts = BuildImageOptionsBuilder::default();
    if let Some(t) = b.target {
        opts = opts.target(t);
    }
    let opts = opts
        .dockerfile(b.dockerfile)
        .t(b.reference)
        .rm(true)
        .forcerm(true)
        .buildargs(&hash_map(b.args))
        .labels(&hash_map(b.labels))
        .build();
    let mut stream = local.build_image(opts, None, Some(bollard::body_full(tar.into())));
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| {
            RemoteError::docker("localhost", format!("building {}: {e}", b.reference))
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
                    b.reference,
                    detail.message.unwrap_or_default(),
                    tail.join("\n")
                ),
            ));
        }
    }
    Ok(())
}

/// The images a Dockerfile starts `FROM`, in order: not its own stages, `scratch`, or a name made
/// of build arguments (unknown until the build).
pub fn from_images(dockerfile: &str) -> Vec<String> {
    let mut stages = BTreeSet::new();
    let mut images = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let words: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        if let Some(image) = words.first() {
            let known = stages.contains(&image.to_ascii_lowercase());
            if !known && *image != "scratch" && !image.contains('$') {
                images.push((*image).to_owned());
            }
        }
        if let [_, as_, stage, ..] = words.as_slice()
            && as_.eq_ignore_ascii_case("AS")
        {
            stages.insert(stage.to_ascii_lowercase());
        }
    }
    images
}

/// The local ids of the images `context/dockerfile` starts from, as [`labels::FROM_IDS`] holds
/// them (an image the local engine lacks counts as none).
async fn from_ids(local: &Docker, context: &Path, dockerfile: &str) -> String {
    let text = std::fs::read_to_string(context.join(dockerfile)).unwrap_or_default();
    let mut ids = Vec::new();
    for image in from_images(&text) {
        let id = local.inspect_image(&image).await.ok().and_then(|i| i.id);
        ids.push(id.unwrap_or_else(|| "none".to_owned()));
    }
    ids.join(",")
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
fn tar_context(dir: &Path, binaries: &[(String, PathBuf)]) -> std::io::Result<Vec<u8>> {
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

/// Called with the bytes sent so far, as they go.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// The controller's side of image delivery: the images a run builds or finds on the local engine.
pub trait LocalImages: Send + Sync {
    /// Makes `spec` available on the local engine when it can be: a built image is built once
    /// per run (or found with the same context hash); `false` for a registry image the local
    /// engine does not have, which the host then pulls itself.
    fn ensure(&self, spec: &ImageSpec) -> impl Future<Output = Result<bool>> + Send;
    /// The id of `reference` on the local engine.
    fn image_id(&self, reference: &str) -> impl Future<Output = Option<String>> + Send;
    /// `reference` as a tar stream.
    fn export(&self, reference: &str) -> TarStream;
    /// The layers of `reference` (diff ids, bottom first); none when unknown.
    fn layers(&self, reference: &str) -> impl Future<Output = Vec<String>> + Send {
        let _ = reference;
        async { Vec::new() }
    }
}

/// The outcome of building one image, shared by every host that needs it.
type BuildOnce = std::sync::Arc<tokio::sync::OnceCell<std::result::Result<(), String>>>;

/// The local Docker engine (when there is one) and the project its build contexts are in.
#[derive(Debug)]
pub struct LocalEngine {
    docker: Option<Docker>,
    root: PathBuf,
    builds: tokio::sync::Mutex<BTreeMap<String, BuildOnce>>,
}

impl LocalEngine {
    /// The local engine if it answers the environment's settings; images can still be pulled
    /// by hosts without it.
    pub fn new(root: &Path) -> LocalEngine {
        LocalEngine {
            docker: local().ok(),
            root: root.to_path_buf(),
            builds: tokio::sync::Mutex::default(),
        }
    }
}

impl LocalImages for LocalEngine {
    async fn ensure(&self, spec: &ImageSpec) -> Result<bool> {
        let Some(local) = &self.docker else {
            if matches!(spec.source, ImageSource::Build { .. }) {
                return Err(RemoteError::other(
                    "localhost",
                    format!(
                        "{} is built from the repository, which needs a local Docker engine",
                        spec.reference
                    ),
                ));
            }
            return Ok(false);
        };
        let ImageSource::Build { context_hash, .. } = &spec.source else {
            return Ok(local.inspect_image(&spec.reference).await.is_ok());
        };
        let cell = self
            .builds
            .lock()
            .await
            .entry(spec.reference.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            if let Ok(img) = local.inspect_image(&spec.reference).await {
                let labels = img.config.and_then(|c| c.labels).unwrap_or_default();
                let from = match &spec.source {
                    ImageSource::Build {
                        context,
                        dockerfile,
                        ..
                    } => from_ids(local, &self.root.join(context), dockerfile).await,
                    _ => String::new(),
                };
                if labels.get(labels::CONTEXT_HASH) == Some(context_hash)
                    && labels.get(labels::FROM_IDS) == Some(&from)
                {
                    return Ok(());
                }
            }
            build(local, &self.root, spec)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .clone()
        .map(|()| true)
        .map_err(|detail| RemoteError::other("localhost", detail))
    }

    async fn image_id(&self, reference: &str) -> Option<String> {
        let local = self.docker.as_ref()?;
        local.inspect_image(reference).await.ok().and_then(|i| i.id)
    }

    async fn layers(&self, reference: &str) -> Vec<String> {
        let Some(local) = self.docker.as_ref() else {
            return Vec::new();
        };
        local
            .inspect_image(reference)
            .await
            .ok()
            .and_then(|i| i.root_fs)
            .and_then(|r| r.layers)
            .unwrap_or_default()
    }

    fn export(&self, reference: &str) -> TarStream {
        match &self.docker {
            Some(d) => Box::pin(
                d.export_image(reference)
                    .map(|chunk| chunk.map_err(|e| e.to_string())),
            ),
            None => Box::pin(futures_util::stream::once(async {
                Err("no local Docker engine".to_owned())
            })),
        }
    }
}

/// Streams `reference` from the local engine to a host's; returns the bytes sent. Skips the
/// transfer when the host already has that image id, and sends the layers the host has (with the
/// same layers below them) as empty entries; should the host refuse that archive (a layer pruned
/// in between, say), the whole image is sent once more.
pub async fn transfer<L: LocalImages, E: Engine>(
    local: &L,
    remote: &E,
    host: &str,
    reference: &str,
    progress: Progress,
) -> Result<u64> {
    let Some(local_id) = local.image_id(reference).await else {
        return Err(RemoteError::other(
            host,
            format!("image {reference} is not on the local engine"),
        ));
    };
    if remote.image_id(reference).await?.as_deref() == Some(local_id.as_str()) {
        return Ok(0);
    }
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let have = remote.layers().await.unwrap_or_default();
    let skip = skippable(&local.layers(reference).await, &have);
    if !skip.is_empty() {
        let thinned = thin(local.export(reference), skip);
        match send(remote, host, reference, thinned, &sent, &progress).await {
            Ok(()) => return Ok(sent.load(std::sync::atomic::Ordering::Relaxed)),
            Err(e) if e.host == "localhost" => return Err(e),
            Err(e) => tracing::warn!("{host}: {e}; sending {reference} whole"),
        }
    }
    send(
        remote,
        host,
        reference,
        local.export(reference),
        &sent,
        &progress,
    )
    .await?;
    Ok(sent.load(std::sync::atomic::Ordering::Relaxed))
}

/// Loads `tar` into the host's engine, counting the bytes it takes.
async fn send<E: Engine>(
    remote: &E,
    host: &str,
    reference: &str,
    tar: TarStream,
    sent: &std::sync::Arc<std::sync::atomic::AtomicU64>,
    progress: &Progress,
) -> Result<()> {
    let (counter, progress) = (sent.clone(), progress.clone());
    // A failed export (a full disk on this machine, say) only shows on the host's side as a
    // request cut short: keep the local engine's own words for the error.
    let export_error = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let export_failed = export_error.clone();
    let export = tar.map(move |chunk| {
        match &chunk {
            Ok(bytes) => {
                let n = bytes.len() as u64;
                let total = counter.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                progress(total);
            }
            Err(e) => {
                if let Ok(mut slot) = export_failed.lock() {
                    *slot = Some(e.clone());
                }
            }
        }
        chunk
    });
    let loaded = remote.load_image(reference, Box::pin(export)).await;
    let local_error = export_error.lock().ok().and_then(|mut slot| slot.take());
    match (loaded, local_error) {
        (_, Some(le)) => Err(RemoteError::docker(
            "localhost",
            format!("exporting {reference} for {host}: {le}"),
        )),
        (r, None) => r,
    }
}

/// The chain id of each layer of an image (its diff ids, bottom first): the first layer's diff
/// id, then `sha256(<chain id below> + " " + <diff id>)`, as the engine names a stack of layers.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::Digest as _;
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let chain = match out.last() {
            None => diff.clone(),
            Some(below) => format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(format!("{below} {diff}")))
            ),
        };
        out.push(chain);
    }
    out
}

/// The layers of an image (diff ids) the host's engine will not read: those whose chain id it
/// has, wherever the layer comes in the image (a diff id found twice, once on a stack the host
/// lacks, is sent).
pub fn skippable(diff_ids: &[String], host_chains: &BTreeSet<String>) -> BTreeSet<String> {
    let chains = chain_ids(diff_ids);
    let mut skip: BTreeSet<String> = BTreeSet::new();
    let mut keep: BTreeSet<&String> = BTreeSet::new();
    for (diff, chain) in diff_ids.iter().zip(&chains) {
        if host_chains.contains(chain) {
            skip.insert(diff.clone());
        } else {
            keep.insert(diff);
        }
    }
    skip.retain(|d| !keep.contains(d));
    skip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("sha256:{n}")).collect()
    }

    #[test]
    fn the_images_a_dockerfile_starts_from_leave_out_its_own_stages() {
        let dockerfile = "# syntax=docker/dockerfile:1\n\
            FROM --platform=$BUILDPLATFORM golang:1.22 AS builder\n\
            RUN go build\n\
            from builder as dev\n\
            FROM ${BASE}\n\
            FROM scratch\n\
            FROM debian:trixie-slim\n\
            COPY --from=builder /app /app\n";
        assert_eq!(
            from_images(dockerfile),
            ["golang:1.22", "debian:trixie-slim"]
        );
    }

    #[test]
    fn a_layer_is_left_out_only_on_the_stack_the_host_has() {
        let base_app = ids(&["base", "app"]);
        let host: BTreeSet<String> = chain_ids(&base_app).into_iter().collect();
        assert_eq!(
            chain_ids(&base_app)[0],
            "sha256:base",
            "the first chain id is the diff id"
        );
        // Another image on the same base: the base only.
        assert_eq!(
            skippable(&ids(&["base", "db"]), &host),
            BTreeSet::from(["sha256:base".to_owned()])
        );
        // The same top layer on another base: its chain differs, so it goes whole.
        assert!(skippable(&ids(&["other", "app"]), &host).is_empty());
        // Everything the host has.
        assert_eq!(skippable(&base_app, &host).len(), 2);
        // A diff id twice, once on a stack the host lacks: sent.
        let twice = ids(&["base", "empty", "x", "empty"]);
        let host: BTreeSet<String> = chain_ids(&twice[..2]).into_iter().collect();
        assert_eq!(
            skippable(&twice, &host),
            BTreeSet::from(["sha256:base".to_owned()])
        );
    }

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
