//! The client commands' command line: `login`, `logout`, `registry`, `image`, `artifact`, `tag`,
//! `user`, `key` and `audit`.

use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand};
use ipnet::IpNet;

use berth::identity::Role;

/// What every client command's `--help` ends with: the exit codes scripts can rely on.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the server refused the request (4xx, e.g. NOT_FOUND, DENIED, CONFLICT) or failed (5xx);
     stderr says `berth: <CODE>: <detail>` (with --output json, the server's error JSON follows)
  2  usage error (bad arguments or options)
  3  the server cannot be reached (connection, DNS, timeout) or not logged in
  4  authentication failed (credentials refused: 401 on any command, 401/403 on login)

Credentials: `berth login` stores {url, access_key, secret_key} in $BERTH_CONFIG or
~/.config/berth/credentials.json (mode 0600); BERTH_URL, BERTH_ACCESS_KEY and BERTH_SECRET_KEY
override the stored values.";

/// The role names the server knows (`project-admin`, `service-viewer`…).
fn role_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(Role::ALL.map(Role::as_str))
}

/// `login`: check credentials against a server and store them.
#[derive(Args)]
pub struct LoginArgs {
    /// Server URL, e.g. https://registry.example.com or http://127.0.0.1:5000 (https:// when no scheme is given).
    pub url: String,
    /// Access key id (default: $BERTH_ACCESS_KEY, else asked on the terminal).
    #[arg(long, value_name = "KEY")]
    pub access_key: Option<String>,
    /// Read the secret key from the first line of standard input (default: $BERTH_SECRET_KEY, else asked without echo).
    #[arg(long)]
    pub secret_key_stdin: bool,
}

/// `registry …`: registries (the first segment of every image name).
#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Create a registry (public unless --private); with --cache, a registry pulling through an image cache.
    Create {
        /// Registry name (lower case letters, digits, `.`, `_`, `-`).
        name: String,
        /// Make it a cache registry of this image cache (`berth cache add`): pulls go through to the
        /// cache's source, pushes are refused.
        #[arg(long, value_name = "CACHE")]
        cache: Option<String>,
        /// Serve only requests from the private networks.
        #[arg(long)]
        private: bool,
        /// A network (CIDR) whose clients count as private; repeat for more.
        #[arg(long = "private-network", value_name = "CIDR")]
        private_networks: Vec<IpNet>,
    },
    /// List registries.
    #[command(alias = "list")]
    Ls(LimitArgs),
    /// Show one registry.
    Show {
        /// Registry name.
        name: String,
    },
    /// Delete a registry (one that still holds images needs --force).
    #[command(alias = "delete")]
    Rm {
        /// Registry name.
        name: String,
        /// Delete the registry's images too.
        #[arg(long)]
        force: bool,
    },
    /// Change a registry's public access or private networks.
    Set(RegistrySetArgs),
}

/// `registry set`: at least one change.
#[derive(Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["public", "private", "private_networks", "clear_private_networks"])))]
pub struct RegistrySetArgs {
    /// Registry name.
    pub name: String,
    /// Serve requests from anywhere.
    #[arg(long, conflicts_with = "private")]
    pub public: bool,
    /// Serve only requests from the private networks.
    #[arg(long)]
    pub private: bool,
    /// Replace the private networks with these (CIDR); repeat for more.
    #[arg(long = "private-network", value_name = "CIDR")]
    pub private_networks: Vec<IpNet>,
    /// Remove every private network.
    #[arg(long, conflicts_with = "private_networks")]
    pub clear_private_networks: bool,
}

