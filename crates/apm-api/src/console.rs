//! The web console at `/console/`: a page and its scripts, built into the binary (no CDN, nothing
//! fetched at run time), that read the API's own routes with the user's token.
//!
//! It is part of the API rather than a service of its own: the same origin means no CORS and no
//! second TLS name, the token it holds is the API's own (read scope), and a release of the API is
//! a release of its console. docs/console.md says more.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::Digest as _;

use crate::AppState;

/// One file of the console: its path under `/console/`, its type and its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../console/index.html"),
    },
    Asset {
        path: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/console.js"),
    },
    Asset {
        path: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/console.css"),
    },
    Asset {
        path: "vendor/uplot/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uplot/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/vendor/uplot/uPlot.min.css"),
    },
];

/// The page may run its own scripts and styles and talk to its own origin, nothing else: no inline
/// script (a stored event's text can never run), no frame around it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|h: HeaderMap| async move { serve("", &h) }),
        )
        .route(
            "/console/{*path}",
            get(
                |axum::extract::Path(path): axum::extract::Path<String>, h: HeaderMap| async move {
                    serve(&path, &h)
                },
            ),
        )
}

/// Each asset's entity tag: a digest of its bytes, made once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(sha2::Sha256::digest(a.body))[..16]))
            .collect()
    })
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return crate::json::detail(StatusCode::NOT_FOUND, "Not found.");
    };
    let (asset, etag) = (&ASSETS[i], &etags()[i]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidated on every load: a new release's console is seen at once, an unchanged one is a 304.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sums in console/vendor/uplot/README.md: the vendored files are the published ones.
    #[test]
    fn vendored_uplot_is_the_published_one() {
        let note = include_str!("../console/vendor/uplot/README.md");
        for a in ASSETS
            .iter()
            .filter(|a| a.path.starts_with("vendor/uplot/"))
        {
            let name = a.path.rsplit('/').next().unwrap_or_default();
            let sum = hex::encode(sha2::Sha256::digest(a.body));
            assert!(
                note.contains(&format!("{sum}  {name}")),
                "{name}: sha256 {sum} is not the one console/vendor/uplot/README.md records"
            );
        }
    }

    #[test]
    fn the_page_loads_only_what_is_served() {
        let page = std::str::from_utf8(ASSETS[0].body).expect("UTF-8");
        for reference in page
            .split(['"', '\''])
            .filter(|s| s.starts_with("/console/") || s.ends_with(".js") || s.ends_with(".css"))
        {
            let path = reference.trim_start_matches("/console/");
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "index.html loads {reference}, which is not served"
            );
        }
        assert!(
            !page.contains("<script>") && !page.contains(" style="),
            "no inline script or style: the CSP refuses them"
        );
    }
}
