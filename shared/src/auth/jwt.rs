//! Docker registry bearer tokens: JWTs signed with EdDSA (Ed25519), compact serialization.
//!
//! Written by hand rather than with a JWT library so that exactly one algorithm exists: a token
//! whose header names anything but `EdDSA` (`none`, `HS256`, …) is refused before any other work,
//! the signature is checked with `verify_strict` before any claim is read, and no error message
//! echoes the token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};

/// The one signing algorithm Berth issues and accepts (RFC 8037).
pub const ALGORITHM: &str = "EdDSA";
/// Longest token `verify` will look at, so oversized input costs nothing to refuse.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a key could not be built or a token could not be signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    /// The token is not three base64url parts holding a JSON header, JSON claims and a signature.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// The header names a missing or unsupported algorithm.
    #[error("token algorithm is not accepted: {0}")]
    Algorithm(String),
    /// The header has a `crit` parameter; no critical extensions are supported.
    #[error("token header has critical extensions, which are not supported")]
    CriticalHeader,
    /// The header's `kid` names a different key than the one verifying.
    #[error("token was signed with a different key id")]
    KeyIdMismatch,
    /// The signature does not verify under the key.
    #[error("token signature is invalid")]
    BadSignature,
    /// The token's `iss` is not the expected issuer.
    #[error("token issuer is not the expected issuer")]
    WrongIssuer,
    /// The token's `aud` is not the expected audience.
    #[error("token audience is not the expected audience")]
    WrongAudience,
    /// The token's `exp` has passed (leeway included).
    #[error("token has expired")]
    Expired,
    /// The token's `nbf` is still in the future (leeway included).
    #[error("token is not valid yet")]
    NotYetValid,
    /// A signing or verifying key could not be decoded.
    #[error("invalid key: {0}")]
    Key(String),
    /// The operating system's random number generator failed while generating a key.
    #[error("the operating system random number generator failed")]
    Random,
    /// Serializing the header or claims failed while signing.
    #[error("encoding the token failed: {0}")]
    Encode(String),
}

/// The private Ed25519 key that signs registry tokens; `Debug` shows only its key id.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    kid: String,
}

/// The public half of a [`SigningKey`], all that token verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: ed25519_dalek::VerifyingKey,
    kid: String,
}

/// First 16 hex characters of the SHA-256 of a public key: a stable, short `kid`.
fn key_id_of(key: &ed25519_dalek::VerifyingKey) -> String {
    let mut id = hex::encode(Sha256::digest(key.as_bytes()));
    id.truncate(16);
    id
}

impl SigningKey {
    /// Generates a new key from 32 bytes of operating-system randomness.
    pub fn generate() -> Result<Self, JwtError> {
        let mut seed = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
        getrandom::getrandom(&mut seed).map_err(|_| JwtError::Random)?;
        let key = Self::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// Restores a key persisted with [`SigningKey::seed_b64`] (32 bytes, unpadded base64url).
    pub fn from_seed_b64(seed_b64: &str) -> Result<Self, JwtError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(seed_b64.trim())
            .map_err(|_| JwtError::Key("seed is not unpadded base64url".to_owned()))?;
        let seed: [u8; ed25519_dalek::SECRET_KEY_LENGTH] =
            bytes.as_slice().try_into().map_err(|_| JwtError::Key("seed is not 32 bytes".to_owned()))?;
        Ok(Self::from_seed(&seed))
    }

    fn from_seed(seed: &[u8; ed25519_dalek::SECRET_KEY_LENGTH]) -> Self {
        let inner = ed25519_dalek::SigningKey::from_bytes(seed);
        let kid = key_id_of(&inner.verifying_key());
        Self { inner, kid }
    }

