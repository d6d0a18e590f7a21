//! Release histories on the hosts (`hoist_core::release`): recorded after an apply that changed a
//! host, read by `hoist releases`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hoist_core::desired::{FileSpec, HostDesired};
use hoist_core::release::{HISTORY, History, Origin, kept_file};
use hoist_remote::error::{RemoteError, Result};
use hoist_remote::{Engine, Host, files};

/// Who applies, for the releases an apply records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applier {
    /// The controller's host name.
    pub by: String,
    /// The project's git revision, when it is a repository.
    pub revision: Option<String>,
    /// This apply, as every host it changes records it.
    pub run: String,
}

/// The host's release history (empty when it has none).
pub async fn history<H: Host>(host: &H) -> Result<History> {
    let read = files::read(host, &[HISTORY]).await?;
    match read.get(HISTORY) {
        None => Ok(History::default()),
        Some((_, bytes)) => History::parse(bytes)
            .map_err(|e| RemoteError::other(host.name(), format!("{HISTORY}: {e}"))),
    }
}

/// Records what `want` runs on `host` as its next release, with the image ids `engine` has for
/// its images; returns the release's id. A history that cannot be read is left as it is (and
/// the release is not recorded): it is never overwritten with a shorter one.
pub async fn record<H: Host, E: Engine>(
    host: &H,
    engine: Option<&E>,
    want: &HostDesired,
    applier: &Applier,
    plan: &str,
    changes: Vec<String>,
    restores: Option<u64>,
) -> Result<u64> {
    let mut h = history(host).await?;
    let kept_before: Vec<String> = h.kept_files().into_iter().map(str::to_owned).collect();
    let mut image_ids = BTreeMap::new();
    if let Some(e) = engine {
        for c in &want.containers {
            if !image_ids.contains_key(&c.image)
                && let Some(id) = e.image_id(&c.image).await?
            {
                image_ids.insert(c.image.clone(), id);
            }
        }
    }
    let id = h.record(
        want,
        &image_ids,
        Origin {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            by: applier.by.clone(),
            run: applier.run.clone(),
            plan: plan.to_owned(),
            revision: applier.revision.clone(),
            restores,
            changes,
        },
    );
    // The content of each file this release placed that no kept release did, private to root;
    // then the history; then the contents no kept release needs any more.
    for f in want.files.values() {
        let sum = f.sha256();
        if !kept_before.contains(&sum) {
            files::put(host, &private(kept_file(&sum), f.content.clone())).await?;
        }
    }
    files::put(host, &private(HISTORY.into(), h.to_json().into())).await?;
    let kept = h.kept_files();
    let unused: Vec<String> = kept_before
        .iter()
        .filter(|s| !kept.contains(s.as_str()))
        .map(|s| kept_file(s))
        .collect();
    files::remove(host, &unused.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    Ok(id)
}

fn private(path: String, content: hoist_core::desired::Content) -> FileSpec {
    FileSpec {
        path,
        content,
        mode: 0o600,
        owner: None,
        group: None,
        origin: "hoist".into(),
        sensitive: true,
    }
}

/// Puts the files at `paths` back as the host's current release placed them (from the contents
/// it keeps); a path the release did not place is left alone. Returns how many were put back.
pub async fn put_back<H: Host>(host: &H, paths: &[String]) -> Result<usize> {
    let h = history(host).await?;
    let Some(current) = h.last() else {
        return Ok(0);
    };
    let placed: Vec<(&String, &hoist_core::release::Placed)> = paths
        .iter()
        .filter_map(|p| current.files.get(p).map(|f| (p, f)))
        .collect();
    let kept: Vec<String> = placed.iter().map(|(_, f)| kept_file(&f.sha256)).collect();
    let read = files::read(host, &kept.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    for ((path, f), k) in placed.iter().zip(&kept) {
        let Some((_, bytes)) = read.get(k) else {
            return Err(RemoteError::other(
                host.name(),
                format!("the previous content of {path} is no longer kept"),
            ));
        };
        files::put(
            host,
            &FileSpec {
                path: (*path).clone(),
                content: hoist_core::desired::Content::from_bytes(bytes.clone()),
                mode: f.mode,
                owner: f.owner.clone(),
                group: f.group.clone(),
                origin: f.origin.clone(),
                sensitive: f.sensitive,
            },
        )
        .await?;
    }
    Ok(placed.len())
}

/// What `host` should run to be release `to` of its history `h` again, `now` being what the
/// project wants there today: the release's specs and images, and its files from the contents
/// the host keeps.
pub async fn restore<H: Host>(
    host: &H,
    h: &History,
    now: &HostDesired,
    to: u64,
) -> Result<HostDesired> {
    let Some(release) = h.get(to) else {
        return Err(RemoteError::other(
            host.name(),
            format!("no release {to} on this host (`hoist releases` lists them)"),
        ));
    };
    let paths: Vec<String> = release
        .files
        .values()
        .map(|f| kept_file(&f.sha256))
        .collect();
    let read = files::read(host, &paths.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let kept: BTreeMap<String, Vec<u8>> = release
        .files
        .values()
        .filter_map(|f| {
            read.get(&kept_file(&f.sha256))
                .map(|(_, bytes)| (f.sha256.clone(), bytes.clone()))
        })
        .collect();
    h.restore(to, now, &kept)
        .map_err(|e| RemoteError::other(host.name(), e))
}
