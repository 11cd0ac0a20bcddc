//! OCI error responses, and the one place where every module's error becomes an HTTP status
//! and an OCI error code (`{"errors":[{"code","message","detail"}]}`).

use http::{header, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::access::guard::Refusal;
use crate::access::AccessError;
use crate::body::{Response, ResponseBody};
use crate::gc::GcError;
use crate::identity::IdentityError;
use crate::metadata::MetadataError;
use crate::oci::{DigestError, ManifestError, NameError, RangeError};
use crate::policy::cleanup::CleanupError;
use crate::policy::protection::ProtectionError;
use crate::queue::QueueError;
use crate::registry::{ArtifactError, BlobError, PushError, UploadError};
use crate::schedule::ScheduleError;
use crate::storage::StorageError;
use crate::upload_token::TokenError;

/// The OCI distribution-spec error codes (spelling is normative), plus distribution's `UNKNOWN`
/// and `TAG_INVALID`, which clients also recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// blob unknown to registry
    BlobUnknown,
    /// blob upload invalid
    BlobUploadInvalid,
    /// blob upload unknown to registry
    BlobUploadUnknown,
    /// provided digest did not match uploaded content
    DigestInvalid,
    /// manifest references a manifest or blob unknown to registry
    ManifestBlobUnknown,
    /// manifest invalid
    ManifestInvalid,
    /// manifest unknown to registry
    ManifestUnknown,
    /// invalid repository name
    NameInvalid,
    /// repository name not known to registry
    NameUnknown,
    /// provided length did not match content length
    SizeInvalid,
    /// manifest tag did not match URI / tag invalid
    TagInvalid,
    /// authentication required
    Unauthorized,
    /// requested access to the resource is denied
    Denied,
    /// the operation is unsupported
    Unsupported,
    /// too many requests
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    /// an internal failure
    Unknown,
    /// management API: the request is malformed or a field is invalid
    InvalidRequest,
    /// management API: the named object does not exist
    NotFound,
    /// management API: an object of that name exists already
    AlreadyExists,
    /// management API: the object is in a state that forbids the change
    Conflict,
    /// distribution's code for a temporary refusal (503) the client should retry
    Unavailable,
    /// an image protection rule forbids the change (Harbor answers the same case with 412)
    Protected,
}

impl ErrorCode {
    /// The status the spec (and distribution) pairs with each code.
    pub fn default_status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::AlreadyExists | ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Protected => StatusCode::PRECONDITION_FAILED,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn message(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::BlobUploadInvalid => "blob upload invalid",
            ErrorCode::BlobUploadUnknown => "blob upload unknown to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestBlobUnknown => "manifest references a manifest or blob unknown to registry",
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::ManifestUnknown => "manifest unknown to registry",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::SizeInvalid => "provided length did not match content length",
            ErrorCode::TagInvalid => "manifest tag is invalid",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::Unsupported => "the operation is unsupported",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::Unknown => "internal error; see the server log",
            ErrorCode::InvalidRequest => "the request is invalid",
            ErrorCode::NotFound => "not found",
            ErrorCode::AlreadyExists => "already exists",
            ErrorCode::Conflict => "the change conflicts with the current state",
            ErrorCode::Protected => "the artifact or tag is protected by an image protection policy",
            ErrorCode::Unavailable => "service unavailable; retry shortly",
        }
    }
}

/// An error as a client sees it: a code, a status, and a detail saying what exactly was wrong.
#[derive(Debug, Clone)]
pub struct OciError {
    /// the OCI code
    pub code: ErrorCode,
    /// the HTTP status
    pub status: StatusCode,
    /// a human explanation of this occurrence
    pub detail: Value,
    /// extra headers (e.g. `Range` on 416)
    pub headers: Vec<(header::HeaderName, String)>,
    /// a message replacing the code's generic one, for errors whose reason clients print
    /// (docker shows `message`, not `detail`)
    pub message: Option<String>,
}

impl OciError {
    /// An error with the code's default status and a detail message.
    pub fn new(code: ErrorCode, detail: impl Into<Value>) -> OciError {
        OciError { code, status: code.default_status(), detail: detail.into(), headers: vec![], message: None }
    }

    /// Replaces the code's generic message with `text` (what docker prints).
    pub fn message(mut self, text: impl Into<String>) -> OciError {
        self.message = Some(text.into());
        self
    }

