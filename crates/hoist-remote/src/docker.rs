//! The Docker engine's API, through the host's forwarded socket (bollard): observe what hoist
//! manages, and create, start, stop and remove it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ExecConfig, HealthConfig,
    HealthStatusEnum, HostConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    ListImagesOptions, ListNetworksOptions, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, StopContainerOptionsBuilder,
};
use futures_util::StreamExt as _;
use hoist_core::desired::{ContainerSpec, HostDesired, NetworkSpec, VolumeSpec, labels};
use hoist_core::observed::{
    DockerState, ImageDefaults, ObservedContainer, ObservedImage, ObservedMount, ObservedNetwork,
    ObservedVolume,
};
use hoist_core::stack::{Health, Port};

use crate::error::{RemoteError, Result};
use crate::ssh::SshHost;

/// Seconds bollard waits for one API call.
const API_TIMEOUT_S: u64 = 600;

/// Connects to the host's engine through its forwarded socket, negotiating the API version.
pub async fn connect(host: &SshHost) -> Result<Docker> {
    let socket = host.docker_socket().await?;
    let path = socket.to_string_lossy().into_owned();
    let d = Docker::connect_with_unix(&path, API_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        .map_err(|e| RemoteError::docker(&host.name, e))?;
    d.negotiate_version()
        .await
        .map_err(|e| RemoteError::docker(&host.name, e))
}

/// Observes the networks, volumes, images and containers relevant to `want` (what hoist owns, and
/// what the desired state names).
pub async fn observe(host: &str, d: &Docker, want: &HostDesired) -> Result<DockerState> {
    let err = |e: bollard::errors::Error| RemoteError::docker(host, e);
    let mut state = DockerState::default();
    for n in d
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map_err(err)?
    {
        let Some(name) = n.name else { continue };
        let labels: BTreeMap<String, String> = n.labels.unwrap_or_default().into_iter().collect();
        if want.networks.contains_key(&name) || labels.contains_key(labels::PROJECT) {
            state.networks.insert(
                name,
                ObservedNetwork {
                    driver: n.driver.unwrap_or_default(),
                    labels,
                },
            );
        }
    }
    let volumes = d
        .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
        .await
        .map_err(err)?;
    for v in volumes.volumes.unwrap_or_default() {
        let labels: BTreeMap<String, String> = v.labels.into_iter().collect();
        if want.volumes.contains_key(&v.name) || labels.contains_key(labels::PROJECT) {
            state.volumes.insert(
                v.name,
                ObservedVolume {
                    driver: v.driver,
                    labels,
                },
            );
        }
    }
    for i in d
        .list_images(None::<ListImagesOptions>)
        .await
        .map_err(err)?
    {
        state.images.push(ObservedImage {
            id: i.id,
            tags: i.repo_tags,
            labels: i.labels.into_iter().collect(),
        });
    }
    state.images.sort_by(|a, b| a.id.cmp(&b.id));
    let all = d
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ))
        .await
        .map_err(err)?;
    let wanted: Vec<&str> = want.containers.iter().map(|c| c.name.as_str()).collect();
    for c in all {
        let name = c
            .names
            .unwrap_or_default()
            .first()
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default();
        let owned = c
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(labels::PROJECT));
        if !owned && !wanted.contains(&name.as_str()) {
            continue;
        }
        let inspect = d
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(err)?;
        let defaults = match &inspect.image {
            Some(id) => image_defaults(d, id).await,
            None => ImageDefaults::default(),
        };
        state
            .containers
            .insert(name, observed_container(inspect, defaults));
    }
    Ok(state)
}

