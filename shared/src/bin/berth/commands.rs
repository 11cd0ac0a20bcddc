//! What each client command does: the management API calls behind it and what it prints.

use std::io::{IsTerminal, Write};

use ipnet::IpNet;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::caches::{self, CacheCommand};
use crate::cli::{
    ArtifactCommand, AuditCommand, ImageCommand, KeyCommand, LimitArgs, LoginArgs, RegistryCommand, RegistrySetArgs,
    TagCommand, UserCommand, UserRoleArgs,
};
use crate::client::{
    config_path, image_path, load_credentials, normalize_url, save_credentials, segment, CliError, Client, Credentials,
    ENV_ACCESS_KEY, ENV_SECRET_KEY,
};
use crate::output::{self, field, Column, Format};
use crate::policies::{self, CleanupCommand, GcCommand, ProtectCommand};
use crate::replications::{self, ReplicationCommand};
use crate::webhooks::{self, WebhookCommand};

/// What a command produced, for [`print`].
pub enum Outcome {
    /// One object from the server (shown as `key: value` lines, keys in `order` first).
    Object {
        /// the server's object
        value: Value,
        /// the keys shown first in text output
        order: &'static [&'static str],
    },
    /// Every item of a listing (a table in text output, an array in JSON).
    List {
        /// the items
        items: Vec<Value>,
        /// the table's columns
        columns: &'static [Column],
    },
    /// A done deed without an object from the server (deletes, login, logout).
    Done {
        /// what JSON output prints
        json: Value,
        /// what text output prints
        text: String,
    },
}

/// A client command of a running server's management API, parsed (flattened into `berth`'s
/// commands).
#[derive(clap::Subcommand)]
pub enum ClientCommand {
    /// Check credentials against a server (GET /v2/) and store them.
    Login(LoginArgs),
    /// Forget the stored credentials.
    Logout,
    /// Create, list, show, change and delete registries.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// List and delete images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List, show and delete the artifacts (manifests) of an image.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// List, add and delete tags.
    #[command(subcommand)]
    Tag(TagCommand),
    /// Create, list, show, change and delete users.
    #[command(subcommand)]
    User(UserCommand),
    /// Create, list, revoke and rotate access keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Image cleanup: rules, cycle (cron), test runs, runs and their history.
    #[command(subcommand)]
    Cleanup(CleanupCommand),
    /// Image protection: rules making tags immutable and their artifacts undeletable.
    #[command(subcommand)]
    Protect(ProtectCommand),
    /// Garbage collection of blob bytes no image uses (administrators).
    #[command(subcommand)]
    Gc(GcCommand),
    /// Webhooks: registry events delivered over HTTP(S) or to Slack, their log and redelivery.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Replication: copying a registry's images to other registries (targets), by hand, on push or
    /// on a schedule, and the history of each execution.
    #[command(subcommand)]
    Replication(ReplicationCommand),
    /// Image caches: source registries that cache registries (`registry create --cache`) pull
    /// through (administrators).
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Vulnerability scans of artifacts, and each registry's scan settings (scan on push,
    /// prevent pull, CVE allowlists).
    #[command(subcommand)]
    Scan(crate::scans::ScanCommand),
    /// Image trust: what pulling an image requires of its signatures (off, any-signature,
    /// trusted-keys) and the public keys signatures are verified against.
    #[command(subcommand)]
    Trust(crate::trust::TrustCommand),
}

