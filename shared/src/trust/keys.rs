//! Public keys a registry trusts: ECDSA P-256 (what `cosign generate-key-pair` makes) and
//! Ed25519, as PEM `PUBLIC KEY` (SubjectPublicKeyInfo), each named by a stable id.

use base64::Engine;
use sha2::{Digest as _, Sha256};

use super::TrustError;

/// The largest PEM accepted (a P-256 or Ed25519 public key is under 200 bytes).
const MAX_PEM: usize = 4096;

/// One trusted public key.
#[derive(Debug, Clone)]
pub struct TrustKey {
    /// `sha256:<hex>` of the key's DER SubjectPublicKeyInfo: the same key always has the same id
    pub id: String,
    key: Algorithm,
}

#[derive(Debug, Clone)]
enum Algorithm {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl TrustKey {
    /// Reads a PEM `PUBLIC KEY` (as `cosign.pub` holds it).
    pub fn from_pem(pem: &str) -> Result<Self, TrustError> {
        // one trait (pkcs8's) for both key types
        use p256::pkcs8::DecodePublicKey as _;
        if pem.len() > MAX_PEM {
            return Err(TrustError::Key(format!("{} bytes is longer than a public key", pem.len())));
        }
        let pem = pem.trim();
        let body: String = pem
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|rest| rest.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or_else(|| TrustError::Key("no `-----BEGIN PUBLIC KEY-----` block".into()))?
            .split_whitespace()
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| TrustError::Key(format!("the PEM body is not base64: {e}")))?;
        let key = if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(&der) {
            Algorithm::P256(k)
        } else if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(&der) {
            Algorithm::Ed25519(k)
        } else {
            return Err(TrustError::Key("neither an ECDSA P-256 nor an Ed25519 key".into()));
        };
        Ok(Self { id: format!("sha256:{}", hex::encode(Sha256::digest(&der))), key })
    }

    /// The algorithm's name, as listings show it.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Algorithm::P256(_) => "ecdsa-p256",
            Algorithm::Ed25519(_) => "ed25519",
        }
    }

    /// Whether `signature` over `message` verifies: ECDSA P-256 with SHA-256 (ASN.1 DER, as
    /// cosign writes it, or the 64-byte fixed form), or Ed25519 (64 bytes).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            Algorithm::P256(key) => {
                use p256::ecdsa::signature::Verifier as _;
                let parsed = p256::ecdsa::Signature::from_der(signature)
                    .or_else(|_| p256::ecdsa::Signature::from_slice(signature));
                parsed.is_ok_and(|s| key.verify(message, &s).is_ok())
            }
            Algorithm::Ed25519(key) => {
                ed25519_dalek::Signature::from_slice(signature).is_ok_and(|s| key.verify_strict(message, &s).is_ok())
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed P-256 test key and its `cosign.pub`-style PEM.
    pub fn p256_key() -> (p256::ecdsa::SigningKey, String) {
        use p256::pkcs8::EncodePublicKey as _;
        let signing = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = signing.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap();
        (signing, pem)
    }

    #[test]
    fn p256_and_ed25519_keys_are_read_and_verify_only_their_own_signatures() {
        use p256::ecdsa::signature::Signer as _;
        let (signing, pem) = p256_key();
        let key = TrustKey::from_pem(&pem).unwrap();
        assert_eq!((key.algorithm(), key.id.len()), ("ecdsa-p256", 71));
        assert_eq!(TrustKey::from_pem(&format!("\n{pem}\n")).unwrap().id, key.id, "the id is the key's");
        let sig: p256::ecdsa::Signature = signing.sign(b"payload");
        assert!(key.verifies(b"payload", sig.to_der().as_bytes()));
        assert!(key.verifies(b"payload", &sig.to_bytes()));
        assert!(!key.verifies(b"payloaD", sig.to_der().as_bytes()));
        let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let forged: p256::ecdsa::Signature = other.sign(b"payload");
        assert!(!key.verifies(b"payload", forged.to_der().as_bytes()));

        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        let ed = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32]);
        let ed_pem =
            ed.verifying_key().to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap();
        let ed_key = TrustKey::from_pem(&ed_pem).unwrap();
        assert_eq!(ed_key.algorithm(), "ed25519");
        assert!(ed_key.verifies(b"payload", &ed.sign(b"payload").to_bytes()));
        assert!(!ed_key.verifies(b"payload", sig.to_der().as_bytes()));

        for junk in ["", "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----", &"A".repeat(5000)] {
            assert!(TrustKey::from_pem(junk).is_err(), "{junk:.40}");
        }
    }

    /// The same bytes verify with OpenSSL, an independent ECDSA implementation.
    #[test]
    fn openssl_agrees_with_a_p256_signature() {
        use p256::ecdsa::signature::Signer as _;
        let (signing, pem) = p256_key();
        let sig: p256::ecdsa::Signature = signing.sign(b"cosign payload");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cosign.pub"), &pem).unwrap();
        std::fs::write(dir.path().join("payload"), b"cosign payload").unwrap();
        std::fs::write(dir.path().join("sig"), sig.to_der().as_bytes()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify", "cosign.pub", "-signature", "sig", "payload"])
            .current_dir(dir.path())
            .output()
            .expect("openssl is installed");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
    }
}
