//! Observing a host: its engine, the files hoist manages, and what its engine holds, in as few round
//! trips as possible (one command for the engine facts, one for every file, then the engine's API).

use std::collections::BTreeMap;

use hoist_core::desired::{HostDesired, labels};
use hoist_core::observed::{DockerState, HostObserved};

use crate::engine::Engine;
use crate::error::Result;
use crate::host::Host;
use crate::{files, script, setup};

/// What `host` has, for the resources `want` names (and what hoist owns there).
pub async fn host<H: Host>(host: &H, want: &HostDesired) -> Result<HostObserved> {
    let mut paths: Vec<&str> = want.files.keys().map(String::as_str).collect();
    paths.push(script::DAEMON_JSON);
    let (facts, mut found) = tokio::try_join!(setup::facts(host), files::read(host, &paths))?;
    let daemon = found
        .remove(script::DAEMON_JSON)
        .and_then(|(_, bytes)| serde_json::from_slice(&bytes).ok());
    let files = found
        .into_iter()
        .map(|(path, (file, _))| (path, file))
        .collect();
    let docker = if facts.installed && facts.running {
        match host.engine().await {
            Ok(d) => Some(engine(&d, want).await?),
            Err(e) => {
                tracing::warn!(host = %host.name(), "engine not answering: {e}");
                None
            }
        }
    } else {
        None
    };
    Ok(HostObserved {
        engine: Some(facts.state(daemon)),
        files,
        docker,
    })
}

/// The networks, volumes, images and containers relevant to `want`: what hoist owns (its project
/// label), and what the desired state names.
pub async fn engine<E: Engine>(d: &E, want: &HostDesired) -> Result<DockerState> {
    let owned = |l: &BTreeMap<String, String>| l.contains_key(labels::PROJECT);
    let (networks, volumes, mut images, listed) =
        tokio::try_join!(d.networks(), d.volumes(), d.images(), d.containers())?;
    let mut state = DockerState {
        networks: networks
            .into_iter()
            .filter(|(name, n)| want.networks.contains_key(name) || owned(&n.labels))
            .collect(),
        volumes: volumes
            .into_iter()
            .filter(|(name, v)| want.volumes.contains_key(name) || owned(&v.labels))
            .collect(),
        ..DockerState::default()
    };
    images.sort_by(|a, b| a.id.cmp(&b.id));
    state.images = images;
    let wanted = |name: &str| want.containers.iter().any(|c| c.name == name);
    let names: BTreeMap<String, String> = listed
        .iter()
        .map(|c| (c.id.clone(), c.name.clone()))
        .collect();
    for c in listed {
        if !owned(&c.labels) && !wanted(&c.name) {
            continue;
        }
        if let Some(mut found) = d.inspect(&c.name).await? {
            name_namespaces(&mut found.networks, &names);
            state.containers.insert(c.name, found);
        }
    }
    Ok(state)
}

/// The engine reports a network namespace shared with another container by that container's id
/// (`container:<id>`); hoist names it as it asked for it (`container:<name>`). A container no
/// longer there keeps its id, which then differs from every name.
fn name_namespaces(networks: &mut BTreeMap<String, Vec<String>>, names: &BTreeMap<String, String>) {
    let shared: Vec<String> = networks
        .keys()
        .filter(|n| n.starts_with("container:"))
        .cloned()
        .collect();
    for key in shared {
        let Some(name) = names.get(&key["container:".len()..]) else {
            continue;
        };
        if let Some(aliases) = networks.remove(&key) {
            networks.insert(format!("container:{name}"), aliases);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_namespace_is_named_by_the_container_that_has_it() {
        let names = BTreeMap::from([("f00d".to_owned(), "shop-web-1".to_owned())]);
        let mut networks = BTreeMap::from([
            ("container:f00d".to_owned(), Vec::new()),
            ("shop_default".to_owned(), vec!["web".to_owned()]),
        ]);
        name_namespaces(&mut networks, &names);
        assert_eq!(
            networks.keys().collect::<Vec<_>>(),
            ["container:shop-web-1", "shop_default"]
        );
        // A container no longer there keeps its id (which differs from every name), and a name
        // stays a name.
        for key in ["container:dead", "container:shop-web-1"] {
            let mut networks = BTreeMap::from([(key.to_owned(), Vec::new())]);
            name_namespaces(&mut networks, &names);
            assert_eq!(networks.keys().collect::<Vec<_>>(), [key]);
        }
    }
}