/// Runs a client command and prints its outcome; a notice (a secret is shown once…) goes to stderr.
pub async fn run(format: Format, page_size: usize, command: ClientCommand) -> Result<(), CliError> {
    let outcome = match command {
        ClientCommand::Login(args) => login(args).await?,
        ClientCommand::Logout => logout()?,
        command => {
            let client = Client::new(load_credentials()?, page_size)?;
            match command {
                ClientCommand::Registry(c) => registry(&client, c).await?,
                ClientCommand::Image(c) => image(&client, c).await?,
                ClientCommand::Artifact(c) => artifact(&client, c).await?,
                ClientCommand::Tag(c) => tag(&client, c).await?,
                ClientCommand::User(c) => user(&client, c).await?,
                ClientCommand::Key(c) => key(&client, c).await?,
                ClientCommand::Audit(c) => audit(&client, c).await?,
                ClientCommand::Cleanup(c) => policies::cleanup(&client, format, c).await?,
                ClientCommand::Protect(c) => policies::protect(&client, c).await?,
                ClientCommand::Gc(c) => policies::gc(&client, format, c).await?,
                ClientCommand::Webhook(c) => webhooks::webhook(&client, c).await?,
                ClientCommand::Replication(c) => replications::replication(&client, format, c).await?,
                ClientCommand::Cache(c) => caches::cache(&client, c).await?,
                ClientCommand::Scan(c) => crate::scans::scan(&client, c).await?,
                ClientCommand::Trust(c) => crate::trust::trust(&client, c).await?,
                ClientCommand::Login(_) | ClientCommand::Logout => {
                    return Err(CliError::Local("login and logout need no client".to_string()))
                }
            }
        }
    };
    print(format, &outcome);
    Ok(())
}

/// Prints an outcome to stdout (also used by commands that print before failing).
pub fn print(format: Format, outcome: &Outcome) {
    let text = match (format, outcome) {
        (Format::Json, Outcome::Object { value, .. }) => format!("{}\n", output::json(value)),
        (Format::Json, Outcome::List { items, .. }) => format!("{}\n", output::json(&Value::Array(items.clone()))),
        (Format::Json, Outcome::Done { json, .. }) => format!("{}\n", output::json(json)),
        (Format::Text, Outcome::Object { value, order }) => {
            if value.get("secret_key").is_some() {
                eprintln!("berth: store the secret key now: it cannot be shown again");
            }
            output::fields(value, order)
        }
        (Format::Text, Outcome::List { items, columns }) => output::table(items, columns),
        (Format::Text, Outcome::Done { text, .. }) => format!("{text}\n"),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`berth … | head`) is not worth an error.
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// `{"deleted": what}` and its text line.
fn deleted(kind: &str, what: &str) -> Outcome {
    Outcome::Done { json: json!({ "deleted": what }), text: format!("Deleted {kind} {what}") }
}

/// The `limit` of a listing as a count.
fn limit(args: &LimitArgs) -> Option<usize> {
    args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

// --- login / logout ---------------------------------------------------------------------------

/// `login`: checks the credentials with `GET /v2/` and stores them.
async fn login(args: LoginArgs) -> Result<Outcome, CliError> {
    let url = normalize_url(&args.url)?;
    let path = config_path().ok_or_else(|| {
        CliError::Local("cannot tell where to store credentials: set BERTH_CONFIG or HOME".to_string())
    })?;
    let access_key = match args.access_key.filter(|k| !k.is_empty()) {
        Some(k) => k,
        None => match std::env::var(ENV_ACCESS_KEY).ok().filter(|k| !k.is_empty()) {
            Some(k) => k,
            None => prompt("Access key", false)?,
        },
    };
    let secret_key = if args.secret_key_stdin {
        read_line_from_stdin("secret key")?
    } else {
        match std::env::var(ENV_SECRET_KEY).ok().filter(|k| !k.is_empty()) {
            Some(s) => s,
            None => prompt("Secret key", true)?,
        }
    };
    let creds = Credentials { url: url.clone(), access_key: access_key.clone(), secret_key };
    let client = Client::new(creds.clone(), 1)?;
    match client.call(Method::GET, "/v2/", &[], None).await {
        Ok(_) => {}
        Err(CliError::Server { status, code, detail, .. }) if status.as_u16() == 401 || status.as_u16() == 403 => {
            return Err(CliError::Auth(format!("{url} refused access key {access_key}: {code}: {detail}")));
        }
        Err(e) => return Err(e),
    }
    save_credentials(&path, &creds)?;
    let config = path.display().to_string();
    Ok(Outcome::Done {
        json: json!({ "url": url, "access_key": access_key, "config": config }),
        text: format!("Logged in to {url} as {access_key} (credentials stored in {config})"),
    })
}

/// `logout`: removes the credentials file.
fn logout() -> Result<Outcome, CliError> {
    let Some(path) = config_path() else {
        return Ok(Outcome::Done { json: json!({ "logged_out": false }), text: "Not logged in".to_string() });
    };
    let config = path.display().to_string();
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Outcome::Done {
            json: json!({ "logged_out": true, "config": config }),
            text: format!("Logged out (removed {config})"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Outcome::Done {
            json: json!({ "logged_out": false, "config": config }),
            text: format!("Not logged in (no {config})"),
        }),
        Err(e) => Err(CliError::Local(format!("cannot remove {config}: {e}"))),
    }
}

/// Asks for a value on stderr and reads a line from stdin (without echo for a secret on a terminal).
fn prompt(label: &str, secret: bool) -> Result<String, CliError> {
    let hide = secret && std::io::stdin().is_terminal();
    eprint!("{label}: ");
    let _ = std::io::stderr().flush();
    if hide {
        set_echo(false);
    }
    let line = read_line_from_stdin(&label.to_lowercase());
    if hide {
        set_echo(true);
        eprintln!();
    }
    line
}

/// Turns terminal echo on or off with `stty` (best effort: without it the secret is echoed).
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// One line of standard input without its line ending; empty input is a usage error.
pub fn read_line_from_stdin(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("cannot read the {what} from standard input: {e}")))?;
    let value = line.trim_end_matches(['\r', '\n']).to_string();
    if value.trim().is_empty() {
        return Err(CliError::Usage(format!("no {what} given on standard input")));
    }
    Ok(value)
}

