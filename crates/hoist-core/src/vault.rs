//! Secrets at rest: values encrypted with age inside ordinary YAML vars files.
//!
//! Like SOPS, only values are encrypted (`db_password: "ENC[AGE,<base64>]"`), so keys stay readable
//! in reviews, diffs stay small, and `hoist check` can validate a project without the key. The key is
//! an age X25519 identity taken from `HOIST_AGE_KEY` (the `AGE-SECRET-KEY-1...` text) or from the file
//! named by `HOIST_AGE_KEY_FILE`, both outside the repository.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::str::FromStr;

use age::x25519;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::diag::{Diagnostics, SourceName};
use crate::secret::Secret;
use crate::yaml::{self, Node, Value};

/// Environment variable holding an age identity.
pub const KEY_ENV: &str = "HOIST_AGE_KEY";
/// Environment variable naming a file that holds age identities.
pub const KEY_FILE_ENV: &str = "HOIST_AGE_KEY_FILE";

const PREFIX: &str = "ENC[AGE,";
const SUFFIX: &str = "]";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "no age key: set {KEY_ENV} to an AGE-SECRET-KEY-1... identity or {KEY_FILE_ENV} to a file holding one"
    )]
    NoKey,
    #[error("reading the age key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the age key in {origin} is not a valid X25519 identity (AGE-SECRET-KEY-1...)")]
    BadKey { origin: String },
    #[error("not a valid age recipient: {0:?} (expected age1...)")]
    BadRecipient(String),
    #[error("the value is not valid ENC[AGE,...] data")]
    Malformed,
    #[error("none of the given age keys can decrypt this value")]
    WrongKey,
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

/// The identities that can decrypt secrets.
pub struct Keyring {
    identities: Vec<x25519::Identity>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("identities", &self.identities.len())
            .finish()
    }
}

impl Keyring {
    /// Reads the key from the environment; `Ok(None)` when none is configured.
    pub fn from_env() -> Result<Option<Keyring>, VaultError> {
        if let Ok(text) = std::env::var(KEY_ENV)
            && !text.trim().is_empty()
        {
            return Keyring::parse(&text, KEY_ENV).map(Some);
        }
        if let Ok(path) = std::env::var(KEY_FILE_ENV) {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path).map_err(|source| VaultError::KeyFile {
                path: path.clone(),
                source,
            })?;
            return Keyring::parse(&text, &path.display().to_string()).map(Some);
        }
        Ok(None)
    }

    /// Parses identities: one `AGE-SECRET-KEY-1...` per line, `#` comments allowed (age's key file format).
    pub fn parse(text: &str, origin: &str) -> Result<Keyring, VaultError> {
        let identities = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                x25519::Identity::from_str(l).map_err(|_| VaultError::BadKey {
                    origin: origin.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if identities.is_empty() {
            return Err(VaultError::BadKey {
                origin: origin.to_owned(),
            });
        }
        Ok(Keyring { identities })
    }

    /// The private keys as text (`AGE-SECRET-KEY-1...`): secrets themselves, for the redactor.
    pub fn secret_texts(&self) -> Vec<Secret<String>> {
        self.identities
            .iter()
            .map(|id| Secret::new(id.to_string().expose_secret().to_owned()))
            .collect()
    }

    /// A fresh identity, in age's key file format (for `hoist secrets keygen`).
    pub fn generate() -> (String, String) {
        let id = x25519::Identity::generate();
        let public = id.to_public().to_string();
        let secret = id.to_string();
        (public, secret.expose_secret().to_owned())
    }

    /// The recipients matching these identities: what `encrypt` uses when no recipient is given.
    pub fn recipients(&self) -> Vec<x25519::Recipient> {
        self.identities
            .iter()
            .map(x25519::Identity::to_public)
            .collect()
    }

    /// Decrypts one `ENC[AGE,...]` value.
    pub fn decrypt(&self, value: &str) -> Result<Secret<String>, VaultError> {
        let data = value
            .trim()
            .strip_prefix(PREFIX)
            .and_then(|v| v.strip_suffix(SUFFIX))
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or(VaultError::Malformed)?;
        let decryptor =
            age::Decryptor::new_buffered(&data[..]).map_err(|_| VaultError::Malformed)?;
        let mut reader = decryptor
            .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|_| VaultError::WrongKey)?;
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .map_err(|_| VaultError::WrongKey)?;
        String::from_utf8(out)
            .map(Secret::new)
            .map_err(|_| VaultError::Malformed)
    }
}

use age::secrecy::ExposeSecret as _;

/// Parses `age1...` recipients.
pub fn parse_recipients(items: &[String]) -> Result<Vec<x25519::Recipient>, VaultError> {
    items
        .iter()
        .map(|r| {
            x25519::Recipient::from_str(r.trim()).map_err(|_| VaultError::BadRecipient(r.clone()))
        })
        .collect()
}

/// Whether a string is an encrypted value.
pub fn is_encrypted(value: &str) -> bool {
    let v = value.trim();
    v.starts_with(PREFIX) && v.ends_with(SUFFIX)
}

/// Encrypts one value for `recipients`.
pub fn encrypt(plain: &str, recipients: &[x25519::Recipient]) -> Result<String, VaultError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| VaultError::Encrypt(e.to_string()))?;
    let mut out = Vec::new();
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| VaultError::Encrypt(e.to_string()))?;
    writer
        .write_all(plain.as_bytes())
        .map_err(|e| VaultError::Encrypt(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| VaultError::Encrypt(e.to_string()))?;
    Ok(format!("{PREFIX}{}{SUFFIX}", STANDARD.encode(out)))
}

