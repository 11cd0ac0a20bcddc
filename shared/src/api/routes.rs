//! THE route table: every registry route is one `Route` variant, parsed once from the method and
//! path, served by one handler, and (under Lambda) by one function named by [`Route::name`].
//!
//! Paths are parsed here rather than by a path-pattern router because a repository name may span
//! several segments before `/blobs/` or `/manifests/`, which neither axum's matcher nor API
//! Gateway's greedy variables can express.

use http::Method;

use super::error::{ErrorCode, OciError};
use crate::oci::{Digest, Reference, RepoName, UploadId};

/// Every route Berth serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/`: API version check.
    Base,
    /// `GET /v2/_catalog`: repository list.
    Catalog,
    /// `GET /v2/<name>/tags/list`: tag list.
    TagsList {
        /// repository
        name: RepoName,
    },
    /// `GET|HEAD /v2/<name>/manifests/<reference>`.
    ManifestGet {
        /// repository
        name: RepoName,
        /// tag or digest
        reference: Reference,
    },
    /// `PUT /v2/<name>/manifests/<reference>`.
    ManifestPut {
        /// repository
        name: RepoName,
        /// tag or digest
        reference: Reference,
    },
    /// `DELETE /v2/<name>/manifests/<reference>`.
    ManifestDelete {
        /// repository
        name: RepoName,
        /// tag or digest
        reference: Reference,
    },
    /// `GET|HEAD /v2/<name>/blobs/<digest>`.
    BlobGet {
        /// repository
        name: RepoName,
        /// blob
        digest: Digest,
    },
    /// `DELETE /v2/<name>/blobs/<digest>`.
    BlobDelete {
        /// repository
        name: RepoName,
        /// blob
        digest: Digest,
    },
    /// `POST /v2/<name>/blobs/uploads/`: open a session, upload whole, or mount.
    UploadStart {
        /// repository
        name: RepoName,
    },
    /// `PATCH /v2/<name>/blobs/uploads/<id>`: append a chunk or a stream.
    UploadPatch {
        /// repository
        name: RepoName,
        /// session
        id: UploadId,
    },
    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: finish.
    UploadPut {
        /// repository
        name: RepoName,
        /// session
        id: UploadId,
    },
    /// `GET /v2/<name>/blobs/uploads/<id>`: progress.
    UploadStatus {
        /// repository
        name: RepoName,
        /// session
        id: UploadId,
    },
    /// `DELETE /v2/<name>/blobs/uploads/<id>`: cancel.
    UploadCancel {
        /// repository
        name: RepoName,
        /// session
        id: UploadId,
    },
    /// `GET /v2/<name>/referrers/<digest>`: manifests whose subject is `digest`.
    Referrers {
        /// repository
        name: RepoName,
        /// subject
        digest: Digest,
    },
}

/// How a route appears on the wire: what API Gateway, Terraform, the function crates and the
/// event files are generated from and checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RouteSpec {
    /// function crate, binary, Terraform key and event file name
    pub name: &'static str,
    /// HTTP methods served
    pub methods: &'static [&'static str],
    /// the path after `/v2/<name>` (or after `/v2` for routes without a repository)
    pub suffix: &'static str,
    /// whether a repository name precedes the suffix
    pub has_repository: bool,
}

