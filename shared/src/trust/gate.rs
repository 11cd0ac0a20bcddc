//! The trust pull gate: with a registry's trust mode on, a manifest `GET` by a principal that may
//! not push to the repository is refused unless the image is signed (`any-signature`) or a
//! signature verifies under one of the registry's keys (`trusted-keys`). Pushers are never gated
//! (signing needs to read the image first), and neither are signatures, attestations and SBOMs
//! (judged by their layers), so `cosign verify` works; an index's child passes when the index
//! does.

use serde_json::Value;

use super::settings::{self, TrustMode};
use super::signature;
use super::status::{self, SignatureStatus};
use super::TrustError;
use crate::access::grants::Grants;
use crate::access::RepoAction;
use crate::app::App;
use crate::metadata::ManifestRecord;
use crate::oci::RepoName;

/// The layer media types of what signing and attestation tools push: a manifest whose layers
/// are all of these (or that has none) holds nothing to run, so the gate lets it through (a
/// signature must be readable to be verified).
const ACCESSORY_LAYERS: &[&str] = &[
    signature::SIMPLE_SIGNING,
    "application/vnd.dsse.envelope.v1+json",
    "application/vnd.in-toto+json",
    "application/jose+json",
    "application/spdx+json",
    "text/spdx+json",
    "spdx+json",
    "application/vnd.cyclonedx+json",
    "application/vnd.syft+json",
    "application/vnd.oci.empty.v1+json",
];

/// Whether a manifest is a signature, attestation or SBOM rather than something to run: an image
/// manifest (OCI or Docker, stored as `media_type`; not an index, not an OCI artifact manifest
/// with `blobs`) whose layers are all [`ACCESSORY_LAYERS`] or Sigstore bundles, and that no
/// client could read differently (stored before pushes were checked for that). Judged by
/// content, never by tag or `subject` (anyone who may push chooses those).
pub fn is_accessory(media_type: &str, doc: &Value) -> bool {
    if !matches!(media_type, crate::oci::manifest::OCI_MANIFEST | crate::oci::manifest::DOCKER_MANIFEST) {
        return false;
    }
    if crate::oci::manifest::check_unambiguous(doc).is_err()
        || doc.get("manifests").is_some()
        || doc.get("blobs").is_some()
    {
        return false;
    }
    let layers = match doc.get("layers") {
        None | Some(Value::Null) => return true,
        Some(Value::Array(layers)) => layers,
        Some(_) => return false,
    };
    layers.iter().all(|layer| {
        layer
            .get("mediaType")
            .and_then(Value::as_str)
            .is_some_and(|t| ACCESSORY_LAYERS.contains(&t) || t.starts_with("application/vnd.dev.sigstore.bundle."))
    })
}

/// Whether `record` is an accessory whose every layer is a small JSON document as its
/// descriptor says: what signing tools push, and nothing a container runtime can unpack (a
/// tar is never JSON), whatever media types a pusher wrote on it.
async fn harmless(app: &App, record: &ManifestRecord) -> bool {
    let Ok(bytes) = crate::registry::manifests::content(app, record).await else {
        return false;
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
        return false;
    };
    if !is_accessory(&record.media_type, &doc) {
        return false;
    }
    let layers = doc.get("layers").and_then(Value::as_array).cloned().unwrap_or_default();
    if layers.len() > status::MAX_LAYERS {
        return false;
    }
    for layer in &layers {
        match status::read_layer(app, layer).await {
            Some(blob) if serde_json::from_slice::<serde::de::IgnoredAny>(&blob).is_ok() => {}
            _ => return false,
        }
    }
    true
}

/// Refuses the `GET` of `record` when the registry's trust mode requires what it lacks and
/// `grants` may not push to `repo`.
pub async fn check_pull(
    app: &App,
    repo: &RepoName,
    record: &ManifestRecord,
    grants: Option<&Grants>,
) -> Result<(), TrustError> {
    let registry = crate::identity::registry::of_repository(repo.as_str());
    let loaded = settings::get(app, registry).await?;
    let mode = loaded.settings.mode;
    if mode == TrustMode::Off || passes(app, repo, record, &loaded).await? {
        return Ok(());
    }
    // what is not refused although unsigned: anything for a principal that may push here, and
    // signatures and other accessories themselves
    if may_push(app, repo, grants).await {
        return Ok(());
    }
    if harmless(app, record).await {
        return Ok(());
    }
    let why = match mode {
        TrustMode::TrustedKeys => "has no signature that verifies under the registry's trusted keys",
        _ => "is not signed",
    };
    Err(TrustError::Refused(format!(
        "pull refused: {repo}@{} {why} (registry {registry:?} trust mode {}); sign it (cosign sign) and pull again",
        record.digest,
        mode.as_str()
    )))
}

