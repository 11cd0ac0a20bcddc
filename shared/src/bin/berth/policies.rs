//! `cleanup`, `protect` and `gc`: a registry's image cleanup rules, cycle and runs, its image
//! protection rules, and garbage collection: their command line and the management API calls
//! behind them.

use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::LimitArgs;
use crate::client::{segment, CliError, Client};
use crate::commands::{print, Outcome};
use crate::output::{self, field, Column, Format};

/// `cleanup …`: image cleanup (retention) of one registry.
#[derive(Subcommand)]
pub enum CleanupCommand {
    /// Add a cleanup rule: in images matching --image, the artifacts its tag selector picks are
    /// deleted by a run unless --keep (or another rule) keeps them.
    Add(CleanupAddArgs),
    /// List a registry's cleanup rules.
    #[command(alias = "list")]
    Ls {
        /// Registry name.
        registry: String,
    },
    /// Delete a cleanup rule.
    #[command(alias = "delete")]
    Rm {
        /// Registry name.
        registry: String,
        /// Rule id (`c1`).
        rule: String,
    },
    /// Enable a cleanup rule.
    Enable {
        /// Registry name.
        registry: String,
        /// Rule id (`c1`).
        rule: String,
    },
    /// Disable a cleanup rule (runs leave it out).
    Disable {
        /// Registry name.
        registry: String,
        /// Rule id (`c1`).
        rule: String,
    },
    /// Start a test run: decide every artifact as a run would, delete nothing.
    Test(RunArgs),
    /// Start a cleanup run now: delete what the rules do not keep (protected artifacts stay).
    Run(RunArgs),
    /// Show the cleanup cycle, set it from a cron expression (UTC), or turn it off.
    Schedule(ScheduleArgs),
    /// List cleanup runs, newest first; with RUN, show that run and its decisions.
    History {
        /// Registry name.
        registry: String,
        /// A run id, to show that run.
        run: Option<String>,
        /// Page limit (of the run list).
        #[command(flatten)]
        limit: LimitArgs,
    },
}

/// `cleanup add`: one rule.
#[derive(Args)]
pub struct CleanupAddArgs {
    /// Registry name.
    pub registry: String,
    /// Image pattern, without the registry (`app/**`, `{web,api}`, `**` for all).
    #[arg(long, value_name = "PATTERN")]
    pub image: String,
    /// Tag pattern (`v*`, `**` for all).
    #[arg(long, value_name = "PATTERN")]
    pub tag: String,
    /// Select artifacts with a tag NOT matching --tag, instead of those with a matching tag.
    #[arg(long)]
    pub exclude: bool,
    /// Select untagged artifacts too.
    #[arg(long)]
    pub untagged: bool,
    /// What to keep: latest-pushed:K, latest-pulled:K, pushed-within:Nd, pulled-within:Nd or always.
    #[arg(long, value_name = "POLICY", value_parser = keep_policy)]
    pub keep: String,
}

/// `cleanup test|run`: which registry, and whether to wait for the end.
#[derive(Args)]
pub struct RunArgs {
    /// Registry name.
    pub registry: String,
    /// Wait until the run ends and print its summary (exit 1 if it failed).
    #[arg(long)]
    pub wait: bool,
}

/// `cleanup schedule`: show, set or remove.
#[derive(Args)]
pub struct ScheduleArgs {
    /// Registry name.
    pub registry: String,
    /// Five-field cron expression in UTC: minute hour day-of-month month day-of-week (`"0 3 * * *"`).
    #[arg(value_name = "CRON")]
    pub cron: Option<String>,
    /// Remove the cleanup cycle.
    #[arg(long, conflicts_with = "cron")]
    pub off: bool,
}

