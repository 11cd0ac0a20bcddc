//! Pull times: a manifest `GET` records when the manifest was last pulled, and when it is listed
//! by an index of its repository (a platform image pulled through its index, or by digest), when
//! that index was. A per-process debounce keeps a hot manifest at one metadata write a minute,
//! and a failed write never fails the pull.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::app::App;
use crate::metadata::{ManifestRecord, UnixTime};
use crate::oci::{Digest, RepoName};

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

/// Records a `GET` of `record`: its pull time and that of every index of its repository that
/// lists it, each at most once a [`PULL_WRITE_INTERVAL`] per process. Failures are logged.
pub async fn record(app: &App, record: &ManifestRecord) {
    let now = app.clock.now();
    let repo = &record.repo;
    if !app.pull_recorder.due(repo, &record.digest, now) {
        return;
    }
    if let Err(e) = app.meta.record_pull(repo, &record.digest, now).await {
        tracing::warn!(repo = %repo, digest = %record.digest, error = %e, "could not record a manifest pull");
    }
    let parents = match app.meta.parents(repo, &record.digest).await {
        Ok(parents) => parents,
        Err(e) => {
            tracing::warn!(repo = %repo, digest = %record.digest, error = %e, "could not find the indexes of a pulled manifest");
            return;
        }
    };
    for parent in parents {
        if !app.pull_recorder.due(repo, &parent, now) {
            continue;
        }
        if let Err(e) = app.meta.record_pull(repo, &parent, now).await {
            tracing::warn!(repo = %repo, digest = %parent, error = %e, "could not record the pull of an index");
        }
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
