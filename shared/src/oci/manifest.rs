//! Manifest parsing: what a pushed manifest refers to (blobs, child manifests, subject), so the
//! registry can refuse dangling references and answer the referrers API.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The short-lived OCI artifact manifest draft, still sent by some older tools.
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";

/// Media type prefixes of layers that clients never push (they are fetched from `urls`), so
/// their absence is no error: every OCI non-distributable variant (`.v1.tar`, `+gzip`, `+zstd`)
/// and Docker's foreign layers.
const FOREIGN_LAYER_PREFIXES: [&str; 2] =
    ["application/vnd.oci.image.layer.nondistributable.", "application/vnd.docker.image.rootfs.foreign."];

/// Whether a layer is non-distributable: a foreign media type, or a descriptor that names `urls`
/// to fetch it from. The OCI image spec lets registries accept such manifests without the blob.
fn is_foreign_layer(layer: &Value, d: &Descriptor) -> bool {
    FOREIGN_LAYER_PREFIXES.iter().any(|p| d.media_type.starts_with(p))
        || layer.get("urls").and_then(Value::as_array).is_some_and(|urls| !urls.is_empty())
}

/// Why a manifest body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not JSON, or not a JSON object of a manifest's shape.
    #[error("manifest is not valid JSON: {0}")]
    Malformed(String),
    /// The media type is not one Berth stores.
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    /// The body's `mediaType` contradicts the request's `Content-Type`.
    #[error("Content-Type {content_type:?} does not match the manifest's mediaType {media_type:?}")]
    MediaTypeMismatch {
        /// from the request header
        content_type: String,
        /// from the body
        media_type: String,
    },
    /// A descriptor lacks a field or carries an invalid digest.
    #[error("descriptor {index} is invalid: {reason}")]
    InvalidDescriptor {
        /// position in document order
        index: usize,
        /// what is wrong
        reason: String,
    },
}

/// A content descriptor as found in manifests.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// the referenced content's media type
    pub media_type: String,
    /// the referenced content's digest
    pub digest: Digest,
    /// the referenced content's size in bytes
    pub size: u64,
}

/// What Berth needs to know about a manifest it stores.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    /// the effective media type, served back as `Content-Type`
    pub media_type: String,
    /// config and layers (image manifests) or blobs (artifact manifests)
    pub blobs: Vec<Descriptor>,
    /// child manifests (indexes and manifest lists)
    pub children: Vec<Descriptor>,
    /// the manifest this one refers to (signatures, SBOMs, attestations)
    pub subject: Option<Descriptor>,
    /// `artifactType`, or the config media type for image manifests, per the referrers API
    pub artifact_type: Option<String>,
    /// top-level annotations, as given
    pub annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Value>,
    layers: Option<Vec<Value>>,
    blobs: Option<Vec<Value>>,
    manifests: Option<Vec<Value>>,
    subject: Option<Value>,
    annotations: Option<Map<String, Value>>,
}

impl ParsedManifest {
    /// Parses `body`, taking the media type from `content_type` (the request header) or the body.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(body).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let header = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
            .filter(|c| !c.is_empty() && c != "application/octet-stream" && c != "application/json");
        let media_type = match (header, raw.media_type.clone()) {
            (Some(h), Some(m)) if h != m => {
                return Err(ManifestError::MediaTypeMismatch { content_type: h, media_type: m })
            }
            (Some(h), _) => h,
            (None, Some(m)) => m,
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) => OCI_MANIFEST.to_string(),
        };
        let mut position = 0usize;
        let mut next = |v: &Value| {
            position += 1;
            descriptor(v, position - 1)
        };
        let parsed = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                if raw.schema_version != Some(2) {
                    return Err(ManifestError::Malformed("schemaVersion must be 2".into()));
                }
                let config_value =
                    raw.config.as_ref().ok_or_else(|| ManifestError::Malformed("missing config".into()))?;
                let config = next(config_value)?;
                let mut blobs = vec![config.clone()];
                for layer in raw.layers.as_deref().unwrap_or_default() {
                    let d = next(layer)?;
                    if !is_foreign_layer(layer, &d) {
                        blobs.push(d);
                    }
                }
                let artifact_type = raw.artifact_type.clone().or(Some(config.media_type));
                ParsedManifest {
                    media_type,
                    blobs,
                    children: vec![],
                    subject: None,
                    artifact_type,
                    annotations: raw.annotations.clone(),
                }
            }
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                if raw.schema_version != Some(2) {
                    return Err(ManifestError::Malformed("schemaVersion must be 2".into()));
                }
                let list =
                    raw.manifests.as_ref().ok_or_else(|| ManifestError::Malformed("missing manifests".into()))?;
                let children = list.iter().map(&mut next).collect::<Result<Vec<_>, _>>()?;
                ParsedManifest {
                    media_type,
                    blobs: vec![],
                    children,
                    subject: None,
                    artifact_type: raw.artifact_type.clone(),
                    annotations: raw.annotations.clone(),
                }
            }
            OCI_ARTIFACT_MANIFEST => {
                let blobs = raw.blobs.as_deref().unwrap_or_default().iter().map(&mut next).collect::<Result<_, _>>()?;
                ParsedManifest {
                    media_type,
                    blobs,
                    children: vec![],
                    subject: None,
                    artifact_type: raw.artifact_type.clone(),
                    annotations: raw.annotations.clone(),
                }
            }
            other => return Err(ManifestError::UnsupportedMediaType(other.to_string())),
        };
        let subject = raw.subject.as_ref().map(&mut next).transpose()?;
        Ok(ParsedManifest { subject, ..parsed })
    }

    /// True for indexes and manifest lists.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