// --- registries -------------------------------------------------------------------------------

/// Text columns of `registry ls`.
const REGISTRY_COLUMNS: &[Column] = &[
    Column { header: "NAME", cell: |v| field(v, "name") },
    Column { header: "PUBLIC", cell: |v| field(v, "public_access") },
    Column { header: "PRIVATE NETWORKS", cell: |v| field(v, "private_networks") },
    Column { header: "CREATED", cell: |v| field(v, "created_at") },
    Column { header: "CREATED BY", cell: |v| field(v, "created_by") },
];
/// Text field order of one registry.
const REGISTRY_FIELDS: &[&str] =
    &["name", "public_access", "private_networks", "cache", "storage_bytes", "image_count", "created_at", "created_by"];

/// The body of `POST /api/v1/registries` (`cache` only for a cache registry).
fn registry_body(name: String, private: bool, private_networks: &[IpNet], cache: Option<String>) -> Value {
    let networks: Vec<String> = private_networks.iter().map(ToString::to_string).collect();
    let mut body = Map::new();
    body.insert("name".to_string(), json!(name));
    body.insert("public_access".to_string(), json!(!private));
    body.insert("private_networks".to_string(), json!(networks));
    if let Some(cache) = cache {
        body.insert("cache".to_string(), json!(cache));
    }
    Value::Object(body)
}

/// `registry …`.
async fn registry(client: &Client, command: RegistryCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        RegistryCommand::Create { name, cache, private, private_networks } => {
            let body = registry_body(name, private, &private_networks, cache);
            let value = client.call(Method::POST, "/api/v1/registries", &[], Some(&body)).await?;
            Outcome::Object { value, order: REGISTRY_FIELDS }
        }
        RegistryCommand::Ls(args) => {
            let items = client.list("/api/v1/registries", &[], limit(&args)).await?;
            Outcome::List { items, columns: REGISTRY_COLUMNS }
        }
        RegistryCommand::Show { name } => {
            let value = client.get(&format!("/api/v1/registries/{}", segment(&name))).await?;
            Outcome::Object { value, order: REGISTRY_FIELDS }
        }
        RegistryCommand::Rm { name, force } => {
            let query = if force { vec![("force", "true".to_string())] } else { vec![] };
            client.call(Method::DELETE, &format!("/api/v1/registries/{}", segment(&name)), &query, None).await?;
            deleted("registry", &name)
        }
        RegistryCommand::Set(RegistrySetArgs { name, public, private, private_networks, clear_private_networks }) => {
            let mut body = Map::new();
            if public || private {
                body.insert("public_access".to_string(), Value::Bool(public));
            }
            if !private_networks.is_empty() || clear_private_networks {
                let networks: Vec<Value> = private_networks.iter().map(|n| Value::String(n.to_string())).collect();
                body.insert("private_networks".to_string(), Value::Array(networks));
            }
            let path = format!("/api/v1/registries/{}", segment(&name));
            let value = client.call(Method::PATCH, &path, &[], Some(&Value::Object(body))).await?;
            Outcome::Object { value, order: REGISTRY_FIELDS }
        }
    })
}