const fn spec(name: &'static str, methods: &'static [&'static str], suffix: &'static str, repo: bool) -> RouteSpec {
    RouteSpec { name, methods, suffix, has_repository: repo }
}

/// Every route, in table order: one Lambda function, Terraform route and event file each.
pub const ROUTE_SPECS: [RouteSpec; 14] = [
    spec("base", &["GET", "HEAD"], "/", false),
    spec("catalog", &["GET"], "/_catalog", false),
    spec("tags-list", &["GET"], "/tags/list", true),
    spec("manifest-get", &["GET", "HEAD"], "/manifests/{reference}", true),
    spec("manifest-put", &["PUT"], "/manifests/{reference}", true),
    spec("manifest-delete", &["DELETE"], "/manifests/{reference}", true),
    spec("blob-get", &["GET", "HEAD"], "/blobs/{digest}", true),
    spec("blob-delete", &["DELETE"], "/blobs/{digest}", true),
    spec("upload-start", &["POST"], "/blobs/uploads/", true),
    spec("upload-patch", &["PATCH"], "/blobs/uploads/{id}", true),
    spec("upload-put", &["PUT"], "/blobs/uploads/{id}", true),
    spec("upload-status", &["GET"], "/blobs/uploads/{id}", true),
    spec("upload-cancel", &["DELETE"], "/blobs/uploads/{id}", true),
    spec("referrers", &["GET"], "/referrers/{digest}", true),
];

/// The names of all routes, in table order.
pub const ROUTE_NAMES: [&str; 14] = {
    let mut names = [""; 14];
    let mut i = 0;
    while i < 14 {
        names[i] = ROUTE_SPECS[i].name;
        i += 1;
    }
    names
};

impl Route {
    /// The route's name: its function crate, binary, Terraform key and event file.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::TagsList { .. } => "tags-list",
            Route::ManifestGet { .. } => "manifest-get",
            Route::ManifestPut { .. } => "manifest-put",
            Route::ManifestDelete { .. } => "manifest-delete",
            Route::BlobGet { .. } => "blob-get",
            Route::BlobDelete { .. } => "blob-delete",
            Route::UploadStart { .. } => "upload-start",
            Route::UploadPatch { .. } => "upload-patch",
            Route::UploadPut { .. } => "upload-put",
            Route::UploadStatus { .. } => "upload-status",
            Route::UploadCancel { .. } => "upload-cancel",
            Route::Referrers { .. } => "referrers",
        }
    }

    /// Parses a request line. `host` (the `Host` header) counts toward the name length limit.
    pub fn parse(method: &Method, path: &str, host: Option<&str>) -> Result<Route, OciError> {
        let not_found = || OciError::new(ErrorCode::NameUnknown, format!("no registry route for {path}"));
        let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
        let rest = match rest {
            "" | "/" => return only(method, &[Method::GET, Method::HEAD], Route::Base),
            r => r.strip_prefix('/').ok_or_else(not_found)?,
        };
        if rest == "_catalog" {
            return only(method, &[Method::GET], Route::Catalog);
        }
        let segs: Vec<&str> = rest.split('/').collect();
        let n = segs.len();
        let name = |k: usize| -> Result<RepoName, OciError> {
            if k == 0 {
                return Err(not_found());
            }
            Ok(RepoName::parse(&segs[..k].join("/"), host)?)
        };
        let seg = |i: usize| decode(segs[i]);
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let name = name(n - 3)?;
            if segs[n - 1].is_empty() {
                return only(method, &[Method::POST], Route::UploadStart { name });
            }
            let id = UploadId::parse(&seg(n - 1))?;
            return match *method {
                Method::PATCH => Ok(Route::UploadPatch { name, id }),
                Method::PUT => Ok(Route::UploadPut { name, id }),
                Method::GET => Ok(Route::UploadStatus { name, id }),
                Method::DELETE => Ok(Route::UploadCancel { name, id }),
                _ => Err(not_allowed(method)),
            };
        }
        if n < 3 {
            return Err(not_found());
        }
        match (segs[n - 2], segs[n - 1]) {
            ("blobs", "uploads") => only(method, &[Method::POST], Route::UploadStart { name: name(n - 2)? }),
            ("blobs", d) => {
                let name = name(n - 2)?;
                let digest: Digest = decode(d).parse()?;
                match *method {
                    Method::GET | Method::HEAD => Ok(Route::BlobGet { name, digest }),
                    Method::DELETE => Ok(Route::BlobDelete { name, digest }),
                    _ => Err(not_allowed(method)),
                }
            }
            ("manifests", r) => {
                let name = name(n - 2)?;
                let reference = Reference::parse(&decode(r))?;
                match *method {
                    Method::GET | Method::HEAD => Ok(Route::ManifestGet { name, reference }),
                    Method::PUT => Ok(Route::ManifestPut { name, reference }),
                    Method::DELETE => Ok(Route::ManifestDelete { name, reference }),
                    _ => Err(not_allowed(method)),
                }
            }
            ("tags", "list") => only(method, &[Method::GET], Route::TagsList { name: name(n - 2)? }),
            ("referrers", d) => {
                let name = name(n - 2)?;
                let digest: Digest = decode(d).parse()?;
                only(method, &[Method::GET], Route::Referrers { name, digest })
            }
            _ => Err(not_found()),
        }
    }
}

fn only(method: &Method, allowed: &[Method], route: Route) -> Result<Route, OciError> {
    if allowed.contains(method) {
        Ok(route)
    } else {
        Err(not_allowed(method))
    }
}

fn not_allowed(method: &Method) -> OciError {
    OciError::new(ErrorCode::Unsupported, format!("method {method} is not allowed on this route"))
}

