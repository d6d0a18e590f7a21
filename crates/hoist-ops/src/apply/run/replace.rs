//! Replacing a running container new-first, putting the old one back if the new one fails.

use hoist_core::desired::{ContainerSpec, scratch};
use hoist_remote::Engine;
use hoist_remote::error::{RemoteError, Result};

/// Replaces a running container with one made from `spec`: the new one is created beside it
/// first (most failures happen there, with the old one untouched), then the old one stops and
/// hands over its name; if the new one does not start, the old one is put back. Every error says
/// what state the service was left in.
pub(super) async fn replace<E: Engine>(host: &str, d: &E, spec: &ContainerSpec) -> Result<()> {
    let (name, new, old) = (
        &spec.name,
        scratch::new_name(&spec.name),
        scratch::old_name(&spec.name),
    );
    let left = |e: RemoteError, state: &str| {
        RemoteError::new(
            host,
            e.kind,
            format!("replacing {name}: {}; {name} {state}", e.detail),
        )
    };
    d.remove(&new).await?;
    d.remove(&old).await?;
    if let Err(e) = d.create(spec, &new).await {
        // Created but not connected to every network, say: no half-made replacement stays.
        let _ = d.remove(&new).await;
        return Err(left(e, "was left as it was"));
    }
    if let Err(e) = d.stop(name, spec.stop_grace_period_s).await {
        let _ = d.remove(&new).await;
        // The stop may have taken effect all the same (an API timeout).
        let _ = d.start(name).await;
        return Err(left(e, "was left as it was"));
    }
    if let Err(e) = d.rename(name, &old).await {
        let _ = d.remove(&new).await;
        let _ = d.start(name).await;
        return Err(left(e, "was started again as it was"));
    }
    if let Err(e) = d.rename(&new, name).await {
        let _ = d.remove(&new).await;
        return Err(left(e, restored(put_back(d, &old, name).await)));
    }
    if let Err(e) = d.start(name).await {
        let _ = d.remove(name).await;
        return Err(left(e, restored(put_back(d, &old, name).await)));
    }
    d.remove(&old).await.map_err(|e| {
        left(
            e,
            &format!("runs the new container; the previous one is left as {old}"),
        )
    })
}

/// The previous container under its name again, started: only if it got its name back.
async fn put_back<E: Engine>(d: &E, old: &str, name: &str) -> bool {
    match d.rename(old, name).await {
        Ok(()) => d.start(name).await.is_ok(),
        Err(_) => false,
    }
}

fn restored(ok: bool) -> &'static str {
    if ok {
        "is the previous container again, running"
    } else {
        "is down: neither the new nor the previous container runs"
    }
}
