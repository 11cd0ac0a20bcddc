//! The vulnerability data scans match against: an artifact in Berth itself (`BERTH_SCAN_DB`,
//! by default `security/vulndb:latest`) that an operator pushes with oras or mirrors with a
//! replication or an image cache, so the scanner needs no outbound network at all. It holds
//! Trivy's database ([`trivy::TRIVY_LAYER`], the `trivy-db:2` artifact as published) or OSV
//! records ([`OSV_LAYER`]: a JSON array or one record per line).
//!
//! Each data artifact is imported once into Berth's own snapshot: a referrer of the data
//! artifact (artifact type [`SNAPSHOT_TYPE`]) whose layers are shards, one per OS release
//! (gzip JSON of a [`VulnDb`]). So the snapshot lives where blobs live (files, or S3 on AWS), is
//! kept by garbage collection like any artifact and goes when its data artifact is deleted; a
//! scan loads only the shard of its image's release, and each process keeps the shards it used
//! last. A new snapshot re-matches every stored scan ([`Task::UpdateVulnDb`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::vulndb::VulnDb;
use super::{attach, trivy, ScanError};
use crate::app::App;
use crate::metadata::ManifestRecord;
use crate::oci::{Digest, ParsedManifest, RepoName, Tag};
use crate::task::Task;

/// The layer media type of OSV records in a vulnerability-data artifact.
pub const OSV_LAYER: &str = "application/vnd.berth.vulndb.osv.v1+json";

/// The artifact type of Berth's snapshot of a data artifact.
pub const SNAPSHOT_TYPE: &str = "application/vnd.berth.vulndb.snapshot.v1";

/// The media type of one shard of a snapshot.
pub const SHARD_LAYER: &str = "application/vnd.berth.vulndb.shard.v1+json+gzip";

/// The annotation naming a snapshot's format; a snapshot of another format is made again.
const FORMAT_ANNOTATION: &str = "io.berth.vulndb.snapshot.format";
/// Bumped whenever the shards' content changes meaning.
const FORMAT: &str = "3";
/// The annotation naming the OS release (`debian 12`) a shard holds.
const RELEASE_ANNOTATION: &str = "io.berth.vulndb.release";
/// The most a shard may inflate to (a release's advisories are tens of MB): a forged shard
/// fails instead of exhausting memory.
const MAX_SHARD_BYTES: u64 = 256 << 20;
/// Shards each process keeps in memory.
const SHARDS_KEPT: usize = 8;

/// The most OSV records one data artifact may hold (OSV's whole Debian export is ~100k).
pub const MAX_RECORDS: usize = 2_000_000;

/// The snapshot index this process read last, by data-artifact digest.
static INDEX: Mutex<Option<Arc<Snapshot>>> = Mutex::new(None);

/// Shards this process loaded, most recently used last.
static SHARDS: Mutex<Vec<(Digest, Arc<VulnDb>)>> = Mutex::new(Vec::new());

/// One import at a time per process: concurrent scans wait for it instead of each importing.
static IMPORTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The artifact whose data failed to import last, and why: not imported again for every scan.
static FAILED: Mutex<Option<(Digest, String)>> = Mutex::new(None);

/// A data artifact's snapshot: where each OS release's shard is.
#[derive(Debug)]
pub struct Snapshot {
    /// the data artifact it was made from
    pub data: Digest,
    shards: BTreeMap<String, Digest>,
}

impl Snapshot {
    /// The advisories of one OS release (`debian 12`); empty when the data has none for it.
    pub async fn shard(&self, app: &App, release: Option<&str>) -> Result<Arc<VulnDb>, ScanError> {
        let Some(digest) = release.and_then(|r| self.shards.get(r)) else {
            return Ok(Arc::default());
        };
        if let Some(found) = kept_shard(digest) {
            return Ok(found);
        }
        let reader = StreamReader::new(app.blobs.read(digest, None).await?);
        let db: VulnDb = tokio::task::spawn_blocking(move || {
            let inflated =
                std::io::Read::take(flate2::read::GzDecoder::new(SyncIoBridge::new(reader)), MAX_SHARD_BYTES);
            serde_json::from_reader(std::io::BufReader::new(inflated))
        })
        .await
        .map_err(|e| ScanError::Reader(e.to_string()))?
        .map_err(|e| {
            if e.is_io() {
                ScanError::Reader(format!("reading the vulnerability snapshot shard {digest}: {e}"))
            // retried
            } else {
                ScanError::NoData(format!("the vulnerability snapshot shard {digest} does not load: {e}"))
            }
        })?;
        let db = Arc::new(db);
        let mut kept = SHARDS.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|(d, _)| d != digest);
        kept.push((digest.clone(), db.clone()));
        let excess = kept.len().saturating_sub(SHARDS_KEPT);
        kept.drain(..excess);
        Ok(db)
    }
}

