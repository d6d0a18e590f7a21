//! `hoist inventory import`: converts an Ansible INI inventory into `hosts.yml`.
//!
//! Connection variables (`ansible_host`, `ansible_user`, `ansible_port`,
//! `ansible_ssh_private_key_file`, `ansible_become`) become connection settings; other variables are
//! kept as variables; `[group:children]` is flattened into membership, since hoist groups are flat.
//! Variables that only make sense to Ansible, or to the original platform's playbook, are dropped and
//! listed in the returned notes.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Diagnostics, Kind, Loc, SourceName};

#[derive(Debug, Default)]
struct IniHost {
    vars: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct IniGroup {
    hosts: Vec<String>,
    children: Vec<String>,
    vars: BTreeMap<String, String>,
}

/// The result of an import: the `hosts.yml` text and notes about what was not carried over.
#[derive(Debug)]
pub struct Imported {
    pub hosts_yml: String,
    pub notes: Vec<String>,
}

const DROPPED: &[&str] = &[
    "ansible_python_interpreter",
    "ansible_connection",
    "ansible_shell_type",
];

/// Variables of the original platform's playbook that drive how Ansible deploys it, each with what
/// hoist does instead: they mean nothing to hoist, so they are dropped and said so.
const PLAYBOOK_ONLY: &[(&str, &str)] = &[
    (
        "repo_path",
        "hosts hold no checkout: images are built on the controller and sent",
    ),
    ("docker_bin", "the engine is driven through its API"),
    (
        "cluster_env_overwrite",
        "every file is rendered on every run, its changes shown in the plan",
    ),
    (
        "install_docker",
        "the `engine` step installs the engine where it is absent",
    ),
    (
        "docker_users",
        "nobody needs the docker group: hoist reaches the engine over SSH",
    ),
    ("compose_build", "images are built on the controller"),
    (
        "run_validation",
        "`hoist validate`, or the playbook's validate step",
    ),
];

/// Converts the INI text of `file`; problems are reported with their line.
pub fn import(file: &SourceName, text: &str, diags: &mut Diagnostics) -> Option<Imported> {
    let mut hosts: BTreeMap<String, IniHost> = BTreeMap::new();
    let mut host_order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, IniGroup> = BTreeMap::new();
    let mut all_vars: BTreeMap<String, String> = BTreeMap::new();
    let mut section = ("ungrouped".to_owned(), String::new());
    let errors_before = diags.error_count();

    for (i, raw) in text.lines().enumerate() {
        let line_no = i as u32 + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let (name, kind) = header.split_once(':').unwrap_or((header, ""));
            if !matches!(kind, "" | "vars" | "children") {
                diags.error(
                    file,
                    Loc::new(line_no, 1),
                    "",
                    Kind::Syntax,
                    format!("unknown section kind `:{kind}`"),
                );
            }
            section = (name.to_owned(), kind.to_owned());
            if name != "all" {
                groups.entry(name.to_owned()).or_default();
            }
            continue;
        }
        let words = match shell_words(line) {
            Ok(w) => w,
            Err(e) => {
                diags.error(file, Loc::new(line_no, 1), "", Kind::Syntax, e);
                continue;
            }
        };
        match section.1.as_str() {
            "vars" => {
                let Some((k, v)) = line.split_once('=') else {
                    diags.error(
                        file,
                        Loc::new(line_no, 1),
                        "",
                        Kind::Syntax,
                        "expected `name=value`",
                    );
                    continue;
                };
                let target = if section.0 == "all" {
                    &mut all_vars
                } else {
                    &mut groups.entry(section.0.clone()).or_default().vars
                };
                target.insert(k.trim().to_owned(), unquote(v.trim()));
            }
            "children" => groups
                .entry(section.0.clone())
                .or_default()
                .children
                .push(words[0].clone()),
            _ => {
                let name = words[0].clone();
                let host = hosts.entry(name.clone()).or_insert_with(|| {
                    host_order.push(name.clone());
                    IniHost::default()
                });
                for word in &words[1..] {
                    match word.split_once('=') {
                        Some((k, v)) => {
                            host.vars.insert(k.to_owned(), v.to_owned());
                        }
                        None => diags.error(
                            file,
                            Loc::new(line_no, 1),
                            "",
                            Kind::Syntax,
                            format!("expected `name=value`, found `{word}`"),
                        ),
                    }
                }
                if section.0 != "all" {
                    let g = groups.entry(section.0.clone()).or_default();
                    if !g.hosts.contains(&name) {
                        g.hosts.push(name);
                    }
                }
            }
        }
    }
    if diags.error_count() > errors_before {
        return None;
    }

    // Flatten children: a group's members include its children's members.
    let names: Vec<String> = groups.keys().cloned().collect();
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in &names {
        let mut seen = BTreeSet::new();
        collect(
            &groups,
            name,
            &mut seen,
            members.entry(name.clone()).or_default(),
        );
    }
    let mut notes = Vec::new();
    let mut out =
        String::from("# Imported from an Ansible INI inventory by `hoist inventory import`.\n");

