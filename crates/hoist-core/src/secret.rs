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

impl<T: Default> Default for Secret<T> {
    fn default() -> Secret<T> {
        Secret(T::default())
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
    /// The plan key, once sealed ([`Redactor::seal_plan_key`]).
    plan_key: Arc<std::sync::OnceLock<[u8; 32]>>,
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

    /// Learns every secret `other` knows (`hoist check` over several inventories masks all of them).
    pub fn absorb(&self, other: &Redactor) {
        if Arc::ptr_eq(&self.values, &other.values) {
            return;
        }
        let theirs: Vec<String> = other
            .values
            .read()
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        if let Ok(mut mine) = self.values.write() {
            mine.extend(theirs);
        }
    }

    /// Registers what a rendering made of secrets: `real` is the text rendered with the secrets,
    /// `shadow` the same template rendered with every secret replaced by its [`shadow`]. Whatever
    /// differs between the two came from a secret, whatever the filters did to it (`upper`, a
    /// slice, `reverse`, JSON or shell escaping, a hash), and is masked from then on.
    pub fn learn_from(&self, real: &str, shadow: &str) {
        if real == shadow {
            return;
        }
        let real_lines: Vec<&str> = real.lines().collect();
        let shadow_lines: Vec<&str> = shadow.lines().collect();
        if real_lines.len() == shadow_lines.len() {
            for (r, s) in real_lines.iter().zip(&shadow_lines) {
                if r != s {
                    self.add(differing_middle(r, s));
                }
            }
        } else {
            // The secret changed the shape of the output (a branch on its value, a newline in
            // it): every line the shadow rendering does not share is the secret's.
            let shared: BTreeSet<&str> = shadow_lines.iter().copied().collect();
            for line in real_lines.iter().filter(|l| !shared.contains(*l)) {
                self.add(line);
            }
        }
    }

    /// Masks every line of `text` from then on: what a rendering made when the shadow rendering
    /// could not say which part came from a secret (it failed). Safe rather than precise.
    pub fn learn_all(&self, text: &str) {
        for line in text.lines().filter(|l| l.trim().len() >= MIN_MASKED_LEN) {
            self.add(line);
        }
    }

    /// A key for hashes shown in plans: derived from every secret of the run, so the hash of a file
    /// that holds only a secret cannot be checked against guesses by whoever reads the plan.
    pub fn plan_key(&self) -> [u8; 32] {
        match self.plan_key.get() {
            Some(key) => *key,
            None => self.current_key(),
        }
    }

    /// Fixes the plan key to the secrets known now (those loaded), whatever is learnt later.
    pub fn seal_plan_key(&self) {
        let _ = self.plan_key.set(self.current_key());
    }

    fn current_key(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"hoist plan key\0");
        if let Ok(values) = self.values.read() {
            for v in values.iter() {
                h.update(v.as_bytes());
                h.update(b"\0");
            }
        }
        h.finalize().into()
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

/// `hash` keyed with `key` (HMAC-SHA-256, hex): equal inputs stay equal, nothing can be guessed.
pub fn keyed_hash(key: &[u8; 32], hash: &str) -> String {
    use hmac::Mac as _;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(hash.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A stand-in for a secret with the same length and shape that differs from it at every letter,
/// digit and punctuation mark: rendering a template with it shows which output came from the secret.
pub fn shadow(secret: &str) -> String {
    const PUNCT: &[u8] = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    secret
        .chars()
        .map(|c| match c {
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
            c if c.is_whitespace() => c,
            c if c.is_ascii() => match PUNCT.iter().position(|&p| char::from(p) == c) {
                Some(i) => char::from(PUNCT[(i + 1) % PUNCT.len()]),
                None => c,
            },
            // Any other character: the next one (the one before, at the end of a range).
            c => char::from_u32(c as u32 + 1)
                .or_else(|| char::from_u32(c as u32 - 1))
                .unwrap_or(c),
        })
        .collect()
}

/// The part of `real` between what it shares with `shadow` at its start and at its end.
fn differing_middle<'a>(real: &'a str, shadow: &str) -> &'a str {
    let prefix: usize = real
        .chars()
        .zip(shadow.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let rest = &real[prefix..];
    let shadow_rest = shadow.get(prefix..).unwrap_or("");
    let suffix: usize = rest
        .chars()
        .rev()
        .zip(shadow_rest.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    &rest[..rest.len() - suffix]
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

    #[test]
    fn a_shadow_differs_everywhere_and_keeps_the_shape() {
        let secret = "Az9-x.Q0 é";
        let s = shadow(secret);
        assert_eq!(s.chars().count(), secret.chars().count());
        for (a, b) in secret.chars().zip(s.chars()) {
            assert!(a != b || a.is_whitespace(), "{a} kept in {s}");
        }
        assert_eq!(shadow("abc"), "bcd");
    }

    #[test]
    fn what_a_filter_made_of_a_secret_is_learnt() {
        let secret = "s3cret-Value";
        type Filter = fn(&str) -> String;
        let filters: [(&str, Filter, &str); 4] = [
            ("upper", |s| s.to_uppercase(), "(sensitive)"),
            ("reverse", |s| s.chars().rev().collect(), "(sensitive)"),
            ("slice", |s| s[2..9].to_owned(), "(sensitive)"),
            ("debug escape", |s| format!("{s:?}"), "\"(sensitive)\""),
        ];
        for (name, filter, masked) in filters {
            let r = Redactor::new();
            r.add(secret);
            let line = |v: &str| format!("key = {};\nplain line\n", filter(v));
            r.learn_from(&line(secret), &line(&shadow(secret)));
            assert_eq!(
                r.redact(&line(secret)),
                format!("key = {masked};\nplain line\n"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_branch_on_a_secret_masks_the_lines_it_changed() {
        let r = Redactor::new();
        r.learn_from("a\nsecret-only line\nb\n", "a\nb\n");
        assert_eq!(r.redact("x secret-only line"), "x (sensitive)");
        assert_eq!(r.redact("a b"), "a b");
    }

    #[test]
    fn absorbing_another_redactor_masks_its_secrets_too() {
        let a = Redactor::new();
        let b = Redactor::new();
        a.add("first-secret");
        b.add("second-secret");
        a.absorb(&b);
        assert_eq!(
            a.redact("first-secret second-secret"),
            "(sensitive) (sensitive)"
        );
    }

    #[test]
    fn plan_hashes_are_keyed_by_the_secrets() {
        let a = Redactor::new();
        a.add("one-secret");
        let b = Redactor::new();
        b.add("other-secret");
        let h = "00".repeat(32);
        assert_eq!(keyed_hash(&a.plan_key(), &h), keyed_hash(&a.plan_key(), &h));
        assert_ne!(keyed_hash(&a.plan_key(), &h), keyed_hash(&b.plan_key(), &h));
        assert_ne!(keyed_hash(&a.plan_key(), &h), h);
    }
}
