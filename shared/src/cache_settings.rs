//! Image-cache tunables (source ports, freshness, budgets, mirror hosts), read from the
//! environment. Kept apart from [`crate::cache`] so the application's settings need not import
//! the feature (which uses the application: a module cycle).

use std::time::Duration;

use crate::config::{parsed, var, ConfigError};

/// Image-cache tunables, from the environment.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// the ports a source URL may use (`BERTH_CACHE_SOURCE_PORTS`; 80 and 443 as NCR allows);
    /// `None` allows any
    pub source_ports: Option<Vec<u16>>,
    /// how long a tag checked at its source is served without asking again (per process)
    pub check_interval: Duration,
    /// the time one caching (an image or a blob) may take before it is given up, as the guide's 200 s
    pub budget: Duration,
    /// how long a caching's claim on a blob or image holds without being renewed, so a crashed
    /// holder stops blocking others after this
    pub lease: Duration,
    /// how long a pull waits for a blob being cached elsewhere (the job worker on AWS) before
    /// it is answered 503 with Retry-After
    pub wait: Duration,
    /// the timeout of one request to a source
    pub request_timeout: Duration,
    /// host name (port ignored) → cache registry: requests on that host need no registry prefix
    pub mirror_hosts: Vec<(String, String)>,
    /// the ECR API endpoint for `GetAuthorizationToken` (tests point it at moto); `None` = AWS
    pub ecr_endpoint: Option<String>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            source_ports: Some(vec![80, 443]),
            check_interval: Duration::from_secs(30),
            budget: Duration::from_secs(200),
            lease: Duration::from_secs(30),
            wait: Duration::from_secs(20),
            request_timeout: Duration::from_secs(60),
            mirror_hosts: Vec::new(),
            ecr_endpoint: None,
        }
    }
}

impl CacheSettings {
    /// These settings with `BERTH_CACHE_SOURCE_PORTS`, `BERTH_CACHE_CHECK_SECS`,
    /// `BERTH_CACHE_BUDGET_SECS`, `BERTH_CACHE_LEASE_SECS`, `BERTH_CACHE_WAIT_SECS`,
    /// `BERTH_CACHE_TIMEOUT_SECS`, `BERTH_MIRROR_HOSTS` and `BERTH_CACHE_ECR_ENDPOINT` applied.
    pub fn with_env(self) -> Result<CacheSettings, ConfigError> {
        let mut s = self;
        if let Some(text) = var("BERTH_CACHE_SOURCE_PORTS") {
            s.source_ports = parse_ports(&text)?;
        }
        let secs =
            |name: &'static str, range: std::ops::RangeInclusive<u64>| -> Result<Option<Duration>, ConfigError> {
                match parsed::<u64>(name)? {
                    None => Ok(None),
                    Some(n) if range.contains(&n) => Ok(Some(Duration::from_secs(n))),
                    Some(_) => {
                        Err(ConfigError::Invalid { name, reason: format!("use {} to {}", range.start(), range.end()) })
                    }
                }
            };
        if let Some(d) = secs("BERTH_CACHE_CHECK_SECS", 0..=86_400)? {
            s.check_interval = d;
        }
        if let Some(d) = secs("BERTH_CACHE_BUDGET_SECS", 1..=3600)? {
            s.budget = d;
        }
        if let Some(d) = secs("BERTH_CACHE_LEASE_SECS", 2..=600)? {
            s.lease = d;
        }
        if let Some(d) = secs("BERTH_CACHE_WAIT_SECS", 0..=900)? {
            s.wait = d;
        }
        if let Some(d) = secs("BERTH_CACHE_TIMEOUT_SECS", 1..=900)? {
            s.request_timeout = d;
        }
        if let Some(text) = var("BERTH_MIRROR_HOSTS") {
            s.mirror_hosts = parse_mirrors(&text)?;
        }
        if let Some(url) = var("BERTH_CACHE_ECR_ENDPOINT") {
            s.ecr_endpoint = Some(url);
        }
        Ok(s)
    }

    /// The cache registry requests on `host` (a `Host` header, port ignored) go to, if it is a
    /// mirror host.
    pub fn mirror_for(&self, host: &str) -> Option<&str> {
        let name = match host.rsplit_once(':') {
            // `[::1]:5000` or `name:5000`; a bare IPv6 literal has no port
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => name,
            _ => host,
        };
        self.mirror_hosts.iter().find(|(h, _)| h.eq_ignore_ascii_case(name)).map(|(_, r)| r.as_str())
    }
}

fn parse_ports(text: &str) -> Result<Option<Vec<u16>>, ConfigError> {
    let text = text.trim();
    if text == "*" {
        return Ok(None);
    }
    text.split(',')
        .map(|p| p.trim().parse::<u16>().ok().filter(|p| *p != 0))
        .collect::<Option<Vec<u16>>>()
        .map(Some)
        .ok_or(ConfigError::Invalid {
            name: "BERTH_CACHE_SOURCE_PORTS",
            reason: "use a comma-separated list of ports (80,443,5000) or * for any".into(),
        })
}

fn parse_mirrors(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = || ConfigError::Invalid {
        name: "BERTH_MIRROR_HOSTS",
        reason: "use host=registry pairs separated by commas (mirror.example.com=hub)".into(),
    };
    let mut out = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (host, registry) = pair.split_once('=').ok_or_else(bad)?;
        let (host, registry) = (host.trim(), registry.trim());
        let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
        if !host_ok || crate::identity::registry::validate_name(registry).is_err() {
            return Err(bad());
        }
        out.push((host.to_ascii_lowercase(), registry.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ports_and_mirrors_parse() {
        assert_eq!(parse_ports("80, 443,5000").unwrap(), Some(vec![80, 443, 5000]));
        assert_eq!(parse_ports("*").unwrap(), None);
        assert!(parse_ports("80,x").is_err());
        assert!(parse_ports("0").is_err());
        let s = CacheSettings {
            mirror_hosts: parse_mirrors("Mirror.local=hub, localhost=hub2").unwrap(),
            ..Default::default()
        };
        assert_eq!(s.mirror_for("mirror.local:5000"), Some("hub"));
        assert_eq!(s.mirror_for("localhost"), Some("hub2"));
        assert_eq!(s.mirror_for("other:5000"), None);
        assert!(parse_mirrors("a=Bad").is_err());
        assert!(parse_mirrors("a b=hub").is_err());
        assert!(parse_mirrors("nohub").is_err());
    }
}
