//! The importer of Trivy's vulnerability database (schema 2), the OCI artifact
//! `ghcr.io/aquasecurity/trivy-db:2` an operator mirrors into Berth: its one layer
//! ([`TRIVY_LAYER`]) is a gzip tar of `metadata.json` and `trivy.db`, a BoltDB file whose
//! top-level buckets are `<os> <release>` (each holding a bucket per source package whose keys
//! are vulnerability ids and values advisories), `vulnerability` (details by id) and
//! `data-source` (which vendor each OS bucket comes from).
//!
//! The database is unpacked to a temporary file (it is hundreds of MB: never in memory) and
//! converted one OS release at a time into a [`VulnDb`] shard of Berth's snapshot.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::bolt::{Bolt, BoltError, Bucket, Entry};
use super::severity::Severity;
use super::vulndb::{Advisory, Details, VulnDb, VulnDbError};
use super::ScanError;

/// The layer media type of Trivy's database artifact.
pub const TRIVY_LAYER: &str = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip";

/// The largest `trivy.db` unpacked (today's is about 1 GB; the job worker's disk bounds it).
pub const MAX_DB_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// The most advisories one OS release may hold (Debian's has about 100,000): a file built to
/// multiply them fails instead of exhausting memory.
pub const MAX_ADVISORIES_PER_RELEASE: usize = 2_000_000;

/// The schema version this importer reads (`metadata.json`'s `Version`).
const SCHEMA_VERSION: u64 = 2;

/// Why a Trivy database could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum TrivyError {
    /// The archive is not what Trivy publishes.
    #[error("the Trivy database archive {0}")]
    Archive(String),
    /// The BoltDB file is damaged.
    #[error(transparent)]
    Bolt(#[from] BoltError),
    /// Unpacking failed for a reason that is not the data's (a full or read-only scratch
    /// disk, a storage stream that broke), so the import is tried again rather than remembered
    /// as bad data.
    #[error("unpacking the Trivy database: {0}")]
    Scratch(String),
}

impl From<TrivyError> for VulnDbError {
    fn from(e: TrivyError) -> VulnDbError {
        VulnDbError::Import(e.to_string())
    }
}

impl From<TrivyError> for ScanError {
    fn from(e: TrivyError) -> ScanError {
        match e {
            // reading our own unpacked copy failed: the disk's fault, not the data's
            TrivyError::Scratch(_) | TrivyError::Bolt(BoltError::Io(_)) => ScanError::Scratch(e.to_string()),
            other => ScanError::Data(other.into()),
        }
    }
}

/// A database unpacked into a temporary directory, removed when dropped.
pub struct Unpacked {
    dir: PathBuf,
    /// the `trivy.db` file
    pub db: PathBuf,
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove an unpacked Trivy database");
        }
    }
}

/// Unpacks the layer (a gzip tar stream) into a new directory under `parent`, checking that its
/// `metadata.json` names schema version 2.
pub fn unpack(layer: impl Read, parent: &Path) -> Result<Unpacked, TrivyError> {
    super::sweep_stale(parent, "berth-trivy-");
    let dir = parent.join(format!("berth-trivy-{}", uuid::Uuid::new_v4().simple()));
    let scratch = |e: std::io::Error| TrivyError::Scratch(format!("{}: {e}", parent.display()));
    std::fs::create_dir_all(&dir).map_err(scratch)?;
    let unpacked = Unpacked { db: dir.join("trivy.db"), dir };
    // malformed (or truncated) gzip and tar are the data's fault; anything else (a storage
    // stream that broke) is tried again
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput | std::io::ErrorKind::UnexpectedEof => {
            TrivyError::Archive(format!("cannot be read: {e}"))
        }
        _ => TrivyError::Scratch(format!("reading the layer: {e}")),
    };
    // the whole archive is bounded, not just trivy.db: a bomb of other entries is cut short
    let inflated = flate2::read::GzDecoder::new(layer).take(MAX_DB_BYTES + (64 << 20));
    let mut archive = tar::Archive::new(inflated);
    let (mut found_db, mut version) = (false, None);
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.into_owned();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        match name.as_str() {
            // GNU tar writes a database with unwritten pages as a sparse entry
            "trivy.db"
                if (entry.header().entry_type().is_file() || entry.header().entry_type().is_gnu_sparse())
                    && !found_db =>
            {
                let mut file = std::fs::File::create(&unpacked.db).map_err(scratch)?;
                let mut buf = vec![0u8; 256 * 1024];
                let mut copied = 0u64;
                loop {
                    // a read error is the archive's; a write error is the scratch disk's
                    let n = entry.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    copied += n as u64;
                    if copied > MAX_DB_BYTES {
                        return Err(TrivyError::Archive(format!("holds a trivy.db larger than {MAX_DB_BYTES} bytes")));
                    }
                    std::io::Write::write_all(&mut file, &buf[..n]).map_err(scratch)?;
                }
                file.sync_all().map_err(scratch)?;
                found_db = true;
            }
            "metadata.json" => {
                let mut text = Vec::new();
                (&mut entry).take(64 * 1024).read_to_end(&mut text).map_err(io)?;
                let meta: Value = serde_json::from_slice(&text)
                    .map_err(|e| TrivyError::Archive(format!("has an unreadable metadata.json: {e}")))?;
                version = meta.get("Version").and_then(Value::as_u64);
            }
            _ => {}
        }
    }
    match (found_db, version) {
        (false, _) => Err(TrivyError::Archive("has no trivy.db".into())),
        (_, None) => Err(TrivyError::Archive("has no metadata.json with a Version".into())),
        (_, Some(v)) if v != SCHEMA_VERSION => {
            Err(TrivyError::Archive(format!("is schema version {v}; Berth reads version {SCHEMA_VERSION}")))
        }
        _ => Ok(unpacked),
    }
}