async fn image_defaults(d: &Docker, id: &str) -> ImageDefaults {
    let Ok(img) = d.inspect_image(id).await else {
        return ImageDefaults::default();
    };
    let Some(c) = img.config else {
        return ImageDefaults::default();
    };
    ImageDefaults {
        env: c.env.unwrap_or_default(),
        cmd: c.cmd,
        entrypoint: c.entrypoint,
        healthcheck: c.healthcheck.map(health_of),
        user: c.user.unwrap_or_default(),
        working_dir: c.working_dir.unwrap_or_default(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
    }
}

fn health_of(h: HealthConfig) -> Health {
    let ns = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    Health {
        test: h.test.unwrap_or_default(),
        interval_ns: ns(h.interval),
        timeout_ns: ns(h.timeout),
        retries: ns(h.retries),
        start_period_ns: ns(h.start_period),
    }
}

fn observed_container(
    i: ContainerInspectResponse,
    image_defaults: ImageDefaults,
) -> ObservedContainer {
    let config = i.config.unwrap_or_default();
    let host = i.host_config.unwrap_or_default();
    let state = i.state.unwrap_or_default();
    let mut ports = Vec::new();
    for (key, bindings) in host.port_bindings.unwrap_or_default() {
        let (target, protocol) = key.split_once('/').unwrap_or((&key, "tcp"));
        let Ok(target) = target.parse::<u16>() else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            let published = b
                .host_port
                .as_deref()
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0);
            ports.push(Port {
                host_ip: b.host_ip.unwrap_or_default(),
                published,
                target,
                protocol: protocol.to_owned(),
            });
        }
    }
    ports.sort();
    let mounts = i
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let kind = m.typ.map(|t| t.to_string()).unwrap_or_default();
            let source = if kind == "volume" {
                m.name.unwrap_or_default()
            } else {
                m.source.unwrap_or_default()
            };
            ObservedMount {
                kind,
                source,
                target: m.destination.unwrap_or_default(),
                read_only: !m.rw.unwrap_or(true),
            }
        })
        .collect();
    let networks = i
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, e)| {
            let mut a = e.aliases.unwrap_or_default();
            a.extend(e.dns_names.unwrap_or_default());
            a.sort();
            a.dedup();
            (name, a)
        })
        .collect();
    let restart = match host.restart_policy {
        Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(n),
        }) if n > 0 => format!("on-failure:{n}"),
        Some(RestartPolicy { name: Some(n), .. }) => n.to_string(),
        _ => String::new(),
    };
    ObservedContainer {
        image: config.image.unwrap_or_default(),
        image_id: i.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty()),
        exit_code: state.exit_code,
        env: config.env.unwrap_or_default(),
        cmd: config.cmd,
        entrypoint: config.entrypoint,
        ports,
        mounts,
        networks,
        healthcheck: config.healthcheck.map(health_of),
        restart,
        extra_hosts: host.extra_hosts.unwrap_or_default(),
        user: config.user.unwrap_or_default(),
        working_dir: config.working_dir.unwrap_or_default(),
        hostname: config.hostname.unwrap_or_default(),
        stop_timeout: config.stop_timeout.and_then(|n| u64::try_from(n).ok()),
        image_defaults,
    }
}

pub async fn create_network(host: &str, d: &Docker, n: &NetworkSpec) -> Result<()> {
    let req = NetworkCreateRequest {
        name: n.name.clone(),
        driver: Some(n.driver.clone()),
        labels: Some(HashMap::from([(
            labels::PROJECT.to_owned(),
            n.project.clone(),
        )])),
        ..Default::default()
    };
    d.create_network(req)
        .await
        .map(|_| ())
        .map_err(|e| RemoteError::docker(host, e))
}

pub async fn remove_network(host: &str, d: &Docker, name: &str) -> Result<()> {
    d.remove_network(name)
        .await
        .map_err(|e| RemoteError::docker(host, e))
}

pub async fn create_volume(host: &str, d: &Docker, v: &VolumeSpec) -> Result<()> {
    let req = VolumeCreateRequest {
        name: Some(v.name.clone()),
        driver: Some(v.driver.clone()),
        labels: Some(HashMap::from([(
            labels::PROJECT.to_owned(),
            v.project.clone(),
        )])),
        ..Default::default()
    };
    d.create_volume(req)
        .await
        .map(|_| ())
        .map_err(|e| RemoteError::docker(host, e))
}

