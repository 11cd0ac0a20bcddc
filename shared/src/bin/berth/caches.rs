//! `cache`: image caches, the source registries that cache registries (`berth registry create
//! NAME --cache C`) pull through (administrators): the command line and the management API calls
//! behind them.

use std::io::Read;

use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cli::LimitArgs;
use crate::client::{segment, CliError, Client};
use crate::commands::Outcome;
use crate::output::{field, Column};

/// The source types the server knows, as `--type` takes them.
const CACHE_TYPES: [&str; 8] = ["ncr", "ecr", "acr", "gcr", "docker-hub", "docker-registry", "harbor", "quay"];
/// Keys that would hold a secret, removed from anything printed (the server never sends them).
const SECRET_KEYS: [&str; 2] = ["access_secret", "secret"];

/// `cache …`: image caches (pull-through sources).
#[derive(Subcommand)]
pub enum CacheCommand {
    /// Create an image cache (its access secret is never shown again).
    Add(AddArgs),
    /// List image caches.
    #[command(alias = "list")]
    Ls(LimitArgs),
    /// Show one image cache and the registries using it (never its access secret).
    Show {
        /// Image cache name.
        name: String,
    },
    /// Change an image cache's source, credentials, description or TLS checking.
    Set(SetArgs),
    /// Delete an image cache (refused while a registry uses it).
    #[command(alias = "delete")]
    Rm {
        /// Image cache name.
        name: String,
    },
}

/// The source's access secret: on the command line, or (kept out of `ps`) from standard input.
#[derive(Args)]
pub struct SecretArgs {
    /// Access secret (password, token, IAM secret key, service-account JSON…); visible in `ps`,
    /// prefer --access-secret-stdin.
    #[arg(long, value_name = "SECRET", conflicts_with = "access_secret_stdin")]
    access_secret: Option<String>,
    /// Read the access secret from standard input (all of it, without the trailing newline).
    #[arg(long)]
    access_secret_stdin: bool,
}

/// `cache add`.
#[derive(Args)]
pub struct AddArgs {
    /// Name (lower case letters, digits, `.`, `_`, `-`).
    name: String,
    /// Source type.
    #[arg(long = "type", value_name = "TYPE", value_parser = PossibleValuesParser::new(CACHE_TYPES))]
    kind: String,
    /// Source registry URL, e.g. https://hub.docker.com or https://registry.example.com.
    #[arg(long)]
    url: String,
    /// Access id at the source (user name, IAM access key, `_json_key` for gcr, `json_file` for
    /// quay; none: anonymous).
    #[arg(long, value_name = "ID")]
    access_id: Option<String>,
    /// The access secret.
    #[command(flatten)]
    secret: SecretArgs,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
    /// Accept any TLS certificate from the source.
    #[arg(long)]
    skip_tls_verify: bool,
}

/// `cache set`: at least one change.
#[derive(Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["kind", "url", "access_id", "access_secret", "access_secret_stdin", "description", "skip_tls_verify"])))]
pub struct SetArgs {
    /// Image cache name.
    name: String,
    /// New source type.
    #[arg(long = "type", value_name = "TYPE", value_parser = PossibleValuesParser::new(CACHE_TYPES))]
    kind: Option<String>,
    /// New source registry URL.
    #[arg(long)]
    url: Option<String>,
    /// New access id at the source.
    #[arg(long, value_name = "ID")]
    access_id: Option<String>,
    /// The new access secret.
    #[command(flatten)]
    secret: SecretArgs,
    /// New free text.
    #[arg(long)]
    description: Option<String>,
    /// Accept any TLS certificate from the source (true) or check it (false).
    #[arg(long, value_name = "true|false", value_parser = clap::value_parser!(bool))]
    skip_tls_verify: Option<bool>,
}

/// Text columns of `cache ls`.
const CACHE_COLUMNS: &[Column] = &[
    Column { header: "NAME", cell: |v| field(v, "name") },
    Column { header: "TYPE", cell: |v| field(v, "type") },
    Column { header: "URL", cell: |v| field(v, "url") },
    Column { header: "ACCESS ID", cell: |v| field(v, "access_id") },
    Column { header: "REGISTRIES", cell: registries_text },
    Column { header: "CREATED", cell: |v| field(v, "created_at") },
];
/// Text field order of one image cache.
const CACHE_FIELDS: &[&str] = &[
    "name",
    "type",
    "url",
    "endpoint",
    "access_id",
    "secret_set",
    "skip_tls_verify",
    "description",
    "registries",
    "created_at",
    "updated_at",
    "created_by",
];

/// The registries using a cache, comma-separated (`-` for none).
fn registries_text(v: &Value) -> String {
    let names: Vec<&str> = v
        .get("registries")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "-".to_string()
    } else {
        names.join(", ")
    }
}

