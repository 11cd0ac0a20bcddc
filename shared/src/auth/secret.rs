//! Access keys and their secrets: generation, argon2id hashing and verification.
//!
//! An access key is a public id (`BK…`, like AWS's `AKIA…`) plus a random secret shown to its
//! owner once. Only the argon2id PHC string of the secret is stored.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Argon2id memory cost in KiB (OWASP minimum recommendation: 19 MiB).
pub const ARGON2_M_COST_KIB: u32 = 19_456;
/// Argon2id number of passes (OWASP minimum recommendation).
pub const ARGON2_T_COST: u32 = 2;
/// Argon2id degree of parallelism (OWASP minimum recommendation).
pub const ARGON2_P_COST: u32 = 1;
/// Length of the random salt in bytes, so every hash of one secret differs.
pub const SALT_LEN: usize = 16;

/// Prefix of every access key id, so Berth keys are recognisable (like AWS's `AKIA`).
pub const ACCESS_KEY_ID_PREFIX: &str = "BK";
/// Total length of an access key id, prefix included.
pub const ACCESS_KEY_ID_LEN: usize = 20;
/// Length of a secret: 30 random bytes in unpadded URL-safe base64.
pub const SECRET_LEN: usize = 40;

/// Symbols of an access key id after the prefix (RFC 4648 base32: unambiguous, uppercase).
const KEY_ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Number of random bytes behind a secret.
const SECRET_BYTES: usize = 30;

/// Upper bounds on the cost of a stored hash: a corrupted or tampered row must not make a
/// verification allocate gigabytes or run for minutes.
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 8;

/// Why generating, hashing or verifying a secret failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed")]
    Random,
    /// Computing an argon2 hash failed.
    #[error("hashing the secret failed: {0}")]
    Hash(String),
    /// A stored hash is not a usable argon2id PHC string.
    #[error("stored secret hash is malformed: {0}")]
    Malformed(String),
}

/// Fills an array with cryptographically secure random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|_| SecretError::Random)?;
    Ok(bytes)
}

/// Creates a new public access key id: `BK` followed by 18 random base32 symbols (90 bits).
pub fn new_access_key_id() -> Result<String, SecretError> {
    let random = random_bytes::<{ ACCESS_KEY_ID_LEN - 2 }>()?;
    let mut id = String::with_capacity(ACCESS_KEY_ID_LEN);
    id.push_str(ACCESS_KEY_ID_PREFIX);
    // 256 is a multiple of 32, so masking the low five bits is unbiased.
    id.extend(random.iter().map(|b| char::from(KEY_ID_ALPHABET[usize::from(b & 31)])));
    Ok(id)
}

/// Creates a new secret: 30 random bytes (240 bits) as 40 characters of unpadded URL-safe base64.
pub fn new_secret() -> Result<String, SecretError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>()?))
}

/// The argon2id hasher with Berth's parameters, used for every new hash.
fn hasher() -> Result<Argon2<'static>, SecretError> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|e| SecretError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a secret for storage: an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a random salt.
pub fn hash_secret(secret: &str) -> Result<String, SecretError> {
    let salt = SaltString::encode_b64(&random_bytes::<SALT_LEN>()?).map_err(|e| SecretError::Hash(e.to_string()))?;
    let hash = hasher()?.hash_password(secret.as_bytes(), &salt).map_err(|e| SecretError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Checks a secret against a stored PHC string in constant time: `Ok(false)` for a wrong secret,
/// an error for a hash that is not a well-formed argon2id PHC string within sane cost bounds.
pub fn verify_secret(secret: &str, phc: &str) -> Result<bool, SecretError> {
    verify_secret_in(secret, phc, &mut Vec::new())
}

/// [`verify_secret`] working in `memory`, grown to the hash's memory cost if needed and left
/// allocated for the next call: a login storm then reuses a few fixed buffers instead of
/// allocating and freeing 19 MiB per attempt, which the allocator keeps (RSS grew to gigabytes).
pub fn verify_secret_in(secret: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> Result<bool, SecretError> {
    let hash = PasswordHash::new(phc).map_err(|e| SecretError::Malformed(e.to_string()))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(SecretError::Malformed("algorithm is not argon2id".to_owned()));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(SecretError::Malformed("salt or hash output missing".to_owned()));
    }
    let params = Params::try_from(&hash).map_err(|e| SecretError::Malformed(e.to_string()))?;
    if params.m_cost() > MAX_M_COST_KIB || params.t_cost() > MAX_T_COST || params.p_cost() > MAX_P_COST {
        return Err(SecretError::Malformed("cost parameters exceed the allowed maximum".to_owned()));
    }
    // Version and parameters come from the PHC string, so hashes made with older parameters
    // still verify; the output comparison is constant-time.
    let malformed = |e: &dyn std::fmt::Display| SecretError::Malformed(e.to_string());
    let version = match hash.version {
        Some(v) => Version::try_from(v).map_err(|e| malformed(&e))?,
        None => Version::V0x13,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return Err(SecretError::Malformed("salt or hash output missing".to_owned()));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(|e| malformed(&e))?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .map_err(|e| malformed(&e))?;
    // constant time: every byte is compared whatever the first difference
    let differ = out.iter().zip(expected.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    Ok(differ == 0 && out.len() == expected.len())
}

/// Hex SHA-256 of a secret, a cheap key for in-memory caches of verified secrets; never store it
/// (it is not salted or slow, so it would let an attacker with the store brute-force secrets).
pub fn fingerprint(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_id_format() {
        let id = new_access_key_id().unwrap();
        assert_eq!(id.len(), ACCESS_KEY_ID_LEN);
        assert!(id.starts_with("BK"));
        assert!(id[2..].bytes().all(|b| KEY_ID_ALPHABET.contains(&b)), "{id}");
        assert_ne!(id, new_access_key_id().unwrap());
    }

    #[test]
    fn secret_format() {
        let secret = new_secret().unwrap();
        assert_eq!(secret.len(), SECRET_LEN);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{secret}");
        assert_eq!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len(), SECRET_BYTES);
        assert_ne!(secret, new_secret().unwrap());
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes::<32>().unwrap(), random_bytes::<32>().unwrap());
    }

    #[test]
    fn hash_and_verify_round_trip() {
        let secret = new_secret().unwrap();
        let started = std::time::Instant::now();
        let phc = hash_secret(&secret).unwrap();
        println!("hash_secret took {:?}", started.elapsed());
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let started = std::time::Instant::now();
        assert!(verify_secret(&secret, &phc).unwrap());
        println!("verify_secret took {:?}", started.elapsed());
        assert!(!verify_secret("wrong secret", &phc).unwrap());
        assert!(!verify_secret("", &phc).unwrap());
    }

    #[test]
    fn two_hashes_of_one_secret_differ() {
        let a = hash_secret("same secret").unwrap();
        let b = hash_secret("same secret").unwrap();
        assert_ne!(a, b);
        assert!(verify_secret("same secret", &a).unwrap());
        assert!(verify_secret("same secret", &b).unwrap());
    }

    #[test]
    fn malformed_phc_is_an_error() {
        for phc in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA",
            "$argon2id$v=19$m=zzz,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA",
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(matches!(verify_secret("secret", phc), Err(SecretError::Malformed(_))), "{phc:?}");
        }
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        let params = Params::new(8, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(&[7u8; SALT_LEN]).unwrap();
        let phc = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"secret", &salt)
            .unwrap()
            .to_string();
        assert!(verify_secret("secret", &phc).unwrap());
        assert!(!verify_secret("secreT", &phc).unwrap());
    }

    #[test]
    fn fingerprint_is_hex_sha256() {
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
