//! `trust`: a registry's image-trust mode (what a pull-only principal's manifest GET requires)
//! and the public keys its signatures are verified against.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{segment, CliError, Client};
use crate::commands::Outcome;
use crate::output::{field, Column};

/// `trust …`.
#[derive(Subcommand)]
pub enum TrustCommand {
    /// Set what pulling an image requires: off, any-signature or trusted-keys.
    Set {
        /// Registry name.
        registry: String,
        /// off | any-signature | trusted-keys
        #[arg(value_name = "MODE")]
        mode: String,
    },
    /// Show a registry's trust mode and keys.
    Show {
        /// Registry name.
        registry: String,
    },
    /// The public keys a registry trusts.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// `trust key …`.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Trust a public key (a PEM file such as cosign.pub; `-` reads stdin).
    Add {
        /// Registry name.
        registry: String,
        /// The PEM file.
        #[arg(value_name = "FILE")]
        file: String,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// List the keys a registry trusts.
    Ls {
        /// Registry name.
        registry: String,
    },
    /// Stop trusting a key.
    Rm {
        /// Registry name.
        registry: String,
        /// The key id (sha256:…), as `trust key ls` shows it.
        id: String,
    },
}

/// Text columns of `trust key ls`.
const KEY_COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |v| field(v, "id") },
    Column { header: "ALGORITHM", cell: |v| field(v, "algorithm") },
    Column { header: "NAME", cell: |v| field(v, "name") },
    Column { header: "ADDED", cell: |v| field(v, "added_at") },
    Column { header: "BY", cell: |v| field(v, "added_by") },
];
/// Text field order of trust settings.
const TRUST_FIELDS: &[&str] = &["registry", "mode", "keys"];
/// Text field order of one key.
const KEY_FIELDS: &[&str] = &["id", "algorithm", "name", "added_at", "added_by", "pem"];

fn trust_path(registry: &str) -> String {
    format!("/api/v1/registries/{}/trust", segment(registry))
}

/// Reads a key file (or stdin for `-`).
fn read_pem(file: &str) -> Result<String, CliError> {
    let read = if file == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(file) };
    read.map_err(|e| CliError::Local(format!("{file}: {e}")))
}

/// `trust …`.
pub async fn trust(client: &Client, command: TrustCommand) -> Result<Outcome, CliError> {
    Ok(match command {
        TrustCommand::Set { registry, mode } => {
            let body = json!({ "mode": mode });
            let value = client.call(Method::PUT, &trust_path(&registry), &[], Some(&body)).await?;
            Outcome::Object { value: brief(value), order: TRUST_FIELDS }
        }
        TrustCommand::Show { registry } => {
            Outcome::Object { value: brief(client.get(&trust_path(&registry)).await?), order: TRUST_FIELDS }
        }
        TrustCommand::Key(KeyCommand::Add { registry, file, name }) => {
            let body = json!({ "pem": read_pem(&file)?, "name": name });
            let path = format!("{}/keys", trust_path(&registry));
            let value = client.call(Method::POST, &path, &[], Some(&body)).await?;
            Outcome::Object { value, order: KEY_FIELDS }
        }
        TrustCommand::Key(KeyCommand::Ls { registry }) => {
            let items = client.list(&format!("{}/keys", trust_path(&registry)), &[], None).await?;
            Outcome::List { items, columns: KEY_COLUMNS }
        }
        TrustCommand::Key(KeyCommand::Rm { registry, id }) => {
            let path = format!("{}/keys/{}", trust_path(&registry), segment(&id));
            client.call(Method::DELETE, &path, &[], None).await?;
            Outcome::Done { json: json!({ "deleted": id }), text: format!("Stopped trusting key {id}") }
        }
    })
}

/// Trust settings with each key shown by id (the PEMs are for `trust key ls --output json`).
fn brief(mut value: Value) -> Value {
    if let Some(keys) = value.get_mut("keys").and_then(Value::as_array_mut) {
        for key in keys.iter_mut() {
            *key = key.get("id").cloned().unwrap_or(Value::Null);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    /// `trust …` alone, to parse its command lines.
    #[derive(Parser)]
    struct Line {
        /// the command
        #[command(subcommand)]
        command: TrustCommand,
    }

    #[test]
    fn command_lines_parse() {
        assert!(matches!(
            Line::try_parse_from(["trust", "set", "team", "trusted-keys"]).unwrap().command,
            TrustCommand::Set { .. }
        ));
        assert!(matches!(
            Line::try_parse_from(["trust", "key", "add", "team", "cosign.pub", "--name", "ci"]).unwrap().command,
            TrustCommand::Key(KeyCommand::Add { name: Some(_), .. })
        ));
        assert!(Line::try_parse_from(["trust", "key", "rm", "team"]).is_err(), "an id is needed");
        let shown = brief(json!({"mode": "off", "keys": [{"id": "sha256:ab", "pem": "x"}]}));
        assert_eq!(shown["keys"], json!(["sha256:ab"]));
    }
}
