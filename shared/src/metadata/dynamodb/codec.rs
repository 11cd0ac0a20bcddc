//! Attribute values and decoding of stored items.

#[allow(unused_imports)]
use super::*;

// --- attribute values ---

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn digest_list(digests: &[Digest]) -> AttributeValue {
    AttributeValue::L(digests.iter().map(|d| s(d.to_string())).collect())
}

pub(super) fn attrs<const N: usize>(pairs: [(&str, AttributeValue); N]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A new random put token (32 hex digits).
pub(super) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// This process's wall clock, for the age of staged items.
pub(super) fn wall_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether a staged REF or CHILD item may still belong to a put in progress. An item without a
/// readable `created_at` counts as pending: holding on to data is the safe mistake.
pub(super) fn is_pending(item: &Item, now: i64) -> bool {
    item.get("created_at")
        .and_then(|v| v.as_n().ok())
        .and_then(|t| t.parse::<i64>().ok())
        .is_none_or(|t| t > now.saturating_sub(PENDING_SECS))
}

/// Approximately how many bytes DynamoDB counts for a value.
pub(super) fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(x) => x.len(),
        AttributeValue::N(x) => x.len() / 2 + 2,
        AttributeValue::B(x) => x.as_ref().len(),
        AttributeValue::L(l) => 3 + l.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() + value_size(x)).sum::<usize>(),
        AttributeValue::Ss(x) => x.iter().map(String::len).sum(),
        AttributeValue::Ns(x) => x.iter().map(|v| v.len() / 2 + 2).sum(),
        AttributeValue::Bs(x) => x.iter().map(|b| b.as_ref().len()).sum(),
        _ => 1,
    }
}

/// Approximately how many bytes DynamoDB counts for an item (names plus values).
pub(super) fn item_size<'a>(attributes: impl IntoIterator<Item = (&'a str, &'a AttributeValue)>) -> usize {
    attributes.into_iter().map(|(name, v)| name.len() + value_size(v)).sum()
}

pub(super) fn too_large(what: &str, size: usize) -> MetadataError {
    MetadataError::Backend(format!(
        "{what} needs about {size} bytes, more than a DynamoDB item holds ({MAX_ITEM_BYTES} bytes)"
    ))
}

// --- decoding ---

pub(super) fn corrupt(what: impl std::fmt::Display) -> MetadataError {
    MetadataError::Corrupt(what.to_string())
}

pub(super) fn attr<'a>(item: &'a Item, name: &str) -> Result<&'a AttributeValue, MetadataError> {
    item.get(name).ok_or_else(|| corrupt(format!("item lacks attribute {name}")))
}

pub(super) fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str, MetadataError> {
    attr(item, name)?.as_s().map(String::as_str).map_err(|_| corrupt(format!("attribute {name} is not a string")))
}

pub(super) fn opt_string<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, MetadataError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(corrupt(format!("attribute {name} is not a string"))),
    }
}

pub(super) fn number<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, MetadataError> {
    let raw = attr(item, name)?.as_n().map_err(|_| corrupt(format!("attribute {name} is not a number")))?;
    raw.parse().map_err(|_| corrupt(format!("attribute {name} holds {raw:?}, not the number expected")))
}

pub(super) fn binary(item: &Item, name: &str) -> Result<Vec<u8>, MetadataError> {
    match attr(item, name)? {
        AttributeValue::B(b) => Ok(b.as_ref().to_vec()),
        _ => Err(corrupt(format!("attribute {name} is not binary"))),
    }
}

pub(super) fn digests(item: &Item, name: &str) -> Result<Vec<Digest>, MetadataError> {
    let list = attr(item, name)?.as_l().map_err(|_| corrupt(format!("attribute {name} is not a list")))?;
    list.iter()
        .map(|v| {
            let text = v.as_s().map_err(|_| corrupt(format!("attribute {name} holds a non-string")))?;
            text.parse::<Digest>().map_err(|e| corrupt(format!("attribute {name}: {e}")))
        })
        .collect()
}

pub(super) fn string_set(item: &Item, name: &str) -> Result<Vec<String>, MetadataError> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(AttributeValue::Ss(v)) => Ok(v.clone()),
        Some(_) => Err(corrupt(format!("attribute {name} is not a string set"))),
    }
}

pub(super) fn parse_digest(text: &str) -> Result<Digest, MetadataError> {
    text.parse().map_err(|e| corrupt(format!("stored digest {text:?}: {e}")))
}

/// The digest a `DIGEST#<digest>` partition key names.
pub(super) fn digest_of_pk(item: &Item) -> Result<Digest, MetadataError> {
    let pk = string(item, PK)?;
    parse_digest(pk.strip_prefix("DIGEST#").ok_or_else(|| corrupt(format!("unexpected key {pk:?}")))?)
}