fn descriptor(v: &Value, index: usize) -> Result<Descriptor, ManifestError> {
    let invalid = |reason: &str| ManifestError::InvalidDescriptor { index, reason: reason.to_string() };
    let media_type = v.get("mediaType").and_then(Value::as_str).ok_or_else(|| invalid("missing mediaType"))?;
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("missing digest"))?
        .parse::<Digest>()
        .map_err(|e| invalid(&e.to_string()))?;
    let size = v.get("size").and_then(Value::as_u64).ok_or_else(|| invalid("missing or negative size"))?;
    Ok(Descriptor { media_type: media_type.to_string(), digest, size })
}

/// The field names of manifests, indexes, descriptors and platforms.
const KNOWN_FIELDS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "blobs",
    "manifests",
    "subject",
    "annotations",
    "digest",
    "size",
    "urls",
    "data",
    "platform",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "features",
];

/// A key as Go's `encoding/json` matches it to a field: case-insensitively, with `ſ` as `s` and
/// the Kelvin sign as `k`.
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Refuses a manifest body that clients could read differently from Berth (checked when one is
/// pushed; what a cache's source or an older Berth stored is read leniently): an object with
/// two keys Go's JSON decoder takes for the same field (`layers` and `Layers`), or a field
/// spelt other than exactly (`Layers` alone, which Berth ignores and docker reads as the
/// layers). Annotation keys are free-form and not checked.
pub fn check_unambiguous_body(body: &[u8]) -> Result<(), ManifestError> {
    let whole: Value = serde_json::from_slice(body).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    check_unambiguous(&whole)
}

/// [`check_unambiguous_body`] of a parsed document.
pub fn check_unambiguous(value: &Value) -> Result<(), ManifestError> {
    match value {
        Value::Object(map) => {
            let mut seen = std::collections::HashMap::new();
            for (key, inner) in map {
                let folded = fold(key);
                if let Some(other) = seen.insert(folded.clone(), key) {
                    return Err(ManifestError::Malformed(format!(
                        "keys {other:?} and {key:?} are the same field to other clients"
                    )));
                }
                if let Some(known) = KNOWN_FIELDS.iter().find(|f| fold(f) == folded) {
                    if key != known {
                        return Err(ManifestError::Malformed(format!("key {key:?} must be spelt {known:?}")));
                    }
                }
                if key != "annotations" {
                    check_unambiguous(inner)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_unambiguous),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_other_clients_read_differently_are_refused() {
        let image = |layers_key: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{0}","size":2}},{layers_key}}}"#,
                "a".repeat(64)
            )
        };
        assert!(check_unambiguous_body(image(r#""layers":[]"#).as_bytes()).is_ok());
        for bad in [r#""Layers":[]"#, r#""layers":[],"Layers":[]"#, "\"\u{17f}ize\":1", "\"LAYERS\":[]"] {
            let e = check_unambiguous_body(image(bad).as_bytes()).unwrap_err();
            assert!(matches!(e, ManifestError::Malformed(_)), "{bad}: {e}");
            assert!(ParsedManifest::parse(image(bad).as_bytes(), None).is_ok(), "read leniently once stored");
        }
        // annotation keys are free-form
        let annotated = image(r#""layers":[],"annotations":{"Layers":"x","layers":"y"}"#);
        assert!(check_unambiguous_body(annotated.as_bytes()).is_ok());
    }

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_references_config_and_layers() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}}, "annotations":{{"a":"b"}}}}"#,
            d('a'),
            d('b'),
            d('c')
        );
        let m = ParsedManifest::parse(body.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.subject.unwrap().digest.to_string(), d('c'));
        assert_eq!(m.artifact_type.as_deref(), Some("application/vnd.oci.image.config.v1+json"));
        assert_eq!(m.annotations.unwrap()["a"], "b");
    }

    #[test]
    fn non_distributable_layers_are_not_required_blobs() {
        let layers = [
            ("application/vnd.oci.image.layer.nondistributable.v1.tar", ""),
            ("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", ""),
            ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", ""),
            ("application/vnd.oci.image.layer.v1.tar+gzip", r#","urls":["https://example.com/l.tgz"]"#),
            ("application/vnd.oci.image.layer.v1.tar+gzip", r#","urls":[]"#),
        ]
        .iter()
        .map(|(t, urls)| format!(r#"{{"mediaType":"{t}","digest":"{}","size":3{urls}}}"#, d('b')))
        .collect::<Vec<_>>()
        .join(",");
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{layers}]}}"#,
            d('a')
        );
        let m = ParsedManifest::parse(body.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        // the config, and the one ordinary layer (an empty `urls` names nowhere to fetch from)
        assert_eq!(m.blobs.len(), 2);
    }

    #[test]
    fn index_lists_children_and_infers_its_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5}}]}}"#,
            d('e')
        );
        let m = ParsedManifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        assert!(m.is_index());
        assert_eq!(m.children[0].digest.to_string(), d('e'));
    }

    #[test]
    fn refuses_garbage_mismatches_and_bad_descriptors() {
        assert!(matches!(ParsedManifest::parse(b"{not json", None), Err(ManifestError::Malformed(_))));
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            ParsedManifest::parse(body.as_bytes(), Some(OCI_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let bad = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(matches!(
            ParsedManifest::parse(bad.as_bytes(), None),
            Err(ManifestError::InvalidDescriptor { index: 0, .. })
        ));
        assert!(matches!(
            ParsedManifest::parse(b"{}", Some("application/vnd.docker.distribution.manifest.v1+prettyjws")),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
    }
}