/// `protect …`: image protection (immutable tags) of one registry.
#[derive(Subcommand)]
pub enum ProtectCommand {
    /// Protect tags: in images matching --image, a tag matching --tag cannot be moved or deleted,
    /// nor its artifact deleted (by clients, the API or cleanup).
    Add {
        /// Registry name.
        registry: String,
        /// Image pattern, without the registry (`app/**`).
        #[arg(long, value_name = "PATTERN")]
        image: String,
        /// Tag pattern (`v*`, `{1.0,1.1}`).
        #[arg(long, value_name = "PATTERN")]
        tag: String,
    },
    /// List a registry's protection rules.
    #[command(alias = "list")]
    Ls {
        /// Registry name.
        registry: String,
    },
    /// Delete a protection rule.
    #[command(alias = "delete")]
    Rm {
        /// Registry name.
        registry: String,
        /// Rule id (`p1`).
        rule: String,
    },
    /// Enable a protection rule.
    Enable {
        /// Registry name.
        registry: String,
        /// Rule id (`p1`).
        rule: String,
    },
    /// Disable a protection rule (it protects nothing until enabled).
    Disable {
        /// Registry name.
        registry: String,
        /// Rule id (`p1`).
        rule: String,
    },
}

/// `gc …`: garbage collection of blob bytes no image uses (administrators only).
#[derive(Subcommand)]
pub enum GcCommand {
    /// Start a garbage-collection run.
    Run {
        /// Only count what a run would delete.
        #[arg(long)]
        dry_run: bool,
        /// Wait until the run ends and print its summary (exit 1 if it failed).
        #[arg(long)]
        wait: bool,
    },
    /// List garbage-collection runs, newest first.
    #[command(alias = "list")]
    Ls(LimitArgs),
    /// Show one garbage-collection run.
    Show {
        /// Run id.
        run: String,
    },
}

/// Checks a keep policy as the server will (a usage error, exit 2, rather than a 400).
fn keep_policy(s: &str) -> Result<String, String> {
    s.parse::<berth::policy::cleanup::Keep>().map(|k| k.to_string()).map_err(|e| e.to_string())
}

// --- cleanup ----------------------------------------------------------------------------------

/// Text columns of `cleanup ls`.
const CLEANUP_RULE_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "IMAGE", cell: |v| field(v, "image") },
    Column { header: "TAG", cell: |v| field(v, "tag") },
    Column { header: "MODE", cell: |v| field(v, "tag_mode") },
    Column { header: "UNTAGGED", cell: |v| field(v, "untagged") },
    Column { header: "KEEP", cell: |v| field(v, "keep") },
    Column { header: "ENABLED", cell: |v| field(v, "enabled") },
    Column { header: "CREATED", cell: |v| field(v, "created_at") },
];
/// Text field order of one cleanup rule.
const CLEANUP_RULE_FIELDS: &[&str] = &["id", "image", "tag", "tag_mode", "untagged", "keep", "enabled", "created_at"];
/// Text columns of `cleanup history`.
const CLEANUP_RUN_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "TRIGGER", cell: |v| field(v, "trigger") },
    Column { header: "DRY-RUN", cell: |v| field(v, "dry_run") },
    Column { header: "STATUS", cell: |v| field(v, "status") },
    Column { header: "STARTED", cell: |v| field(v, "started_at") },
    Column { header: "FINISHED", cell: |v| field(v, "finished_at") },
    Column { header: "TOTAL", cell: |v| field(v, "total") },
    Column { header: "RETAINED", cell: |v| field(v, "retained") },
    Column { header: "DELETED", cell: |v| field(v, "deleted") },
    Column { header: "PROTECTED", cell: |v| field(v, "protected") },
];
/// Text field order of one cleanup run.
const CLEANUP_RUN_FIELDS: &[&str] = &[
    "id",
    "registry",
    "trigger",
    "dry_run",
    "status",
    "queued_at",
    "started_at",
    "finished_at",
    "rules",
    "images",
    "total",
    "retained",
    "deleted",
    "protected",
    "failed",
    "error",
];
/// Text columns of a cleanup run's decisions.
const DECISION_COLUMNS: &[Column] = &[
    Column { header: "IMAGE", cell: |v| field(v, "image") },
    Column { header: "DIGEST", cell: |v| short_digest(&field(v, "digest")) },
    Column { header: "TAGS", cell: |v| field(v, "tags") },
    Column { header: "ACTION", cell: |v| field(v, "action") },
    Column { header: "REASON", cell: |v| field(v, "reason") },
];

