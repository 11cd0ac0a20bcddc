//! The vulnerability data scans match against: an artifact in Berth itself (`BERTH_SCAN_DB`,
//! by default `security/vulndb:latest`) that an operator pushes with oras or mirrors with a
//! replication or an image cache, so the scanner needs no outbound network at all. Its layers
//! hold OSV records ([`OSV_LAYER`]: a JSON array or one record per line), read as streams.
//! Each process keeps the snapshot of the artifact it last loaded, keyed by the artifact's
//! digest, so a new push is picked up by the next scan and an unchanged one is never re-read.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::vulndb::VulnDb;
use super::ScanError;
use crate::app::App;
use crate::oci::{Digest, ParsedManifest, RepoName, Tag};

/// The layer media type of OSV records in a vulnerability-data artifact.
pub const OSV_LAYER: &str = "application/vnd.berth.vulndb.osv.v1+json";

/// The snapshot this process loaded last, by artifact digest.
static LOADED: Mutex<Option<(Digest, Arc<VulnDb>)>> = Mutex::new(None);

/// The vulnerability data as of now, and the digest of the artifact it came from.
pub async fn current(app: &App) -> Result<(Digest, Arc<VulnDb>), ScanError> {
    let (repo, tag) = reference(&app.settings.scan_db)?;
    let record = app.meta.resolve_tag(&repo, &tag).await?.ok_or_else(|| {
        ScanError::NoData(format!(
            "no vulnerability data: push OSV records to {}:{} (layer media type {OSV_LAYER})",
            repo, tag
        ))
    })?;
    if let Some((digest, db)) = LOADED.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        if *digest == record.digest {
            return Ok((digest.clone(), db.clone()));
        }
    }
    let bytes =
        crate::registry::manifests::content(app, &record).await.map_err(|e| ScanError::Manifest(e.to_string()))?;
    let manifest =
        ParsedManifest::parse(&bytes, Some(&record.media_type)).map_err(|e| ScanError::Manifest(e.to_string()))?;
    let mut db = VulnDb::default();
    let mut layers = 0;
    for layer in manifest.blobs.iter().filter(|b| b.media_type == OSV_LAYER) {
        let reader = StreamReader::new(app.blobs.read(&layer.digest, None).await?);
        db = tokio::task::spawn_blocking(move || import_osv_stream(db, SyncIoBridge::new(reader)))
            .await
            .map_err(|e| ScanError::Reader(e.to_string()))??;
        layers += 1;
    }
    if layers == 0 {
        return Err(ScanError::NoData(format!("{repo}:{tag} has no layer of media type {OSV_LAYER}")));
    }
    let db = Arc::new(db);
    *LOADED.lock().unwrap_or_else(PoisonError::into_inner) = Some((record.digest.clone(), db.clone()));
    tracing::info!(digest = %record.digest, advisories = db.advisories.len(), "loaded vulnerability data");
    Ok((record.digest, db))
}

/// `registry/image:tag` → its repository and tag.
fn reference(text: &str) -> Result<(RepoName, Tag), ScanError> {
    let invalid = || ScanError::NoData(format!("BERTH_SCAN_DB {text:?} is not a `registry/image:tag` reference"));
    let (name, tag) = text.rsplit_once(':').filter(|(_, t)| !t.contains('/')).ok_or_else(invalid)?;
    Ok((RepoName::parse(name, None).map_err(|_| invalid())?, Tag::parse(tag).map_err(|_| invalid())?))
}

/// Reads OSV records (a JSON array, or records one after another) from a stream into `db`.
fn import_osv_stream(mut db: VulnDb, reader: impl std::io::Read) -> Result<VulnDb, ScanError> {
    let reader = std::io::BufReader::with_capacity(64 * 1024, reader);
    for value in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
        let value = value.map_err(|e| {
            ScanError::Data(super::vulndb::VulnDbError::Invalid { id: "OSV layer".into(), why: e.to_string() })
        })?;
        match value {
            Value::Array(records) => db.import_osv(records)?,
            record => db.import_osv([record])?,
        };
    }
    Ok(db)
}
