//! `replication`: a registry's replication targets (`_all`: targets shared by every registry), its
//! replication policies, their runs and execution history: the command line and the management
//! API calls behind them.

use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cli::LimitArgs;
use crate::client::{segment, CliError, Client};
use crate::commands::{print, read_line_from_stdin, Outcome};
use crate::output::{self, field, Column, Format};

/// Environment variable holding a new target's password when `--password-stdin` is not given.
pub const ENV_REPLICATION_PASSWORD: &str = "BERTH_REPLICATION_PASSWORD";
/// The smallest chunk size a target takes (1 MiB), as the server checks it.
const MIN_CHUNK_BYTES: u64 = *berth::replication::target::CHUNK_BYTES.start();
/// The largest chunk size a target takes (64 MiB), as the server checks it.
const MAX_CHUNK_BYTES: u64 = *berth::replication::target::CHUNK_BYTES.end();
/// How often `run --wait` asks how the execution is going.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long `run --wait` waits for the execution to end.
const WAIT_LIMIT: Duration = Duration::from_secs(600);

/// `replication …`: replication policies of one registry, and (`target …`) where they copy to.
#[derive(Subcommand)]
pub enum ReplicationCommand {
    /// Replication targets: the registries images are copied to.
    #[command(subcommand)]
    Target(TargetCommand),
    /// Create a replication policy: which images and tags of the registry go to which target.
    Add(AddArgs),
    /// List a registry's replication policies.
    #[command(alias = "list")]
    Ls {
        /// Registry name.
        registry: String,
    },
    /// Show one replication policy.
    Show(ReplicationRef),
    /// Delete a replication policy and its execution history.
    #[command(alias = "delete")]
    Rm(ReplicationRef),
    /// Enable a replication policy.
    Enable(ReplicationRef),
    /// Disable a replication policy (its trigger fires no runs, and it cannot be run).
    Disable(ReplicationRef),
    /// Start a replication execution now.
    Run {
        /// Registry name.
        registry: String,
        /// Replication policy id (`rp-…`).
        replication: String,
        /// Wait until the execution ends and print it (exit 1 if it failed; at most 10 minutes).
        #[arg(long)]
        wait: bool,
    },
    /// List a policy's executions, newest first; with EXECUTION, show that execution and its tasks.
    History {
        /// Registry name.
        registry: String,
        /// Replication policy id (`rp-…`).
        replication: String,
        /// An execution id, to show that execution and its tasks.
        execution: Option<String>,
        /// Page limit (of the executions, or of the tasks).
        #[command(flatten)]
        limit: LimitArgs,
    },
}

/// `replication target …`: replication targets of one registry, or `_all` for shared ones.
#[derive(Subcommand)]
pub enum TargetCommand {
    /// Create a replication target (its password is never shown again).
    Add(TargetAddArgs),
    /// List a registry's replication targets.
    #[command(alias = "list")]
    Ls {
        /// Registry name, or `_all`.
        registry: String,
    },
    /// Show one replication target (never its password).
    Show(TargetRef),
    /// Delete a replication target (refused while a replication policy uses it).
    #[command(alias = "delete")]
    Rm(TargetRef),
}

/// A registry and one of its replication policies.
#[derive(Args)]
pub struct ReplicationRef {
    /// Registry name.
    registry: String,
    /// Replication policy id (`rp-…`).
    replication: String,
}

/// A registry (or `_all`) and one of its replication targets.
#[derive(Args)]
pub struct TargetRef {
    /// Registry name, or `_all`.
    registry: String,
    /// Replication target id (`rt-…`).
    target: String,
}

/// `replication target add`.
#[derive(Args)]
pub struct TargetAddArgs {
    /// Registry name, or `_all` for a target every registry's policies may use.
    registry: String,
    /// Name, unique in the registry.
    name: String,
    /// The target registry's URL (http or https), e.g. https://dr.example.com.
    #[arg(long)]
    url: String,
    /// `registry` (any OCI registry) or `berth` (a Berth server).
    #[arg(long, default_value = "registry", value_parser = PossibleValuesParser::new(["berth", "registry"]))]
    kind: String,
    /// User name at the target (for a Berth target: an access key id).
    #[arg(long)]
    username: Option<String>,
    /// Read the password from the first line of standard input (default: $BERTH_REPLICATION_PASSWORD, else none).
    #[arg(long)]
    password_stdin: bool,
    /// Accept any TLS certificate from the target.
    #[arg(long)]
    skip_tls_verify: bool,
    /// Bytes per upload chunk, 1 MiB to 64 MiB (default: 8 MiB).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES))]
    chunk_bytes: Option<u64>,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
}

