//! Matching an inventory against vulnerability data, and what comes of it: the findings, their
//! summary (what artifact listings and the pull gate read) and Harbor's report format
//! (`application/vnd.security.vulnerability.report; version=1.1`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::inventory::{Inventory, Package};
use super::severity::Severity;
use super::version;
use super::vulndb::{bucket, VulnDb};

/// The report media type Harbor's scanner API defines; Berth stores and serves this shape.
pub const REPORT_MEDIA_TYPE: &str = "application/vnd.security.vulnerability.report; version=1.1";

/// One vulnerability in one installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// the vulnerability id (CVE where known)
    pub id: String,
    /// the installed (binary) package
    pub package: String,
    /// its installed version
    pub version: String,
    /// the first fixed version; empty when there is no fix
    pub fix_version: String,
    /// how bad it is
    pub severity: Severity,
}

/// Counts by severity, as listings and the pull gate show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// the worst severity found; `None` when nothing was found
    pub severity: Option<Severity>,
    /// how many findings
    pub total: usize,
    /// how many have a fixed version
    pub fixable: usize,
    /// findings per severity name
    pub counts: BTreeMap<String, usize>,
}

/// The advisory bucket a package is matched in: its OS release's, or its language's (the same
/// on every OS: `pypi`); none for a Python distribution the OS's packages installed.
pub fn package_bucket<'a>(package: &Package, os: Option<&'a str>) -> Option<&'a str> {
    match package.ecosystem {
        version::Ecosystem::Pypi if package.distribution_managed => None,
        version::Ecosystem::Pypi => Some(PYPI_BUCKET),
        _ => os,
    }
}

/// The bucket (and snapshot shard) of Python advisories.
pub const PYPI_BUCKET: &str = "pypi";

/// Every finding of `inventory` in `db`, sorted worst first.
pub fn find(inventory: &Inventory, db: &VulnDb) -> Vec<Finding> {
    let os = inventory.os.as_ref().and_then(bucket);
    let mut found = BTreeSet::new();
    for package in &inventory.packages {
        let Some(bucket) = package_bucket(package, os.as_deref()) else { continue };
        let cmp = |a: &str, b: &str| version::compare(package.ecosystem, a, b);
        let (key, installed) = package.advisory_key();
        for advisory in db.advisories(bucket, &key) {
            let after_start = advisory.introduced.as_deref().is_none_or(|i| cmp(installed, i) != Ordering::Less);
            let before_fix = advisory.fixed.as_deref().is_none_or(|f| cmp(installed, f) == Ordering::Less);
            let up_to_last = advisory.last_affected.as_deref().is_none_or(|l| cmp(installed, l) != Ordering::Greater);
            if after_start && before_fix && up_to_last {
                let severity =
                    advisory.severity.or_else(|| db.details.get(&advisory.id).map(|d| d.severity)).unwrap_or_default();
                found.insert(Finding {
                    id: advisory.id.clone(),
                    package: package.name.clone(),
                    version: package.version.clone(),
                    fix_version: advisory.fixed.clone().unwrap_or_default(),
                    severity,
                });
            }
        }
    }
    worst_first(found)
}

/// Findings without duplicates, worst first (then by id and package): the order of every listing.
pub fn worst_first(findings: impl IntoIterator<Item = Finding>) -> Vec<Finding> {
    let mut sorted: Vec<Finding> = findings.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    sorted.sort_by(|a, b| {
        b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)).then_with(|| a.package.cmp(&b.package))
    });
    sorted
}

/// The summary of `findings`, leaving out allowlisted ids.
pub fn summarise(findings: &[Finding], allowlisted: &dyn Fn(&str) -> bool) -> Summary {
    let mut summary = Summary::default();
    for f in findings.iter().filter(|f| !allowlisted(&f.id)) {
        summary.total += 1;
        summary.fixable += usize::from(!f.fix_version.is_empty());
        *summary.counts.entry(f.severity.as_str().to_string()).or_default() += 1;
        summary.severity = summary.severity.max(Some(f.severity));
    }
    summary
}

/// The findings at or above `threshold` that are not allowlisted, worst first (the pull gate's reasons).
pub fn blocking<'a>(
    findings: &'a [Finding],
    threshold: Severity,
    allowlisted: &dyn Fn(&str) -> bool,
) -> Vec<&'a Finding> {
    findings.iter().filter(|f| f.severity >= threshold && !allowlisted(&f.id)).collect()
}