/// `--limit N` of a listing.
#[derive(Args)]
pub struct LimitArgs {
    /// Stop after N items (default: all of them, page after page).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// `image …`: images (repositories) of a registry.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// List a registry's images with artifact count, size, last push and stored bytes.
    #[command(alias = "list")]
    Ls {
        /// Registry name.
        registry: String,
        /// Page limit.
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Delete an image with all its artifacts and tags.
    #[command(alias = "delete")]
    Rm {
        /// REGISTRY/IMAGE
        #[arg(value_parser = image_name, value_name = "REGISTRY/IMAGE")]
        image: String,
    },
}

/// `artifact …`: the manifests of an image.
#[derive(Subcommand)]
pub enum ArtifactCommand {
    /// List an image's artifacts.
    #[command(alias = "list")]
    Ls {
        /// REGISTRY/IMAGE
        #[arg(value_parser = image_name, value_name = "REGISTRY/IMAGE")]
        image: String,
        /// Page limit.
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Show one artifact: platforms, tags, referrers.
    Show {
        /// REGISTRY/IMAGE@DIGEST
        #[arg(value_parser = image_digest, value_name = "REGISTRY/IMAGE@DIGEST")]
        artifact: (String, String),
    },
    /// Delete one artifact (and its referrers, e.g. signatures).
    #[command(alias = "delete")]
    Rm {
        /// REGISTRY/IMAGE@DIGEST
        #[arg(value_parser = image_digest, value_name = "REGISTRY/IMAGE@DIGEST")]
        artifact: (String, String),
    },
}

/// `tag …`: an image's tags.
#[derive(Subcommand)]
pub enum TagCommand {
    /// List an image's tags and the digests they point at.
    #[command(alias = "list")]
    Ls {
        /// REGISTRY/IMAGE
        #[arg(value_parser = image_name, value_name = "REGISTRY/IMAGE")]
        image: String,
        /// Only tags containing TEXT.
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// Page limit.
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Point a tag at an artifact already in the image (creates or moves the tag).
    Add {
        /// REGISTRY/IMAGE:TAG
        #[arg(value_parser = image_tag, value_name = "REGISTRY/IMAGE:TAG")]
        tag: (String, String),
        /// The artifact's digest (sha256:…).
        #[arg(value_parser = digest, value_name = "DIGEST")]
        digest: String,
    },
    /// Delete a tag (the artifact stays).
    #[command(alias = "delete")]
    Rm {
        /// REGISTRY/IMAGE:TAG
        #[arg(value_parser = image_tag, value_name = "REGISTRY/IMAGE:TAG")]
        tag: (String, String),
    },
}

/// `user …`: users, their roles and registries.
#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create(UserRoleArgs),
    /// List users.
    #[command(alias = "list")]
    Ls(LimitArgs),
    /// Show one user.
    Show {
        /// User name.
        name: String,
    },
    /// Change a user's role and registries (registries not given: all registries).
    Set(UserRoleArgs),
    /// Delete a user and its access keys.
    #[command(alias = "delete")]
    Rm {
        /// User name.
        name: String,
    },
}

/// A user name with its role and registries.
#[derive(Args)]
pub struct UserRoleArgs {
    /// User name.
    pub name: String,
    /// Role.
    #[arg(long, value_parser = role_parser())]
    pub role: String,
    /// A registry the user may act on; repeat for more (default: every registry).
    #[arg(long = "registry", value_name = "NAME")]
    pub registries: Vec<String>,
}

/// `key …`: access keys of a user.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create an access key; the secret is printed this once.
    Create {
        /// The user the key is for.
        #[arg(long)]
        user: String,
    },
    /// List a user's access keys (never their secrets).
    #[command(alias = "list")]
    Ls {
        /// The user whose keys to list.
        #[arg(long)]
        user: String,
        /// Page limit.
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Revoke an access key.
    #[command(alias = "delete")]
    Rm {
        /// The access key id.
        key: String,
        /// The user owning the key.
        #[arg(long)]
        user: String,
    },
    /// Give an access key a new secret; the secret is printed this once.
    Rotate {
        /// The access key id.
        key: String,
        /// The user owning the key.
        #[arg(long)]
        user: String,
    },
}

/// `audit …`: the audit log.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// List audit entries, oldest first.
    #[command(alias = "list")]
    Ls(LimitArgs),
}

/// Checks a `REGISTRY/IMAGE` name: at least two non-empty path segments.
fn image_name(s: &str) -> Result<String, String> {
    if s.contains(['@', ':']) {
        return Err(format!("{s:?} is REGISTRY/IMAGE without a tag or digest"));
    }
    let segments: Vec<&str> = s.split('/').collect();
    if segments.len() < 2 || segments.iter().any(|p| p.is_empty()) {
        return Err(format!("{s:?} is not REGISTRY/IMAGE (e.g. e2e/app)"));
    }
    Ok(s.to_string())
}

/// Checks a digest: `algorithm:hex`.
fn digest(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((alg, hex)) if !alg.is_empty() && !hex.is_empty() && !s.contains('/') => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not a digest (e.g. sha256:0123…)")),
    }
}

/// Splits `REGISTRY/IMAGE@DIGEST`.
pub fn image_digest(s: &str) -> Result<(String, String), String> {
    let (name, d) = s.split_once('@').ok_or_else(|| format!("{s:?} is not REGISTRY/IMAGE@DIGEST"))?;
    Ok((image_name(name)?, digest(d)?))
}

/// Splits `REGISTRY/IMAGE:TAG` at the last `:` (a tag has no `/`).
fn image_tag(s: &str) -> Result<(String, String), String> {
    let (name, tag) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not REGISTRY/IMAGE:TAG"))?;
    if tag.is_empty() || tag.contains('/') {
        return Err(format!("{s:?} is not REGISTRY/IMAGE:TAG"));
    }
    Ok((image_name(name)?, tag.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn references_are_split() {
        assert_eq!(image_tag("e2e/app/web:v1").unwrap(), ("e2e/app/web".to_string(), "v1".to_string()));
        assert!(image_tag("e2e/app").is_err());
        assert!(image_tag("app:v1").is_err());
        assert!(image_tag("e2e/app:").is_err());
        assert_eq!(image_digest("e2e/app@sha256:ab").unwrap(), ("e2e/app".to_string(), "sha256:ab".to_string()));
        assert!(image_digest("e2e/app@nothex").is_err());
        assert!(image_digest("e2e/app:v1").is_err());
        assert!(image_name("e2e//app").is_err());
        assert!(image_name("e2e/app:v1").is_err());
    }
}
