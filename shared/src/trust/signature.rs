//! The shapes in which signing tools store a signature beside an image, and their verification:
//! - cosign v2: an image manifest at tag `sha256-<hex>.sig`, one layer per signature of media
//!   type [`SIMPLE_SIGNING`] whose blob is the payload and whose annotation
//!   [`SIGNATURE_ANNOTATION`] is the base64 signature of it;
//! - cosign v2 in OCI 1.1 mode: the same layers in a referrer whose config media type is
//!   [`COSIGN_REFERRER_CONFIG`];
//! - cosign v3: a referrer of artifact type [`SIGSTORE_BUNDLE`] whose layer is a Sigstore bundle
//!   holding a DSSE envelope of an in-toto statement naming the image;
//! - notation: a referrer of artifact type [`NOTATION`] (recognised, not verified).

use base64::Engine;
use serde_json::Value;

use super::keys::TrustKey;
use super::TrustError;

/// cosign's simple-signing payload media type.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding a cosign signature (base64).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The config media type of cosign's OCI 1.1 referrer signatures.
pub const COSIGN_REFERRER_CONFIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// A Sigstore bundle (cosign v3's default signature).
pub const SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The in-toto predicate type of a cosign signature (other predicates are attestations).
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The manifest annotation naming a bundle's predicate type.
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
/// A Notary Project signature.
pub const NOTATION: &str = "application/vnd.cncf.notary.signature";

/// How a signature is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// cosign v2's `sha256-<hex>.sig` tag
    CosignTag,
    /// cosign's OCI 1.1 referrer
    CosignReferrer,
    /// cosign v3's Sigstore bundle referrer
    SigstoreBundle,
    /// a notation signature
    Notation,
}

/// The subject digest a cosign signature tag names (`sha256-<hex>.sig` → `sha256:<hex>`): the
/// `.sig` one of the tag-schema accessories [`crate::oci::accessory_subject`] reads.
pub fn tag_subject(tag: &str) -> Option<crate::oci::Digest> {
    tag.ends_with(".sig").then(|| crate::oci::accessory_subject(tag)).flatten()
}

/// The shape of a manifest pushed under `tag` (if by tag), or `None` if it is no signature.
pub fn shape_of(manifest: &Value, tag: Option<&str>) -> Option<Shape> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let artifact_type = text(manifest, "artifactType");
    let config_type = manifest.get("config").and_then(|c| text(c, "mediaType"));
    let has_subject = manifest.get("subject").is_some();
    let types = [artifact_type.as_deref(), config_type.as_deref()];
    if has_subject && types.contains(&Some(SIGSTORE_BUNDLE)) {
        // `cosign attest` stores attestations the same way, under another predicate type
        let predicate = manifest.pointer("/annotations").and_then(|a| text(a, BUNDLE_PREDICATE_ANNOTATION));
        return predicate.is_none_or(|p| p == COSIGN_SIGN_PREDICATE).then_some(Shape::SigstoreBundle);
    }
    if has_subject && types.contains(&Some(NOTATION)) {
        return Some(Shape::Notation);
    }
    if has_subject && types.contains(&Some(COSIGN_REFERRER_CONFIG)) {
        return Some(Shape::CosignReferrer);
    }
    let simple = manifest
        .get("layers")
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty() && l.iter().all(|d| text(d, "mediaType").as_deref() == Some(SIMPLE_SIGNING)));
    (simple && tag.and_then(tag_subject).is_some()).then_some(Shape::CosignTag)
}