/// What the report says it is about.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// the repository
    pub repository: &'a str,
    /// the manifest digest
    pub digest: &'a str,
    /// the manifest media type
    pub media_type: &'a str,
}

/// Harbor's v1.1 report JSON for `findings`, with descriptions and links from `db`.
pub fn harbor_report(subject: &Subject<'_>, findings: &[Finding], db: &VulnDb, generated_at: &str) -> Value {
    let worst = findings.iter().map(|f| f.severity).max();
    let vulnerabilities: Vec<Value> = findings
        .iter()
        .map(|f| {
            let details = db.details.get(&f.id);
            json!({
                "id": f.id,
                "package": f.package,
                "version": f.version,
                "fix_version": f.fix_version,
                "severity": f.severity.as_str(),
                "description": details.map_or("", |d| d.description.as_str()),
                "links": details.map_or(&[][..], |d| d.links.as_slice()),
            })
        })
        .collect();
    json!({
        "generated_at": generated_at,
        "artifact": {"repository": subject.repository, "digest": subject.digest, "mime_type": subject.media_type},
        "scanner": {"name": "Berth", "vendor": "Berth", "version": env!("CARGO_PKG_VERSION")},
        "severity": worst.map_or("None", Severity::as_str),
        "vulnerabilities": vulnerabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::inventory::{Os, Package};
    use crate::scan::version::Ecosystem;
    use crate::scan::vulndb::{Advisory, Details};

    fn package(name: &str, source: &str, version: &str) -> Package {
        Package {
            ecosystem: Ecosystem::Dpkg,
            name: name.into(),
            version: version.into(),
            source: source.into(),
            source_version: version.into(),
            module: String::new(),
            distribution_managed: false,
        }
    }

    fn advisory(id: &str, fixed: Option<&str>) -> Advisory {
        Advisory {
            id: id.into(),
            introduced: None,
            fixed: fixed.map(str::to_string),
            last_affected: None,
            severity: None,
        }
    }

    #[test]
    fn findings_use_the_source_package_and_dpkg_ordering() {
        let inventory = Inventory {
            os: Some(Os { id: "debian".into(), version_id: "12".into() }),
            packages: vec![
                package("libssl3", "openssl", "3.0.11-1~deb12u1"),
                package("zlib1g", "zlib", "1:1.2.13.dfsg-1"),
            ],
        };
        let mut db = VulnDb::default();
        db.advisories.insert(
            "debian 12/openssl".into(),
            vec![
                advisory("CVE-A", Some("3.0.11-1~deb12u2")),
                advisory("CVE-OLD", Some("3.0.11-1~deb12u1")),
                advisory("CVE-B", None),
            ],
        );
        db.advisories.insert("debian 11/zlib".into(), vec![advisory("CVE-Z", None)]);
        db.details.insert("CVE-A".into(), Details { severity: Severity::Critical, ..Details::default() });
        db.details.insert("CVE-B".into(), Details { severity: Severity::Low, ..Details::default() });
        let findings = find(&inventory, &db);
        let ids: Vec<_> =
            findings.iter().map(|f| (f.id.as_str(), f.package.as_str(), f.fix_version.as_str())).collect();
        assert_eq!(ids, [("CVE-A", "libssl3", "3.0.11-1~deb12u2"), ("CVE-B", "libssl3", "")]);
        let summary = summarise(&findings, &|_| false);
        assert_eq!((summary.severity, summary.total, summary.fixable), (Some(Severity::Critical), 2, 1));
        let summary = summarise(&findings, &|id| id == "CVE-A");
        assert_eq!((summary.severity, summary.total, summary.fixable), (Some(Severity::Low), 1, 0));
        assert_eq!(blocking(&findings, Severity::High, &|_| false).len(), 1);
        assert!(blocking(&findings, Severity::High, &|id| id == "CVE-A").is_empty());
        let subject = Subject { repository: "r/i", digest: "sha256:00", media_type: "m" };
        let report = harbor_report(&subject, &findings, &db, "2026-12-04T00:00:00Z");
        assert_eq!(report["severity"], "Critical");
        assert_eq!(report["vulnerabilities"][0]["fix_version"], "3.0.11-1~deb12u2");
    }
}
