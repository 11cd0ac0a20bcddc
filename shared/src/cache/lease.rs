//! Single flight across processes: whoever caches a blob (or commits an image) first holds a
//! lease document in the metadata store, so concurrent pulls on any instance fetch it from the
//! source once. A lease lapses unless renewed, so a holder that crashed blocks others only
//! until then. A worker whose source turned out not to serve a blob (it lacks it, or its answer
//! can never be used) leaves a short-lived note in the same collection, so pulls waiting on it
//! answer at once instead of at the end of their wait.

use serde::{Deserialize, Serialize};

use super::CacheError;
use crate::app::App;
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};

const LEASES: Collection<Lease> = Collection::new("image-cache-lease");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    /// who holds it (random per holding)
    holder: String,
    /// when it lapses unless renewed
    until: UnixTime,
}

/// A lease this caller holds.
#[derive(Debug)]
pub struct Held {
    key: String,
    holder: String,
    version: u64,
    renewed: std::time::Instant,
}

/// What taking a lease found.
#[derive(Debug)]
pub enum Claim {
    /// it is ours now
    Held(Held),
    /// another caller holds it
    Busy,
}

fn lease_secs(app: &App) -> i64 {
    app.settings.cache.lease.as_secs() as i64
}

/// Takes the lease `key` unless another caller holds it and it has not lapsed.
pub async fn take(app: &App, key: &str) -> Result<Claim, CacheError> {
    let hold = app.settings.cache.lease;
    let now = app.clock.now();
    let expect = match LEASES.get(app.meta.as_ref(), key).await? {
        None => Expect::Absent,
        Some(found) if found.record.until > now => return Ok(Claim::Busy),
        Some(found) => Expect::Version(found.version),
    };
    let holder = uuid::Uuid::new_v4().simple().to_string();
    let lease = Lease { holder: holder.clone(), until: now + hold.as_secs() as i64 };
    match LEASES.put(app.meta.as_ref(), key, &lease, expect).await {
        Ok(version) => {
            Ok(Claim::Held(Held { key: key.to_string(), holder, version, renewed: std::time::Instant::now() }))
        }
        Err(MetadataError::Conflict(_)) => Ok(Claim::Busy),
        Err(e) => Err(e.into()),
    }
}

/// Who "holds" a note that the source lacks a blob: nobody; the document only tells waiters.
const MISSING: &str = "-missing-";
/// Who "holds" a note that the source's answer cannot be used (a refused redirect, a loop).
const UNUSABLE: &str = "-unusable-";

/// How many lapsed documents one sweep reads at a time.
const SWEEP_PAGE: usize = 500;

/// Why a worker could not cache a blob, as waiting pulls read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// the source does not have it (404 to the client)
    Missing,
    /// the source's answer can never be used: retrying does not help (503 to the client)
    Unusable,
}

/// Notes for a while (the time a pull waits) that the source did not serve what `key` names.
pub async fn note_failure(app: &App, key: &str, failure: Failure) -> Result<(), CacheError> {
    let until = app.clock.now() + app.settings.cache.wait.as_secs().max(1) as i64;
    let holder = match failure {
        Failure::Missing => MISSING,
        Failure::Unusable => UNUSABLE,
    };
    LEASES.put(app.meta.as_ref(), key, &Lease { holder: holder.to_string(), until }, Expect::Any).await?;
    Ok(())
}

/// What a recent note says about `key`, if there is one.
pub async fn noted_failure(app: &App, key: &str) -> Result<Option<Failure>, CacheError> {
    let Some(note) = LEASES.get(app.meta.as_ref(), key).await? else {
        return Ok(None);
    };
    if note.record.until <= app.clock.now() {
        return Ok(None);
    }
    Ok(match note.record.holder.as_str() {
        MISSING => Some(Failure::Missing),
        UNUSABLE => Some(Failure::Unusable),
        _ => None,
    })
}

/// Deletes lapsed leases and notes (a crashed holder's, a stale note); returns how many.
pub async fn sweep(app: &App) -> Result<usize, CacheError> {
    let now = app.clock.now();
    let (mut swept, mut after) = (0, None::<String>);
    loop {
        let (page, more) = LEASES.list(app.meta.as_ref(), "", after.as_deref(), SWEEP_PAGE).await?;
        for lapsed in page.iter().filter(|l| l.record.until <= now) {
            // a lease renewed or taken meanwhile has another version and stays
            match LEASES.delete(app.meta.as_ref(), &lapsed.id, Expect::Version(lapsed.version)).await {
                Ok(true) => swept += 1,
                Ok(false) | Err(MetadataError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match (more, page.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => return Ok(swept),
        }
    }
}

/// Whether lease `key` is free (absent or lapsed).
pub async fn is_free(app: &App, key: &str) -> Result<bool, CacheError> {
    Ok(LEASES.get(app.meta.as_ref(), key).await?.is_none_or(|l| l.record.until <= app.clock.now()))
}

impl Held {
    /// Extends the lease when a third of it has passed; `false` when it was lost (lapsed and
    /// taken by another caller), so the holder should stop.
    pub async fn keep(&mut self, app: &App) -> bool {
        if self.renewed.elapsed() < app.settings.cache.lease / 3 {
            return true;
        }
        let lease = Lease { holder: self.holder.clone(), until: app.clock.now() + lease_secs(app) };
        match LEASES.put(app.meta.as_ref(), &self.key, &lease, Expect::Version(self.version)).await {
            Ok(version) => {
                self.version = version;
                self.renewed = std::time::Instant::now();
                true
            }
            Err(MetadataError::Conflict(_)) => false,
            // a store hiccup: keep going, the next renewal tries again
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "could not renew an image-cache lease");
                true
            }
        }
    }

    /// Runs `work` while renewing the lease every third of its time, then gives it up: a long
    /// step (one big blob) keeps it, and a holder that dies blocks others only until it lapses.
    pub async fn hold_while<T>(mut self, app: &App, work: impl std::future::Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        let out = loop {
            tokio::select! {
                out = &mut work => break out,
                _ = tokio::time::sleep(app.settings.cache.lease / 3) => {
                    if !self.keep(app).await {
                        tracing::warn!(key = %self.key, "an image-cache lease was taken over while its work ran");
                    }
                }
            }
        };
        self.release(app).await;
        out
    }

    /// Gives the lease up (a lease taken over meanwhile is left to its new holder).
    pub async fn release(self, app: &App) {
        if let Err(e) = LEASES.delete(app.meta.as_ref(), &self.key, Expect::Version(self.version)).await {
            if !matches!(e, MetadataError::Conflict(_)) {
                tracing::warn!(key = %self.key, error = %e, "could not release an image-cache lease");
            }
        }
    }
}