/// `sha256:0123456789ab` of a digest (algorithm and 12 hex digits).
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", hex.get(..12).unwrap_or(hex)),
        None => digest.to_string(),
    }
}

/// `/api/v1/registries/<registry>/<rest>`.
fn registry_path(registry: &str, rest: &str) -> String {
    format!("/api/v1/registries/{}/{rest}", segment(registry))
}

/// `{"deleted": what}` and its text line.
fn deleted(kind: &str, rule: &str, registry: &str) -> Outcome {
    Outcome::Done {
        json: json!({ "deleted": rule, "registry": registry }),
        text: format!("Deleted {kind} {rule} of registry {registry}"),
    }
}

/// A run as `key: value` lines, without the decisions and bookkeeping, its rules by id.
fn run_text(run: &Value) -> String {
    let mut shown = run.clone();
    if let Some(map) = shown.as_object_mut() {
        for key in ["decisions", "next_chunk", "planned", "chunks"] {
            map.remove(key);
        }
        if let Some(Value::Array(rules)) = map.get("rules") {
            let ids: Vec<Value> = rules.iter().filter_map(|r| r.get("id").cloned()).collect();
            map.insert("rules".to_string(), Value::Array(ids));
        }
    }
    output::fields(&shown, CLEANUP_RUN_FIELDS).trim_end().to_string()
}

/// A number field of a run (0 when absent).
fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Whether a run (cleanup or gc) has ended.
fn ended(run: &Value) -> bool {
    matches!(run.get("status").and_then(Value::as_str), Some("succeeded" | "failed"))
}