/// Whether the caller may push to `repo`: the request's own grants say so, or (a token asks only
/// for what a client needs: `docker pull` gets a pull-only token) the role of the user it names.
async fn may_push(app: &App, repo: &RepoName, grants: Option<&Grants>) -> bool {
    let Some(grants) = grants else {
        return false;
    };
    if grants.allows(repo.as_str(), RepoAction::Push) {
        return true;
    }
    let registry = crate::identity::registry::of_repository(repo.as_str());
    match crate::access::guard::user_of(app, grants).await {
        Ok(user) => user.may(crate::identity::Action::PushImages, Some(registry)),
        Err(_) => false,
    }
}

/// Whether `record` meets the registry's mode, judged from its recorded signatures (looked at
/// now if never looked at).
async fn passes(
    app: &App,
    repo: &RepoName,
    record: &ManifestRecord,
    loaded: &settings::Loaded,
) -> Result<bool, TrustError> {
    let recorded: Option<SignatureStatus> = record.signatures.as_deref().and_then(status::decode);
    let status = match recorded {
        Some(s) => s,
        None => status::refresh(app, repo, &record.digest).await?.unwrap_or_default(),
    };
    if meets(&status, loaded) {
        return Ok(true);
    }
    // a signed index listing it: the list recorded on it only names candidates; each is judged
    // as it is now (it may have been deleted, or lost its signatures, since)
    for parent in &status.signed_parents {
        let Ok(digest) = parent.index.parse::<crate::oci::Digest>() else { continue };
        let Some(index) = app.meta.manifest(repo, &digest).await? else { continue };
        let now = index.signatures.as_deref().and_then(status::decode).unwrap_or_default();
        if index.children.contains(&record.digest) && meets(&now, loaded) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether an artifact's own signatures meet the registry's mode.
fn meets(status: &SignatureStatus, loaded: &settings::Loaded) -> bool {
    match loaded.settings.mode {
        TrustMode::Off => true,
        TrustMode::AnySignature => status.signed(),
        TrustMode::TrustedKeys => status.verified_keys.iter().any(|id| loaded.trusts(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OCI: &str = crate::oci::manifest::OCI_MANIFEST;

    #[test]
    fn accessories_are_told_by_their_layers_not_their_names() {
        let doc = |v: Value| v;
        let layer = |t: &str| json!({"mediaType": t, "digest": "sha256:00", "size": 1});
        let sig = json!({"config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [layer(signature::SIMPLE_SIGNING)]});
        assert!(is_accessory(OCI, &doc(sig.clone())));
        assert!(!is_accessory("application/vnd.oci.artifact.manifest.v1+json", &doc(sig)), "content in `blobs`");
        let bundle = json!({"subject": {}, "layers": [layer(signature::SIGSTORE_BUNDLE)]});
        assert!(is_accessory(OCI, &doc(bundle)));
        assert!(is_accessory(OCI, &doc(json!({"layers": []}))), "nothing to run");
        // an image with a `subject` is still an image
        let image = json!({"subject": {"digest": "sha256:00"},
            "layers": [layer(signature::SIMPLE_SIGNING), layer("application/vnd.oci.image.layer.v1.tar+gzip")]});
        assert!(!is_accessory(OCI, &doc(image)));
        assert!(!is_accessory(OCI, &doc(json!({"manifests": [], "subject": {}}))), "an index lists images");
        assert!(!is_accessory(OCI, &doc(json!({"layers": [{"digest": "sha256:00"}]}))), "no media type");
        assert!(!is_accessory(OCI, &doc(json!({"layers": {}}))));
        assert!(!is_accessory(OCI, &doc(json!({"layers": [], "Layers": [layer("x")]}))), "read differently by Go");
        assert!(!is_accessory(OCI, &doc(json!({"layers": [], "blobs": [layer("x")]}))));
        let helm = json!({"layers": [layer("application/vnd.cncf.helm.chart.content.v1.tar+gzip")]});
        assert!(!is_accessory(OCI, &doc(helm)), "a chart is something to install");
    }
}