/// `replication add`.
#[derive(Args)]
pub struct AddArgs {
    /// Registry name.
    registry: String,
    /// Name, unique in the registry.
    name: String,
    /// Replication target id (`rt-…`), of this registry or of `_all`.
    #[arg(long, value_name = "ID")]
    target: String,
    /// Repository prefix at the target (default: the registry's name): REGISTRY/IMAGE goes to DESTINATION/IMAGE.
    #[arg(long, value_name = "PREFIX")]
    destination: Option<String>,
    /// Image pattern, without the registry (`app/**`, `{web,api}`; default: every image).
    #[arg(long, value_name = "PATTERN")]
    name_filter: Option<String>,
    /// Tag pattern (`v*`; default: every tag, untagged artifacts too).
    #[arg(long, value_name = "PATTERN")]
    tag_filter: Option<String>,
    /// Send the tags NOT matching --tag-filter, instead of the matching ones.
    #[arg(long, requires = "tag_filter")]
    exclude_tags: bool,
    /// What starts a run: `manual` (berth replication run), `event` (each push) or `schedule` (--cron).
    #[arg(long, value_parser = PossibleValuesParser::new(["manual", "event", "schedule"]))]
    trigger: Option<String>,
    /// Five-field cron expression in UTC of a scheduled trigger (`"0 3 * * *"`); implies --trigger schedule.
    #[arg(long, value_name = "EXPR", value_parser = cron_expression)]
    cron: Option<String>,
    /// Leave a tag alone at the target when it points at another artifact there (default: overwrite it).
    #[arg(long)]
    no_override: bool,
    /// Create it disabled.
    #[arg(long)]
    disabled: bool,
    /// Free text.
    #[arg(long, default_value = "")]
    description: String,
}

/// Checks a cron expression as the server will (a usage error, exit 2, rather than a 400).
fn cron_expression(s: &str) -> Result<String, String> {
    berth::cron::Cron::parse(s).map(|c| c.as_str().to_string()).map_err(|e| e.to_string())
}

/// Text columns of `replication target ls`.
const TARGET_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "NAME", cell: |v| field(v, "name") },
    Column { header: "KIND", cell: |v| field(v, "kind") },
    Column { header: "URL", cell: |v| field(v, "url") },
];
/// Text field order of one replication target.
const TARGET_FIELDS: &[&str] = &[
    "id",
    "registry",
    "name",
    "kind",
    "url",
    "username",
    "password_set",
    "skip_tls_verify",
    "chunk_bytes",
    "description",
    "created_at",
    "updated_at",
    "created_by",
];
/// Text columns of `replication ls`.
const REPLICATION_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "NAME", cell: |v| field(v, "name") },
    Column { header: "TARGET", cell: |v| field(v, "target") },
    Column { header: "TRIGGER", cell: trigger_text },
    Column { header: "STATUS", cell: |v| field(v, "status") },
];
/// Text field order of one replication policy.
const REPLICATION_FIELDS: &[&str] = &[
    "id",
    "registry",
    "name",
    "description",
    "target",
    "destination",
    "name_filter",
    "tag_filter",
    "tag_filter_mode",
    "trigger",
    "override",
    "enabled",
    "status",
    "status_reason",
    "target_checked_at",
    "created_at",
    "updated_at",
    "created_by",
];
/// Text columns of `replication history`.
const EXECUTION_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "TRIGGER", cell: |v| field(v, "trigger") },
    Column { header: "STATUS", cell: |v| field(v, "status") },
    Column { header: "STARTED", cell: |v| field(v, "started_at") },
    Column { header: "ENDED", cell: |v| field(v, "ended_at") },
    Column { header: "TOTAL", cell: |v| field(v, "total") },
    Column { header: "SUCCEEDED", cell: |v| field(v, "succeeded") },
    Column { header: "FAILED", cell: |v| field(v, "failed") },
    Column { header: "SKIPPED", cell: |v| field(v, "skipped") },
    Column { header: "BYTES", cell: |v| output::size(count(v, "bytes")) },
];
/// Text field order of one execution.
const EXECUTION_FIELDS: &[&str] = &[
    "id",
    "replication",
    "registry",
    "trigger",
    "status",
    "started_at",
    "ended_at",
    "total",
    "succeeded",
    "failed",
    "skipped",
    "bytes",
    "error",
];
/// Text columns of an execution's tasks.
const TASK_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "SOURCE", cell: |v| field(v, "source") },
    Column { header: "DESTINATION", cell: |v| field(v, "destination") },
    Column { header: "DIGEST", cell: |v| short_digest(&field(v, "digest")) },
    Column { header: "TAGS", cell: |v| field(v, "tags") },
    Column { header: "STATUS", cell: |v| field(v, "status") },
    Column { header: "BYTES", cell: |v| output::size(count(v, "bytes")) },
    Column { header: "ERROR", cell: |v| field(v, "error") },
];

