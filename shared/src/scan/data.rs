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

/// The most OSV records one data artifact may hold (OSV's whole Debian export is ~100k).
pub const MAX_RECORDS: usize = 2_000_000;

/// One load at a time per process: concurrent scans wait for it instead of each parsing the
/// data again (memory).
static LOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The artifact whose data failed to load last, and why: not parsed again for every scan.
static FAILED: Mutex<Option<(Digest, String)>> = Mutex::new(None);

/// The vulnerability data as of now, and the digest of the artifact it came from.
pub async fn current(app: &App) -> Result<(Digest, Arc<VulnDb>), ScanError> {
    let (repo, tag) = reference(&app.settings.scan_db)?;
    let record = app.meta.resolve_tag(&repo, &tag).await?.ok_or_else(|| {
        ScanError::NoData(format!(
            "no vulnerability data: push OSV records to {}:{} (layer media type {OSV_LAYER})",
            repo, tag
        ))
    })?;
    if let Some(found) = loaded(&record.digest)? {
        return Ok(found);
    }
    let _one_at_a_time = LOADING.lock().await;
    // loaded (or failed) while this one waited
    if let Some(found) = loaded(&record.digest)? {
        return Ok(found);
    }
    match load(app, &repo, &tag, &record).await {
        Ok(db) => {
            let db = Arc::new(db);
            *LOADED.lock().unwrap_or_else(PoisonError::into_inner) = Some((record.digest.clone(), db.clone()));
            tracing::info!(digest = %record.digest, advisories = db.advisories.len(), "loaded vulnerability data");
            Ok((record.digest, db))
        }
        // malformed data stays malformed: remembered, so no scan parses it again
        Err(e @ (ScanError::Data(_) | ScanError::NoData(_) | ScanError::Manifest(_))) => {
            let why = e.to_string();
            tracing::warn!(digest = %record.digest, error = %why, "vulnerability data does not load");
            *FAILED.lock().unwrap_or_else(PoisonError::into_inner) = Some((record.digest.clone(), why));
            Err(e)
        }
        // a storage hiccup is tried again by the next scan
        Err(e) => Err(e),
    }
}

/// The data of artifact `digest` if this process loaded it, or its load's error if that failed.
fn loaded(digest: &Digest) -> Result<Option<(Digest, Arc<VulnDb>)>, ScanError> {
    if let Some((d, why)) = FAILED.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        if d == digest {
            return Err(ScanError::NoData(format!("the vulnerability data {d} does not load: {why}")));
        }
    }
    Ok(LOADED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .filter(|(d, _)| d == digest)
        .map(|(d, db)| (d.clone(), db.clone())))
}

/// Reads every OSV layer of the data artifact into a snapshot.
async fn load(
    app: &App,
    repo: &RepoName,
    tag: &Tag,
    record: &crate::metadata::ManifestRecord,
) -> Result<VulnDb, ScanError> {
    let bytes =
        crate::registry::manifests::content(app, record).await.map_err(|e| ScanError::Manifest(e.to_string()))?;
    let manifest =
        ParsedManifest::parse(&bytes, Some(&record.media_type)).map_err(|e| ScanError::Manifest(e.to_string()))?;
    let mut db = VulnDb::default();
    let mut layers = 0;
    let mut records = 0;
    for layer in manifest.blobs.iter().filter(|b| b.media_type == OSV_LAYER) {
        let reader = StreamReader::new(app.blobs.read(&layer.digest, None).await?);
        let (next, n) = tokio::task::spawn_blocking(move || import_osv_stream(db, SyncIoBridge::new(reader), records))
            .await
            .map_err(|e| ScanError::Reader(e.to_string()))??;
        db = next;
        records = n;
        layers += 1;
    }
    if layers == 0 {
        return Err(ScanError::NoData(format!("{repo}:{tag} has no layer of media type {OSV_LAYER}")));
    }
    Ok(db)
}

