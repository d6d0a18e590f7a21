//! The controller's own machine: its Docker engine (installed and started when running as root on
//! Debian), and the programs hoist runs on it (apt-get, debootstrap, tar, ssh-keygen). The sandbox
//! is built from these.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt as _;

mod slim;

/// On a base image hoist made with debootstrap: the recipe it was made by ([`slim::recipe`]).
pub const BASE_RECIPE_LABEL: &str = "io.hoist.base.recipe";

/// Whether the local image `labels` and `cmd` describe can serve as the Debian base: one from a
/// registry (it has a command and no hoist recipe), or one hoist made by today's recipe. An
/// image imported by an older hoist (no command, no recipe) is made again.
pub fn base_is_current(labels: &std::collections::HashMap<String, String>, cmd: bool) -> bool {
    match labels.get(BASE_RECIPE_LABEL) {
        Some(recipe) => *recipe == slim::recipe(),
        None => cmd,
    }
}

/// Makes sure a local engine answers; installs and starts one when running as root on Debian.
pub async fn engine(progress: &dyn Fn(&str)) -> anyhow::Result<Docker> {
    if let Ok(d) = Docker::connect_with_local_defaults()
        && d.ping().await.is_ok()
    {
        return Ok(d);
    }
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false) || uid_is_root();
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

fn uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The git revision of the repository `dir` is in (`git describe --always --dirty`), or `None`
/// when it is not in one or git is missing.
pub fn git_revision(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !rev.is_empty()).then_some(rev)
}

/// Whether `program` is on PATH (or in the system's sbin directories).
pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(program).is_file())
}

/// Runs `program` to its end, non-interactively; its error output when it fails.
pub async fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
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

/// Makes the image `repo:tag` from a minimal Debian `suite` tree built with debootstrap (installed
/// first when missing) and slimmed as the registry's slim images are ([`slim`]): the base image
/// when no registry can provide one.
pub async fn debootstrap_image(
    d: &Docker,
    repo: &str,
    tag: &str,
    suite: &str,
    progress: &dyn Fn(&str),
) -> anyhow::Result<()> {
    if !which("debootstrap") {
        progress("installing debootstrap");
        run("apt-get", &["update", "-q"]).await?;
        run("apt-get", &["install", "-y", "-q", "debootstrap"]).await?;
    }
    progress(&format!(
        "building {repo}:{tag} with debootstrap (about a minute)"
    ));
    let dir = tempfile::Builder::new()
        .prefix("hoist-debootstrap")
        .tempdir()?;
    let target = dir.path().to_string_lossy().into_owned();
    let result = async {
        run(
            "debootstrap",
            &[
                "--variant=minbase",
                suite,
                &target,
                "http://deb.debian.org/debian",
            ],
        )
        .await?;
        slim::apply(dir.path()).context("slimming the debootstrap tree")?;
        let mut tar = tokio::process::Command::new("tar")
            .args(["-C", &target, "--numeric-owner", "-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("running tar")?;
        let stdout = tar.stdout.take().context("tar output")?;
        let body = tokio_util::io::ReaderStream::with_capacity(stdout, 1 << 20);
        let opts = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(vec![
                slim::CMD.to_owned(),
                format!("LABEL {BASE_RECIPE_LABEL}={}", slim::recipe()),
            ])
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
    drop(dir);
    result
}

/// Makes an ed25519 key pair at `path` (and `path.pub`), without a passphrase.
pub fn keygen(path: &Path, comment: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .context("running ssh-keygen (install openssh-client)")?;
    if !status.success() {
        bail!("ssh-keygen failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_base_from_an_older_recipe_is_made_again_and_a_registry_one_is_kept() {
        let ours = HashMap::from([(BASE_RECIPE_LABEL.to_owned(), slim::recipe())]);
        let older = HashMap::from([(BASE_RECIPE_LABEL.to_owned(), "0123".to_owned())]);
        assert!(base_is_current(&ours, true));
        assert!(!base_is_current(&older, true));
        // The registry's image: a command, no recipe. An older hoist's import: neither.
        assert!(base_is_current(&HashMap::new(), true));
        assert!(!base_is_current(&HashMap::new(), false));
    }
}
