//! Rows to records and back, and rusqlite failures to port errors.

#[allow(unused_imports)]
use super::*;

/// A database failure.
pub(super) fn backend(e: rusqlite::Error) -> MetadataError {
    MetadataError::Backend(e.to_string())
}

/// Stored data that could not be decoded.
pub(super) fn corrupt(what: impl std::fmt::Display) -> MetadataError {
    MetadataError::Corrupt(what.to_string())
}

/// A size or offset as SQLite stores it (refused when too large).
pub(super) fn to_i64(value: u64, what: &str) -> Result<i64, MetadataError> {
    i64::try_from(value).map_err(|_| MetadataError::Backend(format!("{what} {value} is too large to store")))
}

/// Digests as one newline-joined column.
pub(super) fn join_digests(digests: &[Digest]) -> String {
    let mut out = String::with_capacity(digests.len() * 72);
    for (i, d) in digests.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

/// The digests of a newline-joined column.
pub(super) fn split_digests(text: &str) -> Result<Vec<Digest>, MetadataError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split('\n').map(|s| s.parse().map_err(corrupt)).collect()
}

/// A text column.
pub(super) fn text<'r>(row: &'r Row<'_>, idx: usize) -> Result<&'r str, MetadataError> {
    row.get_ref(idx).map_err(backend)?.as_str().map_err(corrupt)
}

/// A text column that may be NULL.
pub(super) fn opt_text<'r>(row: &'r Row<'_>, idx: usize) -> Result<Option<&'r str>, MetadataError> {
    row.get_ref(idx).map_err(backend)?.as_str_or_null().map_err(corrupt)
}

/// A non-negative integer column.
pub(super) fn unsigned(row: &Row<'_>, idx: usize) -> Result<u64, MetadataError> {
    let v: i64 = row.get(idx).map_err(backend)?;
    u64::try_from(v).map_err(|_| corrupt(format!("negative size or offset {v}")))
}

/// Builds a record from a row selected with `manifest_columns!()`.
pub(super) fn decode_manifest(repo: &RepoName, row: &Row<'_>) -> Result<ManifestRecord, MetadataError> {
    let annotations = match opt_text(row, 5)? {
        None => None,
        Some(json) => Some(serde_json::from_str::<Map<String, Value>>(json).map_err(corrupt)?),
    };
    Ok(ManifestRecord {
        repo: repo.clone(),
        digest: text(row, 0)?.parse().map_err(corrupt)?,
        media_type: text(row, 1)?.to_string(),
        size: unsigned(row, 2)?,
        artifact_type: opt_text(row, 3)?.map(str::to_string),
        subject: opt_text(row, 4)?.map(|s| s.parse().map_err(corrupt)).transpose()?,
        annotations,
        blobs: split_digests(text(row, 6)?)?,
        children: split_digests(text(row, 7)?)?,
        pushed_at: row.get(8).map_err(backend)?,
        pulled_at: row.get(9).map_err(backend)?,
        scan_gate: opt_text(row, 10)?.map(str::to_string),
        signatures: opt_text(row, 11)?.map(str::to_string),
    })
}

/// Builds a session from a row selected with `upload_columns!()`.
pub(super) fn decode_upload(row: &Row<'_>) -> Result<UploadSession, MetadataError> {
    Ok(UploadSession {
        id: UploadId::parse(text(row, 0)?).map_err(corrupt)?,
        repo: RepoName::parse(text(row, 1)?, None).map_err(corrupt)?,
        offset: unsigned(row, 2)?,
        hash_state: row.get(3).map_err(backend)?,
        created_at: row.get(4).map_err(backend)?,
        updated_at: row.get(5).map_err(backend)?,
        staging: row.get(6).map_err(backend)?,
        owner: opt_text(row, 7)?.map(str::to_string),
    })
}

/// A document's body as stored (JSON text).
pub(super) fn encode_body(body: &Value) -> Result<String, MetadataError> {
    serde_json::to_string(body).map_err(|e| MetadataError::Backend(format!("document body could not be encoded: {e}")))
}

/// Builds a document from its id and a `body, version` pair of columns starting at `first`.
pub(super) fn decode_document(id: String, row: &Row<'_>, first: usize) -> Result<Document, MetadataError> {
    let body = serde_json::from_str(text(row, first)?).map_err(corrupt)?;
    Ok(Document { id, body, version: unsigned(row, first + 1)? })
}