// --- images, artifacts, tags -------------------------------------------------------------------

/// Text columns of `image ls`.
const IMAGE_COLUMNS: &[Column] = &[
    Column { header: "NAME", cell: |v| field(v, "name") },
    Column { header: "ARTIFACTS", cell: |v| field(v, "artifact_count") },
    Column { header: "SIZE", cell: |v| field(v, "size") },
    Column { header: "LAST PUSH", cell: |v| field(v, "last_push") },
];

/// `image …`.
async fn image(client: &Client, command: ImageCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        ImageCommand::Ls { registry, limit: args } => {
            let path = format!("/api/v1/registries/{}/images", segment(&registry));
            let items = client.list(&path, &[], limit(&args)).await?;
            Outcome::List { items, columns: IMAGE_COLUMNS }
        }
        ImageCommand::Rm { image } => {
            let answer =
                client.call(Method::DELETE, &format!("/api/v1/images/{}", image_path(&image)), &[], None).await?;
            let count = answer.get("deleted_artifacts").cloned().unwrap_or(Value::Null);
            Outcome::Done {
                json: json!({ "deleted": image, "deleted_artifacts": count }),
                text: format!("Deleted image {image} ({} artifact(s))", output::cell_text("", &count)),
            }
        }
    })
}

/// Text columns of `artifact ls`.
const ARTIFACT_COLUMNS: &[Column] = &[
    Column { header: "DIGEST", cell: |v| field(v, "digest") },
    Column { header: "TAGS", cell: |v| field(v, "tags") },
    Column { header: "TYPE", cell: artifact_kind },
    Column { header: "PLATFORMS", cell: |v| field(v, "platforms") },
    Column { header: "SIZE", cell: |v| field(v, "size") },
    Column { header: "SIGNED", cell: signed },
    Column { header: "PUSHED", cell: |v| field(v, "pushed_at") },
];

/// The guide's "Authentication" column: `verified`, `signed`, or `-`.
fn signed(v: &Value) -> String {
    let s = v.get("signature");
    let flag = |k: &str| s.and_then(|s| s.get(k)).and_then(Value::as_bool).unwrap_or(false);
    match (flag("verified"), flag("signed")) {
        (true, _) => "verified".to_string(),
        (false, true) => "signed".to_string(),
        _ => "-".to_string(),
    }
}
/// Text field order of one artifact.
const ARTIFACT_FIELDS: &[&str] = &[
    "digest",
    "media_type",
    "artifact_type",
    "size",
    "platforms",
    "tags",
    "pushed_at",
    "pulled_at",
    "subject",
    "referrers",
    "signature",
];

/// An artifact's kind in a table: `index`, `image`, or its artifact type (without `application/`).
fn artifact_kind(v: &Value) -> String {
    let media_type = v.get("media_type").and_then(Value::as_str).unwrap_or("");
    if media_type.ends_with("image.index.v1+json") || media_type.ends_with("manifest.list.v2+json") {
        return "index".to_string();
    }
    match v.get("artifact_type").and_then(Value::as_str) {
        None => "image".to_string(),
        Some(t) if t.ends_with("image.config.v1+json") || t.ends_with("container.image.v1+json") => "image".to_string(),
        Some(t) => t.strip_prefix("application/").unwrap_or(t).to_string(),
    }
}

/// `artifact …`.
async fn artifact(client: &Client, command: ArtifactCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        ArtifactCommand::Ls { image, limit: args } => {
            let path = format!("/api/v1/images/{}/artifacts", image_path(&image));
            let items = client.list(&path, &[], limit(&args)).await?;
            Outcome::List { items, columns: ARTIFACT_COLUMNS }
        }
        ArtifactCommand::Show { artifact: (image, digest) } => {
            let value =
                client.get(&format!("/api/v1/images/{}/artifacts/{}", image_path(&image), segment(&digest))).await?;
            Outcome::Object { value, order: ARTIFACT_FIELDS }
        }
        ArtifactCommand::Rm { artifact: (image, digest) } => {
            let path = format!("/api/v1/images/{}/artifacts/{}", image_path(&image), segment(&digest));
            client.call(Method::DELETE, &path, &[], None).await?;
            deleted("artifact", &format!("{image}@{digest}"))
        }
    })
}