pub async fn remove_volume(host: &str, d: &Docker, name: &str) -> Result<()> {
    d.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
        .map_err(|e| RemoteError::docker(host, e))
}

/// Stops (within its grace period) and removes a container; absent is fine.
pub async fn remove_container(
    host: &str,
    d: &Docker,
    name: &str,
    grace_s: Option<u64>,
) -> Result<()> {
    let t = grace_s.unwrap_or(10) as i32;
    match d
        .stop_container(
            name,
            Some(StopContainerOptionsBuilder::default().t(t).build()),
        )
        .await
    {
        Ok(()) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304 | 404,
            ..
        }) => {}
        Err(e) => return Err(RemoteError::docker(host, e)),
    }
    match d
        .remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
    {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(RemoteError::docker(host, e)),
    }
}

/// Creates the container from its spec (labels included) and starts it.
pub async fn create_and_start(host: &str, d: &Docker, c: &ContainerSpec) -> Result<()> {
    let err = |e: bollard::errors::Error| RemoteError::docker(host, e);
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &c.ports {
        let entry = port_bindings
            .entry(format!("{}/{}", p.target, p.protocol))
            .or_insert_with(|| Some(Vec::new()));
        if let Some(list) = entry {
            list.push(PortBinding {
                host_ip: Some(p.host_ip.clone()).filter(|s| !s.is_empty()),
                host_port: Some(p.published.map(|n| n.to_string()).unwrap_or_default()),
            });
        }
    }
    let exposed: Vec<String> = port_bindings.keys().cloned().collect();
    let mounts = c
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(if m.kind == "volume" {
                MountType::VOLUME
            } else {
                MountType::BIND
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let (restart_name, retries) = match c.restart.split_once(':') {
        Some((_, n)) => (RestartPolicyNameEnum::ON_FAILURE, n.parse::<i64>().ok()),
        None => (
            match c.restart.as_str() {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            },
            None,
        ),
    };
    let mut networks = c.networks.iter();
    let first = networks.next();
    let endpoint = |aliases: &Vec<String>| EndpointSettings {
        aliases: Some(aliases.clone()),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(c.image.clone()),
        cmd: c.command.clone(),
        entrypoint: c.entrypoint.clone(),
        env: Some(c.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(c.engine_labels().into_iter().collect()),
        exposed_ports: Some(exposed).filter(|e| !e.is_empty()),
        healthcheck: c.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns.map(|n| n as i64),
            timeout: h.timeout_ns.map(|n| n as i64),
            retries: h.retries.map(|n| n as i64),
            start_period: h.start_period_ns.map(|n| n as i64),
            start_interval: None,
        }),
        user: c.user.clone(),
        working_dir: c.working_dir.clone(),
        hostname: c.hostname.clone(),
        stop_timeout: c.stop_grace_period_s.map(|n| n as i64),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings).filter(|p| !p.is_empty()),
            mounts: Some(mounts),
            restart_policy: Some(RestartPolicy {
                name: Some(restart_name),
                maximum_retry_count: retries,
            }),
            extra_hosts: Some(c.extra_hosts.clone()).filter(|e| !e.is_empty()),
            network_mode: first.map(|(n, _)| n.clone()),
            ..Default::default()
        }),
        networking_config: first.map(|(n, a)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(n.clone(), endpoint(a))])),
        }),
        ..Default::default()
    };
    d.create_container(
        Some(
            CreateContainerOptionsBuilder::default()
                .name(&c.name)
                .build(),
        ),
        body,
    )
    .await
    .map_err(err)?;
    for (n, a) in networks {
        let req = bollard::models::NetworkConnectRequest {
            container: c.name.clone(),
            endpoint_config: Some(endpoint(a)),
        };
        d.connect_network(n, req).await.map_err(err)?;
    }
    d.start_container(&c.name, None::<StartContainerOptions>)
        .await
        .map_err(err)
}