/// `sha256:0123456789ab` of a digest (algorithm and 12 hex digits).
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", hex.get(..12).unwrap_or(hex)),
        None => digest.to_string(),
    }
}

/// A number field (0 when absent).
fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// A policy's trigger as text: `manual`, `event` or `schedule (CRON)`.
fn trigger_text(v: &Value) -> String {
    let trigger = v.get("trigger").unwrap_or(&Value::Null);
    match (trigger.get("type").and_then(Value::as_str), trigger.get("cron").and_then(Value::as_str)) {
        (Some("schedule"), Some(cron)) => format!("schedule ({cron})"),
        (Some(kind), _) => kind.to_string(),
        (None, _) => field(v, "trigger"),
    }
}

/// A replication policy: its JSON as the server gave it, its text with the trigger readable.
fn replication_outcome(value: Value) -> Outcome {
    let mut shown = value.clone();
    if let Some(map) = shown.as_object_mut() {
        map.insert("trigger".to_string(), Value::String(trigger_text(&value)));
    }
    let text = output::fields(&shown, REPLICATION_FIELDS).trim_end().to_string();
    Outcome::Done { json: value, text }
}

/// An execution as `key: value` lines, its bytes in binary units.
fn execution_text(execution: &Value) -> String {
    let mut shown = execution.clone();
    if let Some(map) = shown.as_object_mut() {
        if let Some(bytes) = execution.get("bytes").and_then(Value::as_u64) {
            let text = if bytes < 1024 { output::size(bytes) } else { format!("{} ({bytes} B)", output::size(bytes)) };
            map.insert("bytes".to_string(), Value::String(text));
        }
    }
    output::fields(&shown, EXECUTION_FIELDS).trim_end().to_string()
}

/// The `trigger` of a new policy: `--cron` alone means a schedule, no option a manual trigger.
fn trigger_body(trigger: Option<&str>, cron: Option<&str>) -> Result<Value, CliError> {
    match (trigger, cron) {
        (None | Some("schedule"), Some(cron)) => Ok(json!({ "type": "schedule", "cron": cron })),
        (Some("schedule"), None) => Err(CliError::Usage("--trigger schedule needs --cron EXPR".to_string())),
        (Some(kind), Some(_)) => {
            Err(CliError::Usage(format!("--cron goes with --trigger schedule, not --trigger {kind}")))
        }
        (Some(kind), None) => Ok(json!({ "type": kind })),
        (None, None) => Ok(json!({ "type": "manual" })),
    }
}

/// A new target's password: standard input's first line with `--password-stdin`, else
/// `$BERTH_REPLICATION_PASSWORD`, else none.
fn target_password(from_stdin: bool) -> Result<Option<String>, CliError> {
    if from_stdin {
        return read_line_from_stdin("password").map(Some);
    }
    Ok(std::env::var(ENV_REPLICATION_PASSWORD).ok().filter(|p| !p.is_empty()))
}

/// `/api/v1/registries/<registry>/replication-targets`.
fn targets_path(registry: &str) -> String {
    format!("/api/v1/registries/{}/replication-targets", segment(registry))
}

/// `/api/v1/registries/<registry>/replication-targets/<target>`.
fn target_path(registry: &str, target: &str) -> String {
    format!("{}/{}", targets_path(registry), segment(target))
}

/// `/api/v1/registries/<registry>/replications`.
fn replications_path(registry: &str) -> String {
    format!("/api/v1/registries/{}/replications", segment(registry))
}

/// `/api/v1/registries/<registry>/replications/<replication>`.
fn replication_path(registry: &str, replication: &str) -> String {
    format!("{}/{}", replications_path(registry), segment(replication))
}

