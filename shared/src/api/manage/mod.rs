//! The management API (`/api/v1/…`): registries, images, artifacts, tags, users, access keys,
//! the audit log, image cleanup and protection policies and garbage collection as JSON, for the
//! `berth` CLI and scripts. Errors use the registry API's error shape; every list is paginated
//! with `n` and `last` and says where the next page starts.

pub mod artifacts;
pub mod audit;
pub mod caches;
pub mod gc;
pub mod openapi;
pub mod policies;
pub mod registries;
pub mod replications;
pub mod scans;
pub mod trust;
pub mod users;
pub mod webhooks;

use http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::access::Grants;
use crate::api::query::{json as json_response, Head, Query};
use crate::api::{ErrorCode, OciError};
use crate::body::Response;
use crate::storage::ByteStream;

/// The default and largest page sizes of management lists.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page size a client may ask for.
pub const MAX_PAGE: usize = 1000;
/// The largest JSON body accepted.
const MAX_BODY: usize = 64 * 1024;

/// `n` and `last` of a list request.
pub struct PageRequest {
    /// page size
    pub limit: usize,
    /// the last item of the previous page
    pub after: Option<String>,
}

/// Reads `n` (1..=1000, default 100) and `last`.
pub fn page_request(head: &Head) -> Result<PageRequest, OciError> {
    let q = Query::of(head);
    let limit = match q.get("n") {
        None | Some("") => DEFAULT_PAGE,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(invalid(format!("n={n} is not a page size from 1 to {MAX_PAGE}"))),
        },
    };
    Ok(PageRequest { limit, after: q.get("last").filter(|l| !l.is_empty()).map(str::to_string) })
}

/// A page of items: `{"items": [...], "next": <last item key or null>}` plus a `Link` header.
pub fn page_response<T: Serialize>(
    head: &Head,
    items: &[T],
    more: bool,
    key: impl Fn(&T) -> String,
) -> Result<Response, OciError> {
    let next = if more { items.last().map(&key) } else { None };
    page_response_after(head, items, next)
}

/// A page of a listing filtered after it was read (what the caller may see): the cursor is the
/// last item *read*, `next_after`, so a page whose items were all hidden still leads on.
pub fn page_response_after<T: Serialize>(
    head: &Head,
    items: &[T],
    next_after: Option<String>,
) -> Result<Response, OciError> {
    let next = next_after;
    let mut headers = vec![];
    if let Some(next) = &next {
        let limit = page_request(head).map(|p| p.limit).unwrap_or(DEFAULT_PAGE);
        headers.push((header::LINK, format!("<{}?n={limit}&last={next}>; rel=\"next\"", head.uri.path())));
    }
    let items = serde_json::to_value(items).map_err(|e| OciError::internal(&e))?;
    json_response(StatusCode::OK, &json!({ "items": items, "next": next }), &headers)
}

/// One object as JSON.
pub fn object<T: Serialize>(status: StatusCode, value: &T) -> Result<Response, OciError> {
    let value = serde_json::to_value(value).map_err(|e| OciError::internal(&e))?;
    json_response(status, &value, &[])
}

/// An `INVALID_REQUEST` error.
pub fn invalid(detail: impl Into<Value>) -> OciError {
    OciError::new(ErrorCode::InvalidRequest, detail)
}

/// Reads a JSON request body (at most 64 KiB) into `T`; unknown fields are refused by `T`.
pub async fn read_json<T: DeserializeOwned>(body: ByteStream) -> Result<T, OciError> {
    let bytes = crate::body::read_capped(body, MAX_BODY).await.map_err(|e| invalid(format!("request body: {e}")))?;
    let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("the request body is not the expected JSON: {e}")))
}

/// The grants the guard put on the request (every management route but the OpenAPI document has them).
pub fn grants(head: &Head) -> Result<&Grants, OciError> {
    head.extensions
        .get::<Grants>()
        .ok_or_else(|| OciError::new(ErrorCode::Unauthorized, "this route needs credentials"))
}

/// Whether `?force=true` was given.
pub fn forced(head: &Head) -> Result<bool, OciError> {
    match Query::of(head).get("force") {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(invalid(format!("force={other} is not true or false"))),
    }
}