    /// The 32-byte seed as unpadded base64url, to persist the key (treat it as a secret).
    pub fn seed_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.inner.to_bytes())
    }

    /// The key id put in every token header and JWK, so verifiers can pick the right key.
    pub fn key_id(&self) -> String {
        self.kid.clone()
    }

    /// The public key that verifies this key's tokens.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey { inner: self.inner.verifying_key(), kid: self.kid.clone() }
    }

    /// The public key as a JWK (RFC 8037 `OKP`/`Ed25519`), for a JWKS endpoint.
    pub fn public_jwk(&self) -> serde_json::Value {
        self.verifying_key().jwk()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Builds a verifying key from a raw 32-byte public key in unpadded base64url (a JWK's `x`).
    pub fn from_public_b64(x: &str) -> Result<Self, JwtError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(x.trim())
            .map_err(|_| JwtError::Key("public key is not unpadded base64url".to_owned()))?;
        let bytes: [u8; ed25519_dalek::PUBLIC_KEY_LENGTH] =
            bytes.as_slice().try_into().map_err(|_| JwtError::Key("public key is not 32 bytes".to_owned()))?;
        let inner = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| JwtError::Key("public key is not a valid Ed25519 point".to_owned()))?;
        Ok(Self { kid: key_id_of(&inner), inner })
    }

    /// The raw public key as unpadded base64url (a JWK's `x`).
    pub fn public_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.inner.as_bytes())
    }

    /// The key id tokens signed by the matching private key carry in their header.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The key as a JWK (RFC 8037 `OKP`/`Ed25519`), for a JWKS endpoint.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.public_b64(),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        })
    }
}

/// One grant in a Docker registry token: actions allowed on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// Resource type, e.g. `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name, e.g. a repository name such as `team/app`, or `catalog`.
    pub name: String,
    /// Granted actions, e.g. `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// The claims of a Docker registry token (distribution token specification plus Berth's `refused` and `access_key_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the token service that signed the token.
    pub iss: String,
    /// Subject: the user (or robot) the token was issued to.
    pub sub: String,
    /// Audience: the registry service the token is for.
    pub aud: String,
    /// Expiry, in seconds since the Unix epoch; the token is invalid from this instant.
    pub exp: i64,
    /// Not before, in seconds since the Unix epoch; the token is invalid before this instant.
    pub nbf: i64,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: i64,
    /// Unique token id, for audit logs and revocation lists.
    pub jti: String,
    /// What the token allows; empty grants nothing beyond authentication.
    #[serde(default)]
    pub access: Vec<Access>,
    /// The user's role generation when the token was issued: a role change bumps it, and the
    /// registry refuses tokens of an older generation.
    #[serde(default)]
    pub gen: u64,
    /// The access key's secret generation when the token was issued: rotating the key bumps it,
    /// and the registry refuses tokens of an older generation.
    #[serde(default)]
    pub kgen: u64,
    /// Access key id whose secret obtained the token, so revoking the key can revoke its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// What was asked for and refused, so the registry can answer 403 (a new token would not
    /// help) rather than a 401 challenge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Access>,
}

/// The header Berth writes: algorithm, type and key id, in that order.
#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// The header fields `verify` looks at; others are ignored, duplicates of these are refused.
#[derive(Deserialize)]
struct HeaderIn {
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: Option<()>,
}

/// Deserializes any value (even `null`) as "present", so a `crit` member is never overlooked.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<()>, D::Error> {
    IgnoredAny::deserialize(deserializer)?;
    Ok(Some(()))
}

/// Signs claims into a compact JWS: `base64url(header).base64url(claims).base64url(signature)`.
pub fn sign(key: &SigningKey, claims: &Claims) -> Result<String, JwtError> {
    let header = HeaderOut { alg: ALGORITHM, typ: "JWT", kid: &key.kid };
    let header = serde_json::to_vec(&header).map_err(|e| JwtError::Encode(e.to_string()))?;
    let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Encode(e.to_string()))?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.inner.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    Ok(token)
}

/// Describes an unaccepted `alg` value without echoing arbitrary token content.
fn describe_alg(alg: &str) -> String {
    let printable = !alg.is_empty()
        && alg.len() <= 16
        && alg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'+');
    if printable {
        format!("{alg:?} (only {ALGORITHM} is accepted)")
    } else {
        format!("unrecognised value (only {ALGORITHM} is accepted)")
    }
}

const NOT_THREE_PARTS: JwtError = JwtError::Malformed("not three dot-separated parts");