/// Text columns of `tag ls`.
const TAG_COLUMNS: &[Column] =
    &[Column { header: "TAG", cell: |v| field(v, "name") }, Column { header: "DIGEST", cell: |v| field(v, "digest") }];

/// `tag …`.
async fn tag(client: &Client, command: TagCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        TagCommand::Ls { image, search, limit: args } => {
            let query: Vec<(&str, String)> = search.map(|q| vec![("q", q)]).unwrap_or_default();
            let items =
                client.list(&format!("/api/v1/images/{}/tags", image_path(&image)), &query, limit(&args)).await?;
            Outcome::List { items, columns: TAG_COLUMNS }
        }
        TagCommand::Add { tag: (image, tag), digest } => {
            let path = format!("/api/v1/images/{}/tags/{}", image_path(&image), segment(&tag));
            let value = client.call(Method::PUT, &path, &[], Some(&json!({ "digest": digest }))).await?;
            Outcome::Object { value, order: &["name", "digest"] }
        }
        TagCommand::Rm { tag: (image, tag) } => {
            let path = format!("/api/v1/images/{}/tags/{}", image_path(&image), segment(&tag));
            client.call(Method::DELETE, &path, &[], None).await?;
            deleted("tag", &format!("{image}:{tag}"))
        }
    })
}

// --- users and keys ---------------------------------------------------------------------------

/// Text columns of `user ls`.
const USER_COLUMNS: &[Column] = &[
    Column { header: "NAME", cell: |v| field(v, "name") },
    Column { header: "ROLE", cell: |v| field(v, "role") },
    Column { header: "REGISTRIES", cell: user_registries },
    Column { header: "KEYS", cell: |v| v.get("access_keys").and_then(Value::as_array).map_or(0, Vec::len).to_string() },
    Column { header: "CREATED", cell: |v| field(v, "created_at") },
    Column { header: "CREATED BY", cell: |v| field(v, "created_by") },
];
/// Text field order of one user.
const USER_FIELDS: &[&str] = &["name", "role", "registries", "access_keys", "created_at", "created_by"];

/// A user's registries in a table; `null` means every registry.
fn user_registries(v: &Value) -> String {
    field(v, "registries")
}

/// The body of `POST /api/v1/users` and `PATCH /api/v1/users/<name>` (registries omitted: all).
fn role_body(args: &UserRoleArgs, with_name: bool) -> Value {
    let mut body = Map::new();
    if with_name {
        body.insert("name".to_string(), Value::String(args.name.clone()));
    }
    body.insert("role".to_string(), Value::String(args.role.clone()));
    if !args.registries.is_empty() {
        body.insert("registries".to_string(), json!(args.registries));
    }
    Value::Object(body)
}

/// `user …`.
async fn user(client: &Client, command: UserCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        UserCommand::Create(args) => {
            let value = client.call(Method::POST, "/api/v1/users", &[], Some(&role_body(&args, true))).await?;
            Outcome::Object { value, order: USER_FIELDS }
        }
        UserCommand::Ls(args) => {
            let items = client.list("/api/v1/users", &[], limit(&args)).await?;
            Outcome::List { items, columns: USER_COLUMNS }
        }
        UserCommand::Show { name } => {
            let value = client.get(&format!("/api/v1/users/{}", segment(&name))).await?;
            Outcome::Object { value, order: USER_FIELDS }
        }
        UserCommand::Set(args) => {
            let path = format!("/api/v1/users/{}", segment(&args.name));
            let value = client.call(Method::PATCH, &path, &[], Some(&role_body(&args, false))).await?;
            Outcome::Object { value, order: USER_FIELDS }
        }
        UserCommand::Rm { name } => {
            client.call(Method::DELETE, &format!("/api/v1/users/{}", segment(&name)), &[], None).await?;
            deleted("user", &name)
        }
    })
}