/// `/api/v1/caches/<name>`.
fn cache_path(name: &str) -> String {
    format!("/api/v1/caches/{}", segment(name))
}

/// A secret read from `input`: all of it, without its trailing line ending; empty input is a usage error.
fn read_secret(mut input: impl Read) -> Result<String, CliError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| CliError::Usage(format!("cannot read the access secret from standard input: {e}")))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.trim().is_empty() {
        return Err(CliError::Usage("no access secret given on standard input".to_string()));
    }
    Ok(secret.to_string())
}

/// The access secret to send: `--access-secret`, standard input with `--access-secret-stdin`, else none.
fn access_secret(args: SecretArgs, input: impl Read) -> Result<Option<String>, CliError> {
    match (args.access_secret, args.access_secret_stdin) {
        (Some(_), true) => Err(CliError::Usage("give --access-secret or --access-secret-stdin, not both".to_string())),
        (Some(secret), false) => Ok(Some(secret)),
        (None, true) => read_secret(input).map(Some),
        (None, false) => Ok(None),
    }
}

/// The body of `POST /api/v1/caches`.
fn add_body(a: AddArgs, input: impl Read) -> Result<Value, CliError> {
    let mut body = Map::new();
    body.insert("name".into(), json!(a.name));
    body.insert("type".into(), json!(a.kind));
    body.insert("url".into(), json!(a.url));
    if let Some(id) = a.access_id {
        body.insert("access_id".into(), json!(id));
    }
    if let Some(secret) = access_secret(a.secret, input)? {
        body.insert("access_secret".into(), json!(secret));
    }
    body.insert("description".into(), json!(a.description));
    body.insert("skip_tls_verify".into(), json!(a.skip_tls_verify));
    Ok(Value::Object(body))
}

/// The body of `PATCH /api/v1/caches/<name>`: only what is changed.
fn set_body(s: SetArgs, input: impl Read) -> Result<Value, CliError> {
    let mut body = Map::new();
    if let Some(kind) = s.kind {
        body.insert("type".into(), json!(kind));
    }
    if let Some(url) = s.url {
        body.insert("url".into(), json!(url));
    }
    if let Some(id) = s.access_id {
        body.insert("access_id".into(), json!(id));
    }
    if let Some(secret) = access_secret(s.secret, input)? {
        body.insert("access_secret".into(), json!(secret));
    }
    if let Some(description) = s.description {
        body.insert("description".into(), json!(description));
    }
    if let Some(skip) = s.skip_tls_verify {
        body.insert("skip_tls_verify".into(), json!(skip));
    }
    if body.is_empty() {
        return Err(CliError::Usage("nothing to change".to_string()));
    }
    Ok(Value::Object(body))
}

/// An image cache from the server, any secret removed so none can ever be printed from here.
fn without_secret(mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        for key in SECRET_KEYS {
            map.remove(key);
        }
    }
    value
}

