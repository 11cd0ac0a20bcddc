//! `webhook`: a registry's webhooks (`_all`: registry-wide ones), their test ping, delivery log
//! and redelivery: the command line and the management API calls behind them.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cli::LimitArgs;
use crate::client::{segment, CliError, Client};
use crate::commands::Outcome;
use crate::output::{field, Column};

/// `webhook …`: webhooks of one registry, or `_all` for registry-wide ones.
#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Create a webhook; prints its signing secret once.
    Add(AddArgs),
    /// List a registry's webhooks.
    #[command(alias = "list")]
    Ls {
        /// Registry name, or `_all`.
        registry: String,
    },
    /// Show one webhook (never its secret or auth header).
    Show(WebhookRef),
    /// Delete a webhook and its delivery log.
    #[command(alias = "delete")]
    Rm(WebhookRef),
    /// Enable a webhook.
    Enable(WebhookRef),
    /// Disable a webhook (events are skipped while disabled).
    Disable(WebhookRef),
    /// Send a PING event now and show the attempt.
    Test(WebhookRef),
    /// Show a webhook's delivery log, newest first.
    Deliveries {
        /// Registry name, or `_all`.
        registry: String,
        /// Webhook id (`wh-…`).
        webhook: String,
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Queue a delivery again (a dead one, or any other), with a fresh attempt budget.
    Redeliver {
        /// Registry name, or `_all`.
        registry: String,
        /// Webhook id (`wh-…`).
        webhook: String,
        /// Delivery id (from `berth webhook deliveries`).
        delivery: String,
    },
}

/// A registry and one of its webhooks.
#[derive(Args)]
pub struct WebhookRef {
    /// Registry name, or `_all`.
    registry: String,
    /// Webhook id (`wh-…`).
    webhook: String,
}

/// `webhook add`.
#[derive(Args)]
pub struct AddArgs {
    /// Registry name, or `_all` for a registry-wide webhook.
    registry: String,
    /// Name, unique in the registry.
    #[arg(long)]
    name: String,
    /// Target URL (http or https).
    #[arg(long)]
    url: String,
    /// `http` (a JSON POST) or `slack` (an incoming-webhook message).
    #[arg(long = "type", default_value = "http")]
    target: String,
    /// Event types, comma-separated (default: all), e.g. PUSH_ARTIFACT,DELETE_ARTIFACT.
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
    /// Payload format of http targets: `default` (Harbor's shape) or `cloudevents`.
    #[arg(long, default_value = "default")]
    format: String,
    /// Sent as the Authorization header (stored encrypted, never shown again).
    #[arg(long)]
    auth_header: Option<String>,
    /// Accept any TLS certificate from the target.
    #[arg(long)]
    skip_tls_verify: bool,
    /// Create it disabled.
    #[arg(long)]
    disabled: bool,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
}

/// Text columns of `webhook ls`.
const WEBHOOK_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "NAME", cell: |v| field(v, "name") },
    Column { header: "TYPE", cell: |v| field(v, "type") },
    Column { header: "FORMAT", cell: |v| field(v, "format") },
    Column { header: "ENABLED", cell: |v| field(v, "enabled") },
    Column { header: "URL", cell: |v| field(v, "url") },
    Column { header: "EVENTS", cell: |v| events_text(v) },
];
/// Text field order of one webhook.
const WEBHOOK_FIELDS: &[&str] =
    &["id", "registry", "name", "type", "format", "url", "events", "enabled", "skip_tls_verify", "auth_header_set"];
/// Text field order of a created webhook: its secret last, where it is seen.
const CREATED_FIELDS: &[&str] = &[
    "id",
    "registry",
    "name",
    "type",
    "format",
    "url",
    "events",
    "enabled",
    "skip_tls_verify",
    "auth_header_set",
    "secret",
];
/// Text columns of `webhook deliveries`.
const DELIVERY_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "EVENT", cell: |v| field(v, "event_type") },
    Column { header: "STATUS", cell: |v| field(v, "status") },
    Column { header: "ATTEMPTS", cell: |v| v["attempts"].as_array().map_or(0, Vec::len).to_string() },
    Column { header: "LAST ANSWER", cell: |v| last_attempt(v) },
    Column { header: "CREATED", cell: |v| field(v, "created_at") },
];

