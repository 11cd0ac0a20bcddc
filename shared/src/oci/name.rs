//! Repository names, tags, references and upload ids, validated against the OCI grammar and
//! the NCR guide's length limits.

use std::fmt;

use super::digest::{Digest, DigestError};

/// The longest repository reference (registry host, `/`, name) the NCR guide allows.
pub const MAX_REPOSITORY_LEN: usize = 255;
/// The longest tag the OCI spec and the NCR guide allow.
pub const MAX_TAG_LEN: usize = 128;

/// Why a name, tag or reference was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The repository name breaks the OCI grammar.
    #[error("repository name {0:?} is invalid: path components are lowercase letters and digits, separated by '.', '_', '__' or '-'")]
    InvalidRepository(String),
    /// The repository name is too long once the registry host is prefixed.
    #[error("repository name is {len} characters including the registry address; the limit is {MAX_REPOSITORY_LEN}")]
    RepositoryTooLong {
        /// length including host and separator
        len: usize,
    },
    /// The tag breaks the grammar or the length limit.
    #[error("tag {0:?} is invalid: up to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'")]
    InvalidTag(String),
    /// The reference is neither a tag nor a digest.
    #[error("reference is neither a valid tag nor a valid digest: {0}")]
    InvalidReference(DigestError),
    /// The upload id is not one Berth issued.
    #[error("upload id {0:?} is malformed")]
    InvalidUploadId(String),
}

/// A validated repository name such as `team/app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Validates `name` against the OCI grammar; `host` (the registry address clients use) counts
    /// toward the 255-character limit when known.
    pub fn parse(name: &str, host: Option<&str>) -> Result<RepoName, NameError> {
        if !name.split('/').all(valid_path_component) {
            return Err(NameError::InvalidRepository(truncate(name)));
        }
        let len = host.map_or(0, |h| h.len() + 1) + name.len();
        if len > MAX_REPOSITORY_LEN {
            return Err(NameError::RepositoryTooLong { len });
        }
        Ok(RepoName(name.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run: '.', '_', '__' or one or more '-'
        let start = i;
        let sep = b[i];
        while i < b.len() && !is_alnum(b[i]) {
            if b[i] != sep {
                return false;
            }
            i += 1;
        }
        let run = i - start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// A validated tag such as `v1.2.3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    pub fn parse(s: &str) -> Result<Tag, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::InvalidTag(truncate(s)))
        }
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A mutable name.
    Tag(Tag),
    /// An immutable content address.
    Digest(Digest),
}

impl Reference {
    /// A reference containing `:` is a digest; anything else must be a tag.
    pub fn parse(s: &str) -> Result<Reference, NameError> {
        if s.contains(':') {
            s.parse().map(Reference::Digest).map_err(NameError::InvalidReference)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// The id of an upload session: a UUID Berth issued.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn generate() -> UploadId {
        UploadId(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts only the UUID form Berth hands out, so ids are safe as file and key names.
    pub fn parse(s: &str) -> Result<UploadId, NameError> {
        match uuid::Uuid::parse_str(s) {
            Ok(u) if u.hyphenated().to_string() == s => Ok(UploadId(s.to_string())),
            _ => Err(NameError::InvalidUploadId(truncate(s))),
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The cosign tag-schema accessory tag of `subject` with `suffix` (`sig`, `att`, `sbom`):
/// `sha256-<hex>.sig`; the inverse of [`accessory_subject`].
pub fn accessory_tag(subject: &super::Digest, suffix: &str) -> Option<Tag> {
    Tag::parse(&format!("{}-{}.{suffix}", subject.algorithm().as_str(), subject.hex())).ok()
}

/// The subject a cosign tag-schema accessory tag names (`sha256-<hex>`, `.sig`, `.att`,
/// `.sbom`): such tags belong to their subject (signing, cleanup and replication follow it).
pub fn accessory_subject(tag: &str) -> Option<super::Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let hex = match rest.split_once('.') {
        None => rest,
        Some((hex, "sig" | "att" | "sbom")) => hex,
        Some(_) => return None,
    };
    format!("sha256:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_grammar() {
        for ok in ["a", "library/ubuntu", "a.b_c__d---e/f0", "team-1/app.v2/x"] {
            assert!(RepoName::parse(ok, None).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a/.b", "a b", "a/../b", "a.-b"] {
            assert!(RepoName::parse(bad, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repository_length_counts_the_host() {
        let name = "a".repeat(240);
        assert!(RepoName::parse(&name, Some("127.0.0.1:5000")).is_ok());
        assert_eq!(
            RepoName::parse(&name, Some("registry.example.com:5000")),
            Err(NameError::RepositoryTooLong { len: 266 })
        );
    }

    #[test]
    fn tag_grammar_and_limit() {
        assert!(Tag::parse("v1.0_rc-1").is_ok());
        assert!(Tag::parse("_x").is_ok());
        assert!(Tag::parse(&"a".repeat(128)).is_ok());
        assert!(Tag::parse(&"a".repeat(129)).is_err());
        for bad in ["", ".a", "-a", "a/b", "a:b", "a+b"] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reference_is_tag_or_digest() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        assert!(matches!(Reference::parse("md5:abc"), Err(NameError::InvalidReference(_))));
    }

    #[test]
    fn upload_ids_are_uuids_only() {
        let id = UploadId::generate();
        assert_eq!(UploadId::parse(id.as_str()), Ok(id));
        assert!(UploadId::parse("../../etc/passwd").is_err());
        assert!(UploadId::parse("not-a-uuid").is_err());
    }
}
