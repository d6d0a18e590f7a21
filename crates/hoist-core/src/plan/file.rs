//! A managed file: content (a unified diff, secrets masked), mode and owner.

use std::collections::BTreeSet;

use similar::TextDiff;

use crate::desired::{Content, FileSpec};
use crate::observed::ObservedFile;
use crate::secret::{REDACTED, Redactor};

use super::{Change, ChangeAction, Reason, ResourceKind, change_hashed};

pub(super) fn diff_file(
    file: &FileSpec,
    have: Option<&ObservedFile>,
    redactor: &Redactor,
) -> Option<Change> {
    let want_hash = file.sha256();
    let mode = format!("{:04o}", file.mode);
    let Some(have) = have else {
        let mut reasons = vec![Reason::new("mode", mode)];
        match (&file.content, file.sensitive) {
            (Content::Binary(b), _) => {
                reasons.push(Reason::new("content", format!("binary, {} bytes", b.len())));
            }
            (Content::Text(t), true) => {
                let lines = t.lines().count();
                reasons.push(Reason::new(
                    "content",
                    format!("{REDACTED}: private file, {lines} line(s)"),
                ));
            }
            (Content::Text(_), false) => {}
        }
        let mut c = change_hashed(
            ResourceKind::File,
            &file.path,
            ChangeAction::Create,
            reasons,
            false,
            &want_hash,
        );
        c.diff = Some(masked_diff(file, None, redactor)).filter(|d| !d.is_empty());
        return Some(c);
    };
    let mut reasons = Vec::new();
    let mut diff = None;
    if have.sha256 != want_hash {
        match &have.content {
            _ if file.content.text().is_none() => reasons.push(Reason::new(
                "content",
                format!("binary, {} bytes, changed", file.content.as_bytes().len()),
            )),
            Some(old) => {
                let d = masked_diff(file, Some(old), redactor);
                if d.is_empty() && file.sensitive {
                    reasons.push(Reason::new(
                        "content",
                        format!("{REDACTED}: private file changed"),
                    ));
                } else if d.is_empty() {
                    reasons.push(Reason::new("content", format!("{REDACTED} value changed")));
                } else {
                    reasons.push(Reason::new("content", "differs"));
                    diff = Some(d);
                }
            }
            // A private file's hashes are not shown: the hash of a file holding only a secret
            // could be checked against guesses.
            None if file.sensitive => reasons.push(Reason::new(
                "content",
                format!("{REDACTED}: private file changed"),
            )),
            None => reasons.push(Reason::new(
                "content",
                format!("sha256 {} -> {}", short(&have.sha256), short(&want_hash)),
            )),
        }
    }
    if normalize_mode(&have.mode) != mode {
        reasons.push(Reason::new(
            "mode",
            format!("{} -> {mode}", normalize_mode(&have.mode)),
        ));
    }
    if let Some(owner) = &file.owner
        && have.owner.is_some()
        && !same_account(owner, have.owner.as_deref(), have.uid)
    {
        reasons.push(Reason::new(
            "owner",
            format!("{} -> {owner}", have.owner.clone().unwrap_or_default()),
        ));
    }
    if let Some(group) = &file.group
        && have.group.is_some()
        && !same_account(group, have.group.as_deref(), have.gid)
    {
        reasons.push(Reason::new(
            "group",
            format!("{} -> {group}", have.group.clone().unwrap_or_default()),
        ));
    }
    if reasons.is_empty() {
        return None;
    }
    let mut c = change_hashed(
        ResourceKind::File,
        &file.path,
        ChangeAction::Update,
        reasons,
        false,
        &want_hash,
    );
    c.diff = diff;
    Some(c)
}

/// A desired owner or group (a name, or a number) against what stat reported.
pub(super) fn same_account(want: &str, name: Option<&str>, id: Option<u32>) -> bool {
    name == Some(want) || id.is_some_and(|i| i.to_string() == want)
}

pub(super) fn normalize_mode(m: &str) -> String {
    u32::from_str_radix(m.trim_start_matches("0o"), 8)
        .map(|v| format!("{v:04o}"))
        .unwrap_or_else(|_| m.to_owned())
}

pub(super) fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// The diff of a file with secrets masked on both sides; empty when only secret values differ, and
/// always empty for a private file.
pub(super) fn masked_diff(file: &FileSpec, old: Option<&str>, redactor: &Redactor) -> String {
    let Some(text) = file.content.text().filter(|_| !file.sensitive) else {
        return String::new();
    };
    let new = redactor.redact(text);
    if let Some(old) = old {
        learn_rotated(old, &new, redactor);
    }
    let old = old.map(|o| redactor.redact(o)).unwrap_or_default();
    if old == new {
        return String::new();
    }
    unified(&file.path, &old, &new, redactor)
}

/// After a rotation the host's file holds the old secret, which no input knows any more. Where a
/// line of the desired file holds a secret, the host's line with the same text around it holds the
/// old value: the redactor learns it, so neither side of a diff shows it. A file that is only a
/// secret makes the whole old content secret.
fn learn_rotated(old: &str, new_redacted: &str, redactor: &Redactor) {
    if new_redacted.trim() == REDACTED {
        redactor.add(old.trim());
        return;
    }
    let new_lines: BTreeSet<&str> = new_redacted.lines().collect();
    let around: Vec<(&str, &str)> = new_redacted
        .lines()
        .filter_map(|l| {
            let first = l.find(REDACTED)?;
            let last = l.rfind(REDACTED)? + REDACTED.len();
            Some((&l[..first], &l[last..]))
        })
        // Some text of its own around the secret (a key, a quote and a semicolon), so that the
        // old line is this line, not any line that starts like a YAML list item.
        .filter(|(before, after)| before.trim().chars().count() + after.trim().chars().count() >= 2)
        .collect();
    for line in old.lines().filter(|l| !new_lines.contains(l)) {
        for (before, after) in &around {
            if line.len() > before.len() + after.len()
                && line.starts_with(before)
                && line.ends_with(after)
            {
                redactor.add(&line[before.len()..line.len() - after.len()]);
            }
        }
    }
}

pub(super) fn unified(path: &str, old: &str, new: &str, redactor: &Redactor) -> String {
    let old = redactor.redact(old);
    let new = redactor.redact(new);
    TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (host)"), &format!("{path} (desired)"))
        .to_string()
}
