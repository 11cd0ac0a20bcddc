//! Vulnerability severities, in Harbor's scale (the report format and NCR's console use it).

use serde::{Deserialize, Serialize};

/// How bad a vulnerability is; ordered, so the worst of a list is its `max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// no severity assigned yet
    #[default]
    Unknown,
    /// the distribution does not consider it a risk
    Negligible,
    /// low
    Low,
    /// medium
    Medium,
    /// high
    High,
    /// critical
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 6] =
        [Severity::Unknown, Severity::Negligible, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    /// The name in reports and the API (`High`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Negligible => "Negligible",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// Parses a user's input (`high`, `High`, `CRITICAL`).
    pub fn parse(text: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// Maps a data source's word: GHSA (`MODERATE`), Debian urgency (`unimportant`, `low**`), Trivy.
    pub fn from_source(text: &str) -> Option<Severity> {
        let word = text.trim().trim_end_matches('*').to_ascii_lowercase();
        Some(match word.as_str() {
            "unimportant" | "negligible" | "end-of-life" => Severity::Negligible,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" | "important" => Severity::High,
            "critical" => Severity::Critical,
            "unknown" | "not yet assigned" => Severity::Unknown,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Critical > Severity::High && Severity::Negligible > Severity::Unknown);
        assert_eq!(Severity::parse("high"), Some(Severity::High));
        assert_eq!(Severity::parse("nope"), None);
        assert_eq!(Severity::from_source("MODERATE"), Some(Severity::Medium));
        assert_eq!(Severity::from_source("low**"), Some(Severity::Low));
        assert_eq!(Severity::from_source("unimportant"), Some(Severity::Negligible));
    }
}
