//! The sandbox's images: the Debian base (from the local engine, a registry, or debootstrap) and
//! the host image made from it, rebuilt only when its recipe changes.

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use futures_util::StreamExt as _;
use hoist_remote::local;

pub const BASE_IMAGE: &str = "debian:trixie-slim";
pub const HOST_IMAGE: &str = "hoist-sandbox-host:trixie";
/// The host image's recipe hash, on the image only.
const IMAGE_LABEL: &str = "io.hoist.sandbox.image";

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

/// `debian:trixie-slim`: taken from the local engine (unless an earlier hoist made it by an older
/// recipe), else pulled, else made with debootstrap.
pub async fn base_image(d: &Docker, progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    if let Ok(img) = d.inspect_image(BASE_IMAGE).await {
        let config = img.config.unwrap_or_default();
        let cmd = config.cmd.is_some_and(|c| !c.is_empty());
        if local::base_is_current(&config.labels.unwrap_or_default(), cmd) {
            return Ok(());
        }
        progress(&format!(
            "{BASE_IMAGE} was made by an earlier hoist: making it again, slimmed"
        ));
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
    local::debootstrap_image(d, "debian", "trixie-slim", "trixie", progress).await
}

/// The host image: a fresh Debian server with sshd (no Docker engine: installing it is hoist's job),
/// made again when its recipe or its base changes.
pub async fn host_image(d: &Docker, progress: &dyn Fn(&str)) -> anyhow::Result<()> {
    // The base's id too: a base made again (slimmed, updated) makes the host image again.
    let base = d
        .inspect_image(BASE_IMAGE)
        .await
        .ok()
        .and_then(|i| i.id)
        .unwrap_or_default();
    let hash = hoist_core::desired::sha256_hex(
        format!("{HOST_DOCKERFILE}{HOST_ENTRYPOINT}{base}").as_bytes(),
    );
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

/// The host image's labels.
pub(super) fn image_labels(hash: String) -> HashMap<String, String> {
    HashMap::from([(IMAGE_LABEL.to_owned(), hash)])
}
