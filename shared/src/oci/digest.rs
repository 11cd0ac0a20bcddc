//! Content digests (`<algorithm>:<hex>`) and the resumable hashers that produce them.

use std::fmt;
use std::str::FromStr;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

/// Why a digest string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// No `:` separating algorithm and encoded part.
    #[error("digest {0:?} is not of the form <algorithm>:<hex>")]
    Malformed(String),
    /// The algorithm is well formed but not one Berth computes.
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    /// The hex part has the wrong length or characters for its algorithm.
    #[error("digest {0:?} has an invalid encoded part")]
    InvalidHex(String),
    /// A stored hash state could not be restored.
    #[error("stored hash state is corrupt")]
    CorruptState,
}

/// The digest algorithms Berth verifies content with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default for every client.
    Sha256,
    /// SHA-512, allowed by the OCI image spec.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in digest strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        }
    }
}

/// A validated content digest; the identity of every blob and manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The SHA-256 digest of a byte slice (manifests and other small content).
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(Algorithm::Sha256);
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest of a byte slice under a given algorithm.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s.split_once(':').ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        // OCI grammar: algorithm-component ([a-z0-9]+) joined by [+._-]
        let alg_ok = !alg.is_empty()
            && alg
                .split(['+', '.', '_', '-'])
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if !alg_ok || hex.is_empty() {
            return Err(DigestError::Malformed(s.to_string()));
        }
        let algorithm: Algorithm = alg.parse()?;
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::InvalidHex(s.to_string()));
        }
        Ok(Digest { algorithm, hex: hex.to_string() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher whose state can be saved between requests, so a chunked upload can
/// resume after a restart (or, under Lambda, in another invocation) without re-reading its bytes.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 in progress.
    Sha256(Sha256),
    /// SHA-512 in progress.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// Which algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }

    /// The hasher's internal state as bytes (algorithm tag first).
    pub fn save(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(240);
        match self {
            Hasher::Sha256(h) => {
                out.push(1);
                out.extend_from_slice(&h.serialize());
            }
            Hasher::Sha512(h) => {
                out.push(2);
                out.extend_from_slice(&h.serialize());
            }
        }
        out
    }

    /// Restores a state produced by [`Hasher::save`].
    pub fn restore(state: &[u8]) -> Result<Hasher, DigestError> {
        let (tag, rest) = state.split_first().ok_or(DigestError::CorruptState)?;
        match tag {
            1 => {
                let arr = rest.try_into().map_err(|_| DigestError::CorruptState)?;
                Sha256::deserialize(arr).map(Hasher::Sha256).map_err(|_| DigestError::CorruptState)
            }
            2 => {
                let arr = rest.try_into().map_err(|_| DigestError::CorruptState)?;
                Sha512::deserialize(arr).map(Hasher::Sha512).map_err(|_| DigestError::CorruptState)
            }
            _ => Err(DigestError::CorruptState),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256() {
        let s = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let d: Digest = s.parse().unwrap();
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::sha256_of(b"{}"), d);
    }

    #[test]
    fn refuses_bad_digests() {
        assert!(matches!("sha256".parse::<Digest>(), Err(DigestError::Malformed(_))));
        assert!(matches!("md5:abcd".parse::<Digest>(), Err(DigestError::UnsupportedAlgorithm(_))));
        assert!(matches!("sha256:ABCD".parse::<Digest>(), Err(DigestError::InvalidHex(_))));
        assert!(matches!("sha256:abc".parse::<Digest>(), Err(DigestError::InvalidHex(_))));
        assert!(matches!("SHA256:abc".parse::<Digest>(), Err(DigestError::Malformed(_))));
    }

    #[test]
    fn saved_state_resumes_to_the_same_digest() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut whole = Hasher::new(alg);
            whole.update(b"hello world, hello registry");
            let mut first = Hasher::new(alg);
            first.update(b"hello world, ");
            let mut resumed = Hasher::restore(&first.save()).unwrap();
            resumed.update(b"hello registry");
            assert_eq!(resumed.finish(), whole.finish());
        }
        assert!(Hasher::restore(&[9, 1, 2]).is_err());
        assert!(Hasher::restore(&[]).is_err());
    }
}
