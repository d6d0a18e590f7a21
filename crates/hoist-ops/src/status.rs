//! `hoist status` and `hoist logs`: what runs on a host, straight from its engine.

use hoist_core::desired::labels;
use hoist_remote::error::{RemoteError, Result};
use hoist_remote::{Engine, Host};

/// One container hoist manages on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub state: String,
    /// The engine's status line (`Up 3 minutes (healthy)`).
    pub status: String,
}

/// The containers hoist manages on `host`, by name.
pub async fn status<H: Host>(host: &H) -> Result<Vec<Row>> {
    let d = host.engine().await?;
    let mut rows: Vec<Row> = d
        .containers()
        .await?
        .into_iter()
        .filter(|c| c.labels.contains_key(labels::PROJECT))
        .map(|c| Row {
            name: c.name,
            state: c.state,
            status: c.status,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// The last `tail` lines of the logs of the container named `service`, or of service `service`.
pub async fn logs<H: Host>(host: &H, service: &str, tail: usize) -> Result<String> {
    let d = host.engine().await?;
    let name = d
        .containers()
        .await?
        .into_iter()
        .find(|c| {
            c.name == service || c.labels.get(labels::SERVICE).map(String::as_str) == Some(service)
        })
        .map(|c| c.name)
        .ok_or_else(|| {
            RemoteError::other(
                host.name(),
                format!("no container or service named `{service}`"),
            )
        })?;
    Ok(d.logs_tail(&name, tail).await)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hoist_core::observed::ObservedContainer;
    use hoist_remote::fake::FakeHost;

    use super::*;

    fn owned(service: &str) -> ObservedContainer {
        ObservedContainer {
            labels: BTreeMap::from([
                (labels::PROJECT.to_owned(), "apm".to_owned()),
                (labels::SERVICE.to_owned(), service.to_owned()),
            ]),
            state: "running".into(),
            ..ObservedContainer::default()
        }
    }

    #[tokio::test]
    async fn status_lists_only_what_hoist_manages_and_logs_find_a_service() {
        let h = FakeHost::new("app-1");
        let e = h.fake_engine();
        e.put_container("apm-api-1", owned("api"));
        e.put_container("someone-elses", ObservedContainer::default());
        let rows = status(&h).await.expect("status");
        assert_eq!(
            rows,
            [Row {
                name: "apm-api-1".into(),
                state: "running".into(),
                status: "Up".into()
            }]
        );
        assert_eq!(
            logs(&h, "api", 10).await.expect("logs"),
            "(logs of apm-api-1)"
        );
        let e = logs(&h, "db", 10).await.expect_err("none");
        assert_eq!(e.to_string(), "app-1: no container or service named `db`");
    }
}
