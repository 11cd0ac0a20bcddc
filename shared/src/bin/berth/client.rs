//! The management API client: stored credentials, HTTP calls with Basic authentication, paging,
//! and the errors that decide the exit code.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Exit code: the server refused the request (4xx) or failed it (5xx).
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: the command line is wrong (clap uses it for its own errors too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server cannot be reached, or there are no stored credentials.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: the credentials were refused.
pub const EXIT_AUTH: u8 = 4;

/// Environment variable naming the credentials file.
pub const ENV_CONFIG: &str = "BERTH_CONFIG";
/// Environment variable overriding the stored server URL.
pub const ENV_URL: &str = "BERTH_URL";
/// Environment variable overriding the stored access key id.
pub const ENV_ACCESS_KEY: &str = "BERTH_ACCESS_KEY";
/// Environment variable overriding the stored secret key.
pub const ENV_SECRET_KEY: &str = "BERTH_SECRET_KEY";

/// The largest page the management API hands out.
pub const MAX_PAGE: usize = 1000;
/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in all (deleting a big registry can take a while).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a client command failed; each kind has its exit code.
#[derive(Debug)]
pub enum CliError {
    /// The server answered with an error status.
    Server {
        /// the HTTP status
        status: StatusCode,
        /// the first error's code (`NOT_FOUND`, `DENIED`…), or `HTTP_<status>` without one
        code: String,
        /// the first error's detail (or message) as text
        detail: String,
        /// the error body as received, when it was JSON
        body: Option<Value>,
    },
    /// The credentials were refused (401 anywhere, 403 on login).
    Auth(String),
    /// No connection, a timeout, or an answer that is not the management API's.
    Network(String),
    /// No stored credentials and no environment to stand in for them.
    NotLoggedIn(String),
    /// The command line or its input is not usable.
    Usage(String),
    /// A local failure (the credentials file cannot be written…).
    Local(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Server { status, .. } if *status == StatusCode::UNAUTHORIZED => EXIT_AUTH,
            CliError::Server { .. } | CliError::Local(_) => EXIT_REFUSED,
            CliError::Auth(_) => EXIT_AUTH,
            CliError::Network(_) | CliError::NotLoggedIn(_) => EXIT_UNREACHABLE,
            CliError::Usage(_) => EXIT_USAGE,
        }
    }

    /// The server's error body, if this is a server error that had one.
    pub fn server_body(&self) -> Option<&Value> {
        match self {
            CliError::Server { body, .. } => body.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for CliError {
    /// The one line printed after `berth: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Server { code, detail, .. } => write!(f, "{code}: {detail}"),
            CliError::Auth(m) => write!(f, "authentication failed: {m}"),
            CliError::Network(m) | CliError::NotLoggedIn(m) | CliError::Usage(m) | CliError::Local(m) => f.write_str(m),
        }
    }
}

/// The credentials file's content: where the server is and how to sign in.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// the server's base URL, without a trailing slash
    pub url: String,
    /// the access key id (the Basic user name)
    pub access_key: String,
    /// the secret key (the Basic password)
    pub secret_key: String,
}

impl fmt::Debug for Credentials {
    /// Never shows the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("url", &self.url).field("access_key", &self.access_key).finish()
    }
}

/// The partly known credentials read from the file, before the environment fills them in.
#[derive(Default, Deserialize)]
struct StoredCredentials {
    /// the stored server URL
    url: Option<String>,
    /// the stored access key id
    access_key: Option<String>,
    /// the stored secret key
    secret_key: Option<String>,
}

/// Where the credentials file is: `$BERTH_CONFIG`, else `~/.config/berth/credentials.json`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_CONFIG).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config").join("berth").join("credentials.json"))
}

