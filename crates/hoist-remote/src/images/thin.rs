//! An image's tar (`docker save`) without the layers a host already has.
//!
//! The engine's loader (`docker load`) takes a layer's file only when it lacks that layer: it looks
//! the layer up by its chain id (the layer and every one below it) and opens the file only if it is
//! not there. So a layer the host has can travel as an empty entry, and the image still loads whole:
//! the platform's images share one Debian base of about 200 MB, sent once per host instead of once
//! per image.
//!
//! Both layouts `docker save` writes are handled: the OCI layout (Docker 25 and later), whose layer
//! blobs are named by their digest, and the legacy one (`<id>/layer.tar`), whose layer files are
//! named by an id of their own: there the digest is taken while the file is read into a temporary
//! file, and only then is it sent, or not.

use std::collections::BTreeSet;
use std::io::{Read, Seek as _, Write};

use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::Digest as _;

use crate::engine::TarStream;

/// `input` with the layers of `skip` (diff ids, `sha256:<hex>`) left empty.
pub fn thin(input: TarStream, skip: BTreeSet<String>) -> TarStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(8);
    let reader = tokio_util::io::StreamReader::new(input.map(|c| c.map_err(std::io::Error::other)));
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let failed = tx.clone();
    let rewriting = tokio::task::spawn_blocking(move || {
        let out = Chunks {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = rewrite(bridge, out, &skip) {
            let _ = tx.blocking_send(Err(format!("leaving out the layers the host has: {e}")));
        }
    });
    // A panic must not look like the end of the archive.
    tokio::spawn(async move {
        if rewriting.await.is_err() {
            let _ = failed
                .send(Err(
                    "rewriting the image archive stopped unexpectedly".to_owned()
                ))
                .await;
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Copies the archive `input` to `output`, every entry as it is but the layers of `skip`, which
/// stay as empty entries of the same name.
pub fn rewrite(
    input: impl Read,
    output: impl Write,
    skip: &BTreeSet<String>,
) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(input);
    let mut builder = tar::Builder::new(output);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let mut header = entry.header().clone();
        // The size an extended (PAX) header gives wins over the header's own field.
        header.set_size(entry.size());
        let name = path.to_string_lossy();
        let file = header.entry_type().is_file();
        if let (true, Some(hex)) = (file, name.strip_prefix("blobs/sha256/")) {
            if skip.contains(&format!("sha256:{hex}")) {
                header.set_size(0);
                builder.append_data(&mut header, &path, std::io::empty())?;
            } else {
                builder.append_data(&mut header, &path, &mut entry)?;
            }
        } else if file && name.ends_with("/layer.tar") {
            let mut kept = tempfile::tempfile()?;
            let mut digest = sha2::Sha256::new();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                digest.update(&buf[..n]);
                kept.write_all(&buf[..n])?;
            }
            let id = format!("sha256:{}", hex::encode(digest.finalize()));
            if skip.contains(&id) {
                header.set_size(0);
                builder.append_data(&mut header, &path, std::io::empty())?;
            } else {
                kept.rewind()?;
                builder.append_data(&mut header, &path, kept)?;
            }
        } else if let Some(target) = entry.link_name()?.map(|t| t.into_owned()) {
            builder.append_link(&mut header, &path, target)?;
        } else {
            builder.append_data(&mut header, &path, &mut entry)?;
        }
    }
    builder.into_inner()?.flush()
}

const CHUNK: usize = 256 * 1024;

/// A writer that sends what it is given as chunks on a channel (from a blocking thread).
struct Chunks {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, String>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the host stopped reading")
        })
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
    }

    /// An archive of `(path, content)` entries, as `docker save` writes them.
    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").display().to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("read");
                (path, data)
            })
            .collect()
    }

    #[test]
    fn the_legacy_layout_keeps_every_entry_and_empties_the_layers_the_host_has() {
        let (base, app) = (b"base layer bytes".as_slice(), b"app layer".as_slice());
        let input = archive(&[
            ("0a1b/VERSION", b"1.0"),
            ("0a1b/json", b"{}"),
            ("0a1b/layer.tar", base),
            ("9f8e/layer.tar", app),
            (
                "manifest.json",
                b"[{\"Layers\":[\"0a1b/layer.tar\",\"9f8e/layer.tar\"]}]",
            ),
        ]);
        let mut out = Vec::new();
        rewrite(input.as_slice(), &mut out, &BTreeSet::from([sha(base)])).expect("rewrite");
        let got = entries(&out);
        let names: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "0a1b/VERSION",
                "0a1b/json",
                "0a1b/layer.tar",
                "9f8e/layer.tar",
                "manifest.json"
            ]
        );
        assert_eq!(got[2].1, b"", "the host's layer is left empty");
        assert_eq!(got[3].1, app, "the host's missing layer is sent whole");
        assert!(got[4].1.starts_with(b"[{"), "the manifest as it was");
    }

    #[test]
    fn the_oci_layout_empties_blobs_by_their_name() {
        let (base, app) = (b"base".as_slice(), b"app".as_slice());
        let (b, a) = (sha(base), sha(app));
        let input = archive(&[
            ("index.json", b"{}"),
            (&format!("blobs/sha256/{}", &b[7..]), base),
            (&format!("blobs/sha256/{}", &a[7..]), app),
        ]);
        let mut out = Vec::new();
        rewrite(input.as_slice(), &mut out, &BTreeSet::from([b.clone()])).expect("rewrite");
        let got = entries(&out);
        assert_eq!(got[1], (format!("blobs/sha256/{}", &b[7..]), Vec::new()));
        assert_eq!(got[2].1, app);
        // Nothing to leave out: the same entries, the same contents.
        let mut same = Vec::new();
        rewrite(input.as_slice(), &mut same, &BTreeSet::new()).expect("rewrite");
        assert_eq!(entries(&same), entries(&input));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_goes_through_whole_and_a_broken_one_says_so() {
        let base = vec![7u8; 3 * CHUNK + 11];
        let input = archive(&[("l1/layer.tar", &base), ("manifest.json", b"[]")]);
        let chunks: Vec<Result<Bytes, String>> = input
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut out = thin(
            Box::pin(futures_util::stream::iter(chunks)),
            BTreeSet::new(),
        );
        let mut got = Vec::new();
        while let Some(c) = out.next().await {
            got.extend_from_slice(&c.expect("chunk"));
        }
        assert_eq!(entries(&got), entries(&input));
        let broken: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::copy_from_slice(&input[..2000])),
            Err("disk full".to_owned()),
        ];
        let mut out = thin(
            Box::pin(futures_util::stream::iter(broken)),
            BTreeSet::new(),
        );
        let mut last = None;
        while let Some(c) = out.next().await {
            last = Some(c);
        }
        let e = last.expect("an item").expect_err("the export's failure");
        assert!(e.contains("disk full"), "{e}");
    }
}
