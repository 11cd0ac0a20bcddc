//! The outbound OCI distribution client replication pushes with and image caches pull with: the
//! registry token flow (Bearer tokens from the realm a `401` names, with Basic credentials) or
//! Basic auth, manifest and blob existence checks, manifest and blob reads, cross-repository
//! mounts, chunked blob uploads streamed from the blob store, and manifest puts. Every URL (the
//! remote's, a token realm, an upload location, a blob redirect) passes the outbound guard before
//! it is requested; redirects are followed only for blob reads, by hand, without credentials
//! when they leave the remote's origin.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, Method, StatusCode};

use crate::app::App;
use crate::oci::{ByteRange, Digest};

/// The manifest media types a `HEAD` or `GET` accepts.
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.artifact.manifest.v1+json";

/// The most bytes of an error answer kept in messages.
const SNIPPET: usize = 300;

/// Where a remote registry is and how to sign in to it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// the base URL (`https://registry.example.net`), without `/v2`
    pub url: String,
    /// the user name (or access key id), if the remote needs credentials
    pub username: Option<String>,
    /// the password (or secret), in the clear for this connection only
    pub password: Option<String>,
    /// accept any TLS certificate
    pub skip_tls_verify: bool,
    /// the actions asked of a token realm (`pull,push` to replicate, `pull` to cache)
    pub actions: &'static str,
    /// the only ports any request of the connection may go to (a token realm and a redirect
    /// included), when the operator restricts them; `None` = any
    pub ports: Option<Vec<u16>>,
    /// how long a blob read may take, body included (the connection's timeout is for the rest)
    pub transfer_timeout: Option<Duration>,
}

/// A blob being read from a remote: its length when the remote said it, and the bytes.
pub struct RemoteBlob {
    /// `Content-Length` of the answer
    pub len: Option<u64>,
    /// the bytes, as they arrive
    pub stream: crate::storage::ByteStream,
}

/// A manifest read from a remote.
#[derive(Debug, Clone)]
pub struct RemoteManifest {
    /// its `Content-Type`
    pub media_type: String,
    /// its exact bytes
    pub bytes: Bytes,
}

/// Why a request to the target failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The outbound guard refused the address, or the URL is malformed: retrying cannot help.
    #[error("refused: {0}")]
    Refused(String),
    /// No answer (connection refused, timeout, reset).
    #[error("{0}")]
    Unreachable(String),
    /// The target answered with an unexpected status.
    #[error("{what}: the target answered {status}{}", body_text(.body))]
    Status {
        /// what was asked
        what: String,
        /// the status
        status: u16,
        /// the start of the answer
        body: String,
    },
    /// The credentials were refused.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The answer made no sense (no Location, a malformed token …).
    #[error("{0}")]
    Protocol(String),
    /// Reading local content failed.
    #[error("reading local content: {0}")]
    Local(String),
}

fn body_text(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl RemoteError {
    /// The error without the remote's answer text: for callers who pass it on to clients who
    /// are not the remote's operators (an answer may echo the request, credentials included).
    pub fn brief(&self) -> String {
        match self {
            RemoteError::Status { what, status, .. } => format!("{what}: the remote answered {status}"),
            other => other.to_string(),
        }
    }

    /// Whether a later attempt may succeed (the target down or overloaded, a local hiccup).
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Unreachable(_) | RemoteError::Local(_) => true,
            RemoteError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            RemoteError::Refused(_) | RemoteError::Auth(_) | RemoteError::Protocol(_) => false,
        }
    }
}

/// How the target wants to be authenticated.
#[derive(Debug, Clone)]
enum Challenge {
    /// no credentials needed
    None,
    /// Basic credentials on every request
    Basic,
    /// Bearer tokens from `realm` for `service`
    Bearer {
        /// the token endpoint
        realm: String,
        /// its `service` parameter
        service: Option<String>,
    },
}

/// What the body of a request is, so it can be sent again after a fresh token.
enum Payload<'p> {
    /// no body
    Empty,
    /// a small body in memory (a manifest)
    Bytes(Bytes, &'p str),
    /// a range of a stored blob, streamed, with the digest state it updates
    Blob {
        /// the blob
        digest: &'p Digest,
        /// its first byte
        start: u64,
        /// how many bytes
        len: u64,
        /// the digest state before the chunk (each try starts from it)
        before: Box<crate::oci::Hasher>,
        /// the digest state as the chunk is sent
        hasher: std::sync::Arc<std::sync::Mutex<crate::oci::Hasher>>,
    },
}

