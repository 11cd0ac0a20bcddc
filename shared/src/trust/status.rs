//! What signatures an artifact has: found among its referrers and at its cosign `.sig` tag,
//! verified against the registry's keys, and kept on its manifest record
//! (`ManifestRecord::signatures`) so listings and the pull gate read nothing more. Looked at
//! again whenever the artifact, one of its signatures, or the registry's keys change.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::settings;
use super::signature::{self, Shape};
use super::TrustError;
use crate::app::App;
use crate::metadata::{ManifestRecord, UnixTime};
use crate::oci::{Digest, Reference, RepoName, Tag};

/// The most signature manifests looked at per artifact (referrers of other kinds, such as
/// SBOMs and attestations, are not counted).
pub const MAX_SIGNATURES: usize = 64;
/// The most layers read per signature manifest.
pub const MAX_LAYERS: usize = 16;
/// The largest signature layer read (a payload or a bundle is a few KiB).
pub const MAX_LAYER_BYTES: u64 = 256 * 1024;
/// The most signature layers read and verified per artifact, over all its signatures (each is
/// tried against every key: this bounds what one look costs, however many junk signatures an
/// artifact was given). Signatures that verified before, and the one just pushed, are looked
/// at first, so junk pushed later cannot crowd them out.
pub const MAX_VERIFIED_LAYERS: usize = 64;

/// An artifact's signatures as last looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureStatus {
    /// how many signature manifests name the artifact
    pub signatures: u32,
    /// their shapes, each once
    pub shapes: Vec<Shape>,
    /// ids of the registry's keys under which at least one of them verified
    pub verified_keys: Vec<String>,
    /// digests of the signature manifests that verified (looked at first next time)
    #[serde(default)]
    pub verified_by: Vec<String>,
    /// signed indexes that list the artifact (cosign signs a multi-platform image's index):
    /// kept here when the index is looked at, so the gate never walks an artifact's parents
    #[serde(default)]
    pub signed_parents: Vec<SignedParent>,
    /// when they were looked at
    pub checked_at: UnixTime,
}

/// A signed index listing an artifact, and the trusted keys its signatures verified under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedParent {
    /// the index's digest
    pub index: String,
    /// the keys its signatures verified under when it was last looked at
    pub verified_keys: Vec<String>,
}

/// The most signed parents kept per artifact (those verified first).
pub const MAX_SIGNED_PARENTS: usize = 16;
/// The most children of an index told about its signatures.
pub const MAX_CHILDREN: usize = 256;

impl SignatureStatus {
    /// Whether any signature exists (the guide's "Authentication" column).
    pub fn signed(&self) -> bool {
        self.signatures > 0
    }

    /// The verified key ids the registry still trusts (`loaded`): a removed key verifies nothing.
    pub fn trusted_keys(&self, loaded: &settings::Loaded) -> Vec<String> {
        self.verified_keys.iter().filter(|id| loaded.trusts(id)).cloned().collect()
    }
}

/// Reads a stored status; `None` when it does not parse (it is then looked at again).
pub fn decode(stored: &str) -> Option<SignatureStatus> {
    serde_json::from_str(stored).ok()
}

/// The cosign v2 signature tag of `subject` (`sha256-<hex>.sig`).
pub fn signature_tag(subject: &Digest) -> Option<Tag> {
    crate::oci::accessory_tag(subject, "sig")
}

/// Looks at `subject`'s signatures now and records what it found on its manifest. `None` when
/// the subject is not (or no longer) in the repository.
pub async fn refresh(app: &App, repo: &RepoName, subject: &Digest) -> Result<Option<SignatureStatus>, TrustError> {
    refresh_first(app, repo, subject, None).await
}

/// [`refresh`], looking at the signature manifest `first` (just pushed) before the others.
async fn refresh_first(
    app: &App,
    repo: &RepoName,
    subject: &Digest,
    first: Option<&Digest>,
) -> Result<Option<SignatureStatus>, TrustError> {
    let Some(record) = app.meta.manifest(repo, subject).await? else {
        return Ok(None);
    };
    let mut priority: Vec<String> = first.iter().map(|d| d.to_string()).collect();
    let previous = match record.signatures.as_deref().and_then(decode) {
        Some(previous) => previous,
        // never looked at (stored before signatures were, or unsettled by a delete): its signed
        // parents are found from the indexes listing it, as their signing would have told it
        None => SignatureStatus { signed_parents: signed_parents_of(app, repo, subject).await?, ..Default::default() },
    };
    priority.extend(previous.verified_by.iter().cloned());
    let mut status = inspect_in_order(app, repo, subject, &priority).await?;
    // the signed indexes that still exist and still list it
    for parent in previous.signed_parents {
        let Ok(index) = parent.index.parse::<Digest>() else { continue };
        if app.meta.manifest(repo, &index).await?.is_some_and(|i| i.children.contains(subject)) {
            status.signed_parents.push(parent);
        }
    }
    store(app, repo, subject, &status).await?;
    if !record.children.is_empty() {
        tell_children(app, repo, subject, &record.children, &status).await?;
    }
    Ok(Some(status))
}