fn kept_shard(digest: &Digest) -> Option<Arc<VulnDb>> {
    SHARDS.lock().unwrap_or_else(PoisonError::into_inner).iter().find(|(d, _)| d == digest).map(|(_, db)| db.clone())
}

/// The snapshot of the current vulnerability data, imported first if it was never imported.
pub async fn current(app: &App) -> Result<Arc<Snapshot>, ScanError> {
    let (repo, tag) = reference(&app.settings.scan_db)?;
    let record = app.meta.resolve_tag(&repo, &tag).await?.ok_or_else(|| {
        ScanError::NoData(format!(
            "no vulnerability data: push Trivy's database (layer media type {}) or OSV records \
             (layer media type {OSV_LAYER}) to {repo}:{tag}",
            trivy::TRIVY_LAYER
        ))
    })?;
    if let Some(found) = known(&record.digest)? {
        return Ok(found);
    }
    if let Some(found) = stored(app, &repo, &record.digest).await? {
        return Ok(keep(found));
    }
    let _one_at_a_time = IMPORTING.lock().await;
    // imported (or failed) while this one waited
    if let Some(found) = known(&record.digest)? {
        return Ok(found);
    }
    match import(app, &repo, &record).await {
        Ok(snapshot) => {
            tracing::info!(data = %record.digest, releases = snapshot.shards.len(), "imported vulnerability data");
            let update = Task::UpdateVulnDb { data: record.digest.to_string() };
            if let Err(e) = app.queue.enqueue(&update.to_job(), std::time::Duration::ZERO).await {
                tracing::warn!(error = %e, "could not queue the re-match of stored scans");
            }
            Ok(keep(snapshot))
        }
        // malformed data stays malformed: remembered, so no scan imports it again
        Err(e @ (ScanError::Data(_) | ScanError::NoData(_) | ScanError::Manifest(_))) => {
            let why = e.to_string();
            tracing::warn!(digest = %record.digest, error = %why, "vulnerability data does not import");
            *FAILED.lock().unwrap_or_else(PoisonError::into_inner) = Some((record.digest.clone(), why));
            Err(e)
        }
        // a storage hiccup is tried again by the next scan
        Err(e) => Err(e),
    }
}

/// The snapshot of the current data if one was imported already; never imports (the report
/// route calls this: an import belongs in the job worker, with its disk).
pub async fn existing(app: &App) -> Result<Option<Arc<Snapshot>>, ScanError> {
    let (repo, tag) = reference(&app.settings.scan_db)?;
    let Some(record) = app.meta.resolve_tag(&repo, &tag).await? else { return Ok(None) };
    if let Ok(Some(found)) = known(&record.digest) {
        return Ok(Some(found));
    }
    Ok(stored(app, &repo, &record.digest).await?.map(keep))
}

fn keep(snapshot: Snapshot) -> Arc<Snapshot> {
    let snapshot = Arc::new(snapshot);
    *INDEX.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot.clone());
    snapshot
}

/// The snapshot of data artifact `digest` if this process knows it, or its import's error.
fn known(digest: &Digest) -> Result<Option<Arc<Snapshot>>, ScanError> {
    if let Some((d, why)) = FAILED.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        if d == digest {
            return Err(ScanError::NoData(format!("the vulnerability data {d} does not import: {why}")));
        }
    }
    Ok(INDEX.lock().unwrap_or_else(PoisonError::into_inner).as_ref().filter(|s| &s.data == digest).cloned())
}

/// The parts of a snapshot manifest its index needs.
#[derive(Deserialize)]
struct SnapshotManifest {
    #[serde(default)]
    layers: Vec<ShardDescriptor>,
}

#[derive(Deserialize)]
struct ShardDescriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: Digest,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The snapshot an earlier import (by any process) stored for data artifact `data`.
async fn stored(app: &App, repo: &RepoName, data: &Digest) -> Result<Option<Snapshot>, ScanError> {
    for referrer in app.meta.referrers(repo, data, Some(SNAPSHOT_TYPE)).await? {
        let format = referrer.annotations.as_ref().and_then(|a| a.get(FORMAT_ANNOTATION)).and_then(Value::as_str);
        if format != Some(FORMAT) {
            continue;
        }
        let bytes = crate::registry::manifests::content(app, &referrer)
            .await
            .map_err(|e| ScanError::Manifest(e.to_string()))?;
        let manifest: SnapshotManifest = serde_json::from_slice(&bytes)
            .map_err(|e| ScanError::Manifest(format!("a vulnerability snapshot: {e}")))?;
        let shards = manifest
            .layers
            .into_iter()
            .filter(|l| l.media_type == SHARD_LAYER)
            .filter_map(|l| Some((l.annotations.get(RELEASE_ANNOTATION)?.clone(), l.digest)))
            .collect();
        return Ok(Some(Snapshot { data: data.clone(), shards }));
    }
    Ok(None)
}