/// A connection to one target.
pub struct Remote<'a> {
    app: &'a App,
    base: String,
    client: reqwest::Client,
    username: Option<String>,
    password: Option<String>,
    actions: &'static str,
    ports: Option<Vec<u16>>,
    transfer_timeout: Option<Duration>,
    /// set while a blob is read: the timeout of its requests
    reading: Option<Duration>,
    challenge: Challenge,
    tokens: HashMap<String, String>,
    shared: Option<std::sync::Arc<SharedSession>>,
}

/// How long a shared session's challenge is trusted before the next connection asks `/v2/`
/// again (tokens are kept until the remote refuses one).
const SESSION_REUSE: Duration = Duration::from_secs(300);

/// What connections to one remote share within a process: how it wants to be authenticated
/// and the tokens it gave, so a connection needs no `/v2/` probe and no token request per
/// pull. A token the remote refuses is dropped for all.
#[derive(Debug, Default)]
pub struct SharedSession {
    inner: std::sync::Mutex<Option<SignedIn>>,
}

/// The challenge, the tokens by repository, and when the challenge was learnt.
type SignedIn = (Challenge, HashMap<String, String>, std::time::Instant);

/// What a mount attempt did.
pub enum Mount {
    /// the target linked the blob from the other repository
    Mounted,
    /// the target started an ordinary upload instead, at this location
    Upload(String),
    /// the target declined (a token scoped to the destination may not read `from`): upload
    Declined,
}

