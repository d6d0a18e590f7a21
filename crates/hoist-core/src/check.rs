//! A check's outcome, as `hoist validate`, a playbook's `validate` step and the drills report it:
//! what was checked, on what, the value measured and the threshold it was held to.

use serde::Serialize;

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What was checked (`replication.streaming`, `roles.reader_cannot_write`, ...).
    pub check: String,
    /// What it was checked on (a standby's name, a role).
    pub target: String,
    pub ok: bool,
    pub measured: String,
    pub threshold: String,
}

impl Check {
    pub fn new(
        check: &str,
        target: &str,
        ok: bool,
        measured: impl std::fmt::Display,
        threshold: impl Into<String>,
    ) -> Check {
        Check {
            check: check.to_owned(),
            target: target.to_owned(),
            ok,
            measured: measured.to_string(),
            threshold: threshold.into(),
        }
    }
}

/// A failed check.
pub fn failed(
    check: &str,
    target: &str,
    measured: impl std::fmt::Display,
    threshold: &str,
) -> Check {
    Check::new(check, target, false, measured, threshold)
}

/// The checks as a table for people: one line each, failures marked.
pub fn table(checks: &[Check]) -> String {
    let w = |f: &dyn Fn(&Check) -> usize| checks.iter().map(f).max().unwrap_or(0);
    let (wc, wt, wm) = (
        w(&|c| c.check.len()),
        w(&|c| c.target.len()),
        w(&|c| c.measured.len()),
    );
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!(
            "{}  {:wc$}  {:wt$}  {:wm$}  ({})\n",
            if c.ok { "ok  " } else { "FAIL" },
            c.check,
            c.target,
            c.measured,
            c.threshold,
        ));
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    s.push_str(&format!("{} check(s), {failed} failed\n", checks.len()));
    s
}
