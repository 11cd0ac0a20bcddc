//! `scan`: vulnerability scans of artifacts (run, stop, show, report) and each registry's scan
//! settings (scan on push, prevent pull, CVE allowlists; `_all` holds the common allowlist).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cli::image_digest;
use crate::client::{image_path, segment, CliError, Client};
use crate::commands::Outcome;
use crate::output::{field, Column};

/// `scan …`.
#[derive(Subcommand)]
pub enum ScanCommand {
    /// Scan an artifact (refused while it is being scanned); --wait prints the result.
    Run {
        /// REGISTRY/IMAGE@DIGEST
        #[arg(value_parser = image_digest, value_name = "REGISTRY/IMAGE@DIGEST")]
        artifact: (String, String),
        /// Wait for the scan to end and show it.
        #[arg(long)]
        wait: bool,
    },
    /// Stop an artifact's running scan.
    Stop {
        /// REGISTRY/IMAGE@DIGEST
        #[arg(value_parser = image_digest, value_name = "REGISTRY/IMAGE@DIGEST")]
        artifact: (String, String),
    },
    /// Show an artifact's scan: status, severity, total and fixable counts.
    Show {
        /// REGISTRY/IMAGE@DIGEST
        #[arg(value_parser = image_digest, value_name = "REGISTRY/IMAGE@DIGEST")]
        artifact: (String, String),
    },
    /// List what an artifact's scan found (JSON output: Harbor's report).
    Report {
        /// REGISTRY/IMAGE@DIGEST
        #[arg(value_parser = image_digest, value_name = "REGISTRY/IMAGE@DIGEST")]
        artifact: (String, String),
    },
    /// Show, or change, a registry's scan settings (`_all`: the common allowlist).
    Settings(SettingsArgs),
}

/// `scan settings`: what is given changes; the rest is kept.
#[derive(Args)]
pub struct SettingsArgs {
    /// Registry name, or `_all` for the common allowlist.
    registry: String,
    /// Scan each artifact when it is pushed.
    #[arg(long, value_name = "true|false", value_parser = clap::value_parser!(bool))]
    scan_on_push: Option<bool>,
    /// Refuse pulls of artifacts with a vulnerability at or above this severity
    /// (Negligible, Low, Medium, High, Critical), or `none`.
    #[arg(long, value_name = "SEVERITY|none")]
    prevent_pull: Option<String>,
    /// The registry's own CVE allowlist, ids separated by commas or line breaks; `none` goes
    /// back to the common list.
    #[arg(long, value_name = "IDS|none")]
    allowlist: Option<String>,
    /// When the allowlist stops applying (Unix seconds).
    #[arg(long, value_name = "UNIX_TIME", requires = "allowlist")]
    allowlist_expires_at: Option<i64>,
    /// (`_all` only) scan every artifact: none, hourly, daily, weekly or a cron expression.
    #[arg(long, value_name = "WHEN")]
    schedule: Option<String>,
}

/// Text columns of `scan report`.
const FINDING_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "SEVERITY", cell: |v| field(v, "severity") },
    Column { header: "PACKAGE", cell: |v| field(v, "package") },
    Column { header: "VERSION", cell: |v| field(v, "version") },
    Column { header: "FIXED IN", cell: |v| field(v, "fix_version") },
    Column { header: "ALLOWLISTED", cell: |v| field(v, "allowlisted") },
];

/// Text field order of a scan.
const SCAN_FIELDS: &[&str] = &[
    "status",
    "severity",
    "total",
    "fixable",
    "counts",
    "os",
    "packages",
    "layers_done",
    "layers_total",
    "layers_read",
    "requested_by",
    "started_at",
    "finished_at",
    "error",
    "vulndb",
    "sbom",
];

/// Text field order of scan settings.
const SETTINGS_FIELDS: &[&str] = &["scan_on_push", "prevent_pull", "allowlist", "schedule", "next_scan_at"];
/// What a settings `PUT` carries.
const SETTINGS_BODY: &[&str] = &["scan_on_push", "prevent_pull", "allowlist", "schedule"];

fn scan_path(image: &str, digest: &str) -> String {
    format!("/api/v1/images/{}/artifacts/{}/scan", image_path(image), segment(digest))
}

fn settings_path(registry: &str) -> String {
    format!("/api/v1/registries/{}/scan-settings", segment(registry))
}

/// A scan without its findings (`scan report` lists them).
fn summary(mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.remove("findings");
    }
    value
}

