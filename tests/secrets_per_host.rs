//! Each host of the platform holds only the secrets its own services use: the repository's site
//! playbook on the sandbox inventory, every file hoist would write and every container's
//! environment and command, searched for every secret value of the inventory.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{load_with, repo};
use hoist_core::diag::{Diagnostics, SourceName};
use hoist_core::playbook;
use hoist_core::source::Source;
use hoist_core::yaml::{self, Value};

/// The sandbox inventory's secrets (inventory/sandbox/group_vars/all/secrets.yml) and the TLS
/// material `hoist sandbox init` generates, given here as `-e` values.
const TLS: &[(&str, &str)] = &[
    ("tls_ca_cert", "TEST-CA-CERTIFICATE"),
    ("tls_server_cert", "TEST-SERVER-CERTIFICATE"),
    ("tls_server_key", "TEST-SERVER-PRIVATE-KEY"),
    ("tls_client_cert", "TEST-CLIENT-CERTIFICATE"),
    ("tls_client_key", "TEST-CLIENT-PRIVATE-KEY"),
];

fn secrets() -> BTreeMap<String, String> {
    let path = repo().join("inventory/sandbox/group_vars/all/secrets.yml");
    let text = std::fs::read_to_string(&path).expect("the sandbox secrets");
    let mut diags = Diagnostics::new();
    let doc = yaml::parse(&SourceName("secrets.yml".into()), &text, &mut diags).expect("YAML");
    let Value::Map(pairs) = doc.value else {
        panic!("the secrets file is a mapping")
    };
    let mut out: BTreeMap<String, String> = pairs
        .into_iter()
        .filter_map(|(k, v)| match (k.value, v.value) {
            (Value::Str(k), Value::Str(v)) => Some((k, v)),
            _ => None,
        })
        .collect();
    for (name, value) in TLS {
        out.insert((*name).to_owned(), (*value).to_owned());
    }
    out
}

/// Which secrets (by variable name) appear on each host.
fn held() -> BTreeMap<String, BTreeSet<String>> {
    let root = repo();
    let extra: Vec<String> = TLS.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (project, diags) = load_with(&root, "inventory/sandbox", &extra);
    assert!(!diags.has_errors(), "{:?}", diags.sorted());
    let mut diags = Diagnostics::new();
    let book = playbook::load(
        &Source::disk(),
        &root,
        &root.join("playbooks/site.yml"),
        &mut diags,
    )
    .expect("the site playbook");
    let desired = project.desired(&book, None, &mut diags);
    assert!(!diags.has_errors(), "{:?}", diags.sorted());
    let secrets = secrets();
    desired
        .hosts
        .iter()
        .map(|(host, d)| {
            let mut text: Vec<String> = d
                .files
                .values()
                .map(|f| String::from_utf8_lossy(f.content.as_bytes()).into_owned())
                .collect();
            for c in &d.containers {
                text.extend(c.env.iter().map(|(k, v)| format!("{k}={v}")));
                text.extend(c.command.iter().flatten().cloned());
                text.extend(c.entrypoint.iter().flatten().cloned());
            }
            let all = text.join("\n");
            let found = secrets
                .iter()
                .filter(|(_, value)| all.contains(value.as_str()))
                .map(|(name, _)| name.clone())
                .collect();
            (host.clone(), found)
        })
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn each_host_holds_only_the_secrets_its_services_use() {
    let held = held();
    let expected = BTreeMap::from([
        (
            "data-1".to_owned(),
            set(&[
                // Replication; the exporter's login (the reader); pgBackRest's TLS server. The
                // database's own roles arrive as SCRAM verifiers, never as passwords. WAL is
                // archived from here straight into both repositories, so their object-store key
                // and cipher passphrases are here too (moving archive-push behind the repository
                // host would take them away).
                "objectstore_access_key_id",
                "objectstore_secret_key",
                "pgbackrest_repo1_cipher_pass",
                "pgbackrest_repo2_cipher_pass",
                "postgres_reader_password",
                "replica_password",
                "tls_ca_cert",
                "tls_server_cert",
                "tls_server_key",
            ]),
        ),
        (
            "control-1".to_owned(),
            set(&[
                // The object store and its TLS front, the repository (both ciphers, its client
                // certificate to reach the database host), Grafana and its datasource's login.
                "garage_rpc_secret",
                "grafana_admin_password",
                "objectstore_access_key_id",
                "objectstore_secret_key",
                "pgbackrest_repo1_cipher_pass",
                "pgbackrest_repo2_cipher_pass",
                "postgres_reader_password",
                // (Prometheus' logins only as crypt hashes: prometheus_password and
                // prometheus_console_password are not here.)
                "tls_ca_cert",
                "tls_client_cert",
                "tls_client_key",
                "tls_server_cert",
                "tls_server_key",
            ]),
        ),
        (
            "app-1".to_owned(),
            set(&[
                // The API's database roles (the owner migrates), its tokens, the proxy's TLS. No
                // backup passphrase, no object-store key: the internet-facing host holds neither.
                // The console's Prometheus login, which may only read (monitoring.conf.j2).
                "apm_token_ingest",
                "apm_token_read",
                "prometheus_console_password",
                "postgres_password",
                "postgres_reader_password",
                "postgres_writer_password",
                "tls_ca_cert",
                "tls_server_cert",
                "tls_server_key",
            ]),
        ),
    ]);
    assert_eq!(held, expected);
}
