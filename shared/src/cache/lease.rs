//! Single flight across processes: whoever caches a blob (or commits an image) first holds a
//! lease document in the metadata store, so concurrent pulls on any instance fetch it from the
//! source once. A lease lapses unless renewed, so a holder that crashed blocks others only
//! until then.

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
    take_for(app, key, app.settings.cache.lease).await
}

/// Takes the lease `key` for `hold` (unless renewed) unless another caller holds it.
pub async fn take_for(app: &App, key: &str, hold: std::time::Duration) -> Result<Claim, CacheError> {
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

    /// Gives the lease up (a lease taken over meanwhile is left to its new holder).
    pub async fn release(self, app: &App) {
        if let Err(e) = LEASES.delete(app.meta.as_ref(), &self.key, Expect::Version(self.version)).await {
            if !matches!(e, MetadataError::Conflict(_)) {
                tracing::warn!(key = %self.key, error = %e, "could not release an image-cache lease");
            }
        }
    }
}