/// `/api/v1/registries/<registry>/replications/<replication>/executions/<execution>`.
fn execution_path(registry: &str, replication: &str, execution: &str) -> String {
    format!("{}/executions/{}", replication_path(registry, replication), segment(execution))
}

/// `replication …`.
pub async fn replication(client: &Client, format: Format, command: ReplicationCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        ReplicationCommand::Target(c) => target(client, c).await?,
        ReplicationCommand::Add(a) => {
            let mut body = Map::new();
            body.insert("name".into(), json!(a.name));
            body.insert("description".into(), json!(a.description));
            body.insert("target".into(), json!(a.target));
            if let Some(d) = a.destination {
                body.insert("destination".into(), json!(d));
            }
            if let Some(p) = a.name_filter {
                body.insert("name_filter".into(), json!(p));
            }
            if let Some(p) = a.tag_filter {
                body.insert("tag_filter".into(), json!(p));
            }
            body.insert("tag_filter_mode".into(), json!(if a.exclude_tags { "exclude" } else { "match" }));
            body.insert("trigger".into(), trigger_body(a.trigger.as_deref(), a.cron.as_deref())?);
            body.insert("override".into(), json!(!a.no_override));
            body.insert("enabled".into(), json!(!a.disabled));
            let path = replications_path(&a.registry);
            replication_outcome(client.call(Method::POST, &path, &[], Some(&Value::Object(body))).await?)
        }
        ReplicationCommand::Ls { registry } => {
            let items = client.list(&replications_path(&registry), &[], None).await?;
            Outcome::List { items, columns: REPLICATION_COLUMNS }
        }
        ReplicationCommand::Show(r) => {
            replication_outcome(client.get(&replication_path(&r.registry, &r.replication)).await?)
        }
        ReplicationCommand::Rm(r) => {
            client.call(Method::DELETE, &replication_path(&r.registry, &r.replication), &[], None).await?;
            Outcome::Done {
                json: json!({ "deleted": r.replication, "registry": r.registry }),
                text: format!("Deleted replication {} of {}", r.replication, r.registry),
            }
        }
        ReplicationCommand::Enable(r) => toggle(client, &r, true).await?,
        ReplicationCommand::Disable(r) => toggle(client, &r, false).await?,
        ReplicationCommand::Run { registry, replication, wait } => {
            let path = format!("{}/run", replication_path(&registry, &replication));
            let execution = client.call(Method::POST, &path, &[], None).await?;
            if !wait {
                let id = field(&execution, "id");
                let text = format!(
                    "Started execution {id} of replication {replication} ({}); follow it with \
                     `berth replication history {registry} {replication} {id}`",
                    field(&execution, "status")
                );
                return Ok(Outcome::Done { json: execution, text });
            }
            let execution = wait_for(client, &registry, &replication, execution).await?;
            finished(format, execution)?
        }
        ReplicationCommand::History { registry, replication, execution: None, limit } => {
            let limit = limit.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let path = format!("{}/executions", replication_path(&registry, &replication));
            let items = client.list(&path, &[], limit).await?;
            Outcome::List { items, columns: EXECUTION_COLUMNS }
        }
        ReplicationCommand::History { registry, replication, execution: Some(id), limit } => {
            let limit = limit.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let path = execution_path(&registry, &replication, &id);
            let execution = client.get(&path).await?;
            let tasks = client.list(&format!("{path}/tasks"), &[], limit).await?;
            let text = format!("{}\n\n{}", execution_text(&execution), output::table(&tasks, TASK_COLUMNS).trim_end());
            Outcome::Done { json: json!({ "execution": execution, "tasks": tasks }), text }
        }
    })
}

/// `replication target …`.
async fn target(client: &Client, command: TargetCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        TargetCommand::Add(a) => {
            let mut body = Map::new();
            body.insert("name".into(), json!(a.name));
            body.insert("kind".into(), json!(a.kind));
            body.insert("url".into(), json!(a.url));
            if let Some(u) = a.username {
                body.insert("username".into(), json!(u));
            }
            if let Some(p) = target_password(a.password_stdin)? {
                body.insert("password".into(), json!(p));
            }
            body.insert("skip_tls_verify".into(), json!(a.skip_tls_verify));
            if let Some(n) = a.chunk_bytes {
                body.insert("chunk_bytes".into(), json!(n));
            }
            body.insert("description".into(), json!(a.description));
            let value = client.call(Method::POST, &targets_path(&a.registry), &[], Some(&Value::Object(body))).await?;
            Outcome::Object { value, order: TARGET_FIELDS }
        }
        TargetCommand::Ls { registry } => {
            let items = client.list(&targets_path(&registry), &[], None).await?;
            Outcome::List { items, columns: TARGET_COLUMNS }
        }
        TargetCommand::Show(r) => {
            Outcome::Object { value: client.get(&target_path(&r.registry, &r.target)).await?, order: TARGET_FIELDS }
        }
        TargetCommand::Rm(r) => {
            client.call(Method::DELETE, &target_path(&r.registry, &r.target), &[], None).await?;
            Outcome::Done {
                json: json!({ "deleted": r.target, "registry": r.registry }),
                text: format!("Deleted replication target {} of {}", r.target, r.registry),
            }
        }
    })
}

