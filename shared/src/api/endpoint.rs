//! One [`Endpoint`] per route, declared next to its handler: its wire shape, per method what the
//! caller needs, whether it is audited and how it is documented, the ports it uses and the handler.
//! Dispatch, the access check, the audit log, the route names, the OpenAPI document, `berth routes`
//! and (through `berth routes --output json`) Terraform's routes and per-function IAM all read
//! these declarations, so a route is written down once.

use std::future::Future;
use std::pin::Pin;

use http::Method;
use serde::Serialize;

use super::{OciError, Route};
use crate::access::{Need, RepoAction};
use crate::app::App;
use crate::body::{Request, Response};
use crate::identity::Action;

/// What a handler returns: boxed so every endpoint's handler has one type.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Response, OciError>> + Send + 'a>>;

/// A route's handler: the parsed route (always this endpoint's variant) and the request.
pub type Handler = for<'a> fn(&'a App, Route, Request) -> HandlerFuture<'a>;

/// Everything Berth knows about one route. Serialized (`berth routes --output json`) as its name,
/// wire shape, methods, ports and operations: what Terraform mirrors and grants.
#[derive(Clone, Copy)]
pub struct Endpoint {
    /// function crate, binary, Terraform key and event file name
    pub name: &'static str,
    /// the fixed path start (`/v2`, `/auth`, `/api/v1`)
    pub prefix: &'static str,
    /// the path after `<prefix>/<repository>` (or after `<prefix>` for routes without a repository)
    pub suffix: &'static str,
    /// whether a repository name precedes the suffix
    pub has_repository: bool,
    /// the methods served, each with its access rule, audit and documentation
    pub operations: &'static [Operation],
    /// the ports the handler uses beyond the edge's own (authentication and audit read
    /// identities and write key stamps, audit entries and the signing key): what the Lambda
    /// function is granted and what the function tests check it stays within
    pub ports: &'static [Port],
    /// serves the request
    pub handler: Handler,
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Endpoint", 7)?;
        s.serialize_field("name", self.name)?;
        s.serialize_field("prefix", self.prefix)?;
        s.serialize_field("methods", &self.methods().collect::<Vec<_>>())?;
        s.serialize_field("suffix", self.suffix)?;
        s.serialize_field("has_repository", &self.has_repository)?;
        s.serialize_field("ports", self.ports)?;
        s.serialize_field("operations", self.operations)?;
        s.end()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("name", &self.name).finish_non_exhaustive()
    }
}

impl PartialEq for Endpoint {
    fn eq(&self, other: &Endpoint) -> bool {
        self.name == other.name
    }
}

impl Eq for Endpoint {}

impl Endpoint {
    /// This declaration with its handler left out (one that refuses stands in for it). Parsing,
    /// the access check, the audit log and the OpenAPI document read these copies, made at
    /// compile time, so they reference no handler: a Lambda function links only the handler of
    /// the endpoint its `main` names.
    pub const fn declaration(&self) -> Endpoint {
        Endpoint { handler: undispatched, ..*self }
    }

    /// The methods served, in declaration order.
    pub fn methods(&self) -> impl Iterator<Item = &'static str> {
        self.operations.iter().map(|o| o.method)
    }

    /// The operation serving `method`, if this endpoint serves it.
    pub fn operation(&self, method: &Method) -> Option<&'static Operation> {
        self.operations.iter().find(|o| o.method == method.as_str())
    }

    /// Whether the handler uses `port`.
    pub fn uses(&self, port: Port) -> bool {
        self.ports.contains(&port)
    }

    /// The path template API Gateway and the OpenAPI document use (`{image}` for a repository).
    pub fn path_template(&self) -> String {
        if self.has_repository {
            format!("{}/{{image}}{}", self.prefix, self.suffix)
        } else {
            format!("{}{}", self.prefix, self.suffix)
        }
    }
}

/// One method of an endpoint.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Operation {
    /// the HTTP method
    pub method: &'static str,
    /// what the caller must hold
    pub rule: Rule,
    /// whether and how a successful call is written to the audit log
    pub audit: Audit,
    /// whether the call creates credentials or changes what a user may do: a token may make it
    /// only while its key and user are unchanged *now*, not as of the last cached check
    pub changes_credentials: bool,
    /// one line for the OpenAPI document
    pub summary: &'static str,
    /// the request body's schema in the OpenAPI document
    pub body: Option<&'static str>,
    /// the status of a successful answer
    pub success: u16,
    /// whether the answer is a page (`n=`, `last=`)
    pub paged: bool,
    /// further query parameters: (name, description)
    pub query: &'static [(&'static str, &'static str)],
}

