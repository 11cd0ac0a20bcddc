//! What a process keeps in memory while it lives (a warm Lambda instance, or `berth serve`):
//! caches and counters shared by every request, never in a store. A leaf of the module graph,
//! so [`crate::app::App`] can hold it without depending on the layers that use it.

pub mod content_cache;
pub mod limiter;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::identity::Registry;
use crate::metadata::UnixTime;
use crate::oci::{Digest, RepoName};

/// Process-wide access state: the signing key once loaded, the verified-secret cache, the
/// login limiter and a short cache of registry settings.
#[derive(Default)]
pub struct AccessState {
    /// the token signing key, loaded (or created) on first use
    pub signing: tokio::sync::OnceCell<Arc<crate::auth::jwt::SigningKey>>,
    /// access key id → (secret fingerprint, secret hash) already verified with argon2
    pub verified: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    /// tokens already verified → their claims (the time window is still checked on every use)
    pub tokens: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::auth::jwt::Claims>>>,
    /// (user, key, generation) of tokens → whether they were current when last checked, and when
    pub holders: std::sync::Mutex<std::collections::HashMap<String, (bool, std::time::Instant)>>,
    /// secret verifications running now, by key id and secret fingerprint, so identical
    /// concurrent attempts share one
    pub verifying: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::OnceCell<bool>>>>,
    /// login attempt counters and verification slots
    pub limiter: limiter::LoginLimiter,
    /// how many refusals each principal and address had written to the audit log lately
    pub refusals: RefusalBudget,
    /// registry name → (record, when read)
    pub registries: RegistryCache,
    /// access key id → when this process last wrote its use stamp
    pub key_use: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl AccessState {
    /// Forgets what is known about token holders, after a change here to a user or key.
    pub fn forget_holders(&self) {
        if let Ok(mut m) = self.holders.lock() {
            m.clear();
        }
    }
}

impl std::fmt::Debug for AccessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessState")
    }
}

/// Refusal entries (failed logins, denied requests) written per minute for one principal and for
/// one address: enough to see an attack, not enough for an attacker to fill the store.
pub const REFUSALS_PER_MINUTE: u32 = 60;

/// Counts refusal entries per principal and per address in this process, so the audit log keeps
/// refusals without becoming a way to flood the metadata store.
#[derive(Debug, Default)]
pub struct RefusalBudget {
    counts: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

impl RefusalBudget {
    /// Whether one more refusal by `who` from `source` may be written; counts it when so.
    pub fn allow(&self, who: &str, source: Option<&str>) -> bool {
        let now = std::time::Instant::now();
        let minute = std::time::Duration::from_secs(60);
        let Ok(mut counts) = self.counts.lock() else { return false };
        if counts.len() > 100_000 {
            counts.retain(|_, (start, _)| now.duration_since(*start) < minute);
        }
        let subjects = [Some(format!("who:{who}")), source.map(|s| format!("ip:{s}"))];
        let over = subjects.iter().flatten().any(|s| {
            counts.get(s).is_some_and(|(start, n)| now.duration_since(*start) < minute && *n >= REFUSALS_PER_MINUTE)
        });
        if over {
            return false;
        }
        for s in subjects.into_iter().flatten() {
            let entry = counts.entry(s).or_insert((now, 0));
            if now.duration_since(entry.0) >= minute {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        true
    }
}

/// How long registry settings are remembered (public access changes apply within this).
pub const REGISTRY_TTL: Duration = Duration::from_secs(5);

/// A short-lived cache of registry records, so the hot pull path does not read them each time.
#[derive(Debug, Default)]
pub struct RegistryCache(Mutex<HashMap<String, (Option<Registry>, Instant)>>);

impl RegistryCache {
    /// A record read less than [`REGISTRY_TTL`] ago (`Some(None)`: the registry did not exist).
    pub fn get(&self, name: &str) -> Option<(Option<Registry>, Instant)> {
        self.0.lock().ok()?.get(name).cloned().filter(|(_, at)| at.elapsed() < REGISTRY_TTL)
    }

    /// Remembers a record just read.
    pub fn insert(&self, name: &str, record: Option<Registry>) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(name.to_string(), (record, Instant::now()));
        }
    }

    /// Forgets a registry after a local change.
    pub fn forget(&self, name: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(name);
        }
    }
}

/// Seconds during which further pulls of one manifest are not written again (per process).
pub const PULL_WRITE_INTERVAL: UnixTime = 60;

/// Manifests remembered by the debounce; the memory is cleared when it is full.
const MAX_REMEMBERED: usize = 10_000;

/// When this process last wrote the pull time of each (repository, digest), so pulls of a hot
/// manifest cost one metadata write per [`PULL_WRITE_INTERVAL`], not one per request.
#[derive(Debug, Default)]
pub struct PullRecorder {
    written: Mutex<HashMap<(String, String), UnixTime>>,
}