impl<'a> Remote<'a> {
    /// Opens a connection whose requests time out after `timeout`: asks `/v2/` and learns how
    /// to authenticate; fails when the remote cannot be reached or refuses the credentials.
    pub async fn connect(app: &'a App, endpoint: Endpoint, timeout: Duration) -> Result<Remote<'a>, RemoteError> {
        let mut remote = Remote::unprobed(app, endpoint, timeout)?;
        let url = format!("{}/v2/", remote.base);
        let response = remote.raw(Method::GET, &url, &[], None).await?;
        match response.status() {
            s if s.is_success() => return Ok(remote),
            StatusCode::UNAUTHORIZED => {}
            s => return Err(status_error("GET /v2/", s.as_u16(), response).await),
        }
        remote.challenge = parse_challenge(&response)?;
        if let Challenge::Bearer { .. } = remote.challenge {
            let token = remote.token("").await?;
            remote.tokens.insert(String::new(), token);
        }
        let response = remote.send(Method::GET, &url, "", &[], Payload::Empty).await?;
        if response.status().is_success() {
            Ok(remote)
        } else {
            Err(RemoteError::Auth(format!("GET /v2/ answered {} with the credentials", response.status().as_u16())))
        }
    }

    /// A connection that has sent nothing yet and knows no challenge.
    fn unprobed(app: &'a App, endpoint: Endpoint, timeout: Duration) -> Result<Remote<'a>, RemoteError> {
        let outbound = &app.settings.webhooks.outbound;
        let client =
            outbound.client(endpoint.skip_tls_verify, timeout).map_err(|e| RemoteError::Refused(e.to_string()))?;
        Ok(Remote {
            app,
            base: endpoint.url.trim_end_matches('/').to_string(),
            client,
            username: endpoint.username,
            password: endpoint.password,
            actions: endpoint.actions,
            ports: endpoint.ports,
            transfer_timeout: endpoint.transfer_timeout,
            reading: None,
            challenge: Challenge::None,
            tokens: HashMap::new(),
            shared: None,
        })
    }

    /// A connection like [`Remote::connect`], resumed from `shared` when another connection of
    /// this process signed in lately (no request is sent then), and sharing what it learns.
    pub async fn connect_shared(
        app: &'a App,
        endpoint: Endpoint,
        timeout: Duration,
        shared: std::sync::Arc<SharedSession>,
    ) -> Result<Remote<'a>, RemoteError> {
        let known = lock(&shared.inner).clone().filter(|(_, _, at)| at.elapsed() < SESSION_REUSE);
        if let Some((challenge, tokens, _)) = known {
            let mut remote = Remote::unprobed(app, endpoint, timeout)?;
            remote.challenge = challenge;
            remote.tokens = tokens;
            remote.shared = Some(shared);
            return Ok(remote);
        }
        let mut remote = Remote::connect(app, endpoint, timeout).await?;
        *lock(&shared.inner) = Some((remote.challenge.clone(), remote.tokens.clone(), std::time::Instant::now()));
        remote.shared = Some(shared);
        Ok(remote)
    }

    /// The digest `reference` names in `repo`, or `None` when the target has no such manifest.
    pub async fn manifest_digest(&mut self, repo: &str, reference: &str) -> Result<Option<String>, RemoteError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let accept = [(header::ACCEPT, ACCEPT_MANIFESTS.to_string())];
        let response = self.send(Method::HEAD, &url, repo, &accept, Payload::Empty).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let digest =
                    response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
                match digest {
                    Some(d) => Ok(Some(d)),
                    // no digest header: a digest reference names itself
                    None if reference.contains(':') => Ok(Some(reference.to_string())),
                    None => Ok(self
                        .manifest(repo, reference)
                        .await?
                        .map(|(_, bytes)| Digest::sha256_of(&bytes).to_string())),
                }
            }
            s => Err(status_error(&format!("HEAD {repo}:{reference}"), s.as_u16(), response).await),
        }
    }

    /// A manifest's media type and bytes (checked against a digest reference), or `None`.
    pub async fn manifest(&mut self, repo: &str, reference: &str) -> Result<Option<(String, Bytes)>, RemoteError> {
        let found = self.fetch_manifest(repo, reference, 4 * 1024 * 1024).await?;
        Ok(found.map(|(_, m)| (m.media_type, m.bytes)))
    }

    /// A manifest's digest, media type and bytes (the digest checked against the bytes when the
    /// reference is one), or `None` when the remote has no such manifest.
    pub async fn fetch_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        limit: usize,
    ) -> Result<Option<(Digest, RemoteManifest)>, RemoteError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let accept = [(header::ACCEPT, ACCEPT_MANIFESTS.to_string())];
        let response = self.send(Method::GET, &url, repo, &accept, Payload::Empty).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let media_type = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let bytes = read_capped(response, limit).await?;
                let digest = match reference.parse::<Digest>() {
                    Ok(named) => {
                        let actual = Digest::of(named.algorithm(), &bytes);
                        if actual != named {
                            return Err(RemoteError::Protocol(format!(
                                "the manifest {named} the remote sent hashes to {actual}"
                            )));
                        }
                        actual
                    }
                    Err(_) => Digest::sha256_of(&bytes),
                };
                Ok(Some((digest, RemoteManifest { media_type, bytes })))
            }
            s => Err(status_error(&format!("GET {repo}:{reference}"), s.as_u16(), response).await),
        }
    }

    /// Opens a blob for reading, following up to five redirects (a storage or CDN host gets no
    /// credentials, and every hop passes the outbound guard); `None` when the remote has no such blob.
    pub async fn fetch_blob(&mut self, repo: &str, digest: &Digest) -> Result<Option<RemoteBlob>, RemoteError> {
        let mut url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        for _ in 0..6 {
            // a layer may take longer than a request: its transfer has its own timeout
            self.reading = self.transfer_timeout;
            let response = self.send(Method::GET, &url, repo, &[], Payload::Empty).await;
            self.reading = None;
            let response = response?;
            let status = response.status();
            if status.is_redirection() {
                url = self.location(&response)?;
                continue;
            }
            return match status {
                StatusCode::NOT_FOUND => Ok(None),
                StatusCode::OK => {
                    let len = response.content_length();
                    let stream = response.bytes_stream().map(|chunk| chunk.map_err(std::io::Error::other));
                    Ok(Some(RemoteBlob { len, stream: Box::pin(stream) }))
                }
                s => Err(status_error(&format!("GET {repo}@{digest}"), s.as_u16(), response).await),
            };
        }
        Err(RemoteError::Protocol(format!("GET {repo}@{digest}: more than five redirects")))
    }

    /// Puts a manifest; answers whether the target reported handling its subject (`OCI-Subject`,
    /// the referrers API), so the tag-schema fallback is needed when it did not.
    pub async fn put_manifest(
        &mut self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<bool, RemoteError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let headers = [(http::HeaderName::from_static(crate::events::REPLICATION_HEADER), "1".to_string())];
        let response = self.send(Method::PUT, &url, repo, &headers, Payload::Bytes(bytes, media_type)).await?;
        if response.status().is_success() {
            Ok(response.headers().contains_key("oci-subject"))
        } else {
            Err(status_error(&format!("PUT {repo}:{reference}"), response.status().as_u16(), response).await)
        }
    }

    /// Whether `repo` at the target has the blob.
    pub async fn blob_exists(&mut self, repo: &str, digest: &Digest) -> Result<bool, RemoteError> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let response = self.send(Method::HEAD, &url, repo, &[], Payload::Empty).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            // a redirect (to storage or a CDN, as Docker Hub answers) says it is there
            s if s.is_success() || s.is_redirection() => Ok(true),
            s => Err(status_error(&format!("HEAD blob {digest} in {repo}"), s.as_u16(), response).await),
        }
    }

    /// Asks the target to mount the blob from `from`; it may start an upload instead.
    pub async fn mount(&mut self, repo: &str, digest: &Digest, from: &str) -> Result<Mount, RemoteError> {
        let url = format!("{}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}", self.base);
        let response = self.send(Method::POST, &url, repo, &[], Payload::Empty).await?;
        match response.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(self.location(&response)?)),
            // any other answer only means no mount, as docker treats it
            _ => Ok(Mount::Declined),
        }
    }

    /// Starts an upload; returns its location.
    pub async fn start_upload(&mut self, repo: &str) -> Result<String, RemoteError> {
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let response = self.send(Method::POST, &url, repo, &[], Payload::Empty).await?;
        if response.status() == StatusCode::ACCEPTED {
            self.location(&response)
        } else {
            Err(status_error(&format!("start an upload in {repo}"), response.status().as_u16(), response).await)
        }
    }

    /// How many bytes an upload session holds, or `None` when it is gone.
    pub async fn upload_offset(&mut self, repo: &str, location: &str) -> Result<Option<u64>, RemoteError> {
        let response = self.send(Method::GET, location, repo, &[], Payload::Empty).await?;
        match response.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => Ok(Some(range_end(&response).map_or(0, |end| end + 1))),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(status_error("upload status", s.as_u16(), response).await),
        }
    }

    /// Sends bytes `start .. start+len` of a stored blob as one chunk, adding them to `hasher`;
    /// returns the session's next location.
    pub async fn patch(
        &mut self,
        repo: &str,
        location: &str,
        digest: &Digest,
        start: u64,
        len: u64,
        hasher: &mut crate::oci::Hasher,
    ) -> Result<String, RemoteError> {
        let headers = [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_RANGE, format!("{start}-{}", start + len - 1)),
            (header::CONTENT_LENGTH, len.to_string()),
        ];
        let sending = std::sync::Arc::new(std::sync::Mutex::new(hasher.clone()));
        let payload = Payload::Blob {
            digest,
            start,
            len,
            before: Box::new(hasher.clone()),
            hasher: std::sync::Arc::clone(&sending),
        };
        let response = self.send(Method::PATCH, location, repo, &headers, payload).await?;
        if response.status() == StatusCode::ACCEPTED {
            *hasher = lock(&sending).clone();
            self.location(&response)
        } else {
            Err(status_error(&format!("upload of {digest} at byte {start}"), response.status().as_u16(), response)
                .await)
        }
    }

    /// Completes an upload with its digest (the target verifies it).
    pub async fn finish_upload(&mut self, repo: &str, location: &str, digest: &Digest) -> Result<(), RemoteError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={digest}");
        let headers = [(header::CONTENT_LENGTH, "0".to_string())];
        let response = self.send(Method::PUT, &url, repo, &headers, Payload::Empty).await?;
        if response.status() == StatusCode::CREATED || response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(&format!("complete the upload of {digest}"), response.status().as_u16(), response).await)
        }
    }

    /// The absolute URL of a response's `Location` (a relative one is relative to the request's
    /// URL, which may be an upload host other than the target's).
    fn location(&self, response: &reqwest::Response) -> Result<String, RemoteError> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RemoteError::Protocol("the target answered without a Location".into()))?;
        response
            .url()
            .join(location)
            .map(|u| u.to_string())
            .map_err(|e| RemoteError::Protocol(format!("Location {location:?}: {e}")))
    }

    /// A request with credentials for `repo`; on a `401` the token is fetched again once.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        repo: &str,
        headers: &[(header::HeaderName, String)],
        payload: Payload<'_>,
    ) -> Result<reqwest::Response, RemoteError> {
        // credentials go to the target's own origin only: an upload location on another host
        // (a storage or CDN host the target hands uploads to) gets none, as docker does
        let same_origin = self.same_origin(url);
        for attempt in 0..2 {
            let auth = if same_origin { self.authorization(repo).await? } else { None };
            let response = self.raw(method.clone(), url, headers, self.body(&payload, auth.clone()).await?).await?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 || !same_origin {
                return Ok(response);
            }
            match parse_challenge(&response)? {
                Challenge::None => return Ok(response),
                challenge => {
                    self.challenge = challenge;
                    self.tokens.remove(repo);
                    if let Some(shared) = &self.shared {
                        *lock(&shared.inner) = None;
                    }
                }
            }
        }
        Err(RemoteError::Auth("the target refused the credentials".into()))
    }

    /// The body of one try, with its `Authorization`.
    async fn body(&self, payload: &Payload<'_>, auth: Option<String>) -> Result<Option<Prepared>, RemoteError> {
        let body = match payload {
            Payload::Empty => None,
            Payload::Bytes(bytes, media_type) => {
                Some((reqwest::Body::from(bytes.clone()), Some((*media_type).to_string())))
            }
            Payload::Blob { digest, start, len, before, hasher } => {
                let range = ByteRange { start: *start, end: start + len - 1 };
                let stream = self
                    .app
                    .blobs
                    .read(digest, Some(range))
                    .await
                    .map_err(|e| RemoteError::Local(format!("{digest}: {e}")))?;
                // each try hashes from the state before the chunk: a retried chunk counts once
                *lock(hasher) = (**before).clone();
                let hasher = std::sync::Arc::clone(hasher);
                let stream = stream.map(move |chunk| {
                    if let Ok(bytes) = &chunk {
                        lock(&hasher).update(bytes);
                    }
                    chunk
                });
                Some((reqwest::Body::wrap_stream(stream), None))
            }
        };
        Ok(Some(Prepared { body, auth }))
    }

    /// Whether `url` has the target's scheme, host and port.
    fn same_origin(&self, url: &str) -> bool {
        match (reqwest::Url::parse(url), reqwest::Url::parse(&self.base)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }

    /// The `Authorization` value for requests about `repo`.
    async fn authorization(&mut self, repo: &str) -> Result<Option<String>, RemoteError> {
        match self.challenge.clone() {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self.basic()),
            Challenge::Bearer { .. } => {
                if !self.tokens.contains_key(repo) {
                    let token = self.token(repo).await?;
                    if let Some(shared) = &self.shared {
                        if let Some((_, tokens, _)) = lock(&shared.inner).as_mut() {
                            tokens.insert(repo.to_string(), token.clone());
                        }
                    }
                    self.tokens.insert(repo.to_string(), token);
                }
                Ok(self.tokens.get(repo).map(|t| format!("Bearer {t}")))
            }
        }
    }

    fn basic(&self) -> Option<String> {
        let user = self.username.as_deref()?;
        let pass = self.password.as_deref().unwrap_or_default();
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))))
    }

    /// A token from the realm for pushing and pulling `repo` (no scope for `""`).
    async fn token(&mut self, repo: &str) -> Result<String, RemoteError> {
        let Challenge::Bearer { realm, service } = self.challenge.clone() else {
            return Err(RemoteError::Protocol("no token realm".into()));
        };
        let mut url = reqwest::Url::parse(&realm).map_err(|e| RemoteError::Protocol(format!("token realm: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &service {
                query.append_pair("service", service);
            }
            if !repo.is_empty() {
                query.append_pair("scope", &format!("repository:{repo}:{}", self.actions));
            }
        }
        let auth = self.basic();
        let headers: Vec<(header::HeaderName, String)> = Vec::new();
        let response = self.raw(Method::GET, url.as_str(), &headers, Some(Prepared { body: None, auth })).await?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            return Err(RemoteError::Auth(format!("the token endpoint answered {status}")));
        }
        let body = read_capped(response, 64 * 1024).await?;
        let parsed: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| RemoteError::Protocol(format!("token answer: {e}")))?;
        parsed
            .get("token")
            .or_else(|| parsed.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| RemoteError::Protocol("the token answer has no token".into()))
    }

    /// One request as is: the URL checked by the outbound guard first.
    async fn raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        prepared: Option<Prepared>,
    ) -> Result<reqwest::Response, RemoteError> {
        let checked = self.app.settings.webhooks.outbound.check_url(url).await.map_err(|e| match e {
            crate::outbound::OutboundError::Refused { .. } | crate::outbound::OutboundError::InvalidUrl(_) => {
                RemoteError::Refused(e.to_string())
            }
            other => RemoteError::Unreachable(other.to_string()),
        })?;
        if let Some(ports) = &self.ports {
            let port = checked.port_or_known_default().unwrap_or(0);
            if !ports.contains(&port) {
                return Err(RemoteError::Refused(format!(
                    "port {port} of {} is not one requests may go to",
                    checked.host_str().unwrap_or_default()
                )));
            }
        }
        let mut request = self.client.request(method, checked);
        if let Some(timeout) = self.reading {
            request = request.timeout(timeout);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(prepared) = prepared {
            if let Some(auth) = prepared.auth {
                request = request.header(header::AUTHORIZATION, auth);
            }
            if let Some((body, media_type)) = prepared.body {
                if let Some(media_type) = media_type {
                    request = request.header(header::CONTENT_TYPE, media_type);
                }
                request = request.body(body);
            }
        }
        request.send().await.map_err(describe)
    }
}