/// Enables or disables a replication policy.
async fn toggle(client: &Client, r: &ReplicationRef, enabled: bool) -> Result<Outcome, CliError> {
    let path = replication_path(&r.registry, &r.replication);
    Ok(replication_outcome(client.call(Method::PATCH, &path, &[], Some(&json!({ "enabled": enabled }))).await?))
}

/// GETs a started execution every [`POLL_INTERVAL`] until it is no longer running, for at most
/// [`WAIT_LIMIT`].
async fn wait_for(client: &Client, registry: &str, replication: &str, started: Value) -> Result<Value, CliError> {
    let id = field(&started, "id");
    let path = execution_path(registry, replication, &id);
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    let mut execution = started;
    while execution.get("status").and_then(Value::as_str) == Some("running") {
        if tokio::time::Instant::now() + POLL_INTERVAL > deadline {
            return Err(CliError::Local(format!(
                "execution {id} of replication {replication} is still running after {} minutes; follow it with \
                 `berth replication history {registry} {replication} {id}`",
                WAIT_LIMIT.as_secs() / 60
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        execution = client.get(&path).await?;
    }
    Ok(execution)
}

/// The outcome of an ended execution; a failed one is printed, then exits 1.
fn finished(format: Format, execution: Value) -> Result<Outcome, CliError> {
    let text = execution_text(&execution);
    if execution.get("status").and_then(Value::as_str) == Some("failed") {
        let why = match execution.get("error").and_then(Value::as_str) {
            Some(error) => error.to_string(),
            None => format!("{} of {} task(s) failed", count(&execution, "failed"), count(&execution, "total")),
        };
        let message = format!("replication execution {} failed: {why}", field(&execution, "id"));
        print(format, &Outcome::Done { json: execution, text });
        return Err(CliError::Local(message));
    }
    Ok(Outcome::Done { json: execution, text })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn triggers_are_built_and_shown() {
        assert_eq!(trigger_body(None, None).unwrap(), json!({"type": "manual"}));
        assert_eq!(trigger_body(Some("event"), None).unwrap(), json!({"type": "event"}));
        assert_eq!(trigger_body(None, Some("0 3 * * *")).unwrap(), json!({"type": "schedule", "cron": "0 3 * * *"}));
        assert_eq!(
            trigger_body(Some("schedule"), Some("0 3 * * *")).unwrap(),
            json!({"type": "schedule", "cron": "0 3 * * *"})
        );
        assert!(trigger_body(Some("schedule"), None).is_err());
        assert!(trigger_body(Some("manual"), Some("0 3 * * *")).is_err());
        assert_eq!(
            trigger_text(&json!({"trigger": {"type": "schedule", "cron": "0 3 * * *"}})),
            "schedule (0 3 * * *)"
        );
        assert_eq!(trigger_text(&json!({"trigger": {"type": "event"}})), "event");
        assert_eq!(trigger_text(&json!({})), "-");
        assert!(cron_expression("0 3 * * *").is_ok());
        assert!(cron_expression("0 3 * *").is_err());
    }

    #[test]
    fn executions_are_shown() {
        let execution = json!({"id": "e1", "status": "failed", "bytes": 2048, "total": 2, "failed": 1, "error": null});
        assert_eq!(
            execution_text(&execution),
            "id:     e1\nstatus: failed\ntotal:  2\nfailed: 1\nbytes:  2.0 KiB (2048 B)\nerror:  -"
        );
        assert!(finished(Format::Json, json!({"id": "e2", "status": "succeeded"})).is_ok());
        assert_eq!(short_digest(&format!("sha256:{}", "ab".repeat(32))), "sha256:abababababab");
    }
}