    /// Overrides the status where the spec asks for a specific one.
    pub fn status(mut self, status: StatusCode) -> OciError {
        self.status = status;
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> OciError {
        self.headers.push((name, value.into()));
        self
    }

    /// A 500 whose cause is logged but not shown to the client.
    pub fn internal(err: &dyn std::error::Error) -> OciError {
        tracing::error!(error = %err, "request failed");
        OciError::new(ErrorCode::Unknown, Value::Null)
    }

    /// The error as an HTTP response.
    pub fn into_response(self) -> Response {
        let message = self.message.as_deref().unwrap_or(self.code.message());
        let body = json!({ "errors": [{ "code": self.code, "message": message, "detail": self.detail }] });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut builder = http::Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, bytes.len());
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder.body(ResponseBody::full(bytes)).unwrap_or_else(|_| {
            let mut r = http::Response::new(ResponseBody::Empty);
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }
}

impl From<NameError> for OciError {
    fn from(e: NameError) -> Self {
        let code = match &e {
            NameError::InvalidRepository(_) | NameError::RepositoryTooLong { .. } => ErrorCode::NameInvalid,
            NameError::InvalidTag(_) => ErrorCode::TagInvalid,
            NameError::InvalidReference(_) => ErrorCode::DigestInvalid,
            NameError::InvalidUploadId(_) => ErrorCode::BlobUploadUnknown,
        };
        OciError::new(code, e.to_string())
    }
}

impl From<DigestError> for OciError {
    fn from(e: DigestError) -> Self {
        OciError::new(ErrorCode::DigestInvalid, e.to_string())
    }
}

impl From<RangeError> for OciError {
    fn from(e: RangeError) -> Self {
        match &e {
            RangeError::Malformed(_) => OciError::new(ErrorCode::BlobUploadInvalid, e.to_string()),
            RangeError::Unsatisfiable(_, size) => OciError::new(ErrorCode::BlobUploadInvalid, e.to_string())
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}")),
        }
    }
}

impl From<ManifestError> for OciError {
    fn from(e: ManifestError) -> Self {
        let err = OciError::new(ErrorCode::ManifestInvalid, e.to_string());
        match e {
            ManifestError::UnsupportedMediaType(_) => err.status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            _ => err,
        }
    }
}

impl From<StorageError> for OciError {
    fn from(e: StorageError) -> Self {
        match &e {
            StorageError::BlobNotFound(_) => OciError::new(ErrorCode::BlobUnknown, e.to_string()),
            StorageError::UploadNotFound(_) | StorageError::StagedDataLost { .. } => {
                OciError::new(ErrorCode::BlobUploadUnknown, e.to_string())
            }
            StorageError::Io(_) => OciError::internal(&e),
        }
    }
}

impl From<MetadataError> for OciError {
    fn from(e: MetadataError) -> Self {
        match &e {
            MetadataError::BlobNotInRepository(_) | MetadataError::ChildManifestMissing(_) => {
                OciError::new(ErrorCode::ManifestBlobUnknown, e.to_string())
            }
            MetadataError::ReferencedByIndex { .. } => {
                OciError::new(ErrorCode::Denied, e.to_string()).status(StatusCode::CONFLICT)
            }
            MetadataError::Conflict(_) => {
                OciError::new(ErrorCode::BlobUploadInvalid, e.to_string()).status(StatusCode::CONFLICT)
            }
            MetadataError::Corrupt(_) | MetadataError::Backend(_) => OciError::internal(&e),
        }
    }
}

impl From<QueueError> for OciError {
    fn from(e: QueueError) -> Self {
        OciError::internal(&e)
    }
}

impl From<UploadError> for OciError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::UnknownSession(_) => OciError::new(ErrorCode::BlobUploadUnknown, e.to_string()),
            UploadError::OutOfOrder { offset, .. } => {
                let err = OciError::new(ErrorCode::BlobUploadInvalid, e.to_string())
                    .status(StatusCode::RANGE_NOT_SATISFIABLE);
                match offset {
                    0 => err,
                    n => err.header(header::RANGE, format!("0-{}", n - 1)),
                }
            }
            UploadError::SizeMismatch { .. } => OciError::new(ErrorCode::SizeInvalid, e.to_string()),
            UploadError::DigestMismatch { .. } => OciError::new(ErrorCode::DigestInvalid, e.to_string()),
            UploadError::Body(_) => OciError::new(ErrorCode::BlobUploadInvalid, e.to_string()),
            UploadError::Digest(inner) => inner.into(),
            UploadError::Storage(inner) => inner.into(),
            UploadError::Metadata(inner) => inner.into(),
            UploadError::Reclaimed(_) => retry_shortly(e.to_string()),
        }
    }
}