/// A try's body and credentials.
struct Prepared {
    body: Option<(reqwest::Body, Option<String>)>,
    auth: Option<String>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads `WWW-Authenticate` of a `401`.
fn parse_challenge(response: &reqwest::Response) -> Result<Challenge, RemoteError> {
    let Some(value) = response.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()) else {
        return Err(RemoteError::Auth("the target answered 401 without a WWW-Authenticate challenge".into()));
    };
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Ok(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(RemoteError::Auth(format!("unsupported authentication scheme {scheme:?}")));
    }
    let params = challenge_params(params);
    let realm =
        params.get("realm").cloned().ok_or_else(|| RemoteError::Auth("the Bearer challenge names no realm".into()))?;
    Ok(Challenge::Bearer { realm, service: params.get("service").cloned() })
}

/// `key="value", key2="value2"` → map (values unquoted).
fn challenge_params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The last byte a `Range: 0-N` header names.
fn range_end(response: &reqwest::Response) -> Option<u64> {
    let value = response.headers().get(header::RANGE)?.to_str().ok()?;
    let (_, end) = value.trim_start_matches("bytes=").split_once('-')?;
    end.trim().parse().ok()
}

async fn read_capped(response: reqwest::Response, cap: usize) -> Result<Bytes, RemoteError> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(describe)?;
        if out.len() + chunk.len() > cap {
            return Err(RemoteError::Protocol(format!("the answer is larger than {cap} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

async fn status_error(what: &str, status: u16, response: reqwest::Response) -> RemoteError {
    let body = match tokio::time::timeout(Duration::from_secs(5), read_capped(response, 64 * 1024)).await {
        Ok(Ok(bytes)) => {
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.chars().filter(|c| !c.is_control()).take(SNIPPET).collect();
            text
        }
        _ => String::new(),
    };
    RemoteError::Status { what: what.to_string(), status, body }
}

/// A failed request, without its URL (an upload location may carry a session token).
fn describe(e: reqwest::Error) -> RemoteError {
    RemoteError::Unreachable(crate::outbound::describe_failure(&e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parameters() {
        let p = challenge_params(r#"realm="https://auth.example/token",service="registry.example", scope="a:b:c,d""#);
        assert_eq!(p.get("realm").map(String::as_str), Some("https://auth.example/token"));
        assert_eq!(p.get("service").map(String::as_str), Some("registry.example"));
        assert_eq!(p.get("scope").map(String::as_str), Some("a:b:c,d"));
        let p = challenge_params("realm=plain,service=x");
        assert_eq!(p.get("realm").map(String::as_str), Some("plain"));
        assert_eq!(p.get("service").map(String::as_str), Some("x"));
        assert!(challenge_params("").is_empty());
    }

    #[test]
    fn transient_errors() {
        let status = |s| RemoteError::Status { what: "x".into(), status: s, body: String::new() };
        assert!(status(503).is_transient());
        assert!(status(429).is_transient());
        assert!(!status(412).is_transient());
        assert!(!status(403).is_transient());
        assert!(RemoteError::Unreachable("down".into()).is_transient());
        assert!(!RemoteError::Refused("private".into()).is_transient());
    }
}