/// The signed indexes among the first 64 listing `child`, as their recorded statuses say.
async fn signed_parents_of(app: &App, repo: &RepoName, child: &Digest) -> Result<Vec<SignedParent>, TrustError> {
    let mut found = Vec::new();
    for parent in app.meta.parents(repo, child).await?.iter().take(64) {
        let Some(index) = app.meta.manifest(repo, parent).await? else { continue };
        if let Some(s) = index.signatures.as_deref().and_then(decode).filter(SignatureStatus::signed) {
            found.push(SignedParent { index: parent.to_string(), verified_keys: s.verified_keys });
        }
    }
    found.sort_by_key(|p| p.verified_keys.is_empty());
    found.truncate(MAX_SIGNED_PARENTS);
    Ok(found)
}

/// Marks `subjects` as never looked at, before a delete that changes their signatures: should
/// the look after it fail, the gate and listings look again instead of trusting a status that
/// names a deleted signature.
pub async fn unsettle(app: &App, repo: &RepoName, subjects: &[Digest]) -> Result<(), TrustError> {
    for subject in subjects {
        app.meta.record_signatures(repo, subject, "").await?;
    }
    Ok(())
}

/// Stores `status` on `subject`'s manifest.
async fn store(app: &App, repo: &RepoName, subject: &Digest, status: &SignatureStatus) -> Result<(), TrustError> {
    let encoded = serde_json::to_string(status).map_err(|e| TrustError::Encode(e.to_string()))?;
    app.meta.record_signatures(repo, subject, &encoded).await?;
    Ok(())
}

/// Records on each child of `index` whether the index is signed (and under which keys), so a
/// child pulled by digest passes the gate with its signed index.
async fn tell_children(
    app: &App,
    repo: &RepoName,
    index: &Digest,
    children: &[Digest],
    status: &SignatureStatus,
) -> Result<(), TrustError> {
    let name = index.to_string();
    for child in children.iter().take(MAX_CHILDREN) {
        let Some(child_record) = app.meta.manifest(repo, child).await? else { continue };
        let mut child_status = match child_record.signatures.as_deref().and_then(decode) {
            Some(s) => s,
            None => inspect(app, repo, child).await?,
        };
        let before = child_status.signed_parents.clone();
        child_status.signed_parents.retain(|p| p.index != name);
        if status.signed() {
            child_status
                .signed_parents
                .push(SignedParent { index: name.clone(), verified_keys: status.verified_keys.clone() });
        }
        // verified parents first (stable: the older stay ahead), then as many as are kept
        child_status.signed_parents.sort_by_key(|p| p.verified_keys.is_empty());
        child_status.signed_parents.truncate(MAX_SIGNED_PARENTS);
        if child_status.signed_parents != before {
            store(app, repo, child, &child_status).await?;
        }
    }
    Ok(())
}

/// The signatures of `subject`, verified against its registry's keys (recorded nowhere).
pub async fn inspect(app: &App, repo: &RepoName, subject: &Digest) -> Result<SignatureStatus, TrustError> {
    inspect_in_order(app, repo, subject, &[]).await
}

/// Whether a referrer is a signature by its record (its artifact type, else its config's media
/// type, and a bundle's predicate type annotation): only those count against
/// [`MAX_SIGNATURES`], so attestations and SBOMs cannot crowd signatures out.
fn signature_type(record: &ManifestRecord) -> bool {
    match record.artifact_type.as_deref() {
        Some(signature::NOTATION | signature::COSIGN_REFERRER_CONFIG) => true,
        Some(signature::SIGSTORE_BUNDLE) => {
            let predicate = record
                .annotations
                .as_ref()
                .and_then(|a| a.get(signature::BUNDLE_PREDICATE_ANNOTATION))
                .and_then(Value::as_str);
            predicate.is_none_or(|p| p == signature::COSIGN_SIGN_PREDICATE)
        }
        _ => false,
    }
}

