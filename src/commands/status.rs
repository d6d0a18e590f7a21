//! `hoist status` and `hoist logs`: what runs on the hosts, straight from their engines.

use hoist_core::vars::SecretsMode;
use hoist_ops::status::{self, Row};

use crate::cli::Global;
use crate::commands::remote;
use crate::output::Output;

pub fn status(global: &Global, limit: Option<&str>, out: &Output) -> anyhow::Result<u8> {
    let Some(project) = super::load(global, SecretsMode::Optional, out)? else {
        return Ok(1);
    };
    let names = project
        .inventory
        .select(limit.unwrap_or("all"))
        .map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (rows, failed) = remote::ask_each(&project.inventory, &names, global, async |ssh| {
            status::status(ssh).await
        })
        .await;
        let mut code = 0;
        for (host, r) in rows {
            match r {
                Ok(list) if list.is_empty() => out.print(&format!("{host}: no services\n")),
                Ok(list) => {
                    out.print(&format!("{host}\n"));
                    for Row {
                        name,
                        state,
                        status,
                    } in list
                    {
                        out.print(&format!("  {name:<40} {state:<10} {status}\n"));
                    }
                }
                Err(e) => {
                    code = 1;
                    out.error(&e.to_string());
                }
            }
        }
        for e in failed.values() {
            code = 1;
            out.error(&e.to_string());
        }
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
    let Some(project) = super::load(global, SecretsMode::Optional, out)? else {
        return Ok(1);
    };
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
        let logs = status::logs(&hosts[host], service, tail).await;
        remote::close(hosts).await;
        out.print(&(logs? + "\n"));
        Ok(0)
    })
}