/// Text columns of `key ls`.
const KEY_COLUMNS: &[Column] = &[
    Column { header: "ACCESS KEY", cell: |v| field(v, "access_key") },
    Column { header: "USER", cell: |v| field(v, "user") },
    Column { header: "CREATED", cell: |v| field(v, "created_at") },
    Column { header: "ROTATED", cell: |v| field(v, "rotated_at") },
    Column { header: "LAST USED", cell: |v| field(v, "last_used_at") },
];
/// Text field order of one key.
const KEY_FIELDS: &[&str] = &["access_key", "secret_key", "user", "created_at", "rotated_at", "last_used_at"];

/// `key …`.
async fn key(client: &Client, command: KeyCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        KeyCommand::Create { user } => {
            let value = client.call(Method::POST, &format!("/api/v1/users/{}/keys", segment(&user)), &[], None).await?;
            Outcome::Object { value, order: KEY_FIELDS }
        }
        KeyCommand::Ls { user, limit: args } => {
            let mut items = client.list(&format!("/api/v1/users/{}/keys", segment(&user)), &[], limit(&args)).await?;
            // The server never lists secrets; make sure none could ever be printed from here.
            for item in &mut items {
                if let Some(o) = item.as_object_mut() {
                    o.remove("secret_key");
                }
            }
            Outcome::List { items, columns: KEY_COLUMNS }
        }
        KeyCommand::Rm { key, user } => {
            let path = format!("/api/v1/users/{}/keys/{}", segment(&user), segment(&key));
            client.call(Method::DELETE, &path, &[], None).await?;
            deleted("access key", &key)
        }
        KeyCommand::Rotate { key, user } => {
            let path = format!("/api/v1/users/{}/keys/{}/rotate", segment(&user), segment(&key));
            let value = client.call(Method::POST, &path, &[], None).await?;
            Outcome::Object { value, order: KEY_FIELDS }
        }
    })
}

// --- audit ------------------------------------------------------------------------------------

/// Text columns of `audit ls`.
const AUDIT_COLUMNS: &[Column] = &[
    Column { header: "AT", cell: |v| field(v, "at") },
    Column { header: "WHO", cell: |v| field(v, "who") },
    Column { header: "SOURCE", cell: |v| field(v, "source") },
    Column { header: "ACTION", cell: |v| field(v, "action") },
    Column { header: "METHOD", cell: |v| field(v, "method") },
    Column { header: "TARGET", cell: |v| field(v, "target") },
    Column { header: "STATUS", cell: |v| field(v, "status") },
];

/// `audit …`.
async fn audit(client: &Client, command: AuditCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        AuditCommand::Ls(args) => {
            let items = client.list("/api/v1/audit", &[], limit(&args)).await?;
            Outcome::List { items, columns: AUDIT_COLUMNS }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn user_bodies_omit_registries_for_all() {
        let args = UserRoleArgs { name: "ci".into(), role: "service-viewer".into(), registries: vec![] };
        assert_eq!(role_body(&args, true), json!({"name": "ci", "role": "service-viewer"}));
        let args = UserRoleArgs { name: "ci".into(), role: "project-member".into(), registries: vec!["e2e".into()] };
        assert_eq!(role_body(&args, false), json!({"role": "project-member", "registries": ["e2e"]}));
    }

    #[test]
    fn registry_bodies_name_a_cache_only_when_given() {
        let networks: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            registry_body("e2e".into(), true, &networks, None),
            json!({"name": "e2e", "public_access": false, "private_networks": ["10.0.0.0/8"]})
        );
        assert_eq!(
            registry_body("hubcache".into(), false, &[], Some("hub".into())),
            json!({"name": "hubcache", "public_access": true, "private_networks": [], "cache": "hub"})
        );
    }

    #[test]
    fn artifact_kinds_are_short() {
        let image = json!({"media_type": "application/vnd.oci.image.manifest.v1+json",
            "artifact_type": "application/vnd.oci.image.config.v1+json"});
        assert_eq!(artifact_kind(&image), "image");
        assert_eq!(artifact_kind(&json!({"media_type": "application/vnd.oci.image.index.v1+json"})), "index");
        assert_eq!(artifact_kind(&json!({"artifact_type": "application/spdx+json", "media_type": "x"})), "spdx+json");
    }
}