/// The scalar leaves of a vars file with their byte ranges, in source order.
fn leaves(node: &Node, out: &mut Vec<(std::ops::Range<usize>, String)>) {
    match &node.value {
        Value::Seq(items) => items.iter().for_each(|n| leaves(n, out)),
        Value::Map(entries) => entries.iter().for_each(|(_, v)| leaves(v, out)),
        Value::Null => {}
        _ => {
            if let (Some(range), Some(text)) = (node.bytes.clone(), node.scalar_text()) {
                out.push((range, text));
            }
        }
    }
}

/// Rewrites a YAML vars file so that every plaintext value is encrypted, keeping keys, comments and
/// layout. `keep` maps plaintexts to the ciphertext they had before an edit, so unchanged values keep
/// their ciphertext and the diff shows only what changed.
pub fn encrypt_document(
    file: &SourceName,
    text: &str,
    recipients: &[x25519::Recipient],
    keep: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut diags = Diagnostics::new();
    let node = yaml::parse(file, text, &mut diags).ok_or_else(|| render_first(&diags))?;
    let mut found = Vec::new();
    leaves(&node, &mut found);
    let mut out = text.to_owned();
    for (range, plain) in found.into_iter().rev() {
        if is_encrypted(&plain) {
            continue;
        }
        let Some(original) = text.get(range.clone()) else {
            return Err(format!(
                "{file}: cannot locate a value in the source; write it on one line"
            ));
        };
        if original.starts_with('|') || original.starts_with('>') {
            return Err(format!(
                "{file}: block scalars (| or >) cannot be encrypted in place; write the value quoted on one line"
            ));
        }
        let cipher = match keep(&plain) {
            Some(c) => c,
            None => encrypt(&plain, recipients).map_err(|e| e.to_string())?,
        };
        out.replace_range(range, &format!("\"{cipher}\""));
    }
    Ok(out)
}

/// Rewrites a YAML vars file with every encrypted value decrypted (double-quoted, JSON escaping).
/// Also returns the plaintext -> ciphertext pairs, so a re-encryption can keep unchanged values.
pub fn decrypt_document(
    file: &SourceName,
    text: &str,
    keyring: &Keyring,
) -> Result<(String, Vec<(String, String)>), String> {
    let mut diags = Diagnostics::new();
    let node = yaml::parse(file, text, &mut diags).ok_or_else(|| render_first(&diags))?;
    let mut found = Vec::new();
    leaves(&node, &mut found);
    let mut out = text.to_owned();
    let mut pairs = Vec::new();
    for (range, value) in found.into_iter().rev() {
        if !is_encrypted(&value) {
            continue;
        }
        let plain = keyring
            .decrypt(&value)
            .map_err(|e| format!("{file}: {e}"))?;
        let quoted = serde_json::to_string(plain.expose()).map_err(|e| e.to_string())?;
        out.replace_range(range, &quoted);
        pairs.push((plain.expose().clone(), value));
    }
    Ok((out, pairs))
}

fn render_first(diags: &Diagnostics) -> String {
    diags
        .sorted()
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| "invalid YAML".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_layout() {
        let (_, key) = Keyring::generate();
        let keyring = Keyring::parse(&key, "test").expect("key");
        let file = SourceName("secrets.yml".into());
        let text = "# dev secrets\ndb_password: hunter2-poison # inline\nnested:\n  token: 'abc def'\nport: 5432\n";
        let enc = encrypt_document(&file, text, &keyring.recipients(), &|_| None).expect("encrypt");
        assert!(!enc.contains("hunter2-poison"), "{enc}");
        assert!(
            enc.starts_with("# dev secrets\ndb_password: \"ENC[AGE,"),
            "{enc}"
        );
        assert!(
            enc.contains(" # inline\nnested:\n  token: \"ENC[AGE,"),
            "{enc}"
        );
        let (dec, pairs) = decrypt_document(&file, &enc, &keyring).expect("decrypt");
        assert_eq!(
            dec,
            "# dev secrets\ndb_password: \"hunter2-poison\" # inline\nnested:\n  token: \"abc def\"\nport: \"5432\"\n"
        );
        assert_eq!(pairs.len(), 3);
        // Re-encrypting with the old pairs keeps every ciphertext.
        let again = encrypt_document(&file, &dec, &keyring.recipients(), &|p| {
            pairs
                .iter()
                .find(|(plain, _)| plain == p)
                .map(|(_, c)| c.clone())
        })
        .expect("encrypt");
        assert_eq!(again, enc);
    }

    #[test]
    fn wrong_key_is_refused() {
        let (_, a) = Keyring::generate();
        let (_, b) = Keyring::generate();
        let a = Keyring::parse(&a, "a").expect("key");
        let b = Keyring::parse(&b, "b").expect("key");
        let enc = encrypt("x", &a.recipients()).expect("encrypt");
        assert!(matches!(b.decrypt(&enc), Err(VaultError::WrongKey)));
        assert_eq!(
            a.decrypt(&enc).ok().map(|s| s.expose().clone()).as_deref(),
            Some("x")
        );
    }
}
