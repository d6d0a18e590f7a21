//! `hoist secrets`: encrypt, decrypt and edit vars files whose values are encrypted with age.
//!
//! Files are rewritten atomically (a temporary file in the same folder, then a rename), keeping
//! their permissions, so an interrupted command never leaves a half-written secrets file.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use hoist_core::diag::{Diagnostics, SourceName};
use hoist_core::vault::{self, Keyring, VaultError};
use hoist_core::yaml;

use crate::cli::SecretsCommand;
use crate::output::Output;

pub fn run(cmd: SecretsCommand, out: &Output) -> anyhow::Result<u8> {
    match cmd {
        SecretsCommand::Encrypt { file, recipient } => {
            let recipients = recipients(&recipient)?;
            let text = read(&file)?;
            let enc = vault::encrypt_document(&name(&file), &text, &recipients, &|_| None)
                .map_err(anyhow::Error::msg)?;
            write_atomic(&file, &enc)?;
            out.eprint(&format!("encrypted {}\n", file.display()));
        }
        SecretsCommand::Decrypt { file, out: target } => {
            let target = target.unwrap_or_else(|| file.clone());
            // Plaintext never lands where a commit could take it.
            if let Some(tree) = working_tree(&target) {
                bail!(
                    "{}: inside the git working tree {}, where a commit could take the plaintext: decrypt with --out to a file outside it, or change values with `hoist secrets edit`",
                    target.display(),
                    tree.display()
                );
            }
            let keyring = Keyring::from_env()?.ok_or(VaultError::NoKey)?;
            let text = read(&file)?;
            let (plain, _) = vault::decrypt_document(&name(&file), &text, &keyring)
                .map_err(anyhow::Error::msg)?;
            if target == file {
                write_atomic(&target, &plain)?;
            } else {
                // A new file, or one replaced, readable by its owner only.
                write_atomic_private(&target, &plain)?;
            }
            out.eprint(&format!("decrypted into {}\n", target.display()));
        }
        SecretsCommand::Edit { file, recipient } => edit(&file, &recipient, out)?,
        SecretsCommand::Keygen { out: path } => {
            if path.exists() {
                bail!("{} already exists: not overwriting a key", path.display());
            }
            let (public, secret) = Keyring::generate();
            let content = format!("# public key: {public}\n{secret}\n");
            write_private(&path, &content)?;
            out.print(&format!("{public}\n"));
            out.eprint(&format!(
                "wrote the private key to {} (keep it out of the repository; point {} at it)\n",
                path.display(),
                vault::KEY_FILE_ENV
            ));
        }
    }
    Ok(0)
}

/// The git working tree `path` would be in (a folder above it holding `.git`), if any.
fn working_tree(path: &Path) -> Option<std::path::PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    absolute
        .ancestors()
        .skip(1)
        .find(|dir| dir.join(".git").exists())
        .map(Path::to_path_buf)
}

fn name(path: &Path) -> SourceName {
    SourceName(path.display().to_string())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The recipients to encrypt for: the given ones, else the public side of the configured key.
fn recipients(given: &[String]) -> anyhow::Result<Vec<age::x25519::Recipient>> {
    if !given.is_empty() {
        return Ok(vault::parse_recipients(given)?);
    }
    let keyring = Keyring::from_env()?.ok_or(VaultError::NoKey)?;
    Ok(keyring.recipients())
}

fn edit(file: &Path, given: &[String], out: &Output) -> anyhow::Result<()> {
    let keyring = Keyring::from_env()?.ok_or(VaultError::NoKey)?;
    let recipients = if given.is_empty() {
        keyring.recipients()
    } else {
        vault::parse_recipients(given)?
    };
    let original = read(file)?;
    let (plain, pairs) =
        vault::decrypt_document(&name(file), &original, &keyring).map_err(anyhow::Error::msg)?;
    // A private file outside the repository, removed when dropped.
    let mut tmp = tempfile::Builder::new()
        .prefix("hoist-secrets-")
        .suffix(".yml")
        .tempfile()
        .context("creating a temporary file")?;
    tmp.write_all(plain.as_bytes())?;
    tmp.flush()?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    loop {
        let mut words = shlex::split(&editor).unwrap_or_default();
        if words.is_empty() {
            bail!("$EDITOR is empty");
        }
        let program = words.remove(0);
        // The one process the CLI itself starts: the user's editor, on their terminal.
        #[allow(clippy::disallowed_methods)]
        let status = std::process::Command::new(&program)
            .args(&words)
            .arg(tmp.path())
            .status()
            .with_context(|| format!("running the editor {program:?}"))?;
        if !status.success() {
            bail!(
                "the editor exited with {status}: {} left unchanged",
                file.display()
            );
        }
        let edited = std::fs::read_to_string(tmp.path())?;
        let mut diags = Diagnostics::new();
        if yaml::parse(&name(file), &edited, &mut diags).is_some() && !diags.has_errors() {
            let keep = |p: &str| {
                pairs
                    .iter()
                    .find(|(plain, _)| plain == p)
                    .map(|(_, c)| c.clone())
            };
            let enc = vault::encrypt_document(&name(file), &edited, &recipients, &keep)
                .map_err(anyhow::Error::msg)?;
            if enc == original {
                out.eprint(&format!("no change to {}\n", file.display()));
            } else {
                write_atomic(file, &enc)?;
                out.eprint(&format!("saved {}\n", file.display()));
            }
            return Ok(());
        }
        let problem = diags
            .sorted()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        out.eprint(&format!("the edited file is not valid YAML: {problem}\n"));
        if !std::io::stdin().is_terminal() {
            bail!("{} left unchanged", file.display());
        }
        out.eprint("edit again? [Y/n] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim().eq_ignore_ascii_case("n") {
            bail!("{} left unchanged", file.display());
        }
    }
}

/// [`write_atomic`], the result readable by its owner only (0600) whatever was there before.
pub(super) fn write_atomic_private(path: &Path, content: &str) -> anyhow::Result<()> {
    replace(path, content, false)
}

/// Replaces `path` atomically, keeping its permissions.
pub(super) fn write_atomic(path: &Path, content: &str) -> anyhow::Result<()> {
    replace(path, content, true)
}

/// Writes a temporary file (0600, as tempfile makes them) in `path`'s folder, then renames it
/// over `path`; with `keep_mode`, the new file takes the old one's permissions first.
fn replace(path: &Path, content: &str, keep_mode: bool) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(content.as_bytes())?;
    tmp.as_file().sync_all()?;
    if keep_mode && let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions())?;
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

pub(super) fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}
