//! The local sandbox: test hosts that are containers on a private Docker network, each with its own
//! address, sshd and (once hoist installs it) Docker engine, as TESTBED.md describes.
//!
//! `up` prepares what it needs and reuses what exists: the local engine (installed and started
//! when running as root on Debian), a `debian:trixie-slim` base made with debootstrap when no
//! registry can provide one, the host image, the network, the key and known_hosts.

pub mod material;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig, Mount,
    MountType, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
};
use futures_util::StreamExt as _;
use hoist_core::inventory::Inventory;

pub use material::{INVENTORY, Paths, STATE_DIR};

/// Label on the hosts and the network the sandbox creates (never on its image, whose labels every
/// container made from it inherits), so `down` removes exactly those.
pub const LABEL: &str = "io.hoist.sandbox";
/// The host image's recipe hash, on the image only.
const IMAGE_LABEL: &str = "io.hoist.sandbox.image";
/// Which key a sandbox host authorises.
const KEY_LABEL: &str = "io.hoist.sandbox.key";
pub const NETWORK: &str = "hoist-sandbox";
pub const BASE_IMAGE: &str = "debian:trixie-slim";
pub const HOST_IMAGE: &str = "hoist-sandbox-host:trixie";

const HOST_DOCKERFILE: &str = r#"FROM debian:trixie-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      openssh-server ca-certificates iproute2 procps curl init-system-helpers sudo \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh \
 && rm -f /etc/ssh/ssh_host_* \
 && groupadd --system docker \
 && useradd --create-home --shell /bin/sh --groups docker deploy \
 && echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy && chmod 440 /etc/sudoers.d/deploy
COPY entrypoint /usr/local/sbin/sandbox-entrypoint
CMD ["/usr/local/sbin/sandbox-entrypoint"]
"#;

/// A fresh server: sshd with key-only login (root, and `deploy`, a sudoer in the docker group, for
/// `become`); host keys made on first boot.
const HOST_ENTRYPOINT: &str = r#"#!/bin/sh
set -e
[ -f /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -A >/dev/null
install -m 600 /sandbox/authorized_keys /root/.ssh/authorized_keys
install -d -m 700 -o deploy -g deploy /home/deploy/.ssh
install -m 600 -o deploy -g deploy /sandbox/authorized_keys /home/deploy/.ssh/authorized_keys
exec /usr/sbin/sshd -D -e -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password
"#;

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

/// Makes sure a local engine answers; installs and starts one when running as root on Debian.
pub async fn local_engine(progress: &dyn Fn(&str)) -> anyhow::Result<Docker> {
    if let Ok(d) = Docker::connect_with_local_defaults()
        && d.ping().await.is_ok()
    {
        return Ok(d);
    }
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false) || unsafe_uid_is_root();
    let debian = std::fs::read_to_string("/etc/os-release")
        .map(|s| s.contains("ID=debian") || s.contains("ID_LIKE=debian"))
        .unwrap_or(false);
    if !which("dockerd") {
        if !(root && debian) {
            bail!(
                "no Docker engine here: install one (Debian: apt-get install docker.io) and start it, or run as root on Debian and hoist will"
            );
        }
        progress("installing the Docker engine (docker.io)");
        run("apt-get", &["update", "-q"]).await?;
        run(
            "apt-get",
            &[
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "docker.io",
            ],
        )
        .await?;
    }
    if !root {
        bail!(
            "the Docker engine is installed but not running, and starting it needs root (sudo dockerd)"
        );
    }
    progress("starting the Docker engine");
    let log =
        std::fs::File::create("/var/log/dockerd.log").context("creating /var/log/dockerd.log")?;
    std::process::Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting dockerd")?;
    for _ in 0..120 {
        if let Ok(d) = Docker::connect_with_local_defaults()
            && d.ping().await.is_ok()
        {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("dockerd did not answer within 60 s (see /var/log/dockerd.log)")
}

fn unsafe_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(program).is_file())
}

async fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            err.lines().rev().take(10).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// `debian:trixie-slim`: taken from the local engine, else pulled, else made with debootstrap.
pub async fn base_image(d: &Docker, progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    if d.inspect_image(BASE_IMAGE).await.is_ok() {
        return Ok(());
    }
    let pull = CreateImageOptionsBuilder::default()
        .from_image(BASE_IMAGE)
        .build();
    let mut stream = d.create_image(Some(pull), None, None);
    let mut pulled = true;
    while let Some(item) = stream.next().await {
        if item.is_err() {
            pulled = false;
            break;
        }
    }
    if pulled && d.inspect_image(BASE_IMAGE).await.is_ok() {
        return Ok(());
    }
    if !which("debootstrap") {
        progress("installing debootstrap");
        run("apt-get", &["update", "-q"]).await?;
        run("apt-get", &["install", "-y", "-q", "debootstrap"]).await?;
    }
    progress("building debian:trixie-slim with debootstrap (about a minute)");
    let dir = tempdir("hoist-trixie")?;
    let target = dir.to_string_lossy().into_owned();
    let result = async {
        run(
            "debootstrap",
            &[
                "--variant=minbase",
                "trixie",
                &target,
                "http://deb.debian.org/debian",
            ],
        )
        .await?;
        let mut tar = tokio::process::Command::new("tar")
            .args(["-C", &target, "--numeric-owner", "-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("running tar")?;
        let stdout = tar.stdout.take().context("tar output")?;
        let body = tokio_util::io::ReaderStream::with_capacity(stdout, 1 << 20);
        let opts = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo("debian")
            .tag("trixie-slim")
            .build();
        let mut import = d.create_image(Some(opts), Some(bollard::body_try_stream(body)), None);
        while let Some(item) = import.next().await {
            item.context("importing the debootstrap tree")?;
        }
        let status = tar.wait().await?;
        if !status.success() {
            bail!("tar failed ({status})");
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempdir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The host image: a fresh Debian server with sshd (no Docker engine: installing it is hoist's job).
pub async fn host_image(d: &Docker, progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    let hash =
        hoist_core::desired::sha256_hex(format!("{HOST_DOCKERFILE}{HOST_ENTRYPOINT}").as_bytes());
    if let Ok(img) = d.inspect_image(HOST_IMAGE).await {
        let labels = img.config.and_then(|c| c.labels).unwrap_or_default();
        if labels.get(IMAGE_LABEL).map(String::as_str) == Some(hash.as_str()) {
            return Ok(());
        }
    }
    progress("building the sandbox host image");
    let mut b = tar::Builder::new(Vec::new());
    for (name, body, mode) in [
        ("Dockerfile", HOST_DOCKERFILE, 0o644),
        ("entrypoint", HOST_ENTRYPOINT, 0o755),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        b.append_data(&mut h, name, body.as_bytes())?;
    }
    let context = b.into_inner()?;
    let labels = image_labels(hash);
    let opts = BuildImageOptionsBuilder::default()
        .t(HOST_IMAGE)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .build();
    let mut stream = d.build_image(opts, None, Some(bollard::body_full(context.into())));
    let mut tail = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.context("building the sandbox host image")?;
        if let Some(s) = info.stream {
            tail.push(s.trim_end().to_owned());
        }
        if let Some(e) = info.error_detail {
            bail!(
                "building the sandbox host image: {}\n{}",
                e.message.unwrap_or_default(),
                tail.join("\n")
            );
        }
    }
    Ok(())
}

/// The private network, with the subnet the inventory's addresses live in.
async fn network(d: &Docker, hosts: &[SandboxHost]) -> anyhow::Result<()> {
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

/// Creates and starts the sandbox hosts that do not run yet, then records their host keys.
pub async fn up(
    project: &Path,
    hosts: &[SandboxHost],
    progress: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let addresses: Vec<String> = hosts.iter().map(|h| h.address.clone()).collect();
    material::init(project, &addresses)?;
    let paths = Paths::new(project);
    let d = local_engine(progress).await?;
    base_image(&d, progress).await?;
    host_image(&d, progress).await?;
    network(&d, hosts).await?;
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
        let body = ContainerCreateBody {
            image: Some(HOST_IMAGE.into()),
            hostname: Some(h.name.clone()),
            labels: Some(HashMap::from([
                (LABEL.to_owned(), h.name.clone()),
                (KEY_LABEL.to_owned(), identity.clone()),
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
        };
        d.create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .with_context(|| format!("creating {name}"))?;
        d.start_container(&name, None::<StartContainerOptions>)
            .await
            .with_context(|| format!("starting {name}"))?;
    }
    known_hosts(&d, hosts, &paths.state.join("known_hosts")).await
}

/// Waits for each host's sshd and writes its host key to the sandbox's known_hosts.
async fn known_hosts(d: &Docker, hosts: &[SandboxHost], path: &Path) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for h in hosts {
        let name = container_name(&h.name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let key = loop {
            let ready = tokio::net::TcpStream::connect((h.address.as_str(), 22))
                .await
                .is_ok();
            if ready {
                let (code, out) = crate::Engine::exec(
                    &crate::docker::DockerEngine::new(&h.name, d.clone()),
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

/// The host image's labels.
fn image_labels(hash: String) -> HashMap<String, String> {
    HashMap::from([(IMAGE_LABEL.to_owned(), hash)])
}

/// What `down` selects containers by: a label only `up` sets on the hosts it creates.
fn down_filters() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![LABEL.to_owned()])])
}

/// Removes every sandbox container, its engine volume, and the network.
pub async fn down(progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    let d = local_engine(progress).await?;
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
        let image = image_labels("hash".into());
        for selector in &down_filters()["label"] {
            let key = selector.split('=').next().unwrap_or_default();
            assert!(!image.contains_key(key), "{key}");
        }
    }
}