/// A 503 with `Retry-After`, for a refusal that passes (garbage collection holding a digest).
fn retry_shortly(detail: String) -> OciError {
    OciError::new(ErrorCode::Unavailable, detail).header(header::RETRY_AFTER, "1")
}

impl From<TokenError> for OciError {
    fn from(e: TokenError) -> Self {
        OciError::new(ErrorCode::Denied, e.to_string())
    }
}

impl From<ArtifactError> for OciError {
    fn from(e: ArtifactError) -> Self {
        match e {
            ArtifactError::UnknownArtifact { .. } | ArtifactError::UnknownTag { .. } => {
                OciError::new(ErrorCode::NotFound, e.to_string())
            }
            ArtifactError::Busy(_)
            | ArtifactError::Metadata(MetadataError::ReferencedByIndex { .. } | MetadataError::Conflict(_)) => {
                OciError::new(ErrorCode::Conflict, e.to_string())
            }
            ArtifactError::Protected(inner) => inner.into(),
            ArtifactError::Metadata(inner) => inner.into(),
        }
    }
}

impl From<BlobError> for OciError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Unknown(_) => OciError::new(ErrorCode::BlobUnknown, e.to_string()),
            BlobError::Range(inner) => inner.into(),
            BlobError::Storage(inner) => inner.into(),
            BlobError::Metadata(inner) => inner.into(),
        }
    }
}

impl From<PushError> for OciError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::TooLarge { .. } => {
                OciError::new(ErrorCode::SizeInvalid, e.to_string()).status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            PushError::DigestMismatch { .. } => OciError::new(ErrorCode::DigestInvalid, e.to_string()),
            PushError::TagWithTag => OciError::new(ErrorCode::TagInvalid, e.to_string()),
            PushError::Unknown(_) => OciError::new(ErrorCode::ManifestUnknown, e.to_string()),
            PushError::Body(_) => OciError::new(ErrorCode::ManifestInvalid, e.to_string()),
            PushError::Manifest(inner) => inner.into(),
            PushError::Storage(inner) => inner.into(),
            PushError::Metadata(inner) => inner.into(),
            PushError::Reclaimed(_) => retry_shortly(e.to_string()),
            PushError::Protection(inner) => inner.into(),
        }
    }
}

impl From<ProtectionError> for OciError {
    fn from(e: ProtectionError) -> Self {
        match e {
            ProtectionError::Protected { .. } => OciError::new(ErrorCode::Protected, e.to_string()),
            ProtectionError::Pattern(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            ProtectionError::Duplicate { .. } => OciError::new(ErrorCode::AlreadyExists, e.to_string()),
            ProtectionError::TooMany(_) => OciError::new(ErrorCode::Conflict, e.to_string()),
            ProtectionError::UnknownRule { .. } => OciError::new(ErrorCode::NotFound, e.to_string()),
            ProtectionError::Metadata(inner) => inner.into(),
        }
    }
}

impl From<AccessError> for OciError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Unauthenticated(_) => OciError::new(ErrorCode::Unauthorized, e.to_string()),
            AccessError::InsufficientScope(_) => OciError::new(ErrorCode::Denied, e.to_string()),
            AccessError::Denied(_) => OciError::new(ErrorCode::Denied, e.to_string()),
            AccessError::RateLimited { retry_after } => OciError::new(ErrorCode::TooManyRequests, e.to_string())
                .header(header::RETRY_AFTER, retry_after.to_string()),
            AccessError::RegistryUnknown(ref name) => OciError::new(
                ErrorCode::NameUnknown,
                format!("registry {name:?} does not exist; create it first (berth registry create {name})"),
            ),
            AccessError::Invalid(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            AccessError::SigningKey(_) => OciError::internal(&e),
            AccessError::Identity(inner) => inner.into(),
            AccessError::Metadata(inner) => inner.into(),
        }
    }
}

impl From<Refusal> for OciError {
    fn from(r: Refusal) -> Self {
        let err: OciError = r.error.into();
        match r.challenge {
            Some(c) => err.header(header::WWW_AUTHENTICATE, c.header_value()),
            None => err,
        }
    }
}

impl From<IdentityError> for OciError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::RegistryUnknown(_) | IdentityError::UserUnknown(_) | IdentityError::KeyUnknown(_) => {
                OciError::new(ErrorCode::NotFound, e.to_string())
            }
            IdentityError::AlreadyExists { .. } => OciError::new(ErrorCode::AlreadyExists, e.to_string()),
            IdentityError::Invalid(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            IdentityError::TooManyKeys(_) => OciError::new(ErrorCode::Conflict, e.to_string()),
            IdentityError::Metadata(inner) => inner.into(),
            IdentityError::Secret(_) => OciError::internal(&e),
        }
    }
}

