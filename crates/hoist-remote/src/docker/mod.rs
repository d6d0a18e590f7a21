//! The real [`Engine`]: the Docker engine's API through the host's forwarded socket (bollard).
//! `convert` maps between the API's types and hoist's.

mod convert;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ExecConfig, HealthStatusEnum, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListImagesOptions, ListNetworksOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
    WaitContainerOptions,
};
use futures_util::StreamExt as _;
use hoist_core::desired::{
    ContainerSpec, IpamPool, NetworkSpec, ResourceOptions, VolumeSpec, labels,
};
use hoist_core::observed::{
    ImageDefaults, ObservedContainer, ObservedImage, ObservedNetwork, ObservedVolume,
};

use crate::engine::{ContainerState, Engine, Health as HealthState, Listed, Scratch, TarStream};
use crate::error::{RemoteError, Result};
use crate::ssh::SshHost;
use convert::{
    absent, create_body, endpoint, image_defaults, last_health, observed_container, scratch_body,
};

/// Seconds bollard waits for one API call.
const API_TIMEOUT_S: u64 = 600;

/// A host's Docker engine, reached through its forwarded socket.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    host: String,
    docker: Docker,
}

/// Connects to the host's engine through its forwarded socket, negotiating the API version.
pub async fn connect(host: &SshHost) -> Result<DockerEngine> {
    let socket = host.docker_socket().await?;
    let path = socket.to_string_lossy().into_owned();
    let d = Docker::connect_with_unix(&path, API_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        .map_err(|e| RemoteError::docker(&host.name, e))?;
    let docker = d
        .negotiate_version()
        .await
        .map_err(|e| RemoteError::docker(&host.name, e))?;
    Ok(DockerEngine {
        host: host.name.clone(),
        docker,
    })
}

impl DockerEngine {
    /// One exec of `argv` in `container`: its exit code and output.
    async fn exec_once(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
    ) -> Result<(i64, String)> {
        let cfg = ExecConfig {
            cmd: Some(argv.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            user: user.map(str::to_owned),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(container, cfg)
            .await
            .map_err(self.err())?;
        let mut out = String::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(self.err())?
        {
            while let Some(Ok(chunk)) = output.next().await {
                out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        let code = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(self.err())?
            .exit_code
            .unwrap_or(-1);
        Ok((code, out))
    }

    /// An engine already connected (the local one, say), named `host` in errors.
    pub fn new(host: &str, docker: Docker) -> DockerEngine {
        DockerEngine {
            host: host.to_owned(),
            docker,
        }
    }

    /// The bollard client, for image transfer.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    fn err(&self) -> impl Fn(bollard::errors::Error) -> RemoteError + '_ {
        move |e| RemoteError::docker(&self.host, e)
    }
}

/// Whether the engine could not start a container's process for a passing reason of its runtime
/// (the task's setup cut short), not because of the container's own configuration.
fn transient_runtime_failure(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 500, message }
            if message.contains("OCI runtime create failed")
                && (message.contains("init-p: connection reset by peer")
                    || message.contains("waiting for init preliminary setup"))
    )
}

impl Engine for DockerEngine {
    async fn ping(&self) -> Result<()> {
        self.docker.ping().await.map(|_| ()).map_err(self.err())
    }

    async fn containers(&self) -> Result<Vec<Listed>> {
        let all = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default().all(true).build(),
            ))
            .await
            .map_err(self.err())?;
        Ok(all
            .into_iter()
            .map(|c| Listed {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                status: c.status.unwrap_or_default(),
            })
            .collect())
    }

    async fn inspect(&self, name: &str) -> Result<Option<ObservedContainer>> {
        let inspect = match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i,
            Err(e) if absent(&e, &[404]) => return Ok(None),
            Err(e) => return Err(self.err()(e)),
        };
        let defaults = match &inspect.image {
            Some(id) => image_defaults(&self.docker, id).await,
            None => ImageDefaults::default(),
        };
        Ok(Some(observed_container(inspect, defaults)))
    }

    async fn state(&self, name: &str) -> Result<ContainerState> {
        let i = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(self.err())?;
        let state = i.state.unwrap_or_default();
        let health = match state.health.as_ref().and_then(|h| h.status) {
            Some(HealthStatusEnum::HEALTHY) => HealthState::Healthy,
            Some(HealthStatusEnum::UNHEALTHY) => HealthState::Unhealthy,
            Some(HealthStatusEnum::STARTING) => HealthState::Starting,
            _ => HealthState::None,
        };
        Ok(ContainerState {
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health,
            exit_code: state.exit_code,
            last_health: last_health(&state.health),
        })
    }

    async fn create(&self, spec: &ContainerSpec, name: &str) -> Result<()> {
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                create_body(spec),
            )
            .await
            .map_err(self.err())?;
        for (n, a) in spec.networks.iter().skip(1) {
            let req = bollard::models::NetworkConnectRequest {
                container: name.to_owned(),
                endpoint_config: Some(endpoint(spec, n, a)),
            };
            self.docker
                .connect_network(n, req)
                .await
                .map_err(self.err())?;
        }
        Ok(())
    }

    async fn start(&self, name: &str) -> Result<()> {
        // The runtime can fail to set a container's process up for reasons of the moment (runc's
        // "read init-p: connection reset by peer" under load): tried again once, a second later.
        let mut tried = 0;
        loop {
            match self
                .docker
                .start_container(name, None::<StartContainerOptions>)
                .await
            {
                Err(e) if tried == 0 && transient_runtime_failure(&e) => {
                    tracing::warn!(host = %self.host, "starting {name} again: {e}");
                    tried += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other.map_err(self.err()),
            }
        }
    }

    async fn stop(&self, name: &str, grace_s: Option<u64>) -> Result<()> {
        let t = grace_s.unwrap_or(10) as i32;
        match self
            .docker
            .stop_container(
                name,
                Some(StopContainerOptionsBuilder::default().t(t).build()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if absent(&e, &[304, 404]) => Ok(()),
            Err(e) => Err(self.err()(e)),
        }
    }

    async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        self.docker
            .kill_container(
                name,
                Some(
                    KillContainerOptionsBuilder::default()
                        .signal(signal)
                        .build(),
                ),
            )
            .await
            .map_err(self.err())
    }

    async fn remove(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if absent(&e, &[404]) => Ok(()),
            Err(e) => Err(self.err()(e)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.docker
            .rename_container(
                from,
                bollard::query_parameters::RenameContainerOptionsBuilder::default()
                    .name(to)
                    .build(),
            )
            .await
            .map_err(self.err())
    }

    async fn networks(&self) -> Result<BTreeMap<String, ObservedNetwork>> {
        let list = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(self.err())?;
        Ok(list
            .into_iter()
            .filter_map(|n| {
                Some((
                    n.name?,
                    ObservedNetwork {
                        driver: n.driver.unwrap_or_default(),
                        labels: n.labels.unwrap_or_default().into_iter().collect(),
                        options: ResourceOptions {
                            driver_opts: n.options.unwrap_or_default().into_iter().collect(),
                            internal: n.internal.unwrap_or(false),
                            enable_ipv6: n.enable_ipv6.unwrap_or(false),
                            ipam: n
                                .ipam
                                .and_then(|i| i.config)
                                .unwrap_or_default()
                                .into_iter()
                                .filter_map(|p| {
                                    Some(IpamPool {
                                        subnet: p.subnet?,
                                        gateway: p.gateway.filter(|g| !g.is_empty()),
                                        ip_range: p.ip_range.filter(|r| !r.is_empty()),
                                    })
                                })
                                .collect(),
                        },
                    },
                ))
            })
            .collect())
    }

    async fn create_network(&self, n: &NetworkSpec) -> Result<()> {
        let o = &n.options;
        let req = NetworkCreateRequest {
            name: n.name.clone(),
            driver: Some(n.driver.clone()),
            labels: Some(HashMap::from([(
                labels::PROJECT.to_owned(),
                n.project.clone(),
            )])),
            internal: Some(o.internal).filter(|i| *i),
            enable_ipv6: Some(o.enable_ipv6).filter(|i| *i),
            options: Some(o.driver_opts.clone().into_iter().collect::<HashMap<_, _>>())
                .filter(|m| !m.is_empty()),
            ipam: (!o.ipam.is_empty()).then(|| bollard::models::Ipam {
                config: Some(
                    o.ipam
                        .iter()
                        .map(|p| bollard::models::IpamConfig {
                            subnet: Some(p.subnet.clone()),
                            gateway: p.gateway.clone(),
                            ip_range: p.ip_range.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_network(req)
            .await
            .map(|_| ())
            .map_err(self.err())
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        self.docker.remove_network(name).await.map_err(self.err())
    }

    async fn disconnect_all(&self, name: &str) -> Result<()> {
        let network = self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(self.err())?;
        for id in network.containers.unwrap_or_default().into_keys() {
            let req = bollard::models::NetworkDisconnectRequest {
                container: id,
                force: Some(true),
            };
            self.docker
                .disconnect_network(name, req)
                .await
                .map_err(self.err())?;
        }
        Ok(())
    }

    async fn volumes(&self) -> Result<BTreeMap<String, ObservedVolume>> {
        let list = self
            .docker
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .map_err(self.err())?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                (
                    v.name,
                    ObservedVolume {
                        driver: v.driver,
                        labels: v.labels.into_iter().collect(),
                        driver_opts: v.options.into_iter().collect(),
                    },
                )
            })
            .collect())
    }

    async fn create_volume(&self, v: &VolumeSpec) -> Result<()> {
        let req = VolumeCreateRequest {
            name: Some(v.name.clone()),
            driver: Some(v.driver.clone()),
            driver_opts: Some(
                v.options
                    .driver_opts
                    .clone()
                    .into_iter()
                    .collect::<HashMap<_, _>>(),
            )
            .filter(|m| !m.is_empty()),
            labels: Some(HashMap::from([(
                labels::PROJECT.to_owned(),
                v.project.clone(),
            )])),
            ..Default::default()
        };
        self.docker
            .create_volume(req)
            .await
            .map(|_| ())
            .map_err(self.err())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        self.docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(self.err())
    }

    async fn images(&self) -> Result<Vec<ObservedImage>> {
        let list = self
            .docker
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(self.err())?;
        Ok(list
            .into_iter()
            .map(|i| ObservedImage {
                id: i.id,
                tags: i.repo_tags,
                labels: i.labels.into_iter().collect(),
            })
            .collect())
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.id),
            Err(e) if absent(&e, &[404]) => Ok(None),
            Err(e) => Err(self.err()(e)),
        }
    }

    async fn layers(&self) -> Result<std::collections::BTreeSet<String>> {
        // The containerd image store checks every blob of a loaded archive: a layer left out
        // would fail the load there. Only the classic store skips the layers it has.
        let info = self.docker.info().await.map_err(self.err())?;
        let containerd = info.driver_status.unwrap_or_default().iter().any(|kv| {
            kv.first().is_some_and(|k| k == "driver-type")
                && kv.get(1).is_some_and(|v| v.contains("containerd"))
        });
        if containerd {
            return Ok(std::collections::BTreeSet::new());
        }
        let images = self
            .docker
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(self.err())?;
        let mut layers = std::collections::BTreeSet::new();
        for image in images {
            // An image removed in between has no layers to offer.
            if let Ok(i) = self.docker.inspect_image(&image.id).await {
                let diff_ids = i.root_fs.and_then(|r| r.layers).unwrap_or_default();
                layers.extend(crate::images::chain_ids(&diff_ids));
            }
        }
        Ok(layers)
    }

    async fn load_image(&self, reference: &str, tar: TarStream) -> Result<()> {
        // The engine reads the body until it ends: a failed export ends it early, and the
        // caller reports the export's own words.
        let body = tar.map(|c| c.map_err(std::io::Error::other));
        let mut load = self.docker.import_image_stream(
            bollard::query_parameters::ImportImageOptionsBuilder::default()
                .quiet(true)
                .build(),
            body,
            None,
        );
        while let Some(item) = load.next().await {
            let info = item.map_err(|e| {
                RemoteError::docker(&self.host, format!("loading {reference}: {e}"))
            })?;
            if let Some(detail) = info.error_detail {
                return Err(RemoteError::docker(
                    &self.host,
                    format!(
                        "loading {reference}: {}",
                        detail.message.unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn tag_image(&self, id: &str, reference: &str) -> Result<()> {
        let (repo, tag) = repo_and_tag(reference).ok_or_else(|| {
            RemoteError::docker(
                &self.host,
                format!(
                    "tagging {id} as {reference}: a reference by digest names its content, it cannot be pointed at another image"
                ),
            )
        })?;
        let opts = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker.tag_image(id, Some(opts)).await.map_err(|e| {
            RemoteError::docker(&self.host, format!("tagging {id} as {reference}: {e}"))
        })
    }

    async fn pull_image(&self, reference: &str) -> Result<()> {
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_image(reference)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            item.map_err(|e| RemoteError::docker(&self.host, format!("pulling {reference}: {e}")))?;
        }
        Ok(())
    }

    async fn run_scratch(
        &self,
        name: &str,
        scratch: &Scratch,
        timeout: Duration,
    ) -> Result<(i64, String)> {
        self.remove(name).await?;
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                scratch_body(scratch),
            )
            .await
            .map_err(self.err())?;
        self.start(name).await?;
        let mut waiting = self
            .docker
            .wait_container(name, None::<WaitContainerOptions>);
        let exit = match tokio::time::timeout(timeout, waiting.next()).await {
            Err(_) => return Err(RemoteError::timeout(&self.host, name, timeout)),
            Ok(Some(Ok(r))) => r.status_code,
            // A non-zero exit arrives as an error carrying the code.
            Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(e))) => return Err(self.err()(e)),
            Ok(None) => -1,
        };
        Ok((exit, self.logs_tail(name, 10_000).await))
    }

    async fn exec(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
    ) -> Result<(i64, String)> {
        // The runtime may fail to start the process at all (runc under load: "OCI runtime exec
        // failed ... waiting for init preliminary setup"); then nothing ran, and it is tried again.
        let mut tries = 1;
        loop {
            let (code, out) = self.exec_once(container, argv, user).await?;
            if !never_started(code, &out) || tries == EXEC_TRIES {
                return Ok((code, out));
            }
            tries += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn logs_tail(&self, name: &str, n: usize) -> String {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        let mut stream = self.docker.logs(name, Some(opts));
        let mut out = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        out.trim_end().to_owned()
    }
}

/// How many times an exec whose process the runtime could not start is tried.
const EXEC_TRIES: u32 = 3;

/// Whether an exec failed before its process started: the runtime's own error, exit 126.
fn never_started(code: i64, output: &str) -> bool {
    code == 126 && output.contains("OCI runtime exec failed")
}

/// A tag reference's repository and tag (`latest` when it names none; a `:` before the last `/`
/// is a registry's port); `None` for a reference by digest, which no image can be tagged as.
fn repo_and_tag(reference: &str) -> Option<(&str, &str)> {
    if reference.contains('@') {
        return None;
    }
    Some(match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_reference_splits_into_repository_and_tag() {
        use super::repo_and_tag;
        assert_eq!(repo_and_tag("apm-api:1.2"), Some(("apm-api", "1.2")));
        assert_eq!(repo_and_tag("apm-api"), Some(("apm-api", "latest")));
        assert_eq!(
            repo_and_tag("registry.local:5000/apm/api"),
            Some(("registry.local:5000/apm/api", "latest"))
        );
        assert_eq!(
            repo_and_tag("registry.local:5000/apm/api:v2"),
            Some(("registry.local:5000/apm/api", "v2"))
        );
        assert_eq!(repo_and_tag("postgres@sha256:0123abcd"), None);
        assert_eq!(repo_and_tag("postgres:17@sha256:0123abcd"), None);
    }

    #[test]
    fn only_an_exec_the_runtime_could_not_start_is_tried_again() {
        let oci = "OCI runtime exec failed: exec failed: unable to start container process: waiting for init preliminary setup: read init-p: connection reset by peer: unknown";
        assert!(super::never_started(126, oci));
        // The command itself failed, or could not be found: it ran, or cannot.
        assert!(!super::never_started(1, oci));
        assert!(!super::never_started(126, "permission denied"));
        assert!(!super::never_started(0, ""));
    }

    use super::transient_runtime_failure;

    fn server_error(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    /// The runtime failure seen on the sandbox under load is tried again; a container's own
    /// mistake (a missing binary, a bad mount) is not.
    #[test]
    fn only_the_runtimes_passing_failures_are_tried_again() {
        assert!(transient_runtime_failure(&server_error(
            500,
            "failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: waiting for init preliminary setup: read init-p: connection reset by peer: unknown"
        )));
        assert!(!transient_runtime_failure(&server_error(
            500,
            "failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown"
        )));
        assert!(!transient_runtime_failure(&server_error(
            404,
            "No such container: x"
        )));
    }
}
