//! The pull gate's data, kept on the manifest item (`ManifestRecord::scan_gate`) so a gated
//! manifest `GET` judges the artifact from the record it read anyway: the findings of the last
//! succeeded scan that any threshold could block (Negligible and worse), worst first, as compact
//! JSON `[[id, severity, package, version], …]`. An artifact with more than [`MAX_ENTRIES`] such
//! findings stores [`OVERFLOW`] instead, and the gate reads its scan record (cached) as before.

use super::report::Finding;
use super::severity::Severity;

/// The most findings kept on a manifest item (about 16 KiB: a small part of an item's 400 KB).
pub const MAX_ENTRIES: usize = 256;

/// The most bytes kept on a manifest item.
pub const MAX_BYTES: usize = 16 * 1024;

/// Stored when the findings do not fit: read the scan record.
pub const OVERFLOW: &str = "*";

/// What a manifest's `scan_gate` says.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// every finding that a threshold could block
    Findings(Vec<Finding>),
    /// too many to keep on the item: the scan record has them
    Overflow,
}

/// The `scan_gate` of a scan that found `findings` (sorted worst first).
pub fn encode(findings: &[Finding]) -> String {
    let kept: Vec<(&str, &str, &str, &str)> = findings
        .iter()
        .filter(|f| f.severity >= Severity::Negligible)
        .map(|f| (f.id.as_str(), f.severity.as_str(), f.package.as_str(), f.version.as_str()))
        .collect();
    if kept.len() > MAX_ENTRIES {
        return OVERFLOW.to_string();
    }
    // long versions from an image's own package database must not outgrow the item either
    match serde_json::to_string(&kept) {
        Ok(text) if text.len() <= MAX_BYTES => text,
        _ => OVERFLOW.to_string(),
    }
}

/// Reads a stored `scan_gate`; `None` when it does not parse (the gate then reads the record).
pub fn decode(text: &str) -> Option<Gate> {
    if text == OVERFLOW {
        return Some(Gate::Overflow);
    }
    let entries: Vec<(String, String, String, String)> = serde_json::from_str(text).ok()?;
    let findings = entries
        .into_iter()
        .map(|(id, severity, package, version)| {
            Some(Finding { id, package, version, fix_version: String::new(), severity: Severity::parse(&severity)? })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Gate::Findings(findings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: Severity) -> Finding {
        Finding { id: id.into(), package: "zlib1g".into(), version: "1:1.2".into(), fix_version: "9".into(), severity }
    }

    #[test]
    fn findings_round_trip_and_too_many_overflow() {
        let findings = vec![finding("CVE-1", Severity::Critical), finding("CVE-2", Severity::Unknown)];
        let text = encode(&findings);
        assert_eq!(text, r#"[["CVE-1","Critical","zlib1g","1:1.2"]]"#, "unknown severities block nothing");
        let Some(Gate::Findings(back)) = decode(&text) else { panic!("{text}") };
        assert_eq!(back, vec![Finding { fix_version: String::new(), ..findings[0].clone() }]);
        assert_eq!(decode(&encode(&[])), Some(Gate::Findings(vec![])));
        let many: Vec<Finding> = (0..=MAX_ENTRIES).map(|i| finding(&format!("CVE-{i}"), Severity::Low)).collect();
        assert_eq!(encode(&many), OVERFLOW);
        let long = Finding { version: "9".repeat(MAX_BYTES), ..finding("CVE-1", Severity::High) };
        assert_eq!(encode(&[long]), OVERFLOW, "bytes are capped too");
        assert_eq!(decode(OVERFLOW), Some(Gate::Overflow));
        assert_eq!(decode("[[\"CVE-1\",\"Dire\",\"a\",\"b\"]]"), None);
        assert_eq!(decode("{"), None);
    }
}