/// A non-empty environment variable.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The credentials to use: the file's, each field overridden by its environment variable.
pub fn load_credentials() -> Result<Credentials, CliError> {
    let path = config_path();
    let stored = match &path {
        Some(p) => match std::fs::read(p) {
            Ok(bytes) => serde_json::from_slice::<StoredCredentials>(&bytes).map_err(|e| {
                CliError::NotLoggedIn(format!(
                    "the credentials file {} is not valid ({e}); run `berth login URL` again",
                    p.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredCredentials::default(),
            Err(e) => return Err(CliError::NotLoggedIn(format!("cannot read {}: {e}", p.display()))),
        },
        None => StoredCredentials::default(),
    };
    let url = env_value(ENV_URL).or(stored.url);
    let access_key = env_value(ENV_ACCESS_KEY).or(stored.access_key);
    let secret_key = env_value(ENV_SECRET_KEY).or(stored.secret_key);
    match (url, access_key, secret_key) {
        (Some(url), Some(access_key), Some(secret_key)) => {
            Ok(Credentials { url: normalize_url(&url)?, access_key, secret_key })
        }
        _ => Err(CliError::NotLoggedIn(format!(
            "not logged in: run `berth login URL` or set {ENV_URL}, {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}{}",
            path.map(|p| format!(" (no usable credentials in {})", p.display())).unwrap_or_default()
        ))),
    }
}

/// Writes the credentials file, readable by its owner only (0600), replacing it atomically.
pub fn save_credentials(path: &Path, creds: &Credentials) -> Result<(), CliError> {
    let fail = |what: &str, e: std::io::Error| CliError::Local(format!("cannot {what} {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(|e| fail("create the directory of", e))?;
    }
    let mut text = serde_json::to_vec_pretty(creds).map_err(|e| CliError::Local(e.to_string()))?;
    text.push(b'\n');
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = private_file(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        restrict(&temp)?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(fail("write", e));
    }
    Ok(())
}

/// Creates `dir` (and its parents); a new directory is private to its owner.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates (or truncates) a file that only its owner can read or write.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Sets mode 0600 whatever the umask or an earlier file's mode was.
fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Checks a server URL and drops trailing slashes; a bare `host:port` means `https://host:port`.
pub fn normalize_url(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") { raw.to_string() } else { format!("https://{raw}") };
    let parsed =
        reqwest::Url::parse(&with_scheme).map_err(|e| CliError::Usage(format!("{raw:?} is not a server URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(CliError::Usage(format!("{raw:?} is not an http:// or https:// server URL")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(CliError::Usage(format!("{raw:?}: a server URL has no query or fragment")));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters and `:`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An image name in a management API path, as one escaped segment (`team%2Fapp`): with its
/// slashes kept, a name such as `team/app/tags/v1` would read as tag `v1` of `team/app`.
pub fn image_path(name: &str) -> String {
    segment(name)
}

/// An authenticated connection to one server's management API.
pub struct Client {
    /// the HTTP client
    http: reqwest::Client,
    /// where and as whom
    creds: Credentials,
    /// items asked for per page (1..=1000)
    page_size: usize,
}

impl Client {
    /// A client for `creds`.
    pub fn new(creds: Credentials, page_size: usize) -> Result<Client, CliError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CliError::Local(format!("cannot set up the HTTP client: {}", error_chain(&e))))?;
        Ok(Client { http, creds, page_size: page_size.clamp(1, MAX_PAGE) })
    }

    /// Sends one request to `path` (which starts with `/`); the answer's JSON (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.creds.url);
        let mut request = self
            .http
            .request(method, &url)
            .basic_auth(&self.creds.access_key, Some(&self.creds.secret_key))
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                CliError::Network(format!(
                    "{url} answered {status} with something that is not JSON ({e}); is {} a Berth server?",
                    self.creds.url
                ))
            });
        }
        Err(server_error(status, &bytes))
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, &[], None).await
    }

    /// Every item of a paged list at `path` (following `next`), at most `limit` of them.
    pub async fn list(
        &self,
        path: &str,
        query: &[(&str, String)],
        limit: Option<usize>,
    ) -> Result<Vec<Value>, CliError> {
        let mut items: Vec<Value> = vec![];
        let mut last: Option<String> = None;
        loop {
            let wanted = limit.map(|l| l.saturating_sub(items.len()));
            if wanted == Some(0) {
                return Ok(items);
            }
            let page_size = wanted.unwrap_or(self.page_size).min(self.page_size);
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("n", page_size.to_string()));
            if let Some(last) = &last {
                q.push(("last", last.clone()));
            }
            let page = self.call(Method::GET, path, &q, None).await?;
            let Some(page_items) = page.get("items").and_then(Value::as_array) else {
                return Err(CliError::Network(format!(
                    "{}{path} did not answer with a list (no \"items\"); is {} a Berth server?",
                    self.creds.url, self.creds.url
                )));
            };
            items.extend(page_items.iter().cloned());
            match page.get("next").and_then(Value::as_str) {
                Some(next) if !page_items.is_empty() && last.as_deref() != Some(next) => last = Some(next.to_string()),
                _ => break,
            }
        }
        if let Some(limit) = limit {
            items.truncate(limit);
        }
        Ok(items)
    }

    /// A network error as a [`CliError::Network`] naming the server.
    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        let what = if e.is_timeout() { "timed out talking to" } else { "cannot reach" };
        CliError::Network(format!("{what} {}: {}", self.creds.url, error_chain(e)))
    }
}

