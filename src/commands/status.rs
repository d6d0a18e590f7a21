//! `hoist status` and `hoist logs`: what runs on the hosts, straight from their engines.

use futures_util::StreamExt as _;
use hoist_core::desired::labels;
use hoist_core::diag::Diagnostics;
use hoist_core::vars::SecretsMode;
use hoist_remote::Engine as _;
use hoist_remote::docker;

use crate::cli::Global;
use crate::commands::remote;
use crate::output::Output;

/// A container's name, state and status line.
type Row = (String, String, String);

pub fn status(global: &Global, limit: Option<&str>, out: &Output) -> anyhow::Result<u8> {
    let inv = super::inventory_dir(global)?;
    let mut diags = Diagnostics::new();
    let Some(project) = super::load_project(global, &inv, SecretsMode::Optional, &mut diags)?
    else {
        return Ok(1);
    };
    let names = project
        .inventory
        .select(limit.unwrap_or("all"))
        .map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (hosts, failed) = remote::connect(&project.inventory, &names, global).await;
        let rows: Vec<(String, anyhow::Result<Vec<Row>>)> =
            futures_util::stream::iter(hosts.iter())
                .map(|(name, ssh)| async move {
                    let r = async {
                        let d = docker::connect(ssh).await?;
                        let list = d
                            .client()
                            .list_containers(Some(
                                bollard::query_parameters::ListContainersOptionsBuilder::default()
                                    .all(true)
                                    .build(),
                            ))
                            .await
                            .map_err(|e| hoist_remote::RemoteError::docker(name, e))?;
                        let mut rows: Vec<Row> = list
                            .into_iter()
                            .filter(|c| {
                                c.labels
                                    .as_ref()
                                    .is_some_and(|l| l.contains_key(labels::PROJECT))
                            })
                            .map(|c| {
                                let n = c
                                    .names
                                    .unwrap_or_default()
                                    .first()
                                    .map(|n| n.trim_start_matches('/').to_owned())
                                    .unwrap_or_default();
                                (
                                    n,
                                    c.state.map(|s| s.to_string()).unwrap_or_default(),
                                    c.status.unwrap_or_default(),
                                )
                            })
                            .collect();
                        rows.sort();
                        Ok::<_, anyhow::Error>(rows)
                    }
                    .await;
                    (name.clone(), r)
                })
                .buffer_unordered(global.forks.max(1))
                .collect()
                .await;
        let mut rows = rows;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut code = 0;
        for (host, r) in rows {
            match r {
                Ok(list) if list.is_empty() => out.print(&format!("{host}: no services\n")),
                Ok(list) => {
                    out.print(&format!("{host}\n"));
                    for (name, state, detail) in list {
                        out.print(&format!("  {name:<40} {state:<10} {detail}\n"));
                    }
                }
                Err(e) => {
                    code = 1;
                    out.error(&format!("{host}: {e:#}"));
                }
            }
        }
        for e in failed.values() {
            code = 1;
            out.error(&e.to_string());
        }
        remote::close(hosts).await;
        Ok(code)
    })
}

pub fn logs(
    global: &Global,
    host: &str,
    service: &str,
    tail: usize,
    out: &Output,
) -> anyhow::Result<u8> {
    let inv = super::inventory_dir(global)?;
    let mut diags = Diagnostics::new();
    let Some(project) = super::load_project(global, &inv, SecretsMode::Optional, &mut diags)?
    else {
        return Ok(1);
    };
    out.use_redactor(&project.redactor);
    if !project.inventory.hosts.contains_key(host) {
        anyhow::bail!(
            "no host named `{host}` in inventory {}",
            project.inventory.name
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (hosts, failed) = remote::connect(&project.inventory, &[host.to_owned()], global).await;
        if let Some(e) = failed.get(host) {
            anyhow::bail!("{e}");
        }
        let ssh = &hosts[host];
        let d = docker::connect(ssh).await?;
        let list = d
            .client()
            .list_containers(Some(
                bollard::query_parameters::ListContainersOptionsBuilder::default()
                    .all(true)
                    .build(),
            ))
            .await?;
        let name = list
            .into_iter()
            .filter_map(|c| {
                let n = c
                    .names
                    .unwrap_or_default()
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())?;
                let svc = c.labels.unwrap_or_default().get(labels::SERVICE).cloned();
                (n == service || svc.as_deref() == Some(service)).then_some(n)
            })
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host}: no container or service named `{service}`"))?;
        out.print(&(d.logs_tail(&name, tail).await + "\n"));
        remote::close(hosts).await;
        Ok(0)
    })
}