/// Starts an existing container.
pub async fn start(host: &str, d: &Docker, name: &str) -> Result<()> {
    d.start_container(name, None::<StartContainerOptions>)
        .await
        .map_err(|e| RemoteError::docker(host, e))
}

/// What a container must reach before its dependents start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Running,
    Healthy,
    Completed,
}

/// Waits for `name` to reach `gate`; on failure the error carries the last health output or the
/// tail of the logs.
pub async fn wait(host: &str, d: &Docker, name: &str, gate: Gate, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let i = d
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| RemoteError::docker(host, e))?;
        let state = i.state.clone().unwrap_or_default();
        let status = state.status.map(|s| s.to_string()).unwrap_or_default();
        let health = state.health.clone();
        match gate {
            Gate::Running if status == "running" => return Ok(()),
            Gate::Healthy => match health.as_ref().and_then(|h| h.status) {
                Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                Some(HealthStatusEnum::UNHEALTHY) => {
                    return Err(RemoteError::Other {
                        host: host.into(),
                        detail: format!("{name} is unhealthy: {}", last_health(&health)),
                    });
                }
                None | Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY)
                    if status == "running" =>
                {
                    return Err(RemoteError::Other {
                        host: host.into(),
                        detail: format!("{name} has no healthcheck to wait for"),
                    });
                }
                _ => {}
            },
            Gate::Completed if status == "exited" => {
                let code = state.exit_code.unwrap_or(-1);
                if code == 0 {
                    return Ok(());
                }
                let logs = logs_tail(d, name, 20).await;
                return Err(RemoteError::Other {
                    host: host.into(),
                    detail: format!("{name} exited with {code}; last logs:\n{logs}"),
                });
            }
            _ => {}
        }
        if matches!(gate, Gate::Running | Gate::Healthy) && status == "exited" {
            let logs = logs_tail(d, name, 20).await;
            return Err(RemoteError::Other {
                host: host.into(),
                detail: format!(
                    "{name} exited with {}; last logs:\n{logs}",
                    state.exit_code.unwrap_or(-1)
                ),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            let detail = match gate {
                Gate::Healthy => format!(
                    "{name} not healthy after {timeout:?}; last health check: {}",
                    last_health(&health)
                ),
                _ => format!(
                    "{name} still {status} after {timeout:?}; last logs:\n{}",
                    logs_tail(d, name, 20).await
                ),
            };
            return Err(RemoteError::Other {
                host: host.into(),
                detail,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn last_health(h: &Option<bollard::models::Health>) -> String {
    h.as_ref()
        .and_then(|h| h.log.as_ref())
        .and_then(|l| l.last())
        .map(|r| {
            format!(
                "exit {} {}",
                r.exit_code.unwrap_or(-1),
                r.output.clone().unwrap_or_default().trim()
            )
        })
        .unwrap_or_else(|| "(none yet)".into())
}

/// The last `n` lines of a container's logs.
pub async fn logs_tail(d: &Docker, name: &str, n: usize) -> String {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&n.to_string())
        .build();
    let mut stream = d.logs(name, Some(opts));
    let mut out = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    out.trim_end().to_owned()
}

/// Runs a command in a running container; returns its exit code and output.
pub async fn exec(
    host: &str,
    d: &Docker,
    container: &str,
    argv: &[String],
    user: Option<&str>,
) -> Result<(i64, String)> {
    let err = |e: bollard::errors::Error| RemoteError::docker(host, e);
    let cfg = ExecConfig {
        cmd: Some(argv.to_vec()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        user: user.map(str::to_owned),
        ..Default::default()
    };
    let created = d.create_exec(container, cfg).await.map_err(err)?;
    let mut out = String::new();
    if let bollard::exec::StartExecResults::Attached { mut output, .. } =
        d.start_exec(&created.id, None).await.map_err(err)?
    {
        while let Some(Ok(chunk)) = output.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
    }
    let code = d
        .inspect_exec(&created.id)
        .await
        .map_err(err)?
        .exit_code
        .unwrap_or(-1);
    Ok((code, out))
}
