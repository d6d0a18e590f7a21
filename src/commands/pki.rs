//! `hoist pki issue`: the cluster CA and certificates (hoist_core::pki), kept encrypted in the
//! inventory's `group_vars/all/pki.secrets.yml`, and the names the server certificate carries, in
//! clear beside it (`pki.yml`: host names and addresses are no secrets, and output that names a
//! host stays readable rather than redacted). Run again, it changes only what must change: a
//! server certificate whose names no longer cover the inventory's hosts is re-issued, the rest
//! keeps its ciphertext, so the next plan shows exactly the files that change. `--rotate` re-issues
//! the certificates, `--rotate-ca` the CA too.

use hoist_core::source::Source;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use hoist_core::diag::{Diagnostics, SourceName};
use hoist_core::pki::{self, Pair, var};
use hoist_core::vault::{self, Keyring, VaultError};
use hoist_core::yaml::{self, Value};

use crate::cli::{Global, PkiCommand};
use crate::output::Output;

pub fn run(global: &Global, cmd: PkiCommand, out: &Output) -> anyhow::Result<u8> {
    let PkiCommand::Issue {
        rotate,
        rotate_ca,
        client_cn,
        names: extra,
        recipient,
    } = cmd;
    let inventory = super::inventory_dir(global)?;
    let dir = global.project.join(&inventory);
    let mut diags = Diagnostics::new();
    let Some(inv) = hoist_core::inventory::load(
        &Source::disk(),
        &global.project,
        &dir,
        super::home().as_deref(),
        &mut diags,
    ) else {
        for d in diags.sorted() {
            out.eprint(&format!("{d}\n"));
        }
        bail!("the inventory {} does not load", inventory.display());
    };
    let file = pki_file(&dir)?;
    let keyring = Keyring::from_env()?.ok_or(VaultError::NoKey)?;
    let recipients = if recipient.is_empty() {
        keyring.recipients()
    } else {
        vault::parse_recipients(&recipient)?
    };
    let existing = if file.exists() {
        Some(
            std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?,
        )
    } else {
        None
    };
    let (old, pairs) = match &existing {
        // The repository's example inventories ship a placeholder file: replaced whole.
        Some(text) if text.starts_with(PLACEHOLDER) => (BTreeMap::new(), Vec::new()),
        Some(text) => {
            let (plain, pairs) = vault::decrypt_document(&name(&file), text, &keyring)
                .map_err(anyhow::Error::msg)?;
            (values(&file, &plain)?, pairs)
        }
        None => (BTreeMap::new(), Vec::new()),
    };
    let one = |k: &str| old.get(k).and_then(|v| v.first()).cloned();
    let names_file = file.with_file_name(NAMES_FILE);
    let old_names = match std::fs::read_to_string(&names_file) {
        Ok(text) => values(&names_file, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", names_file.display())),
    };
    // Before the names had a file of their own they were kept, encrypted, with the certificates.
    let moved = [var::SERVER_NAMES, EXTRA_NAMES]
        .iter()
        .any(|k| old.contains_key(*k));
    let old_list = |k: &str| old_names.get(k).or_else(|| old.get(k)).cloned();
    let mut names = pki::server_names(
        inv.hosts
            .values()
            .map(|h| (h.name.as_str(), h.address.as_str())),
    );
    // Extra names are kept in the file: later runs keep them without repeating `--name`.
    let mut extra_names: Vec<String> = old_list(EXTRA_NAMES).unwrap_or_default();
    extra_names.extend(extra);
    extra_names.sort();
    extra_names.dedup();
    names.extend(extra_names.iter().cloned());
    names.sort();
    names.dedup();
    let mut did = Vec::new();
    let ca = match (one(var::CA_CERT), one(var::CA_KEY)) {
        (Some(cert), Some(key)) if !rotate_ca => Pair { cert, key },
        _ => {
            did.push("a new CA".to_owned());
            pki::new_ca()?
        }
    };
    let fresh_ca = !did.is_empty();
    let server = match (one(var::SERVER_CERT), one(var::SERVER_KEY)) {
        (Some(cert), Some(key))
            if !rotate && !fresh_ca && old_list(var::SERVER_NAMES).as_ref() == Some(&names) =>
        {
            Pair { cert, key }
        }
        _ => {
            did.push(format!("a server certificate for {}", names.join(", ")));
            pki::server(&ca, &names)?
        }
    };
    let client = match (one(var::CLIENT_CERT), one(var::CLIENT_KEY)) {
        (Some(cert), Some(key)) if !rotate && !fresh_ca => Pair { cert, key },
        _ => {
            did.push(format!("a client certificate ({client_cn})"));
            pki::client(&ca, &client_cn)?
        }
    };
    let names_text = names_document(&names, &extra_names);
    let names_current = std::fs::read_to_string(&names_file).ok().as_deref() == Some(&names_text);
    if did.is_empty() && !moved && names_current {
        out.eprint(&format!("{}: up to date\n", file.display()));
        return Ok(0);
    }
    if moved {
        did.push(format!(
            "the certificate's names moved to {NAMES_FILE}, in clear"
        ));
    }
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut text = String::from(
        "# The cluster's CA and certificates, written by `hoist pki issue` (encrypted with age).\n\
         # Re-run it after adding hosts; --rotate re-issues the certificates, --rotate-ca the CA too.\n",
    );
    for (k, v) in [
        (var::CA_CERT, &ca.cert),
        (var::CA_KEY, &ca.key),
        (var::SERVER_CERT, &server.cert),
        (var::SERVER_KEY, &server.key),
        (var::CLIENT_CERT, &client.cert),
        (var::CLIENT_KEY, &client.key),
    ] {
        text.push_str(&format!("{k}: {}\n", quote(v)));
    }
    let keep = |p: &str| {
        pairs
            .iter()
            .find(|(plain, _)| plain == p)
            .map(|(_, c)| c.clone())
    };
    let enc = vault::encrypt_document(&name(&file), &text, &recipients, &keep)
        .map_err(anyhow::Error::msg)?;
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if existing.is_none() {
        super::secrets::write_private(&file, &enc)?;
    } else {
        super::secrets::write_atomic(&file, &enc)?;
    }
    // After the certificates: names that went ahead of their certificate would hide that it lacks them.
    if !names_current {
        super::secrets::write_atomic(&names_file, &names_text)?;
    }
    out.eprint(&format!("{}: issued {}\n", file.display(), did.join("; ")));
    Ok(0)
}

/// Names given with `--name`, kept for the next runs.
const EXTRA_NAMES: &str = "tls_extra_names";

/// The file beside the PKI file that holds the server certificate's names.
const NAMES_FILE: &str = "pki.yml";

/// The names file's text: every name the server certificate carries, and those given with `--name`.
fn names_document(names: &[String], extra: &[String]) -> String {
    let quote = |s: &String| serde_json::to_string(s).unwrap_or_default();
    let list = |l: &[String]| l.iter().map(quote).collect::<Vec<_>>().join(", ");
    format!(
        "# The names the cluster's server certificate carries, written by `hoist pki issue` beside\n\
         # pki.secrets.yml. In clear: they are no secrets.\n\
         {}: [{}]\n{EXTRA_NAMES}: [{}]\n",
        var::SERVER_NAMES,
        list(names),
        list(extra),
    )
}

/// How a placeholder PKI file (in the repository's example inventories) starts.
const PLACEHOLDER: &str = "# PLACEHOLDER:";

fn name(path: &Path) -> SourceName {
    SourceName(path.display().to_string())
}

/// The inventory's PKI file; `group_vars/all` must be a folder (or absent).
fn pki_file(inventory: &Path) -> anyhow::Result<PathBuf> {
    let all = inventory.join("group_vars/all");
    for ext in ["yml", "yaml"] {
        let file = inventory.join(format!("group_vars/all.{ext}"));
        if file.is_file() && !all.is_dir() {
            bail!(
                "{} is a file: move it to {}/vars.yml so the PKI file can sit beside it",
                file.display(),
                all.display()
            );
        }
    }
    Ok(all.join("pki.secrets.yml"))
}

/// Top-level values of a decrypted PKI file: strings, or lists of strings.
fn values(file: &Path, plain: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut diags = Diagnostics::new();
    let node = yaml::parse(&name(file), plain, &mut diags)
        .with_context(|| format!("{} is not valid YAML", file.display()))?;
    let mut out = BTreeMap::new();
    if let Value::Map(entries) = node.value {
        for (k, v) in entries {
            let Value::Str(key) = k.value else { continue };
            let list = match v.value {
                Value::Str(s) => vec![s],
                Value::Seq(items) => items
                    .into_iter()
                    .filter_map(|i| match i.value {
                        Value::Str(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
                _ => continue,
            };
            out.insert(key, list);
        }
    }
    Ok(out)
}
