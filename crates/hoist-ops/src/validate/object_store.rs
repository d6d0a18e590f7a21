//! The object store: its TLS front answers, verified as the name its clients use, and each
//! bucket exists for the access key (a signed HEAD, rusty-s3).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hoist_core::check::{Check, failed};
use hoist_remote::https;

use super::ObjectStoreConfig;

/// The object store: its TLS front answers, verified against the cluster CA as the name clients
/// use, and each bucket exists for the access key (a signed HEAD).
pub async fn object_store(local: SocketAddr, c: &ObjectStoreConfig) -> Vec<Check> {
    let front = https::Endpoint {
        connect: local,
        name: &c.name,
        port: c.port,
        ca: &c.ca,
        authorization: None,
    };
    let mut out = Vec::new();
    let started = Instant::now();
    let health = front.request(http::Method::GET, "/_health").await;
    match health {
        Ok(r) => out.push(Check::new(
            "object_store.tls",
            &c.name,
            r.status < 500,
            format!(
                "TLS verified as {}, HTTP {} in {} ms",
                c.name,
                r.status,
                started.elapsed().as_millis()
            ),
            "TLS verified against the cluster CA",
        )),
        Err(e) => {
            out.push(failed(
                "object_store.tls",
                &c.name,
                e,
                "TLS verified against the cluster CA",
            ));
            return out;
        }
    }
    let endpoint = match url::Url::parse(&format!("https://{}:{}", c.name, c.port)) {
        Ok(u) => u,
        Err(e) => {
            out.push(failed(
                "object_store.bucket",
                &c.name,
                e.to_string(),
                "exists",
            ));
            return out;
        }
    };
    let credentials =
        rusty_s3::Credentials::new(c.access_key.clone(), c.secret_key.expose().clone());
    for name in &c.buckets {
        let style = if c.path_style {
            rusty_s3::UrlStyle::Path
        } else {
            rusty_s3::UrlStyle::VirtualHost
        };
        let bucket =
            match rusty_s3::Bucket::new(endpoint.clone(), style, name.clone(), c.region.clone()) {
                Ok(b) => b,
                Err(e) => {
                    out.push(failed("object_store.bucket", name, e.to_string(), "exists"));
                    continue;
                }
            };
        use rusty_s3::S3Action as _;
        let signed = rusty_s3::actions::HeadBucket::new(&bucket, Some(&credentials))
            .sign(Duration::from_secs(60));
        let path = match signed.query() {
            Some(q) => format!("{}?{q}", signed.path()),
            None => signed.path().to_owned(),
        };
        // Virtual-hosted buckets are names of their own (`bucket.endpoint`).
        let name_of_bucket = signed.host_str().unwrap_or(&c.name).to_owned();
        let r = https::Endpoint {
            name: &name_of_bucket,
            ..front
        }
        .request(http::Method::HEAD, &path)
        .await;
        out.push(match r {
            Ok(r) => Check::new(
                "object_store.bucket",
                name,
                r.status == 200,
                format!("HEAD {}", r.status),
                "200 (exists, key allowed)",
            ),
            Err(e) => failed("object_store.bucket", name, e, "200 (exists, key allowed)"),
        });
    }
    out
}
