//! A bounded in-memory cache of manifest bytes. Manifests are addressed by digest and never
//! change, so a cached copy can never be stale, on any backend or in any process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use crate::oci::Digest;

/// Manifest bytes by digest, evicted oldest-first beyond a byte budget.
#[derive(Debug)]
pub struct ContentCache {
    budget: usize,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Digest, Bytes>,
    order: VecDeque<Digest>,
    bytes: usize,
}

impl ContentCache {
    /// A cache holding at most `budget` bytes.
    pub fn new(budget: usize) -> ContentCache {
        ContentCache { budget, inner: Mutex::new(Entries::default()) }
    }

    /// The cached bytes of `digest`.
    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.inner.lock().ok()?.map.get(digest).cloned()
    }

    /// Remembers the bytes of `digest` (ignored when larger than a quarter of the budget).
    pub fn insert(&self, digest: &Digest, bytes: Bytes) {
        if bytes.len() > self.budget / 4 {
            return;
        }
        let Ok(mut e) = self.inner.lock() else { return };
        if e.map.contains_key(digest) {
            return;
        }
        e.bytes += bytes.len();
        e.map.insert(digest.clone(), bytes);
        e.order.push_back(digest.clone());
        while e.bytes > self.budget {
            let Some(old) = e.order.pop_front() else { break };
            if let Some(b) = e.map.remove(&old) {
                e.bytes -= b.len();
            }
        }
    }
}

impl Default for ContentCache {
    /// 32 MiB: thousands of typical manifests.
    fn default() -> Self {
        ContentCache::new(32 * 1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_beyond_the_budget() {
        let cache = ContentCache::new(40);
        let digests: Vec<Digest> = (0..4u8).map(|i| Digest::sha256_of(&[i])).collect();
        for d in &digests {
            cache.insert(d, Bytes::from(vec![0u8; 10]));
        }
        cache.insert(&Digest::sha256_of(b"x"), Bytes::from(vec![0u8; 10]));
        assert!(cache.get(&digests[0]).is_none());
        assert_eq!(cache.get(&digests[1]).map(|b| b.len()), Some(10));
        cache.insert(&Digest::sha256_of(b"big"), Bytes::from(vec![0u8; 11]));
        assert!(cache.get(&Digest::sha256_of(b"big")).is_none(), "over a quarter of the budget");
    }
}
