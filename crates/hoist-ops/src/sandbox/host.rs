//! A sandbox host: its container (what a nested engine needs), the network it lives on, and its
//! host key recorded in the sandbox's known_hosts.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig, Mount,
    MountType, NetworkCreateRequest, NetworkingConfig,
};
use hoist_remote::Engine;
use hoist_remote::docker::DockerEngine;

use super::{HOST_IMAGE, KEY_LABEL, LABEL, NETWORK, SandboxHost, container_name};

/// The private network, with the subnet the inventory's addresses live in.
pub(super) async fn network(d: &Docker, hosts: &[SandboxHost]) -> anyhow::Result<()> {
    if d.inspect_network(
        NETWORK,
        None::<bollard::query_parameters::InspectNetworkOptions>,
    )
    .await
    .is_ok()
    {
        return Ok(());
    }
    let first = hosts.first().context("no sandbox host")?;
    let prefix: Vec<&str> = first.address.split('.').take(3).collect();
    let subnet = format!("{}.0/24", prefix.join("."));
    let req = NetworkCreateRequest {
        name: NETWORK.into(),
        driver: Some("bridge".into()),
        ipam: Some(Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(subnet),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        labels: Some(HashMap::from([(LABEL.to_owned(), "1".to_owned())])),
        ..Default::default()
    };
    d.create_network(req)
        .await
        .context("creating the sandbox network")?;
    Ok(())
}

/// The container of sandbox host `h`: a fresh server with its address on the sandbox network, its
/// engine's storage on a volume, and `pubkey` authorised.
pub(super) fn container(
    h: &SandboxHost,
    name: &str,
    pubkey: &Path,
    identity: &str,
) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(HOST_IMAGE.into()),
        hostname: Some(h.name.clone()),
        labels: Some(HashMap::from([
            (LABEL.to_owned(), h.name.clone()),
            (KEY_LABEL.to_owned(), identity.to_owned()),
        ])),
        host_config: Some(HostConfig {
            // What a nested engine needs here (TESTBED.md): every capability but SYS_RESOURCE,
            // unconfined profiles, the host's cgroups writable, and a real fs for /var/lib/docker.
            cap_add: Some(vec!["ALL".into()]),
            cap_drop: Some(vec!["SYS_RESOURCE".into()]),
            security_opt: Some(vec![
                "seccomp=unconfined".into(),
                "apparmor=unconfined".into(),
            ]),
            // `--security-opt systempaths=unconfined`, as the API spells it.
            masked_paths: Some(Vec::new()),
            readonly_paths: Some(Vec::new()),
            cgroupns_mode: Some(bollard::models::HostConfigCgroupnsModeEnum::HOST),
            mounts: Some(vec![
                Mount {
                    typ: Some(MountType::BIND),
                    source: Some("/sys/fs/cgroup".into()),
                    target: Some("/sys/fs/cgroup".into()),
                    read_only: Some(false),
                    ..Default::default()
                },
                Mount {
                    typ: Some(MountType::VOLUME),
                    source: Some(format!("{name}-docker")),
                    target: Some("/var/lib/docker".into()),
                    ..Default::default()
                },
                Mount {
                    typ: Some(MountType::BIND),
                    source: Some(pubkey.to_string_lossy().into_owned()),
                    target: Some("/sandbox/authorized_keys".into()),
                    read_only: Some(true),
                    ..Default::default()
                },
            ]),
            devices: Some(vec![bollard::models::DeviceMapping {
                path_on_host: Some("/dev/fuse".into()),
                path_in_container: Some("/dev/fuse".into()),
                cgroup_permissions: Some("rwm".into()),
            }]),
            network_mode: Some(NETWORK.into()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                NETWORK.to_owned(),
                EndpointSettings {
                    ipam_config: Some(EndpointIpamConfig {
                        ipv4_address: Some(h.address.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// Waits for each host's sshd and writes its host key to the sandbox's known_hosts.
pub(super) async fn known_hosts(
    d: &Docker,
    hosts: &[SandboxHost],
    path: &Path,
) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for h in hosts {
        let name = container_name(&h.name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let key = loop {
            let ready = tokio::net::TcpStream::connect((h.address.as_str(), 22))
                .await
                .is_ok();
            if ready {
                let (code, out) = Engine::exec(
                    &DockerEngine::new(&h.name, d.clone()),
                    &name,
                    &["cat".into(), "/etc/ssh/ssh_host_ed25519_key.pub".into()],
                    None,
                )
                .await?;
                if code == 0 {
                    break out;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("sandbox host {} did not start sshd within 60 s", h.name);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let mut words = key.split_whitespace();
        let (Some(kind), Some(body)) = (words.next(), words.next()) else {
            bail!("unexpected host key from {}: {key:?}", h.name)
        };
        lines.push(format!("{} {kind} {body}\n", h.address));
    }
    std::fs::write(path, lines.concat()).with_context(|| format!("writing {}", path.display()))
}