/// The ids of `keys` under which one simple-signing layer (its `payload` and base64
/// `signature` annotation) verifies as a signature of `subject` (`sha256:<hex>`). The payload
/// must name that digest and cosign's type: a valid signature of another image verifies nothing.
pub fn verify_simple_signing(
    payload: &[u8],
    signature_b64: &str,
    subject: &str,
    keys: &[TrustKey],
) -> Result<Vec<String>, TrustError> {
    let claims: Value =
        serde_json::from_slice(payload).map_err(|e| TrustError::Signature(format!("the payload is not JSON: {e}")))?;
    let critical = claims.get("critical").ok_or_else(|| TrustError::Signature("no `critical` claims".into()))?;
    let digest = critical.pointer("/image/docker-manifest-digest").and_then(Value::as_str);
    let kind = critical.get("type").and_then(Value::as_str);
    if kind != Some("cosign container image signature") || digest != Some(subject) {
        return Ok(Vec::new());
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|e| TrustError::Signature(format!("the signature is not base64: {e}")))?;
    Ok(keys.iter().filter(|k| k.verifies(payload, &signature)).map(|k| k.id.clone()).collect())
}

/// DSSE's pre-authentication encoding: what a DSSE signature signs.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut pae = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    pae.extend_from_slice(payload);
    pae
}

