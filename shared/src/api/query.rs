//! Query-string parsing and the response-building helpers the handlers share.

use http::{header, StatusCode};

use super::error::{ErrorCode, OciError};
use crate::body::{Response, ResponseBody};

/// The head of a request (method, URI, headers): what handlers read besides the body.
pub type Head = http::request::Parts;
use crate::oci::Digest;

/// The decoded `key=value` pairs of a request's query string, in order.
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses the query of `req`.
    pub fn of(req: &Head) -> Query {
        Query::parse(req.uri.query().unwrap_or(""))
    }

    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(text: &str) -> Query {
        let pairs = text
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode_component(k), decode_component(v))
            })
            .collect();
        Query(pairs)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (e.g. repeated `tag=`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// `n` as a page size: absent means `default`; not a number is an error.
    pub fn page_size(&self, default: usize) -> Result<usize, OciError> {
        match self.get("n") {
            None | Some("") => Ok(default),
            Some(n) => n.parse().map_err(|_| {
                OciError::new(ErrorCode::Unsupported, format!("n={n} is not a page size"))
                    .status(StatusCode::BAD_REQUEST)
            }),
        }
    }
}

fn decode_component(s: &str) -> String {
    super::routes::decode(&s.replace('+', " ")).into_owned()
}

/// A request header as text.
pub fn header_str(req: &Head, name: header::HeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
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
