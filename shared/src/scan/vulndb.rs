//! Berth's own vulnerability-data snapshot: advisories keyed by `<os> <release>/<source package>`,
//! built by importers (OSV JSON today) and read only by the matcher, so a scan never parses a
//! foreign format and tests can write tiny snapshots by hand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::inventory::Os;
use super::severity::Severity;

/// Why vulnerability data could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum VulnDbError {
    /// A record is not what the format says.
    #[error("invalid vulnerability record {id}: {why}")]
    Invalid {
        /// the record's id, or its position
        id: String,
        /// what is wrong
        why: String,
    },
    /// An imported database as a whole is not what its format says.
    #[error("{0}")]
    Import(String),
}

/// One affected version range of one source package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advisory {
    /// the vulnerability's id (a CVE when the source gives one)
    pub id: String,
    /// the first affected version; `None` = every version before `fixed`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    /// the first fixed version; `None` = not fixed yet
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// the last affected version, when the source gives that instead of a fix
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    /// a package-specific severity overriding the vulnerability's
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// What is known about one vulnerability, whatever package it affects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// its severity
    pub severity: Severity,
    /// a short description
    #[serde(default)]
    pub description: String,
    /// reference URLs
    #[serde(default)]
    pub links: Vec<String>,
}

/// A complete snapshot of vulnerability data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VulnDb {
    /// advisories by `<os> <release>/<source package>` (see [`bucket`])
    pub advisories: BTreeMap<String, Vec<Advisory>>,
    /// details by vulnerability id
    pub details: BTreeMap<String, Details>,
}

/// The advisory bucket of an operating system release, named `<os-release ID> <release>` and
/// keyed as the distributions' advisories are: Debian, Rocky, AlmaLinux and Oracle Linux by major
/// version (`debian 12`, `rocky 9`), Alpine by minor (`alpine 3.19`), Amazon Linux by generation
/// (`amzn 2`, `amzn 2023`; the 2018.03-style versions are `amzn 1`), others as given.
pub fn bucket(os: &Os) -> Option<String> {
    let version = os.version_id.as_str();
    let major = || version.split('.').next().unwrap_or_default().to_string();
    let release = match os.id.as_str() {
        "debian" | "rocky" | "almalinux" | "ol" | "rhel" | "centos" => major(),
        "alpine" => version.split('.').take(2).collect::<Vec<_>>().join("."),
        "amzn" if ["2", "2022", "2023"].contains(&version) => version.to_string(),
        "amzn" if !version.is_empty() => "1".to_string(),
        _ => version.to_string(),
    };
    (!os.id.is_empty() && !release.is_empty()).then(|| format!("{} {release}", os.id))
}

/// The `os-release` ID a vulnerability source's distribution name stands for (OSV's
/// `Rocky Linux`, Trivy's `alma`, `amazon linux`); `None` for one Berth does not match (Oracle
/// Linux's advisories carry a fix per flavour and architecture that Berth does not read yet).
pub fn distribution_id(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "debian" => "debian",
        "ubuntu" => "ubuntu",
        "alpine" => "alpine",
        "rocky" | "rocky linux" => "rocky",
        "alma" | "almalinux" => "almalinux",
        "amazon linux" | "amazon" | "amzn" => "amzn",
        _ => return None,
    })
}

/// The bucket an OSV ecosystem string names (`Debian:12`, `Alpine:v3.19`, `Ubuntu:22.04:LTS`,
/// `Rocky Linux:9`, `AlmaLinux:8`, `PyPI`).
fn osv_bucket(ecosystem: &str) -> Option<String> {
    if ecosystem == "PyPI" {
        return Some(super::report::PYPI_BUCKET.to_string());
    }
    let mut parts = ecosystem.split(':');
    let (name, release) = (parts.next()?, parts.next()?);
    let release = release.trim_start_matches('v');
    let id = distribution_id(name).map_or_else(|| name.to_ascii_lowercase(), str::to_string);
    (!release.is_empty()).then(|| format!("{id} {release}"))
}

impl VulnDb {
    /// The advisories for `source` in `bucket`.
    pub fn advisories(&self, bucket: &str, source: &str) -> &[Advisory] {
        self.advisories.get(&format!("{bucket}/{source}")).map_or(&[], Vec::as_slice)
    }

