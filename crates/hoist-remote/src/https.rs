//! HTTPS to a service through a forwarded port, verified as the name clients use.
//!
//! Checks reach services through the SSH master's forwarded ports, so the address connected to
//! (127.0.0.1:some port) is not the name the service's certificate carries (`objectstore`, the API's
//! public name or address). A URL-based client ties the two together; here the connection goes to
//! the forwarded address while TLS verifies the chain against the cluster CA and the certificate
//! against the clients' name, and HTTP/1.1 (hyper) sends the Host header a client would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

/// The certificates `ca` holds (PEM), or the system's trusted roots when it is empty (an endpoint
/// with a publicly trusted certificate).
fn roots(ca: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    if ca.trim().is_empty() {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(format!(
                "no CA given and no system root certificate found{why}"
            ));
        }
        return Ok(roots);
    }
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        let cert = cert.map_err(|e| format!("the CA certificate is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the CA certificate is refused: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate to verify against".into());
    }
    Ok(roots)
}

/// What a request got back.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// How long one request may take, connection and TLS included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS service reached at `connect` (a forwarded address) and verified, against the PEM `ca`
/// (the system's roots when empty), as `name` on `port`: the name and port its clients use.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    pub connect: SocketAddr,
    pub name: &'a str,
    pub port: u16,
    pub ca: &'a str,
    /// The `Authorization` header's value, when the server wants a login.
    pub authorization: Option<&'a str>,
}

impl Endpoint<'_> {
    /// `method path`, with the Host header a client of `name:port` sends. Errors are one line for
    /// a check's report.
    pub async fn request(&self, method: http::Method, path: &str) -> Result<Response, String> {
        tokio::time::timeout(TIMEOUT, self.send(method, path))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", TIMEOUT.as_secs())))
    }

    async fn send(&self, method: http::Method, path: &str) -> Result<Response, String> {
        let (connect, server_name, ca) = (self.connect, self.name, self.ca);
        let host = if self.port == 443 {
            server_name.to_owned()
        } else {
            format!("{server_name}:{}", self.port)
        };
        let roots = roots(ca)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| format!("{server_name:?} is not a TLS server name: {e}"))?;
        let tcp = tokio::net::TcpStream::connect(connect)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS as {server_name}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let driver = tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, host);
        if let Some(login) = self.authorization {
            req = req.header(http::header::AUTHORIZATION, login);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request {path}: {e}"))?;
        let result = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(Response { status, body })
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::roots;

    #[test]
    fn an_empty_ca_means_the_systems_roots() {
        // Debian's ca-certificates, as on the machines hoist runs from.
        if std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
            assert!(roots("").expect("system roots").len() > 10);
        }
        let err = roots("not a certificate").expect_err("no PEM");
        assert!(err.contains("no CA certificate"), "{err}");
    }
}