impl Operation {
    /// A call that changes nothing (never audited).
    pub const fn read(method: &'static str, rule: Rule, summary: &'static str) -> Operation {
        Operation {
            method,
            rule,
            audit: Audit::Never,
            changes_credentials: false,
            summary,
            body: None,
            success: 200,
            paged: false,
            query: &[],
        }
    }

    /// A call that changes something: audited under the endpoint's name when it succeeds.
    pub const fn change(method: &'static str, rule: Rule, summary: &'static str, success: u16) -> Operation {
        Operation { audit: Audit::Change, success, ..Operation::read(method, rule, summary) }
    }

    /// The same operation, answering pages.
    pub const fn paged(self) -> Operation {
        Operation { paged: true, ..self }
    }

    /// The same operation, taking a JSON body of `schema`.
    pub const fn body(self, schema: &'static str) -> Operation {
        Operation { body: Some(schema), ..self }
    }

    /// The same operation, audited as `audit` says.
    pub const fn audit(self, audit: Audit) -> Operation {
        Operation { audit, ..self }
    }

    /// The same operation, marked as creating credentials or changing a user's permissions.
    pub const fn changes_credentials(self) -> Operation {
        Operation { changes_credentials: true, ..self }
    }

    /// The same operation with further query parameters.
    pub const fn query(self, query: &'static [(&'static str, &'static str)]) -> Operation {
        Operation { query, ..self }
    }
}

/// What a caller must hold, with the repository, registry or user taken from the parsed route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// nothing (the token endpoint authenticates by itself)
    Public,
    /// any valid credentials
    SignedIn,
    /// the repository catalog
    Catalog,
    /// a permission on the route's repository
    Repo(RepoAction),
    /// a role-table action within the route's registry (or not tied to one, for routes without)
    Role(Action),
    /// an administrator over every registry
    Admin,
    /// the route's user themself, or an administrator
    SelfOrAdmin,
}

impl Rule {
    /// The [`Need`] this rule makes of `route`. A rule naming a repository or user the route
    /// lacks (a declaration mistake the route tests catch) needs an administrator.
    pub fn need(self, route: &Route) -> Need {
        match self {
            Rule::Public => Need::Public,
            Rule::SignedIn => Need::SignedIn,
            Rule::Catalog => Need::Catalog,
            Rule::Repo(action) => match route.repository() {
                Some(name) => Need::Repo { repository: name.to_string(), action },
                None => Need::Admin,
            },
            Rule::Role(action) => Need::Role { action, registry: route.registry().map(str::to_string) },
            Rule::Admin => Need::Admin,
            Rule::SelfOrAdmin => match route.user() {
                Some(user) => Need::SelfOrAdmin { user: user.to_string() },
                None => Need::Admin,
            },
        }
    }
}

/// How a successful call appears in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Audit {
    /// not written (reads, the token endpoint, upload chunks)
    Never,
    /// written under the endpoint's name
    Change,
    /// written as `blob-upload` (a finished upload)
    BlobUpload,
    /// written as `blob-mount` or `blob-upload` when a blob was created (`201`), else not
    BlobCreated,
}

impl Audit {
    /// The audit action for a call of `endpoint` that answered `status`; `mounting` when the
    /// request asked for a cross-repository mount.
    pub fn action(self, endpoint: &Endpoint, status: http::StatusCode, mounting: bool) -> Option<&'static str> {
        match self {
            Audit::Never => None,
            Audit::Change => Some(endpoint.name),
            Audit::BlobUpload => Some("blob-upload"),
            Audit::BlobCreated if status != http::StatusCode::CREATED => None,
            Audit::BlobCreated if mounting => Some("blob-mount"),
            Audit::BlobCreated => Some("blob-upload"),
        }
    }
}