/// The ids of `keys` under which a Sigstore bundle (cosign v3) verifies as a signature of
/// `subject`: its DSSE envelope's statement names the digest, and a signature over the PAE
/// verifies.
pub fn verify_bundle(bundle: &[u8], subject: &str, keys: &[TrustKey]) -> Result<Vec<String>, TrustError> {
    let bad = |why: &str| TrustError::Signature(why.to_string());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s.trim());
    let bundle: Value = serde_json::from_slice(bundle).map_err(|_| bad("the bundle is not JSON"))?;
    let envelope = bundle.get("dsseEnvelope").ok_or_else(|| bad("the bundle holds no DSSE envelope"))?;
    let payload_type = envelope.get("payloadType").and_then(Value::as_str).unwrap_or_default();
    let payload = envelope
        .get("payload")
        .and_then(Value::as_str)
        .and_then(|p| b64(p).ok())
        .ok_or_else(|| bad("the envelope's payload is not base64"))?;
    let statement: Value = serde_json::from_slice(&payload).map_err(|_| bad("the statement is not JSON"))?;
    let hex = subject.strip_prefix("sha256:").unwrap_or_default();
    let names_subject = statement
        .get("subject")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|d| d.pointer("/digest/sha256").and_then(Value::as_str) == Some(hex)));
    let predicate = statement.get("predicateType").and_then(Value::as_str);
    if payload_type != "application/vnd.in-toto+json" || !names_subject || predicate != Some(COSIGN_SIGN_PREDICATE) {
        return Ok(Vec::new());
    }
    let pae = dsse_pae(payload_type, &payload);
    let signatures: Vec<Vec<u8>> = envelope
        .get("signatures")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(|s| s.get("sig").and_then(Value::as_str)).filter_map(|s| b64(s).ok()).collect())
        .unwrap_or_default();
    Ok(keys.iter().filter(|k| signatures.iter().any(|s| k.verifies(&pae, s))).map(|k| k.id.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::keys::tests::p256_key;
    use p256::ecdsa::signature::Signer as _;
    use serde_json::json;

    const SUBJECT: &str = "sha256:5e42fbc46b177f10319e8937dd39702e7891ce6d8a42d60c1b4f433f94200bd2";

    fn payload(digest: &str) -> Vec<u8> {
        json!({"critical": {"identity": {"docker-reference": "reg/hy/busybox"},
            "image": {"docker-manifest-digest": digest}, "type": "cosign container image signature"},
            "optional": null})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn shapes_are_told_apart() {
        let tag = "sha256-5e42fbc46b177f10319e8937dd39702e7891ce6d8a42d60c1b4f433f94200bd2.sig";
        assert_eq!(tag_subject(tag).map(|d| d.to_string()).as_deref(), Some(SUBJECT));
        assert_eq!(tag_subject("sha256-abc.sig"), None);
        assert_eq!(tag_subject(&tag.replace(".sig", ".att")), None, "an attestation tag signs nothing");
        let sig = json!({"layers": [{"mediaType": SIMPLE_SIGNING}]});
        assert_eq!(shape_of(&sig, Some(tag)), Some(Shape::CosignTag));
        assert_eq!(shape_of(&sig, Some("latest")), None, "a simple-signing layer under another tag is no signature");
        let subject = json!({"digest": SUBJECT});
        let bundle = json!({"artifactType": SIGSTORE_BUNDLE, "subject": subject});
        assert_eq!(shape_of(&bundle, None), Some(Shape::SigstoreBundle));
        let referrer = json!({"config": {"mediaType": COSIGN_REFERRER_CONFIG}, "subject": subject});
        assert_eq!(shape_of(&referrer, None), Some(Shape::CosignReferrer));
        assert_eq!(shape_of(&json!({"artifactType": NOTATION, "subject": subject}), None), Some(Shape::Notation));
        assert_eq!(shape_of(&json!({"artifactType": SIGSTORE_BUNDLE}), None), None, "no subject, no signature");
        let attestation = json!({"artifactType": SIGSTORE_BUNDLE, "subject": subject,
            "annotations": {BUNDLE_PREDICATE_ANNOTATION: "https://slsa.dev/provenance/v1"}});
        assert_eq!(shape_of(&attestation, None), None, "an attestation is no signature");
    }

    #[test]
    fn a_cosign_signature_verifies_only_for_its_image_and_key() {
        let (signing, pem) = p256_key();
        let key = TrustKey::from_pem(&pem).unwrap();
        let body = payload(SUBJECT);
        let sig: p256::ecdsa::Signature = signing.sign(&body);
        let b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
        let keys = [key.clone()];
        assert_eq!(verify_simple_signing(&body, &b64, SUBJECT, &keys).unwrap(), vec![key.id.clone()]);
        // signed, but for another image; a modified payload; another key
        let other = "sha256:".to_string() + &"0".repeat(64);
        assert!(verify_simple_signing(&body, &b64, &other, &keys).unwrap().is_empty());
        let mut modified = body.clone();
        modified.push(b' ');
        assert!(verify_simple_signing(&modified, &b64, SUBJECT, &keys).unwrap().is_empty());
        let stranger = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let forged: p256::ecdsa::Signature = stranger.sign(&body);
        let forged = base64::engine::general_purpose::STANDARD.encode(forged.to_der().as_bytes());
        assert!(verify_simple_signing(&body, &forged, SUBJECT, &keys).unwrap().is_empty());
        assert!(verify_simple_signing(b"not json", &b64, SUBJECT, &keys).is_err());
    }

    #[test]
    fn a_sigstore_bundle_verifies_over_the_dsse_encoding() {
        let (signing, pem) = p256_key();
        let keys = [TrustKey::from_pem(&pem).unwrap()];
        let statement = json!({"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"digest": {"sha256": SUBJECT.trim_start_matches("sha256:")}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}})
        .to_string();
        assert_eq!(dsse_pae("t", b"ab"), b"DSSEv1 1 t 2 ab");
        let pae = dsse_pae("application/vnd.in-toto+json", statement.as_bytes());
        let sig: p256::ecdsa::Signature = signing.sign(&pae);
        let engine = base64::engine::general_purpose::STANDARD;
        let bundle = |sig: &[u8]| {
            json!({"mediaType": SIGSTORE_BUNDLE, "dsseEnvelope": {"payloadType": "application/vnd.in-toto+json",
                "payload": engine.encode(&statement), "signatures": [{"sig": engine.encode(sig)}]}})
            .to_string()
        };
        let good = bundle(sig.to_der().as_bytes());
        assert_eq!(verify_bundle(good.as_bytes(), SUBJECT, &keys).unwrap().len(), 1);
        let other = "sha256:".to_string() + &"1".repeat(64);
        assert!(verify_bundle(good.as_bytes(), &other, &keys).unwrap().is_empty());
        // a signature over the bare statement, not its DSSE encoding, does not verify
        let bare: p256::ecdsa::Signature = signing.sign(statement.as_bytes());
        assert!(verify_bundle(bundle(bare.to_der().as_bytes()).as_bytes(), SUBJECT, &keys).unwrap().is_empty());
    }
}