impl PullRecorder {
    /// Whether a pull of `digest` in `repo` at `now` should be written; if so, it counts as
    /// written from now on.
    pub fn due(&self, repo: &RepoName, digest: &Digest, now: UnixTime) -> bool {
        let key = (repo.as_str().to_string(), digest.to_string());
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        // a clock that went back counts as due: the store never moves a pull time backwards
        if let Some(&last) = written.get(&key) {
            if last <= now && now < last.saturating_add(PULL_WRITE_INTERVAL) {
                return false;
            }
        }
        if written.len() >= MAX_REMEMBERED && !written.contains_key(&key) {
            written.clear();
        }
        written.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name, None).unwrap()
    }

    #[test]
    fn writes_once_per_interval_per_manifest() {
        let recorder = PullRecorder::default();
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let r = repo("team/app");
        assert!(recorder.due(&r, &a, 1_000));
        assert!(!recorder.due(&r, &a, 1_000));
        assert!(!recorder.due(&r, &a, 1_059));
        assert!(recorder.due(&r, &b, 1_001), "another manifest");
        assert!(recorder.due(&repo("team/other"), &a, 1_001), "another repository");
        assert!(recorder.due(&r, &a, 1_060));
        assert!(!recorder.due(&r, &a, 1_100));
        assert!(recorder.due(&r, &a, 900), "a clock that went back");
    }

    #[test]
    fn memory_is_bounded() {
        let recorder = PullRecorder::default();
        let r = repo("team/app");
        let first = Digest::sha256_of(b"first");
        assert!(recorder.due(&r, &first, 1));
        for i in 0..MAX_REMEMBERED {
            recorder.due(&r, &Digest::sha256_of(&i.to_le_bytes()), 1);
        }
        assert!(recorder.written.lock().unwrap_or_else(PoisonError::into_inner).len() <= MAX_REMEMBERED);
        assert!(recorder.due(&r, &first, 2), "forgotten when the memory was cleared");
    }
}

/// The most tags whose source check one process remembers (an attacker naming endless tags
/// empties it rather than growing it).
const MAX_CHECKED_TAGS: usize = 10_000;

/// What a process remembers about image-cache sources: which tags it checked at the source
/// lately (so a hot tag asks the source once per interval, not per pull) and ECR registry
/// passwords until shortly before they expire.
#[derive(Default)]
pub struct UpstreamState {
    checked: Mutex<HashMap<(RepoName, String), (Instant, Digest)>>,
    ecr: Mutex<HashMap<String, (String, Instant)>>,
    sessions: Mutex<HashMap<String, Arc<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for UpstreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamState")
    }
}

impl UpstreamState {
    /// The digest the source gave for `repo:tag` within the last `within`, if it was asked then.
    pub fn checked(&self, repo: &RepoName, tag: &str, within: Duration) -> Option<Digest> {
        let map = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(repo.clone(), tag.to_string())).filter(|(at, _)| at.elapsed() < within).map(|(_, d)| d.clone())
    }

    /// Notes that the source gave `digest` for `repo:tag` now.
    pub fn note_checked(&self, repo: &RepoName, tag: &str, digest: &Digest) {
        let mut map = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_CHECKED_TAGS {
            map.clear();
        }
        map.insert((repo.clone(), tag.to_string()), (Instant::now(), digest.clone()));
    }

    /// Forgets a tag's check (the source no longer has it, or the answer could not be used).
    pub fn forget_checked(&self, repo: &RepoName, tag: &str) {
        self.checked.lock().unwrap_or_else(PoisonError::into_inner).remove(&(repo.clone(), tag.to_string()));
    }

    /// The ECR registry password kept for cache `name`, while it is still good.
    pub fn ecr_password(&self, name: &str) -> Option<String> {
        let map = self.ecr.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(name).filter(|(_, until)| Instant::now() < *until).map(|(p, _)| p.clone())
    }

    /// Keeps an ECR registry password for `ttl`.
    pub fn keep_ecr_password(&self, name: &str, password: String, ttl: Duration) {
        self.ecr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), (password, Instant::now() + ttl));
    }

    /// The value kept for the connections of cache version `name` (`<cache>@<version>`: the
    /// outbound client's shared session), made on first use.
    pub fn session<T: std::any::Any + Send + Sync + Default>(&self, name: &str) -> Arc<T> {
        let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = map.get(name).and_then(|v| Arc::clone(v).downcast::<T>().ok()) {
            return found;
        }
        let made = Arc::new(T::default());
        map.insert(name.to_string(), made.clone());
        made
    }

    /// Forgets what is known about cache `name` (it changed or went) and every tag check.
    pub fn forget(&self, name: &str) {
        // kept by `<name>@<version>`
        let prefix = format!("{name}@");
        self.ecr.lock().unwrap_or_else(PoisonError::into_inner).retain(|k, _| !k.starts_with(&prefix));
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).retain(|k, _| !k.starts_with(&prefix));
        self.checked.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