/// [`inspect`], looking at the signature manifests named in `priority` first, then the cosign
/// `.sig` tag's, then the other signature referrers in digest order.
async fn inspect_in_order(
    app: &App,
    repo: &RepoName,
    subject: &Digest,
    priority: &[String],
) -> Result<SignatureStatus, TrustError> {
    let loaded = settings::get(app, crate::identity::registry::of_repository(repo.as_str())).await?;
    let mut candidates: Vec<(ManifestRecord, Option<String>)> = Vec::new();
    if let Some(tag) = signature_tag(subject) {
        if let Some(record) = app.meta.resolve_tag(repo, &tag).await? {
            candidates.push((record, Some(tag.as_str().to_string())));
        }
    }
    candidates
        .extend(app.meta.referrers(repo, subject, None).await?.into_iter().filter(signature_type).map(|r| (r, None)));
    let rank = |record: &ManifestRecord| {
        priority.iter().position(|p| *p == record.digest.to_string()).unwrap_or(priority.len())
    };
    // stable: the `.sig` tag stays ahead of the referrers among those not named in `priority`
    candidates.sort_by_key(|(record, _)| rank(record));
    // a manifest both at the `.sig` tag and referring to the subject is one signature
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|(record, _)| seen.insert(record.digest.clone()));
    let mut status = SignatureStatus { checked_at: app.clock.now(), ..Default::default() };
    let mut layers_left = MAX_VERIFIED_LAYERS;
    for (record, tag) in candidates.into_iter().take(MAX_SIGNATURES) {
        let bytes = match crate::registry::manifests::content(app, &record).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(repo = %repo, digest = %record.digest, error = %e, "a signature manifest could not be read");
                continue;
            }
        };
        let Ok(manifest) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let Some(shape) = signature::shape_of(&manifest, tag.as_deref()) else {
            continue;
        };
        status.signatures += 1;
        if !status.shapes.contains(&shape) {
            status.shapes.push(shape);
        }
        if shape == Shape::Notation || loaded.keys.is_empty() {
            continue;
        }
        let ids = verify(app, &manifest, shape, subject, &loaded.keys, &mut layers_left).await;
        if !ids.is_empty() && !status.verified_by.contains(&record.digest.to_string()) {
            status.verified_by.push(record.digest.to_string());
        }
        for id in ids {
            if !status.verified_keys.contains(&id) {
                status.verified_keys.push(id);
            }
        }
    }
    status.shapes.sort_by_key(|s| *s as u8);
    status.verified_keys.sort();
    status.verified_by.sort();
    Ok(status)
}

/// The key ids under which one signature manifest's layers verify as signatures of `subject`.
/// A layer that cannot be read or parsed verifies nothing (it is still a signature).
async fn verify(
    app: &App,
    manifest: &Value,
    shape: Shape,
    subject: &Digest,
    keys: &[super::keys::TrustKey],
    layers_left: &mut usize,
) -> Vec<String> {
    let subject = subject.to_string();
    let mut verified = Vec::new();
    let layers = manifest.get("layers").and_then(Value::as_array).cloned().unwrap_or_default();
    // newest first: cosign appends each new signature as a layer of the `.sig` image
    for layer in layers.iter().rev().take(MAX_LAYERS) {
        if *layers_left == 0 {
            break;
        }
        *layers_left -= 1;
        let Some(bytes) = read_layer(app, layer).await else {
            continue;
        };
        let result = match shape {
            Shape::CosignTag | Shape::CosignReferrer => {
                let annotation = layer.pointer("/annotations").and_then(|a| a.get(signature::SIGNATURE_ANNOTATION));
                match annotation.and_then(Value::as_str) {
                    Some(sig) => signature::verify_simple_signing(&bytes, sig, &subject, keys),
                    None => continue,
                }
            }
            Shape::SigstoreBundle => signature::verify_bundle(&bytes, &subject, keys),
            Shape::Notation => continue,
        };
        match result {
            Ok(ids) => verified.extend(ids),
            Err(e) => tracing::debug!(subject = %subject, error = %e, "a signature did not parse"),
        }
    }
    verified
}

/// A signature layer's bytes, if its descriptor is readable and small enough.
pub(super) async fn read_layer(app: &App, layer: &Value) -> Option<bytes::Bytes> {
    let size = layer.get("size").and_then(Value::as_u64)?;
    if size > MAX_LAYER_BYTES {
        return None;
    }
    let digest: Digest = layer.get("digest").and_then(Value::as_str)?.parse().ok()?;
    let stream = app.blobs.read(&digest, None).await.ok()?;
    let limit = usize::try_from(MAX_LAYER_BYTES).unwrap_or(usize::MAX);
    let bytes = crate::body::read_capped(stream, limit).await.ok()?;
    // the bytes are what the descriptor says, size and digest (a descriptor that lies about
    // either verifies nothing)
    (bytes.len() as u64 == size && Digest::of(digest.algorithm(), &bytes) == digest).then_some(bytes)
}

/// The subjects whose signatures change when a manifest is pushed or deleted under `tags`: the
/// manifest's own subject (a referrer) and those its cosign `.sig` tags name.
pub fn subjects_of(record: &ManifestRecord, tags: &[String]) -> Vec<Digest> {
    let mut subjects: Vec<Digest> = record.subject.iter().cloned().collect();
    for subject in subjects_of_tags(tags) {
        if !subjects.contains(&subject) {
            subjects.push(subject);
        }
    }
    subjects
}

