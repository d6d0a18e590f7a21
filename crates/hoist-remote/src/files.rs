//! Managed files on a host: read them (content, mode, owner) in one round trip, put them atomically
//! and verified (size and checksum on the host before the rename).

use std::collections::BTreeMap;

use hoist_core::desired::{FileSpec, sha256_hex};
use hoist_core::observed::ObservedFile;

use crate::error::{RemoteError, Result};
use crate::host::Host;
use crate::script;

/// Files larger than this are observed by hash only (no diff).
const MAX_DIFF_BYTES: usize = 512 * 1024;

/// Reads `paths`; absent files are left out of the result. A path that holds something other than
/// a regular file (a symlink, a directory) is an error: hoist neither follows nor replaces it.
pub async fn read<H: Host>(
    host: &H,
    paths: &[&str],
) -> Result<BTreeMap<String, (ObservedFile, Vec<u8>)>> {
    if paths.is_empty() {
        return Ok(BTreeMap::new());
    }
    let out = host.run_ok(&script::read_files(paths), None).await?;
    parse(host.name(), paths, &out.stdout)
}

fn parse(
    host: &str,
    paths: &[&str],
    mut data: &[u8],
) -> Result<BTreeMap<String, (ObservedFile, Vec<u8>)>> {
    let bad = |what: &str| RemoteError::other(host, format!("reading files: {what}"));
    let mut out = BTreeMap::new();
    for path in paths {
        let nl = data
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("truncated output"))?;
        let header = std::str::from_utf8(&data[..nl]).map_err(|_| bad("bad header"))?;
        data = &data[nl + 1..];
        let rest = header
            .strip_prefix(script::READ_MARK)
            .ok_or_else(|| bad("bad header"))?
            .trim();
        match rest {
            "missing" => continue,
            "symlink" | "directory" | "special" => {
                return Err(RemoteError::other(
                    host,
                    format!("{path} is a {rest}, not a file: hoist manages regular files only"),
                ));
            }
            _ => {}
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [mode, owner, group, size, uid, gid] = fields[..] else {
            return Err(bad("bad header"));
        };
        let size: usize = size.parse().map_err(|_| bad("bad size"))?;
        if data.len() < size {
            return Err(bad("truncated content"));
        }
        let content = data[..size].to_vec();
        data = &data[size..];
        let text = if size <= MAX_DIFF_BYTES {
            String::from_utf8(content.clone()).ok()
        } else {
            None
        };
        let file = ObservedFile {
            sha256: sha256_hex(&content),
            content: text,
            mode: format!("{:0>4}", mode),
            owner: Some(owner.to_owned()),
            group: Some(group.to_owned()),
            uid: uid.parse().ok(),
            gid: gid.parse().ok(),
        };
        out.insert((*path).to_owned(), (file, content));
    }
    if !data.is_empty() {
        return Err(bad("more output than the files announced"));
    }
    Ok(out)
}

/// Puts a desired file in place atomically, with its mode and owner, once the host received all
/// of it intact.
pub async fn put<H: Host>(host: &H, file: &FileSpec) -> Result<()> {
    let owner = match (&file.owner, &file.group) {
        (Some(o), Some(g)) => format!("{o}:{g}"),
        (Some(o), None) => o.clone(),
        (None, Some(g)) => format!(":{g}"),
        (None, None) => String::new(),
    };
    let content = file.content.as_bytes();
    let argv = script::put_file(
        &file.path,
        file.mode,
        &owner,
        content.len(),
        &sha256_hex(content),
    );
    host.run_ok(&argv, Some(content)).await?;
    Ok(())
}

/// Removes `paths`; absent ones are fine.
pub async fn remove<H: Host>(host: &H, paths: &[&str]) -> Result<()> {
    if !paths.is_empty() {
        host.run_ok(&script::remove_files(paths), None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_files_and_absences() {
        let data = b"==hoist== 640 root adm 6 0 4\nhello\n==hoist== missing\n==hoist== 600 UNKNOWN UNKNOWN 0 999 999\n";
        let got = parse("h", &["/a", "/b", "/c"], data).expect("parses");
        assert_eq!(got.len(), 2);
        assert_eq!(got["/a"].0.mode, "0640");
        assert_eq!(got["/a"].0.content.as_deref(), Some("hello\n"));
        assert_eq!(got["/c"].0.uid, Some(999));
        assert_eq!(got["/a"].0.gid, Some(4));
        assert!(parse("h", &["/a"], b"==hoist== 640 root adm 60 0 0\nhello\n").is_err());
    }

    #[test]
    fn a_symlink_at_a_managed_path_is_named() {
        let e = parse("h", &["/etc/apm/x"], b"==hoist== symlink\n").expect_err("refused");
        assert_eq!(
            e.to_string(),
            "h: /etc/apm/x is a symlink, not a file: hoist manages regular files only"
        );
    }
}
