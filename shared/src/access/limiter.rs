//! Failed-login rate limiting, per access key and per source address: after
//! [`MAX_FAILURES`] failures within [`WINDOW`], further logins from that key or address are
//! refused until the window has passed, whether or not the secret is right.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures tolerated per window.
pub const MAX_FAILURES: u32 = 10;
/// The counting window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Counts failed logins in this process.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    /// Seconds to wait if `subjects` (key id, address) are blocked now.
    pub fn blocked(&self, subjects: &[String]) -> Option<u64> {
        let now = Instant::now();
        let map = self.failures.lock().ok()?;
        subjects
            .iter()
            .filter_map(|s| map.get(s))
            .filter(|(start, count)| *count >= MAX_FAILURES && now.duration_since(*start) < WINDOW)
            .map(|(start, _)| (WINDOW - now.duration_since(*start)).as_secs().max(1))
            .max()
    }

    /// Counts a failure against each subject.
    pub fn failed(&self, subjects: &[String]) {
        let now = Instant::now();
        if let Ok(mut map) = self.failures.lock() {
            if map.len() > 100_000 {
                map.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            }
            for s in subjects {
                let entry = map.entry(s.clone()).or_insert((now, 0));
                if now.duration_since(entry.0) >= WINDOW {
                    *entry = (now, 0);
                }
                entry.1 += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_subject() {
        let l = LoginLimiter::default();
        let subjects = vec!["key:A".to_string(), "ip:1.2.3.4".to_string()];
        for _ in 0..MAX_FAILURES - 1 {
            l.failed(&subjects);
        }
        assert_eq!(l.blocked(&subjects), None);
        l.failed(&subjects);
        assert!(l.blocked(&subjects).is_some());
        assert!(l.blocked(&["key:A".to_string()]).is_some());
        assert_eq!(l.blocked(&["key:B".to_string()]), None);
    }
}