/// Verifies a token and returns its claims: header (`alg` exactly `EdDSA`, no `crit`, matching
/// `kid`), then the signature (strict Ed25519), then issuer, audience and validity window.
pub fn verify(
    key: &VerifyingKey,
    token: &str,
    expected_iss: &str,
    expected_aud: &str,
    now: i64,
    leeway_secs: i64,
) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge);
    }
    // The signing input is the first two parts exactly as received, dot included.
    let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(NOT_THREE_PARTS)?;
    let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(NOT_THREE_PARTS)?;
    if payload_b64.contains('.') {
        return Err(NOT_THREE_PARTS);
    }

    let header = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| JwtError::Malformed("header is not base64url"))?;
    if header.trim_ascii_start().first() != Some(&b'{') {
        return Err(JwtError::Malformed("header is not a JSON object"));
    }
    let header: HeaderIn =
        serde_json::from_slice(&header).map_err(|_| JwtError::Malformed("header is not a valid JSON object"))?;
    match header.alg.as_deref() {
        Some(ALGORITHM) => {}
        Some(other) => return Err(JwtError::Algorithm(describe_alg(other))),
        None => return Err(JwtError::Algorithm("header has no alg".to_owned())),
    }
    if header.crit.is_some() {
        return Err(JwtError::CriticalHeader);
    }
    if header.kid.is_some_and(|kid| kid != key.kid) {
        return Err(JwtError::KeyIdMismatch);
    }

    let signature =
        URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| JwtError::Malformed("signature is not base64url"))?;
    let signature: [u8; ed25519_dalek::SIGNATURE_LENGTH] =
        signature.as_slice().try_into().map_err(|_| JwtError::Malformed("signature is not 64 bytes"))?;
    let signature = ed25519_dalek::Signature::from_bytes(&signature);
    key.inner.verify_strict(signing_input.as_bytes(), &signature).map_err(|_| JwtError::BadSignature)?;

    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| JwtError::Malformed("claims are not base64url"))?;
    let claims: Claims =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed("claims are not a valid claims object"))?;
    if claims.iss != expected_iss {
        return Err(JwtError::WrongIssuer);
    }
    if claims.aud != expected_aud {
        return Err(JwtError::WrongAudience);
    }
    let leeway = leeway_secs.max(0);
    if now < claims.nbf.saturating_sub(leeway) {
        return Err(JwtError::NotYetValid);
    }
    if now >= claims.exp.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "berth-token";
    const AUD: &str = "berth-registry";
    const NOW: i64 = 1_700_000_000;

    fn claims() -> Claims {
        Claims {
            iss: ISS.to_owned(),
            sub: "alice".to_owned(),
            aud: AUD.to_owned(),
            exp: NOW + 300,
            nbf: NOW - 5,
            iat: NOW - 5,
            jti: "3f1c2a".to_owned(),
            access: vec![Access {
                kind: "repository".to_owned(),
                name: "team/app".to_owned(),
                actions: vec!["pull".to_owned(), "push".to_owned()],
            }],
            refused: vec![Access {
                kind: "repository".to_owned(),
                name: "team/other".to_owned(),
                actions: vec!["delete".to_owned()],
            }],
            access_key_id: Some("BKABCDEFGHIJKLMNOPQR".to_owned()),
            gen: 0,
            kgen: 0,
        }
    }

    fn b64(json: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    /// Signs arbitrary header and payload JSON with `key`, bypassing `sign`'s fixed header.
    fn sign_raw(key: &SigningKey, header: &serde_json::Value, payload: &serde_json::Value) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = key.inner.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn check(key: &SigningKey, token: &str) -> Result<Claims, JwtError> {
        verify(&key.verifying_key(), token, ISS, AUD, NOW, 0)
    }

    #[test]
    fn round_trip() {
        let key = SigningKey::generate().unwrap();
        let token = sign(&key, &claims()).unwrap();
        assert_eq!(check(&key, &token).unwrap(), claims());

        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts(&token)[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.key_id()}));
    }

    #[test]
    fn claims_without_optional_fields_round_trip() {
        let key = SigningKey::generate().unwrap();
        let claims = Claims { access: vec![], refused: vec![], access_key_id: None, ..claims() };
        let token = sign(&key, &claims).unwrap();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts(&token)[1]).unwrap()).unwrap();
        assert!(!payload.contains("access_key_id") && !payload.contains("refused"), "{payload}");
        assert_eq!(check(&key, &token).unwrap(), claims);
    }

    #[test]
    fn docker_access_claim_shape() {
        let value = serde_json::to_value(claims()).unwrap();
        assert_eq!(
            value["access"],
            serde_json::json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
        );
    }

    #[test]
    fn tampered_payload_is_bad_signature() {
        let key = SigningKey::generate().unwrap();
        let token = sign(&key, &claims()).unwrap();
        let p = parts(&token);
        let mut forged = claims();
        forged.access[0].actions.push("delete".to_owned());
        let token = format!("{}.{}.{}", p[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap()), p[2]);
        assert_eq!(check(&key, &token), Err(JwtError::BadSignature));
    }

    #[test]
    fn tampered_signature_is_bad_signature() {
        let key = SigningKey::generate().unwrap();
        let token = sign(&key, &claims()).unwrap();
        let p = parts(&token);
        let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
        sig[0] ^= 1;
        let token = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(check(&key, &token), Err(JwtError::BadSignature));
    }

    #[test]
    fn non_canonical_signature_scalar_is_rejected() {
        // Adding the group order to S gives the "same" signature in a malleable verifier.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let key = SigningKey::generate().unwrap();
        let token = sign(&key, &claims()).unwrap();
        let p = parts(&token);
        let mut sig = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
        let mut carry = 0u16;
        for (s, l) in sig[32..].iter_mut().zip(L) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        let token = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(check(&key, &token), Err(JwtError::BadSignature));
    }

    #[test]
    fn alg_none_is_refused() {
        let key = SigningKey::generate().unwrap();
        let payload = serde_json::to_value(claims()).unwrap();
        let token = format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT"})), b64(&payload));
        assert!(matches!(check(&key, &token), Err(JwtError::Algorithm(_))));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let key = SigningKey::generate().unwrap();
        let payload = serde_json::to_value(claims()).unwrap();
        let fake_sig = URL_SAFE_NO_PAD.encode([0u8; 32]);
        for alg in ["HS256", "ES256", "RS256", "eddsa", "EdDSA ", "Ed25519", ""] {
            let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": key.key_id()});
            let token = format!("{}.{}.{fake_sig}", b64(&header), b64(&payload));
            assert!(matches!(check(&key, &token), Err(JwtError::Algorithm(_))), "{alg:?}");
            // Even correctly Ed25519-signed, a header naming another algorithm is refused.
            let token = sign_raw(&key, &header, &payload);
            assert!(matches!(check(&key, &token), Err(JwtError::Algorithm(_))), "{alg:?}");
        }
        let token = sign_raw(&key, &serde_json::json!({"typ": "JWT"}), &payload);
        assert!(matches!(check(&key, &token), Err(JwtError::Algorithm(_))));
        let token = sign_raw(&key, &serde_json::json!({"alg": null}), &payload);
        assert!(matches!(check(&key, &token), Err(JwtError::Algorithm(_))));
        let token = sign_raw(&key, &serde_json::json!({"alg": ["EdDSA"]}), &payload);
        assert!(matches!(check(&key, &token), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn algorithm_error_does_not_echo_arbitrary_content() {
        let key = SigningKey::generate().unwrap();
        let payload = serde_json::to_value(claims()).unwrap();
        let alg = "x".repeat(200) + "\n<script>";
        let token = sign_raw(&key, &serde_json::json!({"alg": alg}), &payload);
        let err = check(&key, &token).unwrap_err();
        assert!(matches!(err, JwtError::Algorithm(_)));
        assert!(!err.to_string().contains("xxxx") && !err.to_string().contains("script"), "{err}");
    }

    #[test]
    fn crit_header_is_refused() {
        let key = SigningKey::generate().unwrap();
        let payload = serde_json::to_value(claims()).unwrap();
        for crit in [serde_json::json!(["exp"]), serde_json::json!([]), serde_json::Value::Null] {
            let header = serde_json::json!({"alg": "EdDSA", "crit": crit});
            assert_eq!(check(&key, &sign_raw(&key, &header, &payload)), Err(JwtError::CriticalHeader));
        }
    }

    #[test]
    fn header_without_kid_is_accepted_and_wrong_kid_refused() {
        let key = SigningKey::generate().unwrap();
        let payload = serde_json::to_value(claims()).unwrap();
        let token = sign_raw(&key, &serde_json::json!({"alg": "EdDSA"}), &payload);
        assert_eq!(check(&key, &token).unwrap(), claims());
        let token = sign_raw(&key, &serde_json::json!({"alg": "EdDSA", "kid": "0123456789abcdef"}), &payload);
        assert_eq!(check(&key, &token), Err(JwtError::KeyIdMismatch));
    }

    #[test]
    fn duplicate_or_non_object_header_is_malformed() {
        let key = SigningKey::generate().unwrap();
        let payload = b64(&serde_json::to_value(claims()).unwrap());
        for header in [r#"{"alg":"none","alg":"EdDSA"}"#, r#"["EdDSA"]"#, "null", "{"] {
            let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header));
            let sig = key.inner.sign(input.as_bytes());
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
            assert!(matches!(check(&key, &token), Err(JwtError::Malformed(_))), "{header}");
        }
    }

    #[test]
    fn another_keys_token_is_bad_signature() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let token = sign(&other, &claims()).unwrap();
        // With the other key's kid in the header, the mismatch is caught before the signature.
        assert_eq!(check(&key, &token), Err(JwtError::KeyIdMismatch));
        // Without a kid (or with ours forged in), the signature check refuses it.
        let payload = serde_json::to_value(claims()).unwrap();
        let token = sign_raw(&other, &serde_json::json!({"alg": "EdDSA"}), &payload);
        assert_eq!(check(&key, &token), Err(JwtError::BadSignature));
        let token = sign_raw(&other, &serde_json::json!({"alg": "EdDSA", "kid": key.key_id()}), &payload);
        assert_eq!(check(&key, &token), Err(JwtError::BadSignature));
    }

    #[test]
    fn expiry_with_leeway() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        let claims = claims();
        let token = sign(&key, &claims).unwrap();
        assert!(verify(&vk, &token, ISS, AUD, claims.exp - 1, 0).is_ok());
        assert_eq!(verify(&vk, &token, ISS, AUD, claims.exp, 0), Err(JwtError::Expired));
        assert!(verify(&vk, &token, ISS, AUD, claims.exp + 29, 30).is_ok());
        assert_eq!(verify(&vk, &token, ISS, AUD, claims.exp + 30, 30), Err(JwtError::Expired));
        // A negative leeway is treated as none rather than shortening the token's life.
        assert!(verify(&vk, &token, ISS, AUD, claims.exp - 1, -100).is_ok());
    }

    #[test]
    fn not_yet_valid_with_leeway() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        let claims = claims();
        let token = sign(&key, &claims).unwrap();
        assert!(verify(&vk, &token, ISS, AUD, claims.nbf, 0).is_ok());
        assert_eq!(verify(&vk, &token, ISS, AUD, claims.nbf - 1, 0), Err(JwtError::NotYetValid));
        assert!(verify(&vk, &token, ISS, AUD, claims.nbf - 30, 30).is_ok());
        assert_eq!(verify(&vk, &token, ISS, AUD, claims.nbf - 31, 30), Err(JwtError::NotYetValid));
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        let token = sign(&key, &Claims { nbf: i64::MIN, exp: i64::MAX, ..claims() }).unwrap();
        assert!(verify(&vk, &token, ISS, AUD, NOW, i64::MAX).is_ok());
        let token = sign(&key, &Claims { nbf: i64::MAX, exp: i64::MIN, ..claims() }).unwrap();
        assert_eq!(verify(&vk, &token, ISS, AUD, NOW, 0), Err(JwtError::NotYetValid));
        assert_eq!(verify(&vk, &token, ISS, AUD, i64::MAX, i64::MAX), Err(JwtError::Expired));
    }

    #[test]
    fn wrong_issuer_and_audience() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key();
        let token = sign(&key, &claims()).unwrap();
        assert_eq!(verify(&vk, &token, "someone-else", AUD, NOW, 0), Err(JwtError::WrongIssuer));
        assert_eq!(verify(&vk, &token, ISS, "other-registry", NOW, 0), Err(JwtError::WrongAudience));
    }

    #[test]
    fn garbage_is_malformed_without_panicking() {
        let key = SigningKey::generate().unwrap();
        let token = sign(&key, &claims()).unwrap();
        let p = parts(&token);
        let cases = [
            String::new(),
            ".".to_owned(),
            "..".to_owned(),
            "...".to_owned(),
            "a.b".to_owned(),
            "a.b.c".to_owned(),
            "a.b.c.d".to_owned(),
            "!!!.$$$.%%%".to_owned(),
            "é.é.é".to_owned(),
            format!("{token}."),
            format!("{}.{}", p[0], p[1]),
            format!("{}.{}.", p[0], p[1]),
            format!("{}.{}.{}=", p[0], p[1], p[2]),
            format!("{}.{}.{}", p[0], p[1], &p[2][..10]),
            format!("{}={}.{}", p[0], p[1], p[2]),
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), p[1], p[2]),
            format!("{} .{}.{}", p[0], p[1], p[2]),
        ];
        for case in &cases {
            assert!(matches!(check(&key, case), Err(JwtError::Malformed(_))), "{case:?}: {:?}", check(&key, case));
        }
    }

    #[test]
    fn signed_but_invalid_claims_are_malformed() {
        let key = SigningKey::generate().unwrap();
        let header = serde_json::json!({"alg": "EdDSA", "kid": key.key_id()});
        let mut missing_exp = serde_json::to_value(claims()).unwrap();
        missing_exp.as_object_mut().unwrap().remove("exp");
        let mut string_exp = serde_json::to_value(claims()).unwrap();
        string_exp["exp"] = serde_json::json!("soon");
        let mut aud_list = serde_json::to_value(claims()).unwrap();
        aud_list["aud"] = serde_json::json!([AUD]);
        for payload in [missing_exp, string_exp, aud_list, serde_json::json!("x"), serde_json::json!(null)] {
            assert!(
                matches!(check(&key, &sign_raw(&key, &header, &payload)), Err(JwtError::Malformed(_))),
                "{payload}"
            );
        }
    }

    #[test]
    fn oversized_token_is_refused() {
        let key = SigningKey::generate().unwrap();
        let token = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(check(&key, &token), Err(JwtError::TooLarge));
        let big = Claims { jti: "j".repeat(MAX_TOKEN_LEN), ..claims() };
        assert_eq!(check(&key, &sign(&key, &big).unwrap()), Err(JwtError::TooLarge));
    }

    #[test]
    fn errors_never_echo_the_token() {
        let key = SigningKey::generate().unwrap();
        let token = sign(&key, &claims()).unwrap();
        let p = parts(&token);
        let tampered = format!("{}.{}.{}", p[0], p[1], URL_SAFE_NO_PAD.encode([0u8; 64]));
        for bad in [tampered.as_str(), "a.b.c", &token[..token.len() - 3]] {
            let message = check(&key, bad).unwrap_err().to_string();
            for part in bad.split('.').filter(|s| s.len() > 3) {
                assert!(!message.contains(part), "{message}");
            }
        }
    }

    #[test]
    fn seed_round_trip_keeps_key_id() {
        let key = SigningKey::generate().unwrap();
        let restored = SigningKey::from_seed_b64(&key.seed_b64()).unwrap();
        assert_eq!(restored.key_id(), key.key_id());
        assert_eq!(restored.verifying_key(), key.verifying_key());
        let token = sign(&restored, &claims()).unwrap();
        assert_eq!(check(&key, &token).unwrap(), claims());
        assert_ne!(SigningKey::generate().unwrap().key_id(), key.key_id());
    }

    #[test]
    fn bad_seeds_are_key_errors() {
        for seed in ["", "not base64!", "AAAA", &URL_SAFE_NO_PAD.encode([1u8; 33])] {
            assert!(matches!(SigningKey::from_seed_b64(seed), Err(JwtError::Key(_))), "{seed:?}");
        }
    }

    #[test]
    fn key_id_and_jwk() {
        let key = SigningKey::generate().unwrap();
        let kid = key.key_id();
        assert_eq!(kid.len(), 16);
        assert!(kid.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{kid}");
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], kid.as_str());
        let x = jwk["x"].as_str().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap().len(), 32);
        let vk = VerifyingKey::from_public_b64(x).unwrap();
        assert_eq!(vk, key.verifying_key());
        assert_eq!(vk.key_id(), kid);
        assert!(!format!("{key:?}").contains(&key.seed_b64()));
    }

    #[test]
    fn rfc8037_test_vector() {
        // RFC 8037 appendix A.1/A.4: the seed's public key and the signature of "Example of Ed25519 signing".
        let key = SigningKey::from_seed_b64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
        assert_eq!(key.verifying_key().public_b64(), "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        let signature = key.inner.sign(b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(signature.to_bytes()),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        // The RFC's JWS verifies (its payload is not registry claims, so only the claims fail).
        let jws = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
                   hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        assert_eq!(check(&key, jws), Err(JwtError::Malformed("claims are not a valid claims object")));
    }
}
