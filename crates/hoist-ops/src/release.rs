//! Release histories on the hosts (`hoist_core::release`): recorded after an apply that changed a
//! host, read by `hoist releases`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use hoist_core::desired::{FileSpec, HostDesired};
use hoist_core::release::{HISTORY, History, Origin};
use hoist_remote::error::{RemoteError, Result};
use hoist_remote::{Engine, Host, files};

/// Who applies, for the releases an apply records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applier {
    /// The controller's host name.
    pub by: String,
    /// The project's git revision, when it is a repository.
    pub revision: Option<String>,
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
    changes: Vec<String>,
    restores: Option<u64>,
) -> Result<u64> {
    let mut h = history(host).await?;
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
            revision: applier.revision.clone(),
            restores,
            changes,
        },
    );
    let file = FileSpec {
        path: HISTORY.into(),
        content: h.to_json().into(),
        mode: 0o600,
        owner: None,
        group: None,
        origin: "hoist".into(),
        sensitive: true,
    };
    files::put(host, &file).await?;
    Ok(id)
}
