//! Webhook delivery settings: timeouts, attempts and backoff, the outbound guard, the secrets
//! key and the event bus, from the environment.

use std::time::Duration;

use crate::config::{parsed, var, ConfigError, Secret};
use crate::outbound::OutboundPolicy;

/// Delivery tunables and the outbound guard.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// per-attempt timeout (connect and whole answer)
    pub timeout: Duration,
    /// attempts before a delivery is dead-lettered
    pub max_attempts: u32,
    /// the first retry's delay; doubled per attempt up to 15 minutes
    pub retry_base: Duration,
    /// which addresses deliveries may reach
    pub outbound: OutboundPolicy,
    /// the operator's key for secrets at rest (`BERTH_SECRETS_KEY`)
    pub secrets_key: Option<Secret>,
    /// the EventBridge bus every event is also put on (AWS)
    pub event_bus: Option<String>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            outbound: OutboundPolicy::new(Vec::new()),
            secrets_key: None,
            event_bus: None,
        }
    }
}

impl WebhookSettings {
    /// These settings with `BERTH_WEBHOOK_*`, `BERTH_OUTBOUND_ALLOW`, `BERTH_SECRETS_KEY` and
    /// `BERTH_EVENT_BUS` applied.
    pub fn with_env(self) -> Result<WebhookSettings, ConfigError> {
        let mut s = self;
        if let Some(secs) = parsed::<u64>("BERTH_WEBHOOK_TIMEOUT_SECS")? {
            if !(1..=60).contains(&secs) {
                return Err(ConfigError::Invalid { name: "BERTH_WEBHOOK_TIMEOUT_SECS", reason: "use 1 to 60".into() });
            }
            s.timeout = Duration::from_secs(secs);
        }
        if let Some(n) = parsed::<u32>("BERTH_WEBHOOK_MAX_ATTEMPTS")? {
            if !(1..=50).contains(&n) {
                return Err(ConfigError::Invalid { name: "BERTH_WEBHOOK_MAX_ATTEMPTS", reason: "use 1 to 50".into() });
            }
            s.max_attempts = n;
        }
        if let Some(secs) = parsed::<u64>("BERTH_WEBHOOK_RETRY_SECS")? {
            if !(1..=900).contains(&secs) {
                return Err(ConfigError::Invalid { name: "BERTH_WEBHOOK_RETRY_SECS", reason: "use 1 to 900".into() });
            }
            s.retry_base = Duration::from_secs(secs);
        }
        if let Some(text) = var("BERTH_OUTBOUND_ALLOW") {
            let allow = OutboundPolicy::parse_allow(&text)
                .map_err(|e| ConfigError::Invalid { name: "BERTH_OUTBOUND_ALLOW", reason: e.to_string() })?;
            s.outbound = OutboundPolicy::new(allow);
        }
        if let Some(key) = var("BERTH_SECRETS_KEY") {
            crate::sealed::SecretsKey::from_b64(&key)
                .map_err(|e| ConfigError::Invalid { name: "BERTH_SECRETS_KEY", reason: e.to_string() })?;
            s.secrets_key = Some(Secret::new(key));
        }
        if let Some(bus) = var("BERTH_EVENT_BUS") {
            s.event_bus = Some(bus);
        }
        Ok(s)
    }

    /// The delay before the attempt after `attempts` failed ones: base × 2^(attempts−1), at most 15 minutes.
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        self.retry_base.saturating_mul(factor).min(Duration::from_secs(900))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_and_cap() {
        let s = WebhookSettings::default();
        assert_eq!(s.retry_delay(1), Duration::from_secs(2));
        assert_eq!(s.retry_delay(2), Duration::from_secs(4));
        assert_eq!(s.retry_delay(5), Duration::from_secs(32));
        assert_eq!(s.retry_delay(40), Duration::from_secs(900));
    }
}
