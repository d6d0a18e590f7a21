//! The local sandbox: test hosts that are containers on a private Docker network, each with its own
//! address, sshd and (once hoist installs it) Docker engine, as TESTBED.md describes.
//!
//! `up` prepares what it needs and reuses what exists: the local engine
//! ([`hoist_remote::local::engine`]), a `debian:trixie-slim` base made with debootstrap when no
//! registry can provide one, the host image ([`image`]), the network, the hosts and their
//! known_hosts ([`host`]), the key and TLS material ([`material`]).

mod host;
mod image;
pub mod material;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use bollard::Docker;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions,
};
use hoist_core::inventory::Inventory;
use hoist_remote::local;

pub use image::{BASE_IMAGE, HOST_IMAGE};
pub use material::{INVENTORY, Paths, STATE_DIR};

/// Label on the hosts and the network the sandbox creates (never on its image, whose labels every
/// container made from it inherits), so `down` removes exactly those.
pub const LABEL: &str = "io.hoist.sandbox";
/// Which key a sandbox host authorises.
const KEY_LABEL: &str = "io.hoist.sandbox.key";
pub const NETWORK: &str = "hoist-sandbox";

/// One sandbox host.
#[derive(Debug, Clone)]
pub struct SandboxHost {
    pub name: String,
    pub address: String,
}

/// The hosts of the sandbox inventory, or `count` of them.
pub fn hosts(inv: &Inventory, count: Option<usize>) -> anyhow::Result<Vec<SandboxHost>> {
    let mut hosts: Vec<SandboxHost> = inv
        .hosts
        .values()
        .map(|h| SandboxHost {
            name: h.name.clone(),
            address: h.address.clone(),
        })
        .collect();
    hosts.sort_by_key(|h| {
        h.address
            .split('.')
            .next_back()
            .and_then(|o| o.parse::<u8>().ok())
            .unwrap_or(0)
    });
    if let Some(n) = count {
        if n == 0 || n > hosts.len() {
            bail!(
                "--hosts {n}: the sandbox inventory has {} host(s); add hosts to {INVENTORY}/hosts.yml for more",
                hosts.len()
            );
        }
        hosts.truncate(n);
    }
    Ok(hosts)
}

fn container_name(host: &str) -> String {
    format!("hoist-sandbox-{host}")
}

/// Creates and starts the sandbox hosts that do not run yet, then records their host keys.
pub async fn up(
    project: &Path,
    hosts: &[SandboxHost],
    progress: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let addresses: Vec<String> = hosts.iter().map(|h| h.address.clone()).collect();
    material::init(project, &addresses)?;
    let paths = Paths::new(project);
    let d = local::engine(progress).await?;
    image::base_image(&d, progress).await?;
    image::host_image(&d, progress).await?;
    host::network(&d, hosts).await?;
    let pubkey =
        std::fs::canonicalize(paths.key.with_extension("pub")).context("the sandbox public key")?;
    // A host made for another key (another checkout) is made again.
    let identity = hoist_core::desired::sha256_hex(
        format!("{}{}", std::fs::read_to_string(&pubkey)?, pubkey.display()).as_bytes(),
    );
    for h in hosts {
        let name = container_name(&h.name);
        let inspect = d
            .inspect_container(
                &name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await;
        if let Ok(c) = inspect {
            let labels = c
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default();
            if labels.get(KEY_LABEL) != Some(&identity) {
                progress(&format!(
                    "replacing sandbox host {} (made for another key)",
                    h.name
                ));
                let opts = RemoveContainerOptionsBuilder::default().force(true).build();
                d.remove_container(&name, Some(opts)).await?;
                let volume = format!("{name}-docker");
                let _ = d
                    .remove_volume(
                        &volume,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await;
            } else if c.state.as_ref().and_then(|s| s.running) == Some(true) {
                continue;
            } else {
                d.start_container(&name, None::<StartContainerOptions>)
                    .await
                    .with_context(|| format!("starting {name}"))?;
                continue;
            }
        }
        progress(&format!("starting sandbox host {} ({})", h.name, h.address));
        d.create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            host::container(h, &name, &pubkey, &identity),
        )
        .await
        .with_context(|| format!("creating {name}"))?;
        d.start_container(&name, None::<StartContainerOptions>)
            .await
            .with_context(|| format!("starting {name}"))?;
    }
    host::known_hosts(&d, hosts, &paths.state.join("known_hosts")).await
}

/// The state of each sandbox host container.
pub async fn status(hosts: &[SandboxHost]) -> anyhow::Result<Vec<(SandboxHost, String)>> {
    let d =
        Docker::connect_with_local_defaults().context("connecting to the local Docker engine")?;
    d.ping()
        .await
        .context("the local Docker engine does not answer")?;
    let mut out = Vec::new();
    for h in hosts {
        let state = match d
            .inspect_container(
                &container_name(&h.name),
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(c) => c
                .state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            Err(_) => "absent".into(),
        };
        out.push((h.clone(), state));
    }
    Ok(out)
}

/// What `down` selects containers by: a label only `up` sets on the hosts it creates.
fn down_filters() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![LABEL.to_owned()])])
}

/// Removes every sandbox container, its engine volume, and the network.
pub async fn down(progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    let d = local::engine(progress).await?;
    let filters = down_filters();
    let list = d
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await?;
    for c in list {
        let name = c
            .names
            .unwrap_or_default()
            .first()
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        progress(&format!("removing {name}"));
        d.remove_container(
            &name,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await?;
        let _ = d
            .remove_volume(
                &format!("{name}-docker"),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
    let _ = d.remove_network(NETWORK).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container someone else made from the sandbox's host image inherits the image's labels:
    /// `down` must not select it.
    #[test]
    fn down_never_selects_by_a_label_the_host_image_carries() {
        let image = image::image_labels("hash".into());
        for selector in &down_filters()["label"] {
            let key = selector.split('=').next().unwrap_or_default();
            assert!(!image.contains_key(key), "{key}");
        }
    }
}