pub(super) fn decode_manifest(repo: &RepoName, item: &Item) -> Result<ManifestRecord, MetadataError> {
    let annotations = match opt_string(item, "annotations")? {
        None => None,
        Some(json) => Some(serde_json::from_str::<Map<String, Value>>(json).map_err(corrupt)?),
    };
    Ok(ManifestRecord {
        repo: repo.clone(),
        digest: digest_of_pk(item)?,
        media_type: string(item, "media_type")?.to_string(),
        size: number(item, "size")?,
        artifact_type: opt_string(item, "artifact_type")?.map(str::to_string),
        subject: opt_string(item, "subject")?.map(parse_digest).transpose()?,
        annotations,
        blobs: digests(item, "blobs")?,
        children: digests(item, "children")?,
        pushed_at: number(item, "pushed_at")?,
        pulled_at: item.get("pulled_at").map(|_| number(item, "pulled_at")).transpose()?,
        scan_gate: opt_string(item, "scan_gate")?.map(str::to_string),
        signatures: opt_string(item, "signatures")?.map(str::to_string),
    })
}

pub(super) fn decode_document(item: &Item) -> Result<Document, MetadataError> {
    let body = serde_json::from_str(string(item, "body")?).map_err(|e| corrupt(format!("document body: {e}")))?;
    Ok(Document { id: string(item, SK)?.to_string(), body, version: number(item, "version")? })
}

/// A document item's `body` and `version` attributes, refused when the item would be too large.
pub(super) fn document_attributes(key: &Key, body: &Value, version: u64) -> Result<Item, MetadataError> {
    let json = serde_json::to_string(body)
        .map_err(|e| MetadataError::Backend(format!("document body could not be encoded: {e}")))?;
    let item = attrs([("body", s(json)), ("version", n(version))]);
    let size = key.0.len() + key.1.len() + 4 + item_size(item.iter().map(|(k, v)| (k.as_str(), v)));
    if size > MAX_ITEM_BYTES - ITEM_HEADROOM {
        return Err(too_large(&format!("document {:?} of {:?}", key.1, key.0), size));
    }
    Ok(item)
}

pub(super) fn document_conflict(collection: &str, id: &str) -> MetadataError {
    MetadataError::Conflict(format!("document {id:?} of collection {collection:?}"))
}

/// `value` cut to what a sort key can hold (on a character boundary), for a Query's lower
/// bound; the caller then applies the uncut value exactly.
pub(super) fn sort_key_bound(value: &str) -> &str {
    let mut cut = value.len().min(MAX_SORT_KEY_BYTES);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    &value[..cut]
}

pub(super) fn decode_upload(item: &Item) -> Result<UploadSession, MetadataError> {
    let pk = string(item, PK)?;
    let id = pk.strip_prefix("UPLOAD#").ok_or_else(|| corrupt(format!("unexpected key {pk:?}")))?;
    Ok(UploadSession {
        id: UploadId::parse(id).map_err(corrupt)?,
        repo: RepoName::parse(string(item, "repo")?, None).map_err(corrupt)?,
        offset: number(item, "byte_offset")?,
        hash_state: binary(item, "hash_state")?,
        staging: binary(item, "staging")?,
        created_at: number(item, "created_at")?,
        updated_at: number(item, UPDATED_AT)?,
        owner: item.get("owner").and_then(|v| v.as_s().ok()).cloned(),
    })
}

pub(super) fn upload_item(session: &UploadSession) -> Result<Item, MetadataError> {
    let mut item = key_item(&upload_key(session.id.as_str()));
    item.extend(upload_attributes(session));
    item.insert("repo".into(), s(session.repo.as_str()));
    item.insert("created_at".into(), n(session.created_at));
    if let Some(owner) = &session.owner {
        item.insert("owner".into(), s(owner));
    }
    item.insert(UPLOAD_SHARD.into(), s(UPLOAD_SHARD_VALUE));
    let size = item_size(item.iter().map(|(k, v)| (k.as_str(), v)));
    if size > MAX_ITEM_BYTES - ITEM_HEADROOM {
        return Err(too_large(&format!("upload session {}", session.id), size));
    }
    Ok(item)
}

/// The attributes `advance_upload` rewrites.
pub(super) fn upload_attributes(session: &UploadSession) -> Item {
    attrs([
        ("byte_offset", n(session.offset)),
        ("hash_state", AttributeValue::B(Blob::new(session.hash_state.clone()))),
        ("staging", AttributeValue::B(Blob::new(session.staging.clone()))),
        (UPDATED_AT, n(session.updated_at)),
        (EXPIRES_AT, n(session.updated_at.saturating_add(UPLOAD_TTL_SECS))),
    ])
}