impl From<crate::webhook::WebhookError> for OciError {
    fn from(e: crate::webhook::WebhookError) -> Self {
        use crate::webhook::WebhookError as W;
        match e {
            W::Invalid(_) | W::Outbound(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            W::NotFound(_) | W::NoRegistry(_) => OciError::new(ErrorCode::NotFound, e.to_string()),
            W::Exists(_) => OciError::new(ErrorCode::AlreadyExists, e.to_string()),
            W::Conflict(_) => OciError::new(ErrorCode::Conflict, e.to_string()),
            W::Metadata(inner) => inner.into(),
            W::Identity(inner) => inner.into(),
            W::Queue(_) | W::Seal(_) | W::Secrets(_) | W::Internal(_) => OciError::internal(&e),
        }
    }
}

impl From<crate::replication::ReplicationError> for OciError {
    fn from(e: crate::replication::ReplicationError) -> Self {
        use crate::replication::ReplicationError as R;
        match e {
            R::Invalid(_) | R::Outbound(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            R::NotFound(_) | R::NoRegistry(_) => OciError::new(ErrorCode::NotFound, e.to_string()),
            R::Exists(_) => OciError::new(ErrorCode::AlreadyExists, e.to_string()),
            R::Conflict(_) => OciError::new(ErrorCode::Conflict, e.to_string()),
            R::Denied(_) => OciError::new(ErrorCode::Denied, e.to_string()),
            R::Metadata(inner) => inner.into(),
            R::Identity(inner) => inner.into(),
            R::Schedule(inner) => inner.into(),
            R::Queue(_) | R::Seal(_) | R::Secrets(_) => OciError::internal(&e),
        }
    }
}

impl From<crate::cache::CacheError> for OciError {
    fn from(e: crate::cache::CacheError) -> Self {
        use crate::cache::CacheError as C;
        match e {
            C::Invalid(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            C::NotFound(_) => OciError::new(ErrorCode::NotFound, e.to_string()),
            C::Exists(_) => OciError::new(ErrorCode::AlreadyExists, e.to_string()),
            C::Conflict(_) => OciError::new(ErrorCode::Conflict, e.to_string()),
            C::ManifestUnknown(_) => OciError::new(ErrorCode::ManifestUnknown, e.to_string()),
            C::BlobUnknown(_) => OciError::new(ErrorCode::BlobUnknown, e.to_string()),
            C::SourceDown(_) | C::Remote(_) => OciError::new(ErrorCode::Unavailable, e.to_string())
                .status(http::StatusCode::SERVICE_UNAVAILABLE)
                .header(http::header::RETRY_AFTER, "5"),
            C::Busy(_) => OciError::new(ErrorCode::Unavailable, e.to_string())
                .status(http::StatusCode::SERVICE_UNAVAILABLE)
                .header(http::header::RETRY_AFTER, "2"),
            C::Metadata(inner) => inner.into(),
            C::Identity(inner) => inner.into(),
            C::Cleanup(inner) => inner.into(),
            C::Manifest(inner) => inner.into(),
            C::Upload(inner) => inner.into(),
            C::Storage(_) | C::Queue(_) | C::Seal(_) | C::Secrets(_) => OciError::internal(&e),
        }
    }
}

impl From<crate::scan::ScanError> for OciError {
    fn from(e: crate::scan::ScanError) -> Self {
        use crate::scan::ScanError as S;
        match e {
            S::Invalid(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            S::NotFound(_) | S::NoData(_) => OciError::new(ErrorCode::NotFound, e.to_string()),
            S::Conflict(_) => OciError::new(ErrorCode::Conflict, e.to_string()),
            S::Refused(_) => OciError::new(ErrorCode::Denied, e.to_string()).message(e.to_string()),
            S::Metadata(inner) => inner.into(),
            S::Data(_)
            | S::Layer(_)
            | S::Manifest(_)
            | S::Storage(_)
            | S::Queue(_)
            | S::Reader(_)
            | S::Attach(_)
            | S::Scratch(_) => OciError::internal(&e),
        }
    }
}

impl From<ScheduleError> for OciError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Cron(_) | ScheduleError::Never(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            ScheduleError::Metadata(inner) => inner.into(),
            ScheduleError::Queue(inner) => inner.into(),
        }
    }
}

impl From<CleanupError> for OciError {
    fn from(e: CleanupError) -> Self {
        match e {
            CleanupError::Pattern(_) | CleanupError::Keep(_) | CleanupError::Cron(_) | CleanupError::Payload(_) => {
                OciError::new(ErrorCode::InvalidRequest, e.to_string())
            }
            CleanupError::Duplicate { .. } => OciError::new(ErrorCode::AlreadyExists, e.to_string()),
            CleanupError::TooMany(_) => OciError::new(ErrorCode::Conflict, e.to_string()),
            CleanupError::UnknownRule { .. } | CleanupError::UnknownRun { .. } => {
                OciError::new(ErrorCode::NotFound, e.to_string())
            }
            CleanupError::Protection(inner) => inner.into(),
            CleanupError::Schedule(inner) => inner.into(),
            CleanupError::Metadata(inner) => inner.into(),
            CleanupError::Queue(inner) => inner.into(),
            CleanupError::Delete { .. } | CleanupError::Event(_) => OciError::internal(&e),
        }
    }
}

impl From<GcError> for OciError {
    fn from(e: GcError) -> Self {
        match e {
            GcError::UnknownRun(_) => OciError::new(ErrorCode::NotFound, e.to_string()),
            GcError::Payload(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            GcError::Metadata(inner) => inner.into(),
            GcError::Storage(inner) => inner.into(),
            GcError::Queue(inner) => inner.into(),
        }
    }
}

impl From<crate::trust::TrustError> for OciError {
    fn from(e: crate::trust::TrustError) -> Self {
        use crate::trust::TrustError as T;
        match e {
            T::Key(_) | T::Signature(_) | T::Invalid(_) => OciError::new(ErrorCode::InvalidRequest, e.to_string()),
            T::NotFound(_) => OciError::new(ErrorCode::NotFound, e.to_string()),
            T::Conflict(_) => OciError::new(ErrorCode::Conflict, e.to_string()),
            T::Refused(_) => OciError::new(ErrorCode::Denied, e.to_string()).message(e.to_string()),
            T::Metadata(inner) => inner.into(),
            T::Queue(_) | T::Encode(_) => OciError::internal(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn codes_serialise_as_the_spec_spells_them() {
        assert_eq!(serde_json::to_value(ErrorCode::BlobUploadUnknown).unwrap(), "BLOB_UPLOAD_UNKNOWN");
        assert_eq!(serde_json::to_value(ErrorCode::TooManyRequests).unwrap(), "TOOMANYREQUESTS");
        assert_eq!(ErrorCode::ManifestUnknown.default_status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorCode::DigestInvalid.default_status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn blobs_reclaimed_during_a_push_answer_a_retryable_503() {
        let d = crate::oci::Digest::sha256_of(b"x");
        for e in [OciError::from(UploadError::Reclaimed(d.clone())), OciError::from(PushError::Reclaimed(d))] {
            assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(serde_json::to_value(e.code).unwrap(), "UNAVAILABLE");
            assert_eq!(e.headers, vec![(header::RETRY_AFTER, "1".to_string())]);
        }
    }

    #[test]
    fn policy_and_gc_errors_map_to_management_codes() {
        use crate::cron::CronError;
        let cases: Vec<(OciError, StatusCode, &str)> = vec![
            (CleanupError::Keep("x".into()).into(), StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            (CleanupError::Cron(CronError::FieldCount(4)).into(), StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            (ScheduleError::Never("0 0 31 2 *".into()).into(), StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            (
                CleanupError::Duplicate { registry: "r".into(), rule: "c1".into() }.into(),
                StatusCode::CONFLICT,
                "ALREADY_EXISTS",
            ),
            (CleanupError::TooMany("r".into()).into(), StatusCode::CONFLICT, "CONFLICT"),
            (
                CleanupError::UnknownRun { registry: "r".into(), run: "x".into() }.into(),
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            ),
            (GcError::UnknownRun("x".into()).into(), StatusCode::NOT_FOUND, "NOT_FOUND"),
            (
                GcError::Metadata(MetadataError::Corrupt("gc-runs \"x\": y".into())).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(
                (e.status, serde_json::to_value(e.code).unwrap()),
                (status, Value::from(code)),
                "{:?}",
                e.detail
            );
        }
        let cron: OciError = CleanupError::Cron(CronError::FieldCount(4)).into();
        assert!(cron.detail.as_str().unwrap().contains("minute hour"), "{}", cron.detail);
    }

    #[test]
    fn out_of_order_chunks_answer_416_with_the_accepted_range() {
        let e: OciError = UploadError::OutOfOrder { offset: 10, got: 20 }.into();
        assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(e.code, ErrorCode::BlobUploadInvalid);
        assert_eq!(e.headers, vec![(header::RANGE, "0-9".to_string())]);
    }
}