/// Converts data artifact `record` into a snapshot and stores it as the artifact's referrer.
async fn import(app: &App, repo: &RepoName, record: &ManifestRecord) -> Result<Snapshot, ScanError> {
    let bytes =
        crate::registry::manifests::content(app, record).await.map_err(|e| ScanError::Manifest(e.to_string()))?;
    let manifest =
        ParsedManifest::parse(&bytes, Some(&record.media_type)).map_err(|e| ScanError::Manifest(e.to_string()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Bytes)>(1);
    let convert = if let Some(layer) = manifest.blobs.iter().find(|b| b.media_type == trivy::TRIVY_LAYER) {
        // Trivy: unpacked to a temporary file on a blocking thread, one release at a time
        let reader = SyncIoBridge::new(StreamReader::new(app.blobs.read(&layer.digest, None).await?));
        tokio::task::spawn_blocking(move || -> Result<(), ScanError> {
            let unpacked = trivy::unpack(reader, &std::env::temp_dir())?;
            trivy::import(&unpacked.db, &mut |release, db| {
                let packed = pack(&db)?;
                // the receiver is gone when storing failed or the caller gave up: stop converting
                tx.blocking_send((release, packed)).map_err(|_| ScanError::Reader("the import was abandoned".into()))
            })?;
            Ok(())
        })
    } else {
        let db = import_osv(app, repo, &manifest).await?;
        tokio::task::spawn_blocking(move || -> Result<(), ScanError> {
            for (release, shard) in split(db) {
                tx.blocking_send((release, pack(&shard)?))
                    .map_err(|_| ScanError::Reader("the import was abandoned".into()))?;
            }
            Ok(())
        })
    };
    let mut shards = BTreeMap::new();
    let mut layers = Vec::new();
    let mut stored = Ok(());
    while let Some((release, packed)) = rx.recv().await {
        let digest = Digest::sha256_of(&packed);
        let size = packed.len() as u64;
        stored = attach::put_blob(app, repo, &digest, packed).await;
        if stored.is_err() {
            break; // the converter stops at its next shard
        }
        layers.push(json!({"mediaType": SHARD_LAYER, "digest": digest.to_string(), "size": size,
                           "annotations": {RELEASE_ANNOTATION: release}}));
        shards.insert(release, digest);
    }
    drop(rx);
    let converted = convert.await.map_err(|e| ScanError::Reader(e.to_string()))?;
    stored?;
    converted?;
    attach::push_referrer(app, repo, record, SNAPSHOT_TYPE, layers, json!({FORMAT_ANNOTATION: FORMAT})).await?;
    Ok(Snapshot { data: record.digest.clone(), shards })
}

/// A shard's bytes: gzip JSON (deterministic, so two processes importing at once store the same).
fn pack(db: &VulnDb) -> Result<Bytes, ScanError> {
    let json = serde_json::to_vec(db).map_err(|e| ScanError::Reader(e.to_string()))?;
    if json.len() as u64 > MAX_SHARD_BYTES {
        // stored, it could never be loaded: refused now, as data too big
        return Err(ScanError::Data(super::vulndb::VulnDbError::Import(format!(
            "one release's advisories take {} bytes, more than the {MAX_SHARD_BYTES} a shard may hold",
            json.len()
        ))));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).map_err(|e| ScanError::Reader(e.to_string()))?;
    gz.flush().map_err(|e| ScanError::Reader(e.to_string()))?;
    Ok(Bytes::from(gz.finish().map_err(|e| ScanError::Reader(e.to_string()))?))
}

/// A whole snapshot split into one shard per OS release, each with the details it names.
fn split(db: VulnDb) -> BTreeMap<String, VulnDb> {
    let mut shards: BTreeMap<String, VulnDb> = BTreeMap::new();
    for (key, advisories) in db.advisories {
        let Some((release, _)) = key.split_once('/') else { continue };
        let shard = shards.entry(release.to_string()).or_default();
        for advisory in &advisories {
            if let Some(details) = db.details.get(&advisory.id) {
                shard.details.entry(advisory.id.clone()).or_insert_with(|| details.clone());
            }
        }
        shard.advisories.insert(key, advisories);
    }
    shards
}

/// Reads every OSV layer of the data artifact into one snapshot.
async fn import_osv(app: &App, repo: &RepoName, manifest: &ParsedManifest) -> Result<VulnDb, ScanError> {
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
        return Err(ScanError::NoData(format!(
            "the vulnerability data in {repo} has no layer of media type {} or {OSV_LAYER}",
            trivy::TRIVY_LAYER
        )));
    }
    Ok(db)
}

/// Whether `repo:tag` is where the vulnerability data is pushed (`BERTH_SCAN_DB`).
pub fn is_data_tag(app: &App, repo: &RepoName, tag: &Tag) -> bool {
    reference(&app.settings.scan_db).is_ok_and(|(r, t)| &r == repo && &t == tag)
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
