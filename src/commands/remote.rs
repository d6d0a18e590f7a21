//! Reaching hosts: connect to many at once, keeping per-host failures as results.

use std::collections::BTreeMap;

use futures_util::StreamExt as _;
use hoist_core::inventory::Inventory;
use hoist_remote::{ConnectOptions, RemoteError, SshHost};

use crate::cli::Global;

pub fn options(global: &Global) -> ConnectOptions {
    ConnectOptions {
        accept_new_host_keys: global.accept_new_host_keys,
        ..ConnectOptions::default()
    }
}

/// Connects to `names`, in parallel; returns the sessions and the errors, by host.
pub async fn connect(
    inv: &Inventory,
    names: &[String],
    global: &Global,
) -> (BTreeMap<String, SshHost>, BTreeMap<String, RemoteError>) {
    let opts = options(global);
    let results: Vec<(String, Result<SshHost, RemoteError>)> =
        futures_util::stream::iter(names.iter().filter_map(|n| inv.hosts.get(n)))
            .map(|h| {
                let opts = opts.clone();
                async move { (h.name.clone(), SshHost::connect(h, &opts).await) }
            })
            .buffer_unordered(global.forks.max(1))
            .collect()
            .await;
    let mut ok = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for (name, r) in results {
        match r {
            Ok(s) => {
                ok.insert(name, s);
            }
            Err(e) => {
                failed.insert(name, e);
            }
        }
    }
    (ok, failed)
}

/// Connects to `names` and runs `ask` on each, `--forks` at once: the answers by host name, in
/// name order, and the hosts that could not be reached. The connections are closed after.
pub async fn ask_each<T>(
    inv: &Inventory,
    names: &[String],
    global: &Global,
    ask: impl AsyncFn(&SshHost) -> Result<T, RemoteError>,
) -> (
    Vec<(String, Result<T, RemoteError>)>,
    BTreeMap<String, RemoteError>,
) {
    let (hosts, failed) = connect(inv, names, global).await;
    let ask = &ask;
    let mut answers: Vec<(String, Result<T, RemoteError>)> =
        futures_util::stream::iter(hosts.iter())
            .map(|(name, ssh)| async move { (name.clone(), ask(ssh).await) })
            .buffer_unordered(global.forks.max(1))
            .collect()
            .await;
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    close(hosts).await;
    (answers, failed)
}

/// Connects to every one of `names`; the first host that fails is the error (the others are
/// closed again).
pub async fn connect_every(
    inv: &Inventory,
    names: &[String],
    global: &Global,
) -> anyhow::Result<BTreeMap<String, SshHost>> {
    let (hosts, failed) = connect(inv, names, global).await;
    if let Some(e) = failed.into_values().next() {
        close(hosts).await;
        return Err(e.into());
    }
    Ok(hosts)
}

/// Closes every session.
pub async fn close(hosts: BTreeMap<String, SshHost>) {
    futures_util::future::join_all(hosts.into_values().map(SshHost::close)).await;
}
