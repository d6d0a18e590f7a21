//! Rendering plans and diagnostics for people (text, coloured on a terminal) and for programs (JSON
//! with a versioned schema). Everything passes through the redactor on the way out.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use serde::Serialize;

use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::plan::{Change, ChangeAction, HostPlan, Plan};
use crate::secret::Redactor;

/// Version of `hoist check --json`.
pub const CHECK_SCHEMA: &str = "hoist.check/v1";

/// Text styles; all empty when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Palette {
    add: Style,
    change: Style,
    delete: Style,
    dim: Style,
    bold: Style,
    warn: Style,
}

impl Palette {
    pub fn new(color: bool) -> Palette {
        if !color {
            let none = Style::new();
            return Palette {
                add: none,
                change: none,
                delete: none,
                dim: none,
                bold: none,
                warn: none,
            };
        }
        Palette {
            add: AnsiColor::Green.on_default(),
            change: AnsiColor::Yellow.on_default(),
            delete: AnsiColor::Red.on_default(),
            dim: Style::new().dimmed(),
            bold: Style::new().bold(),
            warn: AnsiColor::Magenta.on_default(),
        }
    }

    fn paint(&self, style: Style, text: &str) -> String {
        format!("{}{text}{}", style.render(), style.render_reset())
    }
}

fn symbol(action: ChangeAction) -> &'static str {
    match action {
        ChangeAction::Create | ChangeAction::Install | ChangeAction::Build | ChangeAction::Pull => {
            "+"
        }
        ChangeAction::Update | ChangeAction::Configure | ChangeAction::Start => "~",
        ChangeAction::Recreate => "-/+",
        ChangeAction::Delete => "-",
    }
}

/// The plan as text: per host, its changes with reasons and diffs, deletions, actions, and a summary.
pub fn plan_text(plan: &Plan, color: bool, redactor: &Redactor) -> String {
    let p = Palette::new(color);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} on inventory {}",
        p.paint(p.bold, "plan:"),
        plan.playbook,
        plan.inventory
    );
    for host in &plan.hosts {
        host_text(&mut out, host, &p);
    }
    let s = &plan.summary;
    let _ = writeln!(out);
    if !plan.has_changes() {
        let _ = writeln!(
            out,
            "No changes: {} host(s) match the playbook ({} action(s) would still run).",
            s.hosts, s.actions
        );
    } else {
        let _ = writeln!(
            out,
            "Plan: {} host(s), {} to create, {} to update, {} to recreate, {} to delete (only with --prune), {} unknown until applied.",
            s.hosts, s.create, s.update, s.recreate, s.delete, s.unknown
        );
    }
    redactor.redact(&out)
}

fn host_text(out: &mut String, host: &HostPlan, p: &Palette) {
    let _ = writeln!(out);
    let _ = writeln!(out, "{} ({})", p.paint(p.bold, &host.host), host.address);
    for note in &host.notes {
        let _ = writeln!(out, "  {} {note}", p.paint(p.warn, "?"));
    }
    if host.changes.is_empty() && host.deletions.is_empty() {
        let _ = writeln!(out, "  {}", p.paint(p.dim, "no changes"));
    }
    for c in &host.changes {
        change_text(out, c, p);
    }
    if !host.deletions.is_empty() {
        let _ = writeln!(out, "  deletions (applied only with --prune):");
        for c in &host.deletions {
            change_text(out, c, p);
        }
    }
    if !host.actions.is_empty() {
        let _ = writeln!(out, "  actions run on apply:");
        for a in &host.actions {
            let label = a
                .name
                .as_deref()
                .map(|n| format!("{n}: "))
                .unwrap_or_default();
            let _ = writeln!(out, "    {} {label}{}", p.paint(p.dim, ">"), a.describe);
        }
    }
}

fn change_text(out: &mut String, c: &Change, p: &Palette) {
    let style = match c.action {
        ChangeAction::Delete => p.delete,
        ChangeAction::Recreate
        | ChangeAction::Update
        | ChangeAction::Configure
        | ChangeAction::Start => p.change,
        _ => p.add,
    };
    let unknown = if c.unknown {
        format!(" {}", p.paint(p.warn, "(known after apply)"))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  {} {} {} {}{unknown}",
        p.paint(style, &format!("{:>3}", symbol(c.action))),
        c.kind.as_str(),
        p.paint(p.bold, &c.name),
        p.paint(p.dim, &format!("({})", c.action.as_str())),
    );
    for r in &c.reasons {
        let _ = writeln!(out, "        {}: {}", r.field, r.detail);
    }
    if let Some(diff) = &c.diff {
        for line in diff.lines() {
            let styled = if line.starts_with("+++") || line.starts_with("---") {
                p.paint(p.bold, line)
            } else if line.starts_with('+') {
                p.paint(p.add, line)
            } else if line.starts_with('-') {
                p.paint(p.delete, line)
            } else if line.starts_with("@@") {
                p.paint(p.dim, line)
            } else {
                line.to_owned()
            };
            let _ = writeln!(out, "        {styled}");
        }
    }
}

/// The plan as JSON (`hoist.plan/v1`), redacted.
pub fn plan_json(plan: &Plan, redactor: &Redactor) -> String {
    json(plan, redactor)
}

/// Serialises any value as pretty JSON with every string redacted.
pub fn json<T: Serialize>(value: &T, redactor: &Redactor) -> String {
    let mut v = serde_json::to_value(value).unwrap_or_default();
    redactor.redact_json(&mut v);
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

/// Diagnostics as text, one per line, then a count.
pub fn diagnostics_text(diags: &Diagnostics, color: bool, redactor: &Redactor) -> String {
    let p = Palette::new(color);
    let mut out = String::new();
    for d in diags.sorted() {
        let style = if d.severity == Severity::Error {
            p.delete
        } else {
            p.warn
        };
        let text = d.to_string();
        let (head, rest) = text.split_once(':').unwrap_or((&text, ""));
        let _ = writeln!(out, "{}:{rest}", p.paint(style, head));
    }
    redactor.redact(&out)
}

#[derive(Serialize)]
struct CheckReport {
    schema: &'static str,
    ok: bool,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<Diagnostic>,
}

/// Diagnostics as JSON (`hoist.check/v1`).
pub fn diagnostics_json(diags: &Diagnostics, redactor: &Redactor) -> String {
    let all = diags.sorted();
    let errors = all.iter().filter(|d| d.severity == Severity::Error).count();
    let report = CheckReport {
        schema: CHECK_SCHEMA,
        ok: errors == 0,
        errors,
        warnings: all.len() - errors,
        diagnostics: all,
    };
    json(&report, redactor)
}