/// One advisory as Trivy stores it (`trivy-db/pkg/types.Advisory`).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TrivyAdvisory {
    fixed_version: String,
    affected_version: String,
    status: u8,
    severity: u8,
    /// language advisories: ranges such as `>=2.0.0, <2.31.0`
    vulnerable_versions: Vec<String>,
}

/// A vulnerability's details as Trivy stores them (`trivy-db/pkg/types.Vulnerability`).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct TrivyVulnerability {
    title: String,
    description: String,
    severity: String,
    vendor_severity: std::collections::BTreeMap<String, u8>,
    references: Vec<String>,
}

/// Trivy's `Status` for "this release is not affected".
const NOT_AFFECTED: u8 = 1;

/// Trivy's severity numbers: 0 unknown, 1 low, 2 medium, 3 high, 4 critical.
fn severity_of(n: u8) -> Option<Severity> {
    Some(match n {
        1 => Severity::Low,
        2 => Severity::Medium,
        3 => Severity::High,
        4 => Severity::Critical,
        _ => return None,
    })
}

/// The Berth bucket of a top-level Trivy bucket that is an OS release Berth can match
/// (`debian 12`, `alpine 3.19`, `rocky 9`, `alma 8` → `almalinux 8`, `amazon linux 2` →
/// `amzn 2`; Python's `pip::…` → `pypi`).
fn release_bucket(name: &str) -> Option<String> {
    // `pip::GitHub Security Advisory pip` and any other source of Python advisories
    if name.starts_with("pip::") {
        return Some(super::report::PYPI_BUCKET.to_string());
    }
    let (os, release) = name.rsplit_once(' ')?;
    let id = super::vulndb::distribution_id(os)?;
    release.starts_with(|c: char| c.is_ascii_digit()).then(|| format!("{id} {release}"))
}

/// One range of a language advisory (`>=2.0.0, <2.31.0`, `<= 1.4`, `==1.2.3`) as an interval.
/// A strict lower bound (`>1.0`) is kept as inclusive, so the bound itself is reported too.
fn interval(range: &str) -> Advisory {
    let mut advisory =
        Advisory { id: String::new(), introduced: None, fixed: None, last_affected: None, severity: None };
    for part in range.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let op_len = part.bytes().take_while(|b| matches!(b, b'<' | b'>' | b'=' | b'!' | b'~')).count();
        let (op, version) = (&part[..op_len], part[op_len..].trim().to_string());
        match op {
            ">=" | ">" => advisory.introduced = Some(version),
            "<" => advisory.fixed = Some(version),
            "<=" => advisory.last_affected = Some(version),
            "==" | "=" | "" => {
                advisory.introduced = Some(version.clone());
                advisory.last_affected = Some(version);
            }
            _ => {}
        }
    }
    advisory
}