/// GETs `path` until the run there has ended, polling ever less often (up to every 5 s); an
/// error the run hit on the way (its job is retried) is reported on stderr once.
async fn wait_for(client: &Client, path: &str) -> Result<Value, CliError> {
    let mut pause = Duration::from_millis(250);
    let mut reported: Option<String> = None;
    loop {
        let run = client.get(path).await?;
        if ended(&run) {
            return Ok(run);
        }
        if let Some(error) = run.get("error").and_then(Value::as_str) {
            if reported.as_deref() != Some(error) {
                eprintln!("berth: run {} hit an error and will be retried: {error}", field(&run, "id"));
                reported = Some(error.to_string());
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The outcome of a finished run: its summary; a failed run is printed, then exits 1.
fn finished(format: Format, kind: &str, run: Value, summary: String) -> Result<Outcome, CliError> {
    if run.get("status").and_then(Value::as_str) == Some("failed") {
        let id = field(&run, "id");
        let why = field(&run, "error");
        print(format, &Outcome::Done { json: run, text: summary });
        return Err(CliError::Local(format!("{kind} run {id} failed: {why}")));
    }
    Ok(Outcome::Done { json: run, text: summary })
}

/// The one-line summary of a cleanup run.
fn cleanup_summary(run: &Value) -> String {
    let dry = run.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
    let deleted = if dry { "to delete (test run: nothing deleted)" } else { "deleted" };
    let mut text = format!(
        "Cleanup {} {} of registry {} {}: {} artifact(s) in {} image(s): {} retained, {} {deleted}, {} protected, {} failed",
        if dry { "test run" } else { "run" },
        field(run, "id"),
        field(run, "registry"),
        field(run, "status"),
        count(run, "total"),
        count(run, "images"),
        count(run, "retained"),
        count(run, "deleted"),
        count(run, "protected"),
        count(run, "failed"),
    );
    if let Some(error) = run.get("error").and_then(Value::as_str) {
        text.push_str(&format!("\nerror: {error}"));
    }
    text
}

/// Every decision of a run, following `next_chunk`: the run as one object with all of them.
async fn full_run(client: &Client, path: &str) -> Result<Value, CliError> {
    let mut run = client.get(path).await?;
    let mut next = run.get("next_chunk").and_then(Value::as_u64);
    while let Some(chunk) = next {
        let page = client.call(Method::GET, path, &[("chunk", chunk.to_string())], None).await?;
        let more = page.get("decisions").and_then(Value::as_array).cloned().unwrap_or_default();
        if let Some(Value::Array(all)) = run.get_mut("decisions") {
            all.extend(more);
        }
        next = page.get("next_chunk").and_then(Value::as_u64).filter(|n| *n > chunk);
    }
    if let Some(map) = run.as_object_mut() {
        map.insert("next_chunk".to_string(), Value::Null);
    }
    Ok(run)
}

/// `cleanup …`.
pub async fn cleanup(client: &Client, format: Format, command: CleanupCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        CleanupCommand::Add(a) => {
            let body = json!({
                "image": a.image,
                "tag": a.tag,
                "tag_mode": if a.exclude { "exclude" } else { "match" },
                "untagged": a.untagged,
                "keep": a.keep,
            });
            let value =
                client.call(Method::POST, &registry_path(&a.registry, "cleanup/rules"), &[], Some(&body)).await?;
            Outcome::Object { value, order: CLEANUP_RULE_FIELDS }
        }
        CleanupCommand::Ls { registry } => {
            let items = client.list(&registry_path(&registry, "cleanup/rules"), &[], None).await?;
            Outcome::List { items, columns: CLEANUP_RULE_COLUMNS }
        }
        CleanupCommand::Rm { registry, rule } => {
            let path = registry_path(&registry, &format!("cleanup/rules/{}", segment(&rule)));
            client.call(Method::DELETE, &path, &[], None).await?;
            deleted("cleanup rule", &rule, &registry)
        }
        CleanupCommand::Enable { registry, rule } => Outcome::Object {
            value: toggle(client, "cleanup", &registry, &rule, true).await?,
            order: CLEANUP_RULE_FIELDS,
        },
        CleanupCommand::Disable { registry, rule } => Outcome::Object {
            value: toggle(client, "cleanup", &registry, &rule, false).await?,
            order: CLEANUP_RULE_FIELDS,
        },
        CleanupCommand::Test(args) => start_cleanup(client, format, args, true).await?,
        CleanupCommand::Run(args) => start_cleanup(client, format, args, false).await?,
        CleanupCommand::Schedule(ScheduleArgs { registry, cron, off }) => {
            let path = registry_path(&registry, "cleanup/schedule");
            let value = match (cron, off) {
                (Some(cron), _) => client.call(Method::PUT, &path, &[], Some(&json!({ "cron": cron }))).await?,
                (None, true) => {
                    client.call(Method::DELETE, &path, &[], None).await?;
                    json!({ "cron": null, "next_run_at": null })
                }
                (None, false) => client.get(&path).await?,
            };
            let text = match value.get("cron").and_then(Value::as_str) {
                Some(cron) => format!(
                    "Cleanup cycle of registry {registry}: {cron:?} (UTC), next run at {}",
                    field(&value, "next_run_at")
                ),
                None => format!("Registry {registry} has no cleanup cycle"),
            };
            Outcome::Done { json: value, text }
        }
        CleanupCommand::History { registry, run: None, limit } => {
            let limit = limit.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let items = client.list(&registry_path(&registry, "cleanup/runs"), &[], limit).await?;
            Outcome::List { items, columns: CLEANUP_RUN_COLUMNS }
        }
        CleanupCommand::History { registry, run: Some(id), .. } => {
            let run = full_run(client, &registry_path(&registry, &format!("cleanup/runs/{}", segment(&id)))).await?;
            let decisions = run.get("decisions").and_then(Value::as_array).cloned().unwrap_or_default();
            let text = format!("{}\n\n{}", run_text(&run), output::table(&decisions, DECISION_COLUMNS).trim_end());
            Outcome::Done { json: run, text }
        }
    })
}

/// Enables or disables a cleanup or protection rule.
async fn toggle(client: &Client, kind: &str, registry: &str, rule: &str, enabled: bool) -> Result<Value, CliError> {
    let path = registry_path(registry, &format!("{kind}/rules/{}", segment(rule)));
    client.call(Method::PATCH, &path, &[], Some(&json!({ "enabled": enabled }))).await
}

/// `cleanup test|run`: starts the run; with `--wait`, follows it to the end.
async fn start_cleanup(client: &Client, format: Format, args: RunArgs, dry_run: bool) -> Result<Outcome, CliError> {
    let path = registry_path(&args.registry, "cleanup/runs");
    let run = client.call(Method::POST, &path, &[], Some(&json!({ "dry_run": dry_run }))).await?;
    let id = field(&run, "id");
    if !args.wait {
        let kind = if dry_run { "test run" } else { "run" };
        let text = format!(
            "Started cleanup {kind} {id} of registry {} ({}); follow it with `berth cleanup history {} {id}`",
            args.registry,
            field(&run, "status"),
            args.registry
        );
        return Ok(Outcome::Done { json: run, text });
    }
    let run = wait_for(client, &format!("{path}/{}", segment(&id))).await?;
    let summary = cleanup_summary(&run);
    finished(format, "cleanup", run, summary)
}

// --- protect ----------------------------------------------------------------------------------

/// Text columns of `protect ls`.
const PROTECTION_RULE_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "IMAGE", cell: |v| field(v, "image") },
    Column { header: "TAG", cell: |v| field(v, "tag") },
    Column { header: "ENABLED", cell: |v| field(v, "enabled") },
    Column { header: "CREATED", cell: |v| field(v, "created_at") },
];
/// Text field order of one protection rule.
const PROTECTION_RULE_FIELDS: &[&str] = &["id", "image", "tag", "enabled", "created_at"];

