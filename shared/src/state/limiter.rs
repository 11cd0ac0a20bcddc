//! Login throttling. Failed logins are limited per access key and per source address: after
//! [`MAX_FAILURES`] within [`WINDOW`], logins from that key or address are refused until the
//! window has passed, whether or not the secret is right. An attempt is counted *before* its
//! secret is checked (and refunded when it succeeds), so a burst of concurrent wrong guesses
//! cannot run more verifications than the limit. Verifications themselves (argon2, 19 MiB and
//! tens of milliseconds each) run at most [`VERIFY_PERMITS`] at a time per process, so a login
//! storm costs bounded memory and CPU.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures tolerated per window.
pub const MAX_FAILURES: u32 = 10;
/// The counting window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Secret verifications that may run at once in one process.
pub const VERIFY_PERMITS: usize = 4;
/// How long a login waits for a verification slot before it is told to retry.
pub const VERIFY_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Subjects remembered before expired windows are swept.
const MAX_SUBJECTS: usize = 100_000;

/// Counts login attempts in this process and bounds concurrent verifications.
#[derive(Debug)]
pub struct LoginLimiter {
    /// subject → (window start, attempts counted in it)
    attempts: Mutex<HashMap<String, (Instant, u32)>>,
    /// slots for running a secret verification
    verifications: tokio::sync::Semaphore,
    /// argon2 working memory of the slots not in use, reused so a storm allocates it once
    memory: Mutex<Vec<Vec<argon2::Block>>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            attempts: Mutex::new(HashMap::new()),
            verifications: tokio::sync::Semaphore::new(VERIFY_PERMITS),
            memory: Mutex::new(Vec::new()),
        }
    }
}

/// A place to run one verification: held while it runs, with the working memory it runs in.
#[derive(Debug)]
pub struct VerificationSlot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    limiter: &'a LoginLimiter,
    /// argon2 working memory (empty until the first verification grows it)
    pub memory: Vec<argon2::Block>,
}

impl Drop for VerificationSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.limiter.memory.lock() {
            pool.push(std::mem::take(&mut self.memory));
        }
    }
}

impl LoginLimiter {
    /// Seconds to wait if `subjects` (key id, address) are blocked now.
    pub fn blocked(&self, subjects: &[String]) -> Option<u64> {
        let now = Instant::now();
        let map = self.attempts.lock().ok()?;
        subjects.iter().filter_map(|s| map.get(s)).filter_map(|entry| retry_after(entry, now)).max()
    }

    /// Counts one attempt against every subject, unless one of them is at the limit already:
    /// then nothing is counted and the answer is how many seconds to wait.
    pub fn begin(&self, subjects: &[String]) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut map) = self.attempts.lock() else { return Err(WINDOW.as_secs()) };
        if let Some(wait) = subjects.iter().filter_map(|s| map.get(s)).filter_map(|e| retry_after(e, now)).max() {
            return Err(wait);
        }
        if map.len() > MAX_SUBJECTS {
            map.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        for s in subjects {
            let entry = map.entry(s.clone()).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        Ok(())
    }

    /// Takes back an attempt counted by [`LoginLimiter::begin`] whose secret was right.
    pub fn succeeded(&self, subjects: &[String]) {
        if let Ok(mut map) = self.attempts.lock() {
            for s in subjects {
                if let Some(entry) = map.get_mut(s) {
                    entry.1 = entry.1.saturating_sub(1);
                }
            }
        }
    }

    /// A slot to run one verification in, waiting at most [`VERIFY_QUEUE_WAIT`]; `None` when
    /// the process is saturated with logins. At most [`VERIFY_PERMITS`] exist, each with its
    /// own working memory, so verifications never hold more than that much memory in all.
    pub async fn verification_slot(&self) -> Option<VerificationSlot<'_>> {
        let permit = tokio::time::timeout(VERIFY_QUEUE_WAIT, self.verifications.acquire()).await.ok()?.ok()?;
        let memory = self.memory.lock().ok().and_then(|mut pool| pool.pop()).unwrap_or_default();
        Some(VerificationSlot { _permit: permit, limiter: self, memory })
    }
}

/// Seconds until a subject at the limit may try again; `None` when it is not at the limit.
fn retry_after(&(start, count): &(Instant, u32), now: Instant) -> Option<u64> {
    let elapsed = now.duration_since(start);
    (count >= MAX_FAILURES && elapsed < WINDOW).then(|| (WINDOW - elapsed).as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_subject() {
        let l = LoginLimiter::default();
        let subjects = vec!["key:A".to_string(), "ip:1.2.3.4".to_string()];
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(l.begin(&subjects), Ok(()));
        }
        assert_eq!(l.blocked(&subjects), None);
        assert_eq!(l.begin(&subjects), Ok(()));
        assert!(l.blocked(&subjects).is_some());
        assert!(l.blocked(&["key:A".to_string()]).is_some());
        assert_eq!(l.blocked(&["key:B".to_string()]), None);
        assert!(l.begin(&["key:B".to_string(), "ip:1.2.3.4".to_string()]).is_err());
        // a refused attempt counts nothing against the other subject
        assert_eq!(l.begin(&["key:B".to_string()]), Ok(()));
    }

    #[test]
    fn attempts_count_before_they_finish_and_successes_are_refunded() {
        let l = LoginLimiter::default();
        let subjects = vec!["key:A".to_string()];
        // MAX_FAILURES attempts in flight at once: the next is refused before it verifies
        for _ in 0..MAX_FAILURES {
            assert_eq!(l.begin(&subjects), Ok(()));
        }
        assert!(l.begin(&subjects).is_err());
        l.succeeded(&subjects);
        assert_eq!(l.begin(&subjects), Ok(()));
    }
}