fn events_text(v: &Value) -> String {
    let names: Vec<&str> =
        v["events"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    names.join(",")
}

fn last_attempt(v: &Value) -> String {
    let Some(last) = v["attempts"].as_array().and_then(|a| a.last()) else {
        return "-".to_string();
    };
    match (last["status"].as_u64(), last["error"].as_str()) {
        (Some(status), _) => format!("{status} in {} ms", last["latency_ms"]),
        (None, Some(error)) => error.chars().take(60).collect(),
        _ => "-".to_string(),
    }
}

fn webhooks_path(registry: &str) -> String {
    format!("/api/v1/registries/{}/webhooks", segment(registry))
}

fn webhook_path(registry: &str, webhook: &str) -> String {
    format!("{}/{}", webhooks_path(registry), segment(webhook))
}

/// `webhook …`.
pub async fn webhook(client: &Client, command: WebhookCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        WebhookCommand::Add(a) => {
            let mut body = Map::new();
            body.insert("name".into(), json!(a.name));
            body.insert("url".into(), json!(a.url));
            body.insert("type".into(), json!(a.target));
            body.insert("format".into(), json!(a.format));
            body.insert("enabled".into(), json!(!a.disabled));
            body.insert("skip_tls_verify".into(), json!(a.skip_tls_verify));
            body.insert("description".into(), json!(a.description));
            if !a.events.is_empty() {
                body.insert("events".into(), json!(a.events));
            }
            if let Some(h) = a.auth_header {
                body.insert("auth_header".into(), json!(h));
            }
            let value = client.call(Method::POST, &webhooks_path(&a.registry), &[], Some(&Value::Object(body))).await?;
            with_secret(value)
        }
        WebhookCommand::Ls { registry } => {
            let items = client.list(&webhooks_path(&registry), &[], None).await?;
            Outcome::List { items, columns: WEBHOOK_COLUMNS }
        }
        WebhookCommand::Show(r) => {
            Outcome::Object { value: client.get(&webhook_path(&r.registry, &r.webhook)).await?, order: WEBHOOK_FIELDS }
        }
        WebhookCommand::Rm(r) => {
            client.call(Method::DELETE, &webhook_path(&r.registry, &r.webhook), &[], None).await?;
            Outcome::Done {
                json: json!({ "deleted": r.webhook, "registry": r.registry }),
                text: format!("Deleted webhook {} of {}", r.webhook, r.registry),
            }
        }
        WebhookCommand::Enable(r) => toggle(client, &r, true).await?,
        WebhookCommand::Disable(r) => toggle(client, &r, false).await?,
        WebhookCommand::Test(r) => {
            let path = format!("{}/test", webhook_path(&r.registry, &r.webhook));
            let value = client.call(Method::POST, &path, &[], None).await?;
            let delivery = &value["delivery"];
            let text =
                format!("Ping to webhook {} {}: {}", r.webhook, field(delivery, "status"), last_attempt(delivery));
            Outcome::Done { json: value, text }
        }
        WebhookCommand::Deliveries { registry, webhook, limit } => {
            let limit = limit.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let path = format!("{}/deliveries", webhook_path(&registry, &webhook));
            let items = client.list(&path, &[], limit).await?;
            Outcome::List { items, columns: DELIVERY_COLUMNS }
        }
        WebhookCommand::Redeliver { registry, webhook, delivery } => {
            let path = format!("{}/deliveries/{}/redeliver", webhook_path(&registry, &webhook), segment(&delivery));
            let value = client.call(Method::POST, &path, &[], None).await?;
            let text = format!("Queued delivery {delivery} of webhook {webhook} again");
            Outcome::Done { json: value, text }
        }
    })
}

async fn toggle(client: &Client, r: &WebhookRef, enabled: bool) -> Result<Outcome, CliError> {
    let value = client
        .call(Method::PATCH, &webhook_path(&r.registry, &r.webhook), &[], Some(&json!({ "enabled": enabled })))
        .await?;
    Ok(Outcome::Object { value, order: WEBHOOK_FIELDS })
}

/// The created webhook, with a reminder (on stderr) that its secret is shown only now.
fn with_secret(value: Value) -> Outcome {
    if value.get("secret").is_some() {
        eprintln!("berth: store the webhook's signing secret now: it cannot be shown again");
    }
    Outcome::Object { value, order: CREATED_FIELDS }
}