/// The artifacts whose signatures change when `reference` is deleted from `repo` (read before
/// the delete): a `.sig` tag's subject, a deleted signature's, or a deleted index's children.
pub async fn signed_by(app: &App, repo: &RepoName, reference: &Reference) -> Result<Vec<Digest>, TrustError> {
    match reference {
        Reference::Tag(tag) => Ok(subjects_of_tags(&[tag.as_str().to_string()])),
        Reference::Digest(digest) => match app.meta.manifest(repo, digest).await? {
            Some(record) => {
                let mut subjects = subjects_of(&record, &app.meta.tags_of(repo, digest).await?);
                // a deleted index no longer signs what it lists
                subjects.extend(record.children.iter().take(MAX_CHILDREN).cloned());
                Ok(subjects)
            }
            None => Ok(Vec::new()),
        },
    }
}

/// The subjects cosign `.sig` tags among `tags` name.
pub fn subjects_of_tags(tags: &[String]) -> Vec<Digest> {
    let mut subjects: Vec<Digest> = Vec::new();
    for tag in tags {
        if let Some(subject) = signature::tag_subject(tag) {
            if !subjects.contains(&subject) {
                subjects.push(subject);
            }
        }
    }
    subjects
}

/// After a push: the pushed artifact's own signatures (it may have been signed before it came,
/// or be pushed again) and, if it is a signature, its subject's. Never fails the push; an
/// artifact whose record could not be written is looked at again by the pull gate.
pub async fn after_push(app: &App, repo: &RepoName, record: &ManifestRecord, tags: &[String]) {
    refresh_all(app, repo, std::slice::from_ref(&record.digest)).await;
    for subject in subjects_of(record, tags) {
        if let Err(e) = refresh_first(app, repo, &subject, Some(&record.digest)).await {
            tracing::warn!(repo = %repo, digest = %subject, error = %e, "could not look at an artifact's signatures");
        }
    }
}

/// Looks at each subject's signatures again, logging (not returning) failures.
pub async fn refresh_all(app: &App, repo: &RepoName, subjects: &[Digest]) {
    for subject in subjects {
        if let Err(e) = refresh(app, repo, subject).await {
            tracing::warn!(repo = %repo, digest = %subject, error = %e, "could not look at an artifact's signatures");
        }
    }
}

/// Looks again at every artifact of `registry` that has signatures or was never looked at
/// (its keys changed at `since`), skipping those looked at since (a redelivered job goes on
/// where the last one stopped); one that fails is logged and the walk goes on. Returns how many
/// artifacts were looked at.
pub async fn refresh_registry(app: &App, registry: &str, since: UnixTime) -> Result<u64, TrustError> {
    // the keys as stored now, not as this process cached them
    settings::forget_cached(registry);
    let meta = app.meta.as_ref();
    let mut count = 0;
    for repo in crate::identity::registry::images_of(meta, registry).await? {
        for record in crate::metadata::all_manifests(meta, &repo).await? {
            let status = record.signatures.as_deref().and_then(decode);
            let stale = status.is_none_or(|s| s.signed() && s.checked_at < since);
            if !stale {
                continue;
            }
            match refresh(app, &repo, &record.digest).await {
                Ok(_) => count += 1,
                Err(e) => {
                    tracing::warn!(repo = %repo, digest = %record.digest, error = %e, "could not look at an artifact's signatures")
                }
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_subjects_come_from_the_subject_field_and_sig_tags() {
        let hex = "5e42fbc46b177f10319e8937dd39702e7891ce6d8a42d60c1b4f433f94200bd2";
        let subject: Digest = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(signature_tag(&subject).unwrap().as_str(), format!("sha256-{hex}.sig"));
        let record = ManifestRecord {
            repo: RepoName::parse("team/app", None).unwrap(),
            digest: Digest::sha256_of(b"sig"),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 3,
            artifact_type: None,
            subject: None,
            annotations: None,
            blobs: vec![],
            children: vec![],
            pushed_at: 0,
            pulled_at: None,
            scan_gate: None,
            signatures: None,
        };
        let tags = vec![format!("sha256-{hex}.sig"), "latest".into(), format!("sha256-{hex}.att")];
        assert_eq!(subjects_of(&record, &tags), vec![subject.clone()]);
        let referrer = ManifestRecord { subject: Some(subject.clone()), ..record };
        assert_eq!(subjects_of(&referrer, &tags), vec![subject]);
        let status = SignatureStatus { signatures: 1, shapes: vec![Shape::CosignTag], ..Default::default() };
        assert_eq!(decode(&serde_json::to_string(&status).unwrap()), Some(status));
        assert_eq!(decode("junk"), None);
    }
}
