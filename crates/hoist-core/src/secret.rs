//! Secret values and the redactor that keeps them out of every output.
//!
//! A [`Secret`] cannot be printed: its `Debug` and `Display` show [`REDACTED`]. Secrets still have to
//! reach rendered files and container environments, so every text that leaves hoist (plans, diffs,
//! diagnostics, JSON, logs) also passes through a [`Redactor`], which knows every secret value of the
//! run (and the values derived from them by template filters) and masks any occurrence.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, RwLock};

/// What is shown in place of a secret.
pub const REDACTED: &str = "(sensitive)";

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself, for the few places that must use it (rendering, encryption).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// Values shorter than this are not masked inside other text: masking "1" everywhere would destroy
/// every output while protecting nothing. Such secrets are still redacted where they stand alone.
const MIN_MASKED_LEN: usize = 4;

/// Knows every secret value of a run and masks them in any text. Cheap to clone; shared by the
/// template filters, which register the values they derive from secrets (base64, hashes).
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<BTreeSet<String>>>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.values.read().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("Redactor").field("secrets", &count).finish()
    }
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Registers a secret value (and its lines, so a multi-line secret is masked in line diffs too).
    pub fn add(&self, value: &str) {
        let Ok(mut values) = self.values.write() else {
            return;
        };
        if value.trim().is_empty() {
            return;
        }
        values.insert(value.to_owned());
        if value.contains('\n') {
            for line in value.lines().filter(|l| l.trim().len() >= MIN_MASKED_LEN) {
                values.insert(line.to_owned());
            }
        }
    }

    /// Whether `value` is exactly a known secret.
    pub fn is_secret(&self, value: &str) -> bool {
        self.values
            .read()
            .map(|v| v.contains(value))
            .unwrap_or(false)
    }

    /// Whether `text` contains a known secret.
    pub fn contains_secret(&self, text: &str) -> bool {
        let Ok(values) = self.values.read() else {
            return false;
        };
        values
            .iter()
            .any(|s| s.len() >= MIN_MASKED_LEN && text.contains(s.as_str()))
            || values.contains(text)
    }

    /// `text` with every known secret replaced by [`REDACTED`]; longest secrets first, so a secret that
    /// contains another is masked whole.
    pub fn redact(&self, text: &str) -> String {
        let Ok(values) = self.values.read() else {
            return text.to_owned();
        };
        if values.contains(text) {
            return REDACTED.to_owned();
        }
        let mut ordered: Vec<&String> = values
            .iter()
            .filter(|s| s.len() >= MIN_MASKED_LEN)
            .collect();
        ordered.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut out = text.to_owned();
        for secret in ordered {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts every string inside a JSON value (keys included).
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries: Vec<(String, serde_json::Value)> =
                    std::mem::take(map).into_iter().collect();
                for (k, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2-poison".to_owned());
        assert_eq!(format!("{s} {s:?}"), "(sensitive) (sensitive)");
        assert_eq!(
            serde_json::to_string(&s).unwrap_or_default(),
            "\"(sensitive)\""
        );
    }

    #[test]
    fn redactor_masks_longest_first() {
        let r = Redactor::new();
        r.add("pass");
        r.add("password123");
        assert_eq!(
            r.redact("a=password123 b=pass"),
            "a=(sensitive) b=(sensitive)"
        );
        assert_eq!(r.redact("ok"), "ok");
    }
}
