//! Host patterns, as in Ansible: `all`, a group, a host, a glob (`data-*`), and combinations with `:`
//! (union), `:&` (intersection) and `:!` (exclusion).

use std::collections::BTreeSet;

use globset::Glob;

use super::Inventory;

/// The host names matching `pattern`, sorted. An unknown name is an error, not an empty match.
pub fn select(inv: &Inventory, pattern: &str) -> Result<Vec<String>, String> {
    let mut union: BTreeSet<String> = BTreeSet::new();
    let mut intersect: Vec<BTreeSet<String>> = Vec::new();
    let mut exclude: BTreeSet<String> = BTreeSet::new();
    let terms: Vec<&str> = pattern
        .split([':', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if terms.is_empty() {
        return Err("empty host pattern".into());
    }
    for term in terms {
        if let Some(t) = term.strip_prefix('&') {
            intersect.push(term_hosts(inv, t)?);
        } else if let Some(t) = term.strip_prefix('!') {
            exclude.extend(term_hosts(inv, t)?);
        } else {
            union.extend(term_hosts(inv, term)?);
        }
    }
    if union.is_empty() && !intersect.is_empty() {
        union = inv.hosts.keys().cloned().collect();
    }
    Ok(union
        .into_iter()
        .filter(|h| intersect.iter().all(|set| set.contains(h)) && !exclude.contains(h))
        .collect())
}

fn term_hosts(inv: &Inventory, term: &str) -> Result<BTreeSet<String>, String> {
    if term == "all" || term == "*" {
        return Ok(inv.hosts.keys().cloned().collect());
    }
    if let Some(group) = inv.groups.get(term) {
        return Ok(group.hosts.iter().cloned().collect());
    }
    if inv.hosts.contains_key(term) {
        return Ok(BTreeSet::from([term.to_owned()]));
    }
    if term.contains(['*', '?', '[']) {
        let glob = Glob::new(term)
            .map_err(|e| format!("bad host pattern `{term}`: {e}"))?
            .compile_matcher();
        let mut out: BTreeSet<String> = inv
            .hosts
            .keys()
            .filter(|h| glob.is_match(h.as_str()))
            .cloned()
            .collect();
        for g in inv
            .groups
            .values()
            .filter(|g| glob.is_match(g.name.as_str()))
        {
            out.extend(g.hosts.iter().cloned());
        }
        return Ok(out);
    }
    Err(format!(
        "`{term}` is neither a host nor a group of inventory `{}`",
        inv.name
    ))
}