/// Percent-decodes a path segment (clients may escape the `:` of a digest).
pub fn decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return s.into();
    }
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(m: Method, p: &str) -> Result<Route, OciError> {
        Route::parse(&m, p, Some("127.0.0.1:5000"))
    }

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn parses_every_route() {
        let id = UploadId::generate();
        let cases = [
            (Method::GET, "/v2/".to_string(), "base"),
            (Method::HEAD, "/v2".to_string(), "base"),
            (Method::GET, "/v2/_catalog".to_string(), "catalog"),
            (Method::GET, "/v2/a/b/tags/list".to_string(), "tags-list"),
            (Method::GET, "/v2/a/b/c/manifests/latest".to_string(), "manifest-get"),
            (Method::HEAD, format!("/v2/a/manifests/{D}"), "manifest-get"),
            (Method::PUT, "/v2/a/manifests/v1".to_string(), "manifest-put"),
            (Method::DELETE, "/v2/a/manifests/v1".to_string(), "manifest-delete"),
            (Method::GET, format!("/v2/a/blobs/{D}"), "blob-get"),
            (Method::GET, format!("/v2/a/blobs/{}", D.replace(':', "%3A")), "blob-get"),
            (Method::DELETE, format!("/v2/a/blobs/{D}"), "blob-delete"),
            (Method::POST, "/v2/a/b/blobs/uploads/".to_string(), "upload-start"),
            (Method::POST, "/v2/a/b/blobs/uploads".to_string(), "upload-start"),
            (Method::PATCH, format!("/v2/a/blobs/uploads/{id}"), "upload-patch"),
            (Method::PUT, format!("/v2/a/blobs/uploads/{id}"), "upload-put"),
            (Method::GET, format!("/v2/a/blobs/uploads/{id}"), "upload-status"),
            (Method::DELETE, format!("/v2/a/blobs/uploads/{id}"), "upload-cancel"),
            (Method::GET, format!("/v2/a/referrers/{D}"), "referrers"),
        ];
        for (m, p, name) in cases {
            assert_eq!(parse(m.clone(), &p).unwrap().name(), name, "{m} {p}");
        }
        assert_eq!(ROUTE_NAMES.len(), 14);
    }

    #[test]
    fn the_spec_table_matches_the_parser() {
        let id = UploadId::generate().to_string();
        for spec in ROUTE_SPECS {
            let suffix = spec.suffix.replace("{reference}", "v1").replace("{digest}", D).replace("{id}", &id);
            let path = if spec.has_repository { format!("/v2/team/app{suffix}") } else { format!("/v2{suffix}") };
            for m in spec.methods {
                let method = Method::from_bytes(m.as_bytes()).unwrap();
                assert_eq!(parse(method, &path).unwrap().name(), spec.name, "{m} {path}");
            }
        }
    }

    #[test]
    fn names_may_contain_route_keywords() {
        let r = parse(Method::GET, "/v2/blobs/manifests/manifests/v1").unwrap();
        assert_eq!(
            r,
            Route::ManifestGet {
                name: RepoName::parse("blobs/manifests", None).unwrap(),
                reference: Reference::parse("v1").unwrap()
            }
        );
    }

    #[test]
    fn refuses_bad_paths_with_spec_codes() {
        assert_eq!(parse(Method::GET, "/v2/UPPER/tags/list").unwrap_err().code, ErrorCode::NameInvalid);
        assert_eq!(parse(Method::GET, "/v2/a/manifests/bad:tag").unwrap_err().code, ErrorCode::DigestInvalid);
        assert_eq!(parse(Method::GET, "/v2/a/blobs/md5:abc").unwrap_err().code, ErrorCode::DigestInvalid);
        assert_eq!(parse(Method::POST, "/v2/a/tags/list").unwrap_err().code, ErrorCode::Unsupported);
        assert_eq!(parse(Method::GET, "/v2/a/blobs/uploads/nope").unwrap_err().code, ErrorCode::BlobUploadUnknown);
        assert_eq!(parse(Method::GET, "/v3/").unwrap_err().code, ErrorCode::NameUnknown);
        assert_eq!(parse(Method::GET, "/v2/a/unknown/x").unwrap_err().code, ErrorCode::NameUnknown);
        let long = format!("/v2/{}/tags/list", "a".repeat(250));
        assert_eq!(parse(Method::GET, &long).unwrap_err().code, ErrorCode::NameInvalid);
        let tag129 = format!("/v2/a/manifests/{}", "t".repeat(129));
        assert_eq!(parse(Method::PUT, &tag129).unwrap_err().code, ErrorCode::TagInvalid);
    }
}
