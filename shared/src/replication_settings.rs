//! Replication tunables (step time, request timeout, retries), read from the environment. Kept
//! apart from [`crate::replication`] so the application's settings need not import the feature
//! (which uses the application: a module cycle).

use std::time::Duration;

use crate::config::{parsed, ConfigError};

/// Replication tunables, from the environment.
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    /// how long one copy job may run before it records its progress and queues the rest
    /// (`BERTH_REPLICATION_STEP_SECS`; on Lambda, the function timeout minus a margin)
    pub step: Duration,
    /// the timeout of one request to a target (a chunk's upload included)
    pub request_timeout: Duration,
    /// how long after a failed reachability check the target is checked again
    pub recheck: Duration,
    /// attempts of one artifact's copy before its task is failed (a target down or answering 5xx)
    pub max_attempts: u32,
    /// the delay before the second attempt; doubled for each one after
    pub retry_base: Duration,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            step: Duration::from_secs(240),
            request_timeout: Duration::from_secs(120),
            recheck: Duration::from_secs(60),
            max_attempts: 4,
            retry_base: Duration::from_secs(30),
        }
    }
}

impl ReplicationSettings {
    /// These settings with `BERTH_REPLICATION_STEP_SECS`, `BERTH_REPLICATION_TIMEOUT_SECS` and
    /// `BERTH_REPLICATION_RECHECK_SECS`, `BERTH_REPLICATION_MAX_ATTEMPTS` and
    /// `BERTH_REPLICATION_RETRY_SECS` applied.
    pub fn with_env(self) -> Result<ReplicationSettings, ConfigError> {
        let mut s = self;
        if let Some(secs) = parsed::<u64>("BERTH_REPLICATION_STEP_SECS")? {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::Invalid {
                    name: "BERTH_REPLICATION_STEP_SECS",
                    reason: "use 1 to 3600".into(),
                });
            }
            s.step = Duration::from_secs(secs);
        }
        if let Some(secs) = parsed::<u64>("BERTH_REPLICATION_TIMEOUT_SECS")? {
            if !(1..=900).contains(&secs) {
                return Err(ConfigError::Invalid {
                    name: "BERTH_REPLICATION_TIMEOUT_SECS",
                    reason: "use 1 to 900".into(),
                });
            }
            s.request_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = parsed::<u64>("BERTH_REPLICATION_RECHECK_SECS")? {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::Invalid {
                    name: "BERTH_REPLICATION_RECHECK_SECS",
                    reason: "use 1 to 3600".into(),
                });
            }
            s.recheck = Duration::from_secs(secs);
        }
        if let Some(n) = parsed::<u32>("BERTH_REPLICATION_MAX_ATTEMPTS")? {
            if !(1..=20).contains(&n) {
                return Err(ConfigError::Invalid {
                    name: "BERTH_REPLICATION_MAX_ATTEMPTS",
                    reason: "use 1 to 20".into(),
                });
            }
            s.max_attempts = n;
        }
        if let Some(secs) = parsed::<u64>("BERTH_REPLICATION_RETRY_SECS")? {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::Invalid {
                    name: "BERTH_REPLICATION_RETRY_SECS",
                    reason: "use 1 to 3600".into(),
                });
            }
            s.retry_base = Duration::from_secs(secs);
        }
        Ok(s)
    }

    /// The delay before the attempt after `attempts` failed ones: base × 2^(attempts−1), at most an hour.
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(12));
        self.retry_base.saturating_mul(factor).min(Duration::from_secs(3600))
    }

    /// How long one copy job may run: the configured step, but always well inside the job lease
    /// (a job held past its lease is handed to another worker), leaving room for the request in
    /// flight when the step's time runs out. A step always sends at least one chunk.
    pub fn step_within(&self, lease: Duration) -> Duration {
        self.step.min(lease.mul_f64(0.8).saturating_sub(self.request_timeout)).max(Duration::from_millis(1))
    }

    /// The timeout of a target check: short, since a check is only a `GET /v2/` (and a token).
    pub fn check_timeout(&self) -> Duration {
        self.request_timeout.min(Duration::from_secs(15))
    }
}
