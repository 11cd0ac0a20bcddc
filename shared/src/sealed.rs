//! Secrets Berth must use again (webhook signing secrets and auth headers now; upstream
//! credentials later) sealed at rest with XChaCha20-Poly1305, each bound to the record it
//! belongs to. Which key seals them is [`crate::secrets`]' concern.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The configured or stored key is not base64 of 32 bytes.
    #[error("the secrets key is invalid: {0}")]
    BadKey(String),
    /// The sealed value was altered, belongs to another record, or another key sealed it.
    #[error("a sealed secret could not be opened (wrong BERTH_SECRETS_KEY, or the record was altered)")]
    Open,
    /// The sealed value is not in Berth's format.
    #[error("a sealed secret is malformed: {0}")]
    Malformed(String),
    /// Randomness was unavailable.
    #[error("no randomness: {0}")]
    Random(String),
}

/// The prefix of a sealed value, naming the scheme so a later one can be told apart.
const PREFIX: &str = "sealed:v1:";

/// A secret as stored: `sealed:v1:<base64 nonce ‖ ciphertext>`, bound to the record it belongs to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

/// The key that seals and opens secrets.
#[derive(Clone)]
pub struct SecretsKey(XChaCha20Poly1305);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

impl SecretsKey {
    /// A fresh random key, as base64 (what a deployment without `BERTH_SECRETS_KEY` stores).
    pub fn generate_b64() -> Result<String, SealError> {
        let mut fresh = [0u8; 32];
        getrandom::getrandom(&mut fresh).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(STANDARD.encode(fresh))
    }

    /// A key from base64 of 32 bytes (`BERTH_SECRETS_KEY`).
    pub fn from_b64(text: &str) -> Result<SecretsKey, SealError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|e| SealError::BadKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!("{} bytes; a key is 32 bytes", bytes.len())));
        }
        XChaCha20Poly1305::new_from_slice(&bytes).map(SecretsKey).map_err(|e| SealError::BadKey(e.to_string()))
    }

    /// Seals `secret` for the record `context` names (a sealed value moved to another record
    /// does not open).
    pub fn seal(&self, secret: &str, context: &str) -> Result<Sealed, SealError> {
        let mut nonce = [0u8; 24];
        getrandom::getrandom(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let cipher = self
            .0
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: context.as_bytes() })
            .map_err(|_| SealError::Open)?;
        let mut out = nonce.to_vec();
        out.extend(cipher);
        Ok(Sealed(format!("{PREFIX}{}", STANDARD.encode(out))))
    }

    /// Opens a value sealed for `context`.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<String, SealError> {
        let body = sealed.0.strip_prefix(PREFIX).ok_or_else(|| SealError::Malformed("unknown scheme".into()))?;
        let bytes = STANDARD.decode(body).map_err(|e| SealError::Malformed(e.to_string()))?;
        if bytes.len() < 24 + 16 {
            return Err(SealError::Malformed("too short".into()));
        }
        let (nonce, cipher) = bytes.split_at(24);
        let plain = self
            .0
            .decrypt(XNonce::from_slice(nonce), Payload { msg: cipher, aad: context.as_bytes() })
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|e| SealError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> SecretsKey {
        SecretsKey::from_b64(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn seals_and_opens_bound_to_the_record() {
        let k = key();
        let sealed = k.seal("whsec_abc", "webhook:team/wh-1").unwrap();
        assert!(!format!("{sealed:?}").contains("whsec"));
        assert!(!sealed.0.contains("whsec"));
        assert_eq!(k.open(&sealed, "webhook:team/wh-1").unwrap(), "whsec_abc");
        // another record, another key, or a flipped byte: refused
        assert!(matches!(k.open(&sealed, "webhook:team/wh-2"), Err(SealError::Open)));
        let other = SecretsKey::from_b64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(matches!(other.open(&sealed, "webhook:team/wh-1"), Err(SealError::Open)));
        let mut bytes = STANDARD.decode(sealed.0.strip_prefix(PREFIX).unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = Sealed(format!("{PREFIX}{}", STANDARD.encode(bytes)));
        assert!(matches!(k.open(&altered, "webhook:team/wh-1"), Err(SealError::Open)));
        // two seals of one secret differ (fresh nonces)
        assert_ne!(k.seal("x", "c").unwrap(), k.seal("x", "c").unwrap());
    }

    #[test]
    fn refuses_bad_keys_and_values() {
        assert!(matches!(SecretsKey::from_b64("short"), Err(SealError::BadKey(_))));
        assert!(matches!(SecretsKey::from_b64(&STANDARD.encode([1u8; 16])), Err(SealError::BadKey(_))));
        assert!(matches!(key().open(&Sealed("plain".into()), "c"), Err(SealError::Malformed(_))));
        assert!(matches!(key().open(&Sealed(format!("{PREFIX}AAAA")), "c"), Err(SealError::Malformed(_))));
    }
}