/// Converts the database into one shard per OS release, handing each to `shard` as it is done
/// (so only one release's advisories are in memory at a time). Returns how many advisories.
pub fn import(db: &Path, shard: &mut dyn FnMut(String, VulnDb) -> Result<(), ScanError>) -> Result<usize, ScanError> {
    let bolt = Bolt::open(db).map_err(TrivyError::from)?;
    let root = bolt.root();
    // Berth's bucket → Trivy's buckets (several sources of Python advisories make one shard)
    let mut releases: std::collections::BTreeMap<String, Vec<(String, Bucket)>> = Default::default();
    bolt.for_each(&root, &mut |name, entry| -> Result<(), TrivyError> {
        if let (Ok(name), Entry::Bucket(bucket)) = (std::str::from_utf8(name), entry) {
            if let Some(release) = release_bucket(name) {
                releases.entry(release).or_default().push((name.to_string(), bucket));
            }
        }
        Ok(())
    })?;
    let bolt_error = TrivyError::from;
    let vulnerabilities = bolt.bucket(&root, b"vulnerability").map_err(bolt_error)?;
    let sources = bolt.bucket(&root, b"data-source").map_err(bolt_error)?;
    let mut total = 0;
    for (release_name, buckets) in releases {
        let mut db = VulnDb::default();
        for (name, bucket) in buckets {
            // the vendor whose severity rates this bucket's advisories (`debian`, `rocky`, `ghsa`)
            let vendor = match &sources {
                Some(s) => bolt
                    .get(s, name.as_bytes())
                    .map_err(bolt_error)?
                    .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
                    .and_then(|v| v.get("ID").and_then(Value::as_str).map(str::to_string)),
                None => None,
            }
            .unwrap_or_else(|| name.split(' ').next().unwrap_or_default().to_string());
            let part = release(&bolt, &name, &release_name, &bucket, vulnerabilities.as_ref(), &vendor)?;
            for (key, advisories) in part.advisories {
                db.advisories.entry(key).or_default().extend(advisories);
            }
            for (id, details) in part.details {
                db.details.entry(id).or_insert(details);
            }
        }
        total += db.advisories.values().map(Vec::len).sum::<usize>();
        shard(release_name, db)?;
    }
    Ok(total)
}

