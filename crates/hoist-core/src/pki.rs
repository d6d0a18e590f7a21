//! The cluster's PKI: a CA, one server certificate for the platform's TLS endpoints (object store
//! front, pgBackRest TLS server, PostgreSQL, the API proxy) naming every host and service it may be
//! reached as, and pgBackRest's client certificate. `hoist pki issue` keeps them, encrypted, in an
//! inventory's `group_vars/all/pki.secrets.yml`; the templates under `templates/tls/` place them.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The CA's subject: kept stable so a stored CA key can sign again.
const CA_NAME: &str = "hoist cluster CA";

/// Names every server certificate carries besides the hosts' own.
pub const SERVICE_NAMES: [&str; 5] = [
    "objectstore",
    "pgbackrest-server",
    "db",
    "localhost",
    "127.0.0.1",
];

/// The variables a PKI file holds.
pub mod var {
    pub const CA_CERT: &str = "tls_ca_cert";
    pub const CA_KEY: &str = "tls_ca_key";
    pub const SERVER_CERT: &str = "tls_server_cert";
    pub const SERVER_KEY: &str = "tls_server_key";
    pub const SERVER_NAMES: &str = "tls_server_names";
    pub const CLIENT_CERT: &str = "tls_client_cert";
    pub const CLIENT_KEY: &str = "tls_client_key";
}

#[derive(Debug, thiserror::Error)]
#[error("certificate generation failed: {0}")]
pub struct PkiError(#[from] rcgen::Error);

/// A CA certificate and its key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, CA_NAME);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca)
}

/// A new CA.
pub fn new_ca() -> Result<Pair, PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn issuer(ca: &Pair) -> Result<Issuer<'static, KeyPair>, PkiError> {
    Ok(Issuer::new(ca_params()?, KeyPair::from_pem(&ca.key)?))
}

/// A server certificate for `names` (DNS names or IP addresses), signed by `ca`.
pub fn server(ca: &Pair, names: &[String]) -> Result<Pair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "apm-server");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer(ca)?)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A client certificate with common name `cn` (pgBackRest's `tls-server-auth` matches it).
pub fn client(ca: &Pair, cn: &str) -> Result<Pair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer(ca)?)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The names a server certificate needs for these hosts (names and addresses), sorted, unique.
pub fn server_names<'a>(hosts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let mut names: Vec<String> = SERVICE_NAMES.iter().map(|s| (*s).to_owned()).collect();
    for (name, address) in hosts {
        names.push(name.to_owned());
        names.push(address.to_owned());
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_ca_signs_again() {
        let ca = new_ca().expect("ca");
        let a = server(&ca, &["db".into(), "10.0.0.1".into()]).expect("server");
        let b = server(&ca, &["db".into()]).expect("server");
        assert_ne!(a, b);
        assert!(a.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(client(&ca, "pgbr-client").is_ok());
    }

    #[test]
    fn server_names_cover_hosts_and_services() {
        let names = server_names([("data-1", "10.0.0.1"), ("app-1", "10.0.0.1")]);
        assert!(names.contains(&"objectstore".to_owned()));
        assert!(names.contains(&"data-1".to_owned()));
        assert_eq!(names.iter().filter(|n| *n == "10.0.0.1").count(), 1);
    }
}