/// `protect …`.
pub async fn protect(client: &Client, command: ProtectCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        ProtectCommand::Add { registry, image, tag } => {
            let body = json!({ "image": image, "tag": tag });
            let path = registry_path(&registry, "protection/rules");
            Outcome::Object {
                value: client.call(Method::POST, &path, &[], Some(&body)).await?,
                order: PROTECTION_RULE_FIELDS,
            }
        }
        ProtectCommand::Ls { registry } => {
            let items = client.list(&registry_path(&registry, "protection/rules"), &[], None).await?;
            Outcome::List { items, columns: PROTECTION_RULE_COLUMNS }
        }
        ProtectCommand::Rm { registry, rule } => {
            let path = registry_path(&registry, &format!("protection/rules/{}", segment(&rule)));
            client.call(Method::DELETE, &path, &[], None).await?;
            deleted("protection rule", &rule, &registry)
        }
        ProtectCommand::Enable { registry, rule } => Outcome::Object {
            value: toggle(client, "protection", &registry, &rule, true).await?,
            order: PROTECTION_RULE_FIELDS,
        },
        ProtectCommand::Disable { registry, rule } => Outcome::Object {
            value: toggle(client, "protection", &registry, &rule, false).await?,
            order: PROTECTION_RULE_FIELDS,
        },
    })
}

// --- gc ---------------------------------------------------------------------------------------

/// Text columns of `gc ls`.
const GC_RUN_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "DRY-RUN", cell: |v| field(v, "dry_run") },
    Column { header: "STATUS", cell: |v| field(v, "status") },
    Column { header: "STARTED", cell: |v| field(v, "started_at") },
    Column { header: "FINISHED", cell: |v| field(v, "finished_at") },
    Column { header: "SCANNED", cell: |v| field(v, "blobs_scanned") },
    Column { header: "DELETED", cell: |v| field(v, "blobs_deleted") },
    Column { header: "FREED", cell: |v| output::size(count(v, "bytes_deleted")) },
    Column { header: "IN GRACE", cell: |v| field(v, "blobs_in_grace") },
    Column { header: "ERRORS", cell: |v| field(v, "errors") },
];
/// Text field order of one garbage-collection run.
const GC_RUN_FIELDS: &[&str] = &[
    "id",
    "dry_run",
    "status",
    "queued_at",
    "started_at",
    "finished_at",
    "grace_seconds",
    "blobs_scanned",
    "blobs_deleted",
    "bytes_deleted",
    "links_removed",
    "blobs_in_grace",
    "errors",
    "error",
];

/// A garbage-collection run as `key: value` lines, the freed bytes in binary units.
fn gc_text(run: &Value) -> String {
    let mut shown = run.clone();
    if let Some(map) = shown.as_object_mut() {
        let bytes = count(run, "bytes_deleted");
        let text = if bytes < 1024 { output::size(bytes) } else { format!("{} ({bytes} B)", output::size(bytes)) };
        map.insert("bytes_deleted".to_string(), Value::String(text));
    }
    output::fields(&shown, GC_RUN_FIELDS).trim_end().to_string()
}