    /// Adds OSV records (<https://ossf.github.io/osv-schema/>); records for ecosystems without a
    /// release (language packages) are skipped for now.
    pub fn import_osv(&mut self, records: impl IntoIterator<Item = Value>) -> Result<usize, VulnDbError> {
        let mut imported = 0;
        for (n, record) in records.into_iter().enumerate() {
            let osv_id =
                record.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("#{n}"));
            let invalid = |why: &str| VulnDbError::Invalid { id: osv_id.clone(), why: why.to_string() };
            let affected =
                record.get("affected").and_then(Value::as_array).ok_or_else(|| invalid("no `affected` list"))?;
            let id = preferred_id(&record, &osv_id);
            let mut severity = osv_severity(record.get("database_specific"));
            let mut any = false;
            for entry in affected {
                let package = entry.get("package").ok_or_else(|| invalid("an `affected` entry has no package"))?;
                let (Some(ecosystem), Some(name)) =
                    (package.get("ecosystem").and_then(Value::as_str), package.get("name").and_then(Value::as_str))
                else {
                    return Err(invalid("a package lacks `ecosystem` or `name`"));
                };
                let Some(bucket) = osv_bucket(ecosystem) else { continue };
                let package_severity = osv_severity(entry.get("database_specific"))
                    .or_else(|| osv_severity(entry.get("ecosystem_specific")));
                severity = severity.or(package_severity);
                let ranges = entry.get("ranges").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                for range in ranges.iter().filter(|r| r.get("type").and_then(Value::as_str) == Some("ECOSYSTEM")) {
                    let events = range
                        .get("events")
                        .and_then(Value::as_array)
                        .ok_or_else(|| invalid("a range has no events"))?;
                    for (introduced, fixed, last_affected) in intervals(events) {
                        let name = if bucket == super::report::PYPI_BUCKET {
                            super::inventory::python_name(name)
                        } else {
                            name.to_string()
                        };
                        self.advisories.entry(format!("{bucket}/{name}")).or_default().push(Advisory {
                            id: id.clone(),
                            introduced,
                            fixed,
                            last_affected,
                            severity: package_severity,
                        });
                        any = true;
                    }
                }
            }
            if any {
                let links: Vec<String> = record
                    .get("references")
                    .and_then(Value::as_array)
                    .map(|refs| {
                        refs.iter().filter_map(|r| r.get("url").and_then(Value::as_str)).map(str::to_string).collect()
                    })
                    .unwrap_or_default();
                let description = ["summary", "details"]
                    .iter()
                    .find_map(|k| record.get(*k).and_then(Value::as_str))
                    .unwrap_or_default()
                    .chars()
                    .take(1024)
                    .collect();
                let details = self.details.entry(id).or_default();
                details.severity = details.severity.max(severity.unwrap_or_default());
                if details.description.is_empty() {
                    details.description = description;
                }
                for link in links {
                    if !details.links.contains(&link) {
                        details.links.push(link);
                    }
                }
                imported += 1;
            }
        }
        Ok(imported)
    }
}

/// A CVE id when the record is an alias of one (`DSA-…`, `DEBIAN-CVE-…`), else the record's id.
fn preferred_id(record: &Value, id: &str) -> String {
    if id.starts_with("CVE-") {
        return id.to_string();
    }
    ["aliases", "upstream"]
        .iter()
        .filter_map(|k| record.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("CVE-"))
        .unwrap_or(id)
        .to_string()
}

/// A severity from `{"severity": "HIGH"}` (GHSA style) or `{"urgency": "medium"}` (Debian).
fn osv_severity(specific: Option<&Value>) -> Option<Severity> {
    let specific = specific?;
    ["severity", "urgency"]
        .iter()
        .find_map(|k| specific.get(*k).and_then(Value::as_str))
        .and_then(Severity::from_source)
}

/// `[{introduced}, {fixed}, {introduced}, {last_affected} …]` → affected intervals.
fn intervals(events: &[Value]) -> Vec<(Option<String>, Option<String>, Option<String>)> {
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    let mut out = Vec::new();
    let mut open: Option<Option<String>> = None;
    for event in events {
        if let Some(v) = text(event, "introduced") {
            open = Some((v != "0").then_some(v));
        } else if let Some(v) = text(event, "fixed") {
            out.push((open.take().flatten(), Some(v), None));
        } else if let Some(v) = text(event, "last_affected") {
            out.push((open.take().flatten(), None, Some(v)));
        }
    }
    if let Some(introduced) = open {
        out.push((introduced, None, None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn osv_records_become_advisories_keyed_by_release_and_source_package() {
        let mut db = VulnDb::default();
        let n = db
            .import_osv([
                json!({"id": "DSA-5532-1", "aliases": ["CVE-2023-5363"], "summary": "openssl: bad key",
                       "references": [{"type": "ADVISORY", "url": "https://security-tracker.debian.org/tracker/CVE-2023-5363"}],
                       "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                                     "ecosystem_specific": {"urgency": "high"},
                                     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}]}),
                json!({"id": "CVE-2024-0001", "database_specific": {"severity": "CRITICAL"},
                       "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "busybox"},
                                     "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.36.0-r0"}]}]}]}),
                json!({"id": "GHSA-x", "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"}, "ranges": []}]}),
            ])
            .unwrap();
        assert_eq!(n, 2, "the language record is skipped");
        let adv = db.advisories("debian 12", "openssl");
        assert_eq!(adv.len(), 1);
        assert_eq!(adv[0].id, "CVE-2023-5363");
        assert_eq!((adv[0].introduced.as_deref(), adv[0].fixed.as_deref()), (None, Some("3.0.11-1~deb12u2")));
        assert_eq!(db.details["CVE-2023-5363"].severity, Severity::High);
        assert_eq!(db.details["CVE-2023-5363"].links.len(), 1);
        let adv = db.advisories("alpine 3.19", "busybox");
        assert_eq!((adv[0].introduced.as_deref(), adv[0].fixed.as_deref()), (Some("1.36.0-r0"), None));
        assert_eq!(db.details["CVE-2024-0001"].severity, Severity::Critical);
        assert!(db.import_osv([json!({"id": "bad"})]).is_err(), "a record without `affected` is refused");
    }

    #[test]
    fn buckets_follow_each_distribution() {
        let os = |id: &str, v: &str| Os { id: id.into(), version_id: v.into() };
        assert_eq!(bucket(&os("debian", "12")).as_deref(), Some("debian 12"));
        assert_eq!(bucket(&os("debian", "12.4")).as_deref(), Some("debian 12"));
        assert_eq!(bucket(&os("alpine", "3.19.1")).as_deref(), Some("alpine 3.19"));
        assert_eq!(bucket(&os("ubuntu", "22.04")).as_deref(), Some("ubuntu 22.04"));
        assert_eq!(bucket(&os("alpine", "")), None);
    }
}
