//! Observing many hosts at once, keeping each host's failure as a result.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use hoist_core::desired::Desired;
use hoist_core::observed::{HostObserved, Observed};
use hoist_remote::error::RemoteError;
use hoist_remote::{Host, observe};

/// Observes every connected host of `desired`, `forks` at once; the hosts that failed are
/// returned apart.
pub async fn all<H: Host>(
    hosts: &BTreeMap<String, H>,
    desired: &Desired,
    forks: usize,
) -> (Observed, BTreeMap<String, RemoteError>) {
    let results: Vec<(String, Result<HostObserved, RemoteError>)> =
        futures_util::stream::iter(desired.hosts.iter())
            .filter_map(|(name, want)| async move { hosts.get(name).map(|h| (name, want, h)) })
            .map(|(name, want, h)| async move { (name.clone(), observe::host(h, want).await) })
            .buffer_unordered(forks.max(1))
            .collect()
            .await;
    let mut observed = Observed::default();
    let mut failed = BTreeMap::new();
    for (name, r) in results {
        match r {
            Ok(o) => {
                observed.hosts.insert(name, o);
            }
            Err(e) => {
                failed.insert(name, e);
            }
        }
    }
    (observed, failed)
}