/// `registry/image:tag` → its repository and tag.
fn reference(text: &str) -> Result<(RepoName, Tag), ScanError> {
    let invalid = || ScanError::NoData(format!("BERTH_SCAN_DB {text:?} is not a `registry/image:tag` reference"));
    let (name, tag) = text.rsplit_once(':').filter(|(_, t)| !t.contains('/')).ok_or_else(invalid)?;
    Ok((RepoName::parse(name, None).map_err(|_| invalid())?, Tag::parse(tag).map_err(|_| invalid())?))
}

fn invalid_layer(why: impl std::fmt::Display) -> ScanError {
    ScanError::Data(super::vulndb::VulnDbError::Invalid { id: "OSV layer".into(), why: why.to_string() })
}

/// Reads OSV records (a JSON array, or records one after another) from a stream into `db`,
/// one record at a time: the data never sits in memory as one JSON value. `seen` counts the
/// records of earlier layers against [`MAX_RECORDS`]; returns the new count.
fn import_osv_stream(mut db: VulnDb, reader: impl std::io::Read, seen: usize) -> Result<(VulnDb, usize), ScanError> {
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, reader);
    // an array is walked element by element; anything else is a stream of records
    let first = loop {
        let buf = std::io::BufRead::fill_buf(&mut reader).map_err(invalid_layer)?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                std::io::BufRead::consume(&mut reader, i);
                break Some(b);
            }
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                std::io::BufRead::consume(&mut reader, n);
            }
        }
    };
    let mut count = seen;
    let mut add = |db: &mut VulnDb, record: Value| -> Result<(), ScanError> {
        count += 1;
        if count > MAX_RECORDS {
            return Err(invalid_layer(format!("more than {MAX_RECORDS} records")));
        }
        db.import_osv([record])?;
        Ok(())
    };
    if first == Some(b'[') {
        let mut de = serde_json::Deserializer::from_reader(reader);
        let mut failure = None;
        let visitor = Records { db: &mut db, add: &mut add, failure: &mut failure };
        let walked = serde::Deserializer::deserialize_seq(&mut de, visitor);
        if let Some(e) = failure {
            return Err(e);
        }
        walked.map_err(invalid_layer)?;
        de.end().map_err(invalid_layer)?;
    } else {
        for value in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
            add(&mut db, value.map_err(invalid_layer)?)?;
        }
    }
    Ok((db, count))
}

/// Walks a JSON array of records, importing each as it is read.
struct Records<'a, F> {
    db: &'a mut VulnDb,
    add: &'a mut F,
    failure: &'a mut Option<ScanError>,
}

impl<'de, F: FnMut(&mut VulnDb, Value) -> Result<(), ScanError>> serde::de::Visitor<'de> for Records<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of OSV records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(record) = seq.next_element::<Value>()? {
            if let Err(e) = (self.add)(self.db, record) {
                let text = e.to_string();
                *self.failure = Some(e);
                return Err(serde::de::Error::custom(text));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_record_streams_are_read_one_record_at_a_time() {
        let record = |n: u32| {
            serde_json::json!({"id": format!("CVE-2024-{n}"), "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]})
        };
        let array = serde_json::to_vec(&vec![record(1), record(2)]).unwrap();
        let (db, n) = import_osv_stream(
            VulnDb::default(),
            &b" \n"[..].iter().chain(array.iter()).copied().collect::<Vec<_>>()[..],
            0,
        )
        .unwrap();
        assert_eq!((n, db.advisories("debian 12", "zlib").len()), (2, 2));
        let lines = format!("{}\n{}\n", record(3), record(4));
        let (db, n) = import_osv_stream(db, lines.as_bytes(), n).unwrap();
        assert_eq!((n, db.advisories("debian 12", "zlib").len()), (4, 4));
        assert!(import_osv_stream(VulnDb::default(), &b"[{\"id\": \"x\"}]"[..], 0).is_err(), "a bad record");
        assert!(import_osv_stream(VulnDb::default(), &b"[1, "[..], 0).is_err(), "truncated");
        assert!(import_osv_stream(VulnDb::default(), &b"[] []"[..], 0).is_err(), "trailing data");
        assert!(import_osv_stream(VulnDb::default(), &b"[]"[..], MAX_RECORDS).is_ok());
        assert!(import_osv_stream(VulnDb::default(), lines.as_bytes(), MAX_RECORDS).is_err(), "over the cap");
    }
}