/// `cache …`.
pub async fn cache(client: &Client, command: CacheCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        CacheCommand::Add(a) => {
            let body = add_body(a, std::io::stdin().lock())?;
            let value = client.call(Method::POST, "/api/v1/caches", &[], Some(&body)).await?;
            Outcome::Object { value: without_secret(value), order: CACHE_FIELDS }
        }
        CacheCommand::Ls(args) => {
            let limit = args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let items = client.list("/api/v1/caches", &[], limit).await?;
            Outcome::List { items: items.into_iter().map(without_secret).collect(), columns: CACHE_COLUMNS }
        }
        CacheCommand::Show { name } => {
            Outcome::Object { value: without_secret(client.get(&cache_path(&name)).await?), order: CACHE_FIELDS }
        }
        CacheCommand::Set(s) => {
            let path = cache_path(&s.name);
            let body = set_body(s, std::io::stdin().lock())?;
            let value = client.call(Method::PATCH, &path, &[], Some(&body)).await?;
            Outcome::Object { value: without_secret(value), order: CACHE_FIELDS }
        }
        CacheCommand::Rm { name } => {
            client.call(Method::DELETE, &cache_path(&name), &[], None).await?;
            Outcome::Done { json: json!({ "deleted": name }), text: format!("Deleted image cache {name}") }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::{CommandFactory, Parser};

    /// `cache …` alone, to parse its command lines.
    #[derive(Parser)]
    struct Line {
        /// the command
        #[command(subcommand)]
        command: CacheCommand,
    }

    fn parse(args: &[&str]) -> Result<CacheCommand, clap::Error> {
        Line::try_parse_from(std::iter::once("cache").chain(args.iter().copied())).map(|l| l.command)
    }

    fn add(args: &[&str], stdin: &str) -> Result<Value, CliError> {
        match parse(args).unwrap() {
            CacheCommand::Add(a) => add_body(a, stdin.as_bytes()),
            _ => panic!("not add"),
        }
    }

    fn set(args: &[&str], stdin: &str) -> Result<Value, CliError> {
        match parse(args).unwrap() {
            CacheCommand::Set(s) => set_body(s, stdin.as_bytes()),
            _ => panic!("not set"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Line::command().debug_assert();
    }

    #[test]
    fn add_bodies_carry_what_is_given() {
        let body = add(&["add", "hub", "--type", "docker-hub", "--url", "https://hub.docker.com"], "").unwrap();
        assert_eq!(
            body,
            json!({"name": "hub", "type": "docker-hub", "url": "https://hub.docker.com", "description": "",
                "skip_tls_verify": false})
        );
        let args = [
            "add",
            "local",
            "--type",
            "docker-registry",
            "--url",
            "http://127.0.0.1:5000",
            "--access-id",
            "u",
            "--access-secret",
            "p",
            "--description",
            "lab",
            "--skip-tls-verify",
        ];
        assert_eq!(
            add(&args, "").unwrap(),
            json!({"name": "local", "type": "docker-registry", "url": "http://127.0.0.1:5000", "access_id": "u",
                "access_secret": "p", "description": "lab", "skip_tls_verify": true})
        );
    }

    #[test]
    fn secrets_come_from_stdin_whole_without_the_trailing_newline() {
        let args = ["add", "g", "--type", "gcr", "--url", "https://gcr.io", "--access-id", "_json_key"];
        let stdin_args: Vec<&str> = args.iter().copied().chain(["--access-secret-stdin"]).collect();
        let key = "{\n  \"type\": \"service_account\"\n}";
        assert_eq!(add(&stdin_args, &format!("{key}\r\n")).unwrap()["access_secret"], json!(key));
        assert_eq!(add(&stdin_args, "p\n").unwrap()["access_secret"], json!("p"));
        assert!(matches!(add(&stdin_args, "\n"), Err(CliError::Usage(_))));
        assert!(matches!(add(&stdin_args, ""), Err(CliError::Usage(_))));
        // not both
        let both: Vec<&str> = stdin_args.iter().copied().chain(["--access-secret", "p"]).collect();
        assert_eq!(parse(&both).err().map(|e| e.kind()), Some(clap::error::ErrorKind::ArgumentConflict));
        let secret = SecretArgs { access_secret: Some("p".into()), access_secret_stdin: true };
        assert!(matches!(access_secret(secret, "q".as_bytes()), Err(CliError::Usage(_))));
    }

    #[test]
    fn add_needs_a_known_type_and_a_url() {
        let e = parse(&["add", "x", "--type", "dockerhub", "--url", "https://hub.docker.com"]).err().unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(e.to_string().contains("docker-hub"));
        assert!(parse(&["add", "x", "--type", "quay"]).is_err());
        assert!(parse(&["add", "x", "--url", "https://quay.io"]).is_err());
    }

    #[test]
    fn set_bodies_carry_only_the_changes() {
        assert_eq!(set(&["set", "hub", "--skip-tls-verify", "false"], "").unwrap(), json!({"skip_tls_verify": false}));
        assert_eq!(
            set(&["set", "hub", "--url", "https://index.docker.io", "--skip-tls-verify", "true"], "").unwrap(),
            json!({"url": "https://index.docker.io", "skip_tls_verify": true})
        );
        assert_eq!(
            set(&["set", "hub", "--access-id", "u", "--access-secret-stdin", "--description", ""], "s3cret\n").unwrap(),
            json!({"access_id": "u", "access_secret": "s3cret", "description": ""})
        );
        assert_eq!(set(&["set", "hub", "--type", "harbor"], "").unwrap(), json!({"type": "harbor"}));
        // nothing to change, a bare --skip-tls-verify, or a value that is not true/false: usage errors
        assert_eq!(
            parse(&["set", "hub"]).err().map(|e| e.kind()),
            Some(clap::error::ErrorKind::MissingRequiredArgument)
        );
        assert!(parse(&["set", "hub", "--skip-tls-verify"]).is_err());
        assert!(parse(&["set", "hub", "--skip-tls-verify", "yes"]).is_err());
        assert!(parse(&["set", "hub", "--access-secret", "a", "--access-secret-stdin"]).is_err());
    }

    #[test]
    fn nothing_secret_is_printed() {
        let view = json!({"name": "hub", "secret_set": true, "access_secret": "p", "registries": ["a", "b"]});
        let shown = without_secret(view);
        assert_eq!(shown, json!({"name": "hub", "secret_set": true, "registries": ["a", "b"]}));
        assert_eq!(registries_text(&shown), "a, b");
        assert_eq!(registries_text(&json!({"registries": []})), "-");
        assert_eq!(registries_text(&json!({"registries": null})), "-");
        assert_eq!(cache_path("a b"), "/api/v1/caches/a%20b");
    }
}