/// One OS release's advisories and the details of the vulnerabilities they name.
fn release(
    bolt: &Bolt,
    name: &str,
    release_name: &str,
    bucket: &Bucket,
    vulnerabilities: Option<&Bucket>,
    vendor: &str,
) -> Result<VulnDb, ScanError> {
    // a damaged bucket names itself; a failed read of the unpacked file is retried
    let invalid = |e: TrivyError| match e {
        TrivyError::Bolt(BoltError::Io(_)) | TrivyError::Scratch(_) => ScanError::from(e),
        other => VulnDbError::Invalid { id: format!("Trivy bucket {name:?}"), why: other.to_string() }.into(),
    };
    let mut packages = Vec::new();
    bolt.for_each(bucket, &mut |package, entry| -> Result<(), TrivyError> {
        if let (Ok(package), Entry::Bucket(b)) = (std::str::from_utf8(package), entry) {
            // Python projects are matched by their normalised name (`PyYAML` → `pyyaml`)
            let package = if release_name == super::report::PYPI_BUCKET {
                super::inventory::python_name(package)
            } else {
                package.to_string()
            };
            packages.push((package, b));
            if packages.len() > MAX_ADVISORIES_PER_RELEASE {
                return Err(TrivyError::Archive(format!(
                    "has more than {MAX_ADVISORIES_PER_RELEASE} packages in {name}"
                )));
            }
        }
        Ok(())
    })
    .map_err(invalid)?;
    let mut db = VulnDb::default();
    let mut count = 0usize;
    for (package, advisories) in packages {
        let mut found = Vec::new();
        bolt.for_each(&advisories, &mut |id, entry| -> Result<(), TrivyError> {
            let (Ok(id), Entry::Value(value)) = (std::str::from_utf8(id), entry) else { return Ok(()) };
            let advisory: TrivyAdvisory = serde_json::from_slice(value)
                .map_err(|e| TrivyError::Archive(format!("has an unreadable advisory {package}/{id}: {e}")))?;
            count += 1;
            if count > MAX_ADVISORIES_PER_RELEASE {
                return Err(TrivyError::Archive(format!(
                    "has more than {MAX_ADVISORIES_PER_RELEASE} advisories in {name}"
                )));
            }
            if advisory.status != NOT_AFFECTED && !advisory.vulnerable_versions.is_empty() {
                // a language advisory: one affected interval per range (a range without an upper
                // bound is open: the patched versions belong to the other ranges)
                for range in &advisory.vulnerable_versions {
                    found.push(Advisory {
                        id: id.to_string(),
                        severity: severity_of(advisory.severity),
                        ..interval(range)
                    });
                }
            } else if advisory.status != NOT_AFFECTED {
                let text = |s: String| (!s.is_empty()).then_some(s);
                found.push(Advisory {
                    id: id.to_string(),
                    introduced: text(advisory.affected_version),
                    fixed: text(advisory.fixed_version),
                    last_affected: None,
                    severity: severity_of(advisory.severity),
                });
            }
            Ok(())
        })
        .map_err(invalid)?;
        if !found.is_empty() {
            // `zope.interface` and `zope-interface` are one Python project
            db.advisories.entry(format!("{release_name}/{package}")).or_default().extend(found);
        }
    }
    let ids: std::collections::BTreeSet<String> = db.advisories.values().flatten().map(|a| a.id.clone()).collect();
    for id in ids {
        let stored = match vulnerabilities {
            Some(v) => bolt.get(v, id.as_bytes()).map_err(|e| invalid(e.into()))?,
            None => None,
        };
        let vulnerability: TrivyVulnerability = stored
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| invalid(TrivyError::Archive(format!("has unreadable details of {id}: {e}"))))?
            .unwrap_or_default();
        let severity = vulnerability
            .vendor_severity
            .get(vendor)
            .copied()
            .and_then(severity_of)
            .or_else(|| Severity::from_source(&vulnerability.severity))
            .unwrap_or_default();
        let description = if vulnerability.title.is_empty() { vulnerability.description } else { vulnerability.title };
        db.details.insert(
            id,
            Details {
                severity,
                description: description.chars().take(1024).collect(),
                links: vulnerability.references.into_iter().take(16).collect(),
            },
        );
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_release_buckets_of_inventoried_distributions_are_imported() {
        let bucket = |name: &str| release_bucket(name);
        assert_eq!(bucket("debian 12").as_deref(), Some("debian 12"));
        assert_eq!(bucket("alpine 3.19").as_deref(), Some("alpine 3.19"));
        assert_eq!(bucket("ubuntu 22.04").as_deref(), Some("ubuntu 22.04"));
        assert_eq!(bucket("rocky 9").as_deref(), Some("rocky 9"));
        assert_eq!(bucket("alma 8").as_deref(), Some("almalinux 8"));
        assert_eq!(bucket("amazon linux 2").as_deref(), Some("amzn 2"));
        assert_eq!(bucket("amazon linux 2023").as_deref(), Some("amzn 2023"));
        assert_eq!(bucket("Oracle Linux 8"), None, "Oracle's fixes are per flavour and architecture");
        assert_eq!(bucket("vulnerability"), None);
        assert_eq!(bucket("Red Hat Enterprise Linux 8"), None, "Red Hat advises by CPE, not by release");
        assert_eq!(bucket("npm::GitHub Security Advisory npm"), None, "only Python among the languages");
        assert_eq!(bucket("debian"), None);
        assert_eq!(bucket("debian sid"), None);
        assert_eq!(bucket("pip::GitHub Security Advisory pip").as_deref(), Some("pypi"));
    }

    #[test]
    fn language_ranges_become_intervals() {
        let a = interval(">= 2.0.0, < 2.31.0");
        assert_eq!(
            (a.introduced.as_deref(), a.fixed.as_deref(), a.last_affected),
            (Some("2.0.0"), Some("2.31.0"), None)
        );
        let a = interval("<=1.4");
        assert_eq!((a.introduced, a.fixed, a.last_affected.as_deref()), (None, None, Some("1.4")));
        let a = interval("==1.2.3");
        assert_eq!((a.introduced.as_deref(), a.last_affected.as_deref()), (Some("1.2.3"), Some("1.2.3")));
        // an open range stays open: the patched versions are the other ranges' fixes
        let a = interval(">=3.0");
        assert_eq!((a.introduced.as_deref(), a.fixed.as_deref()), (Some("3.0"), None));
    }
}
