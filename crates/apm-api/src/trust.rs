//! HTTPS clients that trust one CA alone, read from a file: the cluster's CA, for the seeder's
//! `--cacert` and for the Prometheus client (`PROMETHEUS_CA_FILE`).

use std::path::{Path, PathBuf};

/// Why a CA file cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("reading {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", .path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: Option<reqwest::Error>,
    },
}

/// `builder`, trusting the certificates in `path` and nothing else (no system roots).
pub fn only(
    builder: reqwest::ClientBuilder,
    path: &Path,
) -> Result<reqwest::ClientBuilder, CaError> {
    let pem = std::fs::read(path).map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })?;
    // Parsed now (a single `from_pem` only keeps the bytes until the client is built).
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| CaError::Pem {
        path: path.to_owned(),
        source: Some(source),
    })?;
    if certs.is_empty() {
        return Err(CaError::Pem {
            path: path.to_owned(),
            source: None,
        });
    }
    Ok(builder.tls_certs_only(certs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_garbled_file_is_named() {
        let missing = Path::new("/nonexistent/ca.crt");
        let e = only(reqwest::Client::builder(), missing).expect_err("missing");
        assert_eq!(e.to_string(), "reading /nonexistent/ca.crt");

        let dir = tempfile::tempdir().expect("tempdir");
        let garbled = dir.path().join("ca.crt");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let e = only(reqwest::Client::builder(), &garbled).expect_err("garbled");
        assert_eq!(
            e.to_string(),
            format!("{} holds no PEM certificate", garbled.display())
        );
        std::fs::write(&garbled, "not PEM at all\n").expect("write");
        let e = only(reqwest::Client::builder(), &garbled).expect_err("no PEM");
        assert_eq!(
            e.to_string(),
            format!("{} holds no PEM certificate", garbled.display())
        );
    }
}
