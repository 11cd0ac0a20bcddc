//! Query-string parsing and the response-building helpers the handlers share.

use http::{header, StatusCode};

use super::error::{ErrorCode, OciError};
use crate::body::{Response, ResponseBody};

use crate::oci::Digest;
pub use crate::web::{header_str, Head, Query};

/// `n` as a page size, for the registry and management listings.
pub trait PageSize {
    /// `n` as a page size: absent means `default`; not a number is an error.
    fn page_size(&self, default: usize) -> Result<usize, OciError>;
}

impl PageSize for Query {
    /// `n` as a page size: absent means `default`; not a number is an error.
    fn page_size(&self, default: usize) -> Result<usize, OciError> {
        match self.get("n") {
            None | Some("") => Ok(default),
            Some(n) => n.parse().map_err(|_| {
                OciError::new(ErrorCode::Unsupported, format!("n={n} is not a page size"))
                    .status(StatusCode::BAD_REQUEST)
            }),
        }
    }
}

/// A response with a status, headers and no body.
pub fn empty(status: StatusCode, headers: &[(header::HeaderName, String)]) -> Result<Response, OciError> {
    let mut builder = http::Response::builder().status(status).header(header::CONTENT_LENGTH, 0);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(ResponseBody::Empty).map_err(|e| OciError::internal(&e))
}

/// A JSON response.
pub fn json(
    status: StatusCode,
    value: &serde_json::Value,
    headers: &[(header::HeaderName, String)],
) -> Result<Response, OciError> {
    let bytes = serde_json::to_vec(value).map_err(|e| OciError::internal(&e))?;
    let mut builder = http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, bytes.len());
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(ResponseBody::full(bytes)).map_err(|e| OciError::internal(&e))
}

/// The `Docker-Content-Digest` header.
pub fn digest_header(digest: &Digest) -> (header::HeaderName, String) {
    (header::HeaderName::from_static("docker-content-digest"), digest.to_string())
}