/// The one-line summary of a garbage-collection run.
fn gc_summary(run: &Value) -> String {
    let dry = run.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
    let (deleted, removed) = if dry { ("would delete", "would remove") } else { ("deleted", "removed") };
    let mut text = format!(
        "Garbage-collection {} {} {}: scanned {} blob(s), {deleted} {} ({}), {removed} {} link(s), {} in the grace window, {} error(s)",
        if dry { "dry run" } else { "run" },
        field(run, "id"),
        field(run, "status"),
        count(run, "blobs_scanned"),
        count(run, "blobs_deleted"),
        output::size(count(run, "bytes_deleted")),
        count(run, "links_removed"),
        count(run, "blobs_in_grace"),
        count(run, "errors"),
    );
    if let Some(error) = run.get("error").and_then(Value::as_str) {
        text.push_str(&format!("\nerror: {error}"));
    }
    text
}

/// `gc …`.
pub async fn gc(client: &Client, format: Format, command: GcCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        GcCommand::Run { dry_run, wait } => {
            let run = client.call(Method::POST, "/api/v1/gc/runs", &[], Some(&json!({ "dry_run": dry_run }))).await?;
            let id = field(&run, "id");
            if !wait {
                let kind = if dry_run { "dry run" } else { "run" };
                let text = format!(
                    "Started garbage-collection {kind} {id} ({}); follow it with `berth gc show {id}`",
                    field(&run, "status")
                );
                return Ok(Outcome::Done { json: run, text });
            }
            let run = wait_for(client, &format!("/api/v1/gc/runs/{}", segment(&id))).await?;
            let summary = gc_summary(&run);
            finished(format, "garbage-collection", run, summary)?
        }
        GcCommand::Ls(args) => {
            let limit = args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
            let items = client.list("/api/v1/gc/runs", &[], limit).await?;
            Outcome::List { items, columns: GC_RUN_COLUMNS }
        }
        GcCommand::Show { run } => {
            let value = client.get(&format!("/api/v1/gc/runs/{}", segment(&run))).await?;
            let text = gc_text(&value);
            Outcome::Done { json: value, text }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_policies_are_checked_locally() {
        assert_eq!(keep_policy("latest-pushed:10"), Ok("latest-pushed:10".to_string()));
        assert_eq!(keep_policy("pulled-within:7d"), Ok("pulled-within:7d".to_string()));
        assert!(keep_policy("pushed-within:7").is_err());
        assert!(keep_policy("forever").is_err());
    }

    #[test]
    fn digests_are_shortened() {
        assert_eq!(short_digest(&format!("sha256:{}", "ab".repeat(32))), "sha256:abababababab");
        assert_eq!(short_digest("sha256:ab"), "sha256:ab");
    }

    #[test]
    fn run_summaries_say_what_happened() {
        let run = json!({"id": "r1", "registry": "team", "status": "succeeded", "dry_run": true, "total": 4,
            "images": 1, "retained": 2, "deleted": 1, "protected": 1, "failed": 0, "error": null});
        assert_eq!(
            cleanup_summary(&run),
            "Cleanup test run r1 of registry team succeeded: 4 artifact(s) in 1 image(s): 2 retained, \
             1 to delete (test run: nothing deleted), 1 protected, 0 failed"
        );
        let gc = json!({"id": "g1", "status": "failed", "dry_run": false, "blobs_scanned": 3, "blobs_deleted": 1,
            "bytes_deleted": 2048, "links_removed": 2, "blobs_in_grace": 0, "errors": 1, "error": "boom"});
        assert_eq!(
            gc_summary(&gc),
            "Garbage-collection run g1 failed: scanned 3 blob(s), deleted 1 (2.0 KiB), removed 2 link(s), \
             0 in the grace window, 1 error(s)\nerror: boom"
        );
        let shown = run_text(&json!({"id": "r1", "rules": [{"id": "c1"}, {"id": "c2"}], "decisions": [], "chunks": 1}));
        assert_eq!(shown, "id:    r1\nrules: c1, c2");
    }
}
