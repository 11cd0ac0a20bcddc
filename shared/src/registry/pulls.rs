//! Pull times: a manifest `GET` records when the manifest was last pulled, and when it is listed
//! by an index of its repository (a platform image pulled through its index, or by digest), when
//! that index was. A per-process debounce keeps a hot manifest at one metadata write a minute,
//! and a failed write never fails the pull.

use crate::app::App;
use crate::metadata::ManifestRecord;

pub use crate::state::{PullRecorder, PULL_WRITE_INTERVAL};

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
