//! `GET /console/<asset>`: the web console, a few static files compiled into the binary. The page
//! is a client of the management API only (it holds no server-side state and no cookie); these
//! responses carry the headers that keep a browser from running anything but these files.

use http::{header, Method, StatusCode};

use super::endpoint::{handler, Endpoint, Operation, Rule};
use super::{ErrorCode, OciError, Route};
use crate::body::{Response, ResponseBody};
use crate::web::{header_str, Head};

/// `GET|HEAD /console/<asset>`.
pub const CONSOLE: Endpoint = Endpoint {
    name: "console",
    prefix: "/console",
    suffix: "/{asset}",
    has_repository: false,
    operations: &[
        Operation::read("GET", Rule::Public, "The web console's page and files"),
        Operation::read("HEAD", Rule::Public, "The web console's page and files (headers only)"),
    ],
    ports: &[],
    handler: handler!("console", Route::Console { asset } => |app, req, body| serve(&req, &asset)),
};

/// One file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file the console has: nothing else under `/console/` exists.
const ASSETS: [Asset; 3] = [
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../console/index.html"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../console/console.js"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../console/console.css"),
    },
];

/// What the browser may do with the console's page: run and style only the console's own files,
/// talk only to this origin, never be framed, submit no form anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Each asset's validator, its digest as manifests and blobs write theirs: computed once.
static ETAGS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    ASSETS.iter().map(|a| format!("\"{}\"", crate::oci::Digest::sha256_of(a.bytes))).collect()
});

/// Serves one asset with its validator (`ETag`), so a reload revalidates instead of re-downloading.
pub fn serve(req: &Head, asset: &str) -> Result<Response, OciError> {
    let Some(index) = ASSETS.iter().position(|a| a.name == asset) else {
        return Err(OciError::new(ErrorCode::NotFound, format!("the console has no file {asset:?}")));
    };
    let (found, etag) = (&ASSETS[index], ETAGS[index].as_str());
    // a weak validator (a compressing proxy's `W/"…"`) or `*` matches too: the bytes only vary
    // by encoding
    let fresh = header_str(req, header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag));
    let (status, body) = match (fresh, &req.method) {
        (true, _) => (StatusCode::NOT_MODIFIED, ResponseBody::Empty),
        (false, &Method::HEAD) => (StatusCode::OK, ResponseBody::Empty),
        (false, _) => (StatusCode::OK, ResponseBody::full(found.bytes)),
    };
    let mut response = http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, found.content_type)
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header("cross-origin-opener-policy", "same-origin")
        .header("permissions-policy", "camera=(), microphone=(), geolocation=()");
    if status == StatusCode::OK {
        response = response.header(header::CONTENT_LENGTH, found.bytes.len());
    }
    response.body(body).map_err(|e| OciError::internal(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn head(method: Method, etag: Option<&str>) -> Head {
        let mut b = http::Request::builder().method(method).uri("/console/");
        if let Some(e) = etag {
            b = b.header(header::IF_NONE_MATCH, e);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn serves_each_asset_with_a_strict_policy_and_revalidates() {
        for asset in &ASSETS {
            let r = serve(&head(Method::GET, None), asset.name).unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
            for validator in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}"), "*".to_string()] {
                let again = serve(&head(Method::GET, Some(&validator)), asset.name).unwrap();
                assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{validator}");
            }
            let other = serve(&head(Method::GET, Some("\"0123\"")), asset.name).unwrap();
            assert_eq!(other.status(), StatusCode::OK);
        }
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "no inline script or style: the policy forbids them"
        );
    }

    #[test]
    fn nothing_else_is_served() {
        for name in ["", "../Cargo.toml", "index.html/", "console.js.map", "%2e%2e/x"] {
            let Err(err) = serve(&head(Method::GET, None), name) else { panic!("{name} was served") };
            assert_eq!(err.code, ErrorCode::NotFound, "{name}");
        }
    }
}
