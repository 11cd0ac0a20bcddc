//! A CycloneDX 1.5 SBOM of each scanned artifact (the packages its inventory found), attached as
//! its referrer (artifact type [`SBOM_TYPE`]), so `oras discover` / `oras pull` and any
//! SBOM-aware tool find it beside the image. The document is deterministic (no timestamps; the
//! serial number derives from the content): a rescan of unchanged layers attaches nothing new.

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::attach;
use super::inventory::Inventory;
use super::version::Ecosystem;
use super::ScanError;
use crate::app::App;
use crate::metadata::ManifestRecord;
use crate::oci::{Digest, RepoName};

/// The most package text an attached SBOM may describe (a real image's is well under 1 MiB).
const MAX_SBOM_TEXT: usize = 32 * 1024 * 1024;

/// The artifact type (and layer media type) of an attached SBOM.
pub const SBOM_TYPE: &str = "application/vnd.cyclonedx+json";

/// A package URL (<https://github.com/package-url/purl-spec>) of an installed OS package.
fn purl(ecosystem: Ecosystem, os: Option<&super::inventory::Os>, name: &str, version: &str) -> String {
    let kind = match ecosystem {
        Ecosystem::Dpkg => "deb",
        Ecosystem::Apk => "apk",
        Ecosystem::Rpm => "rpm",
        // a Python package is the same on every OS: no namespace, no distro (purl's pypi type)
        Ecosystem::Pypi => {
            let name = super::inventory::python_name(name);
            return format!("pkg:pypi/{}@{}", encode(&name), encode(version));
        }
    };
    // an rpm epoch is a qualifier, not part of the version
    let (epoch, version) = match version.split_once(':') {
        Some((e, v)) if ecosystem == Ecosystem::Rpm && !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(e), v)
        }
        _ => (None, version),
    };
    let namespace = os.map_or("", |o| o.id.as_str());
    let mut purl = format!("pkg:{kind}/{}/{}@{}", encode(namespace), encode(name), encode(version));
    let mut qualifiers = Vec::new();
    if let Some(os) = os.filter(|o| !o.version_id.is_empty()) {
        qualifiers.push(format!("distro={}-{}", encode(&os.id), encode(&os.version_id)));
    }
    if let Some(epoch) = epoch {
        qualifiers.push(format!("epoch={epoch}"));
    }
    if !qualifiers.is_empty() {
        purl.push('?');
        purl.push_str(&qualifiers.join("&"));
    }
    purl
}

/// Percent-encodes what a purl component may not hold literally.
fn encode(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '-' | '_' | '~' | '+' | ':' => c.to_string(),
            other => other.to_string().bytes().map(|b| format!("%{b:02X}")).collect(),
        })
        .collect()
}

/// The SBOM of artifact `repo@digest` whose images installed `inventories`.
pub fn cyclonedx(repo: &RepoName, digest: &Digest, inventories: &[Inventory]) -> Value {
    let mut components = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for inventory in inventories {
        if let Some(os) = &inventory.os {
            if seen.insert(format!("os:{}:{}", os.id, os.version_id)) {
                components
                    .push(json!({"type": "operating-system", "bom-ref": format!("os:{}@{}", os.id, os.version_id),
                    "name": os.id, "version": os.version_id}));
            }
        }
        for p in &inventory.packages {
            let purl = purl(p.ecosystem, inventory.os.as_ref(), &p.name, &p.version);
            if seen.insert(purl.clone()) {
                components.push(json!({
                    "type": "library", "bom-ref": purl, "name": p.name, "version": p.version, "purl": purl,
                    "properties": [{"name": "berth:package:source", "value": format!("{} {}", p.source, p.source_version)}],
                }));
            }
        }
    }
    let subject = format!("{repo}@{digest}");
    let hash = Sha256::digest(serde_json::to_vec(&(&subject, &components)).unwrap_or_default());
    let h = hex::encode(&hash[..16]);
    let serial = format!("urn:uuid:{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": serial,
        "version": 1,
        "metadata": {
            // no version: an upgrade of Berth must not attach a new SBOM to every artifact
            "tools": {"components": [{"type": "application", "author": "Berth", "name": "berth"}]},
            "component": {"type": "container", "bom-ref": subject, "name": repo.as_str(), "version": digest.to_string()},
        },
        "components": components,
    })
}

/// Attaches the SBOM of `subject` (scanned into `inventories`) as its referrer; the SBOM
/// manifest's digest.
pub async fn attach(
    app: &App,
    repo: &RepoName,
    subject: &ManifestRecord,
    inventories: &[Inventory],
) -> Result<Digest, ScanError> {
    // layers bound their own package text; an image of many such layers gets no SBOM
    let text: usize = inventories.iter().flat_map(|i| &i.packages).map(super::inventory::Package::text_len).sum();
    if text > MAX_SBOM_TEXT {
        return Err(ScanError::Invalid(format!(
            "the image's packages hold {text} bytes of names and versions, more than an SBOM may ({MAX_SBOM_TEXT})"
        )));
    }
    let document = cyclonedx(repo, &subject.digest, inventories);
    let bytes = Bytes::from(serde_json::to_vec(&document).map_err(|e| ScanError::Manifest(e.to_string()))?);
    let digest = Digest::sha256_of(&bytes);
    let size = bytes.len();
    attach::put_blob(app, repo, &digest, bytes).await?;
    let layer = json!({"mediaType": SBOM_TYPE, "digest": digest.to_string(), "size": size,
                       "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"}});
    attach::push_referrer(app, repo, subject, SBOM_TYPE, vec![layer], json!({"io.berth.sbom.generator": "berth"})).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_urls_follow_the_purl_spec() {
        let os = super::super::inventory::Os { id: "debian".into(), version_id: "12".into() };
        assert_eq!(
            purl(Ecosystem::Dpkg, Some(&os), "zlib1g", "1:1.2.13.dfsg-1"),
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?distro=debian-12"
        );
        assert_eq!(purl(Ecosystem::Apk, None, "a b", "1.0@x"), "pkg:apk//a%20b@1.0%40x");
    }
}
