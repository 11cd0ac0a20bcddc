//! The trust pull gate: with a registry's trust mode on, a manifest `GET` by a principal that may
//! not push to the repository is refused unless the image is signed (`any-signature`) or a
//! signature verifies under one of the registry's keys (`trusted-keys`). Pushers are never gated
//! (signing needs to read the image first), and neither are signatures and other referrers, so
//! `cosign verify` works; an index's child passes when the index does.

use super::settings::{self, TrustMode};
use super::status::{self, SignatureStatus};
use super::TrustError;
use crate::access::grants::Grants;
use crate::access::RepoAction;
use crate::app::App;
use crate::metadata::ManifestRecord;
use crate::oci::{accessory_subject, Reference, RepoName};

/// Refuses the `GET` of `record` (named by `reference`) when the registry's trust mode requires
/// what it lacks and `grants` may not push to `repo`.
pub async fn check_pull(
    app: &App,
    repo: &RepoName,
    reference: &Reference,
    record: &ManifestRecord,
    grants: Option<&Grants>,
) -> Result<(), TrustError> {
    let registry = crate::identity::registry::of_repository(repo.as_str());
    let loaded = settings::get(app, registry).await?;
    let mode = loaded.settings.mode;
    if mode == TrustMode::Off || passes(app, repo, record, &loaded).await? {
        return Ok(());
    }
    // what is not refused although unsigned: signatures and other referrers, what a signature
    // tag names, anything for a principal that may push here, and the child of an index that passes
    if record.subject.is_some() || matches!(reference, Reference::Tag(t) if accessory_subject(t.as_str()).is_some()) {
        return Ok(());
    }
    if may_push(app, repo, grants).await {
        return Ok(());
    }
    let tags = app.meta.tags_of(repo, &record.digest).await?;
    if tags.iter().any(|t| accessory_subject(t).is_some()) {
        return Ok(());
    }
    for parent in app.meta.parents(repo, &record.digest).await? {
        if let Some(index) = app.meta.manifest(repo, &parent).await? {
            if passes(app, repo, &index, &loaded).await? {
                return Ok(());
            }
        }
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
    Ok(match loaded.settings.mode {
        TrustMode::Off => true,
        TrustMode::AnySignature => status.signed(),
        TrustMode::TrustedKeys => status.verified_keys.iter().any(|id| loaded.trusts(id)),
    })
}