    let conn_vars = |vars: &BTreeMap<String, String>, notes: &mut Vec<String>, scope: &str| {
        let mut conn = Vec::new();
        let mut rest = Vec::new();
        for (k, v) in vars {
            if let Some((_, instead)) = PLAYBOOK_ONLY.iter().find(|(name, _)| name == k) {
                notes.push(format!("{scope}: dropped `{k}` ({instead})"));
                continue;
            }
            match k.as_str() {
                "ansible_host" => conn.push(("address", v.clone())),
                "ansible_user" | "ansible_ssh_user" => conn.push(("user", v.clone())),
                "ansible_port" | "ansible_ssh_port" => conn.push(("port", v.clone())),
                "ansible_ssh_private_key_file" => conn.push(("identity_file", v.clone())),
                "ansible_become" => conn.push(("become", v.to_lowercase())),
                k if DROPPED.contains(&k) => {
                    notes.push(format!("{scope}: dropped `{k}` (not used by hoist)"))
                }
                k if k.starts_with("ansible_") => {
                    notes.push(format!(
                        "{scope}: kept `{k}` as a plain variable; hoist does not interpret it"
                    ));
                    rest.push((k.to_owned(), v.clone()));
                }
                _ => rest.push((k.to_owned(), v.clone())),
            }
        }
        (conn, rest)
    };

    out.push_str("hosts:\n");
    for name in &host_order {
        let (conn, rest) = conn_vars(&hosts[name].vars, &mut notes, &format!("host {name}"));
        out.push_str(&format!("  {name}:\n"));
        if !conn.iter().any(|(k, _)| *k == "address") {
            out.push_str(&format!("    address: {}\n", scalar(name)));
        }
        for (k, v) in conn {
            let v = if k == "port" || k == "become" {
                v
            } else {
                scalar(&v)
            };
            out.push_str(&format!("    {k}: {v}\n"));
        }
        write_vars(&mut out, "    ", &rest);
    }
    let real_groups: Vec<&String> = names
        .iter()
        .filter(|n| *n != "ungrouped" || !members[*n].is_empty())
        .collect();
    if !real_groups.is_empty() {
        out.push_str("groups:\n");
        for name in real_groups {
            let list: Vec<String> = members[name].iter().cloned().collect();
            out.push_str(&format!("  {name}:\n    hosts: [{}]\n", list.join(", ")));
            let (conn, rest) = conn_vars(&groups[name].vars, &mut notes, &format!("group {name}"));
            for (k, _) in conn {
                notes.push(format!("group {name}: `{k}` set for a group is not supported; set it per host or under `connection:`"));
            }
            write_vars(&mut out, "    ", &rest);
        }
    }
    let (conn, rest) = conn_vars(&all_vars, &mut notes, "all");
    if !conn.is_empty() {
        out.push_str("connection:\n");
        for (k, v) in conn.into_iter().filter(|(k, _)| *k != "address") {
            let v = if k == "port" || k == "become" {
                v
            } else {
                scalar(&v)
            };
            out.push_str(&format!("  {k}: {v}\n"));
        }
    }
    if !rest.is_empty() {
        out.push_str("vars:\n");
        for (k, v) in &rest {
            out.push_str(&format!("  {k}: {}\n", scalar(v)));
        }
    }
    Some(Imported {
        hosts_yml: out,
        notes,
    })
}

fn write_vars(out: &mut String, indent: &str, vars: &[(String, String)]) {
    if vars.is_empty() {
        return;
    }
    out.push_str(&format!("{indent}vars:\n"));
    for (k, v) in vars {
        out.push_str(&format!("{indent}  {k}: {}\n", scalar(v)));
    }
}

fn collect(
    groups: &BTreeMap<String, IniGroup>,
    name: &str,
    seen: &mut BTreeSet<String>,
    into: &mut BTreeSet<String>,
) {
    if !seen.insert(name.to_owned()) {
        return;
    }
    if let Some(g) = groups.get(name) {
        into.extend(g.hosts.iter().cloned());
        for child in &g.children {
            collect(groups, child, seen, into);
        }
    }
}

/// A YAML scalar for `v`: plain when safe, JSON-quoted otherwise (JSON strings are valid YAML).
fn scalar(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-@".contains(c))
        && !matches!(v, "true" | "false" | "null" | "yes" | "no" | "on" | "off")
        && v.parse::<f64>().is_err();
    if plain {
        v.to_owned()
    } else {
        serde_json::to_string(v).unwrap_or_default()
    }
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    v.to_owned()
}

/// Splits a host line into words, honouring quotes (`key="a b"`).
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            (None, '#') if cur.is_empty() => break,
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    Ok(words)
}