/// An error status and body as a [`CliError::Server`] (or [`CliError::Auth`] for 401).
fn server_error(status: StatusCode, bytes: &[u8]) -> CliError {
    let body: Option<Value> = serde_json::from_slice(bytes).ok();
    let first = body.as_ref().and_then(|b| b.get("errors")).and_then(Value::as_array).and_then(|e| e.first());
    let code = first
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
    let detail = first
        .and_then(|e| match e.get("detail") {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Null) | Some(Value::String(_)) | None => {
                e.get("message").and_then(Value::as_str).map(str::to_string)
            }
            Some(other) => Some(other.to_string()),
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim();
            let reason = status.canonical_reason().unwrap_or("error");
            if text.is_empty() {
                reason.to_string()
            } else {
                text.chars().take(300).collect()
            }
        });
    CliError::Server { status, code, detail, body }
}

/// An error and its causes on one line (reqwest's own message omits the cause).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_normalized() {
        assert_eq!(normalize_url("http://127.0.0.1:5000/").unwrap(), "http://127.0.0.1:5000");
        assert_eq!(normalize_url("registry.example.com").unwrap(), "https://registry.example.com");
        assert_eq!(normalize_url("https://h.example/base/").unwrap(), "https://h.example/base");
        assert!(normalize_url("ftp://h.example").is_err());
        assert!(normalize_url("http://").is_err());
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(image_path("e2e/app/web"), "e2e%2Fapp%2Fweb");
        assert_eq!(image_path("e2e/app/tags/v1"), "e2e%2Fapp%2Ftags%2Fv1");
        assert_eq!(segment("sha256:ab"), "sha256:ab");
    }

    #[test]
    fn server_errors_are_read() {
        let body = br#"{"errors":[{"code":"DENIED","message":"denied","detail":"no"}]}"#;
        let e = server_error(StatusCode::FORBIDDEN, body);
        assert_eq!(e.to_string(), "DENIED: no");
        assert_eq!(e.exit_code(), EXIT_REFUSED);
        let e = server_error(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(e.to_string(), "HTTP_502: Bad Gateway");
        let e = server_error(StatusCode::UNAUTHORIZED, br#"{"errors":[{"code":"UNAUTHORIZED","message":"m"}]}"#);
        assert_eq!(e.to_string(), "UNAUTHORIZED: m");
        assert_eq!(e.exit_code(), EXIT_AUTH);
    }
}