/// The settings to PUT: `current` with what the command line changes.
fn settings_body(current: &Value, a: &SettingsArgs) -> Value {
    let mut body = Map::new();
    for key in SETTINGS_BODY {
        body.insert((*key).to_string(), current.get(*key).cloned().unwrap_or(Value::Null));
    }
    if let Some(when) = &a.schedule {
        body.insert("schedule".into(), json!(when));
    }
    if let Some(on) = a.scan_on_push {
        body.insert("scan_on_push".into(), json!(on));
    }
    if let Some(sev) = &a.prevent_pull {
        body.insert("prevent_pull".into(), if sev == "none" { Value::Null } else { json!(sev) });
    }
    if let Some(ids) = &a.allowlist {
        let list =
            if ids == "none" { Value::Null } else { json!({ "ids": ids, "expires_at": a.allowlist_expires_at }) };
        body.insert("allowlist".into(), list);
    } else if let Some(Value::Object(list)) = current.get("allowlist") {
        // the server shows the ids as a list; it takes them as text
        let ids: Vec<&str> =
            list.get("ids").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        body.insert("allowlist".into(), json!({ "ids": ids.join(","), "expires_at": list.get("expires_at") }));
    }
    if a.registry == "_all" {
        body.remove("scan_on_push");
        body.remove("prevent_pull");
    } else {
        body.remove("schedule");
    }
    Value::Object(body)
}

/// `scan …`.
pub async fn scan(client: &Client, command: ScanCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        ScanCommand::Run { artifact: (image, digest), wait } => {
            let path = scan_path(&image, &digest);
            let mut value = client.call(Method::POST, &path, &[], None).await?;
            while wait && value.get("status").and_then(Value::as_str) == Some("scanning") {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                value = client.get(&path).await?;
            }
            Outcome::Object { value: summary(value), order: SCAN_FIELDS }
        }
        ScanCommand::Stop { artifact: (image, digest) } => {
            let value = client.call(Method::DELETE, &scan_path(&image, &digest), &[], None).await?;
            Outcome::Object { value: summary(value), order: SCAN_FIELDS }
        }
        ScanCommand::Show { artifact: (image, digest) } => {
            Outcome::Object { value: summary(client.get(&scan_path(&image, &digest)).await?), order: SCAN_FIELDS }
        }
        ScanCommand::Report { artifact: (image, digest) } => {
            let value = client.get(&scan_path(&image, &digest)).await?;
            let items = value.get("findings").and_then(Value::as_array).cloned().unwrap_or_default();
            Outcome::List { items, columns: FINDING_COLUMNS }
        }
        ScanCommand::Settings(a) => {
            let path = settings_path(&a.registry);
            let current = client.get(&path).await?;
            let changes =
                a.scan_on_push.is_some() || a.prevent_pull.is_some() || a.allowlist.is_some() || a.schedule.is_some();
            let value = if changes {
                let body = settings_body(&current, &a);
                client.call(Method::PUT, &path, &[], Some(&body)).await?
            } else {
                current
            };
            Outcome::Object { value, order: SETTINGS_FIELDS }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    /// `scan …` alone, to parse its command lines.
    #[derive(Parser)]
    struct Line {
        /// the command
        #[command(subcommand)]
        command: ScanCommand,
    }

    fn settings(args: &[&str], current: Value) -> Value {
        match Line::try_parse_from(std::iter::once("scan").chain(args.iter().copied())).unwrap().command {
            ScanCommand::Settings(a) => settings_body(&current, &a),
            _ => panic!("not settings"),
        }
    }

    #[test]
    fn settings_change_only_what_is_given() {
        let current = json!({"scan_on_push": true, "prevent_pull": "High",
                             "allowlist": {"ids": ["CVE-1-1", "CVE-2-2"], "expires_at": null}});
        let body = settings(&["settings", "team", "--prevent-pull", "none"], current.clone());
        assert_eq!(
            body,
            json!({"scan_on_push": true, "prevent_pull": null,
                                "allowlist": {"ids": "CVE-1-1,CVE-2-2", "expires_at": null}})
        );
        let body = settings(&["settings", "team", "--allowlist", "none"], current.clone());
        assert_eq!(body["allowlist"], Value::Null);
        let body = settings(&["settings", "_all", "--allowlist", "CVE-3-3", "--allowlist-expires-at", "99"], current);
        assert_eq!(body, json!({"allowlist": {"ids": "CVE-3-3", "expires_at": 99}, "schedule": null}));
        let body =
            settings(&["settings", "_all", "--schedule", "daily"], json!({"schedule": "hourly", "allowlist": null}));
        assert_eq!(body, json!({"allowlist": null, "schedule": "daily"}));
        assert!(Line::try_parse_from(["scan", "run", "team/app:v1"]).is_err(), "a digest is needed");
    }
}