/// A capability of a port that a handler uses; each maps to one set of cloud permissions
/// (`infra/functions.tf`, `port_permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Port {
    /// read blob bytes (and sign redirects to them)
    #[serde(rename = "blobs:read")]
    BlobsRead,
    /// write blob bytes
    #[serde(rename = "blobs:write")]
    BlobsWrite,
    /// delete blob bytes (garbage collection only)
    #[serde(rename = "blobs:delete")]
    BlobsDelete,
    /// list the blob store
    #[serde(rename = "blobs:list")]
    BlobsList,
    /// read staged upload bytes
    #[serde(rename = "uploads:read")]
    UploadsRead,
    /// stage upload bytes
    #[serde(rename = "uploads:write")]
    UploadsWrite,
    /// discard staged upload bytes
    #[serde(rename = "uploads:abort")]
    UploadsAbort,
    /// list staged uploads
    #[serde(rename = "uploads:list")]
    UploadsList,
    /// change registry metadata (beyond reading it, which every route does)
    #[serde(rename = "metadata:write")]
    MetadataWrite,
    /// enqueue background jobs
    #[serde(rename = "jobs:send")]
    JobsSend,
}

impl Port {
    /// Every blob and upload port: a function holding any of them gets a blob store.
    pub const BLOB_PORTS: &'static [Port] = &[
        Port::BlobsRead,
        Port::BlobsWrite,
        Port::BlobsDelete,
        Port::BlobsList,
        Port::UploadsRead,
        Port::UploadsWrite,
        Port::UploadsAbort,
        Port::UploadsList,
    ];

    /// Every port: what `berth serve`, the upload gateway and the job functions hold.
    pub const ALL: u16 = u16::MAX;

    /// This port's bit in a [`Port::mask`].
    pub const fn bit(self) -> u16 {
        1 << self as u16
    }

    /// `ports` as a bit set: a const parameter naming what a Lambda function may use, so the
    /// adapters behind the other ports are not linked into it.
    pub const fn mask(ports: &[Port]) -> u16 {
        let mut mask = 0;
        let mut i = 0;
        while i < ports.len() {
            mask |= ports[i].bit();
            i += 1;
        }
        mask
    }
}

/// The document collections the edge writes on any route: access keys' use stamps, audit
/// entries and the token signing key made on first use (never on AWS, where
/// `BERTH_TOKEN_SIGNING_KEY` comes from SSM, so IAM grants only the first two). A route without
/// [`Port::MetadataWrite`] writes nothing else; no credential record is among them.
pub const EDGE_WRITES: &[&str] =
    &[crate::identity::key::USE_COLLECTION, crate::audit::COLLECTION, crate::access::signing::COLLECTION];

/// Boxes a handler's future ([`Handler`]'s return type).
pub fn boxed<'a>(f: impl Future<Output = Result<Response, OciError>> + Send + 'a) -> HandlerFuture<'a> {
    Box::pin(f)
}

/// The handler of a [`Endpoint::declaration`]: never dispatched to (dispatch takes handlers from
/// [`super::ENDPOINTS`] or a function's own endpoint), and an error if it were.
fn undispatched<'a>(_: &'a App, route: Route, _: Request) -> HandlerFuture<'a> {
    boxed(async move { Err(wrong_route("a declaration", &route)) })
}

/// The error a handler gives when dispatch handed it another endpoint's route (a table mistake).
pub fn wrong_route(endpoint: &str, route: &Route) -> OciError {
    OciError::new(super::ErrorCode::Unsupported, format!("route {} reached the handler of {endpoint}", route.name()))
        .status(http::StatusCode::INTERNAL_SERVER_ERROR)
}

/// A [`Handler`] that takes this endpoint's [`Route`] variant apart and calls the handler
/// function: `handler!("manifest-get", Route::ManifestGet { name, reference } => |app, req, body|
/// manifests::get(app, &name, &reference, &req).await)`. `req` is the request head, `body` its body.
macro_rules! handler {
    ($endpoint:literal, $pattern:pat => |$app:ident, $req:ident, $body:ident| $call:expr) => {
        |#[allow(unused_variables)] $app, route, request| {
            $crate::api::endpoint::boxed(async move {
                #[allow(unused_variables)]
                let ($req, $body) = $crate::body::Request::into_parts(request);
                match route {
                    $pattern => $call,
                    #[allow(unreachable_patterns)]
                    other => Err($crate::api::endpoint::wrong_route($endpoint, &other)),
                }
            })
        }
    };
}
pub(crate) use handler;
