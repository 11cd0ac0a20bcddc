//! Online garbage collection end to end, through the registry's own push, pull and delete paths,
//! on the embedded backend (files + SQLite) and on the AWS backend (S3 + DynamoDB + SQS, moto on
//! loopback): what a run deletes and keeps, dry runs, the grace window, a run stopped part-way,
//! and pushes racing collection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

/// The moto server and SDK configuration the library's own adapter tests use.
#[path = "../src/testing.rs"]
mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth::app::{App, Clock, Settings, SystemClock};
use berth::body::once_stream;
use berth::gc::{self, GcRun, GcStatus, RunOptions, Slice};
use berth::metadata::UnixTime;
use berth::oci::{Digest, Reference, RepoName, Tag};
use berth::registry::manifests::{self, PushError};
use berth::registry::uploads::{self, Chunk, UploadError};
use berth::registry::{blobs, BlobError};
use berth::storage::fs::collect;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The wall clock moved by a fixed offset (ahead: everything written so far is old).
struct Shifted(i64);

impl Clock for Shifted {
    fn now(&self) -> UnixTime {
        SystemClock.now() + self.0
    }
}

/// An application on a fresh store of one backend, with `grace` as the grace window.
struct Backend {
    app: App,
    _dir: Option<tempfile::TempDir>,
}

async fn embedded(grace: u64) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings { gc_grace: Duration::from_secs(grace), ..Settings::default() };
    Backend { app: App::embedded(dir.path(), settings).unwrap(), _dir: Some(dir) }
}

async fn aws(grace: u64) -> Backend {
    let sdk = testing::aws_config().await;
    let names = berth::aws::AwsSettings {
        bucket: testing::unique_name("berth-gc"),
        table: testing::unique_name("berth-gc"),
        queue_url: None,
        queue_name: testing::unique_name("berth-gc"),
        force_path_style: true,
    };
    let names = berth::aws::create_resources(&sdk, &names).await.unwrap();
    let settings = Settings { gc_grace: Duration::from_secs(grace), ..Settings::default() };
    Backend { app: berth::aws::app(&sdk, &names, settings).unwrap(), _dir: None }
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name, None).unwrap()
}

async fn push_blob(app: &App, repo: &RepoName, bytes: &[u8]) -> Result<Digest, UploadError> {
    let digest = Digest::sha256_of(bytes);
    uploads::upload_whole(app, repo, "admin", &digest, Chunk::default(), once_stream(bytes.to_vec())).await?;
    Ok(digest)
}

fn manifest_bytes(config: &(Digest, usize), layers: &[(Digest, usize)]) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, n)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        config.0,
        config.1,
        layers.join(",")
    )
    .into_bytes()
}

/// Why a push failed.
#[derive(Debug)]
enum PushFailure {
    Upload(UploadError),
    Manifest(PushError),
}

/// Pushes an image (config and layers, then the manifest under `tag`); the manifest's digest
/// and every blob it names with its bytes.
async fn push_image(
    app: &App,
    repo: &RepoName,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> Result<(Digest, Vec<(Digest, Vec<u8>)>), PushFailure> {
    let mut blobs = vec![(push_blob(app, repo, config).await.map_err(PushFailure::Upload)?, config.to_vec())];
    for layer in layers {
        blobs.push((push_blob(app, repo, layer).await.map_err(PushFailure::Upload)?, layer.to_vec()));
    }
    let sized: Vec<(Digest, usize)> = blobs.iter().map(|(d, b)| (d.clone(), b.len())).collect();
    let body = manifest_bytes(&sized[0], &sized[1..]);
    let reference = Reference::Tag(Tag::parse(tag).unwrap());
    let record = manifests::push(app, repo, &reference, vec![], Some(OCI_MANIFEST), once_stream(body))
        .await
        .map_err(PushFailure::Manifest)?;
    Ok((record.digest, blobs))
}

/// The blob as a client pulls it from `repo`, checked against its digest.
async fn pull_blob(app: &App, repo: &RepoName, digest: &Digest) -> Result<Vec<u8>, BlobError> {
    let read = blobs::read(app, repo, digest, None).await?;
    let bytes = collect(read.stream).await.unwrap();
    assert_eq!(&Digest::sha256_of(&bytes), digest, "the bytes served for {digest} hash to something else");
    Ok(bytes)
}

/// The manifest as a client pulls it by tag, checked against its digest.
async fn pull_manifest(app: &App, repo: &RepoName, tag: &str) -> Vec<u8> {
    let record = manifests::find(app, repo, &Reference::Tag(Tag::parse(tag).unwrap())).await.unwrap();
    let bytes = manifests::content(app, &record).await.unwrap().to_vec();
    assert_eq!(Digest::sha256_of(&bytes), record.digest);
    bytes
}

async fn stored(app: &App, digest: &Digest) -> bool {
    app.blobs.stat(digest).await.unwrap().is_some()
}

/// A run executed to the end right away (no queue).
async fn collect_now(app: &App, dry_run: bool) -> GcRun {
    let run = gc::create(app, dry_run).await.unwrap();
    assert_eq!(run.status, GcStatus::Queued);
    let done = gc::run(app, &run.id).await.unwrap();
    assert_eq!(done.status, GcStatus::Succeeded, "{done:?}");
    done
}

/// The counts of a run, for comparing a dry run with a real one.
fn counts(run: &GcRun) -> [u64; 6] {
    [run.blobs_scanned, run.blobs_deleted, run.bytes_deleted, run.links_removed, run.blobs_in_grace, run.errors]
}

// --- what a run deletes -------------------------------------------------------------------------

/// Two images share a layer; one is deleted (with an orphan blob uploaded next to it), and the
/// other repository holds an orphan too. A dry run reports exactly what the real run then does:
/// the deleted image's manifest, config and own layer and both orphans go; the other image is
/// pulled intact, byte for byte.
async fn deleted_image_loses_exactly_its_unshared_blobs(backend: Backend) {
    let mut app = backend.app;
    let (a, b) = (repo("gc/a"), repo("gc/b"));
    let shared: &[u8] = b"a layer both images use";
    let (ma, blobs_a) = push_image(&app, &a, "v1", b"config a", &[shared, b"layer only a has"]).await.unwrap();
    let (mb, blobs_b) = push_image(&app, &b, "v1", b"config b", &[shared, b"layer only b has"]).await.unwrap();
    let manifest_b = pull_manifest(&app, &b, "v1").await;
    let orphan_a = push_blob(&app, &a, b"uploaded into a, never used").await.unwrap();
    let orphan_b = push_blob(&app, &b, b"uploaded into b, never used").await.unwrap();
    berth::registry::artifacts::delete_image(&app, &a).await.unwrap();

    // everything so far is older than the (zero) grace window
    app.clock = Arc::new(Shifted(10));
    let gone: Vec<&Digest> = vec![&ma, &blobs_a[0].0, &blobs_a[2].0, &orphan_a, &orphan_b];
    let mut gone_bytes = 0;
    for d in &gone {
        gone_bytes += app.blobs.stat(d).await.unwrap().unwrap();
    }

    let dry = collect_now(&app, true).await;
    assert!(dry.dry_run);
    assert_eq!(counts(&dry), [9, 5, gone_bytes, 1, 0, 0], "{dry:?}");
    for d in gone.iter().copied().chain([&mb]).chain(blobs_b.iter().map(|(d, _)| d)) {
        assert!(stored(&app, d).await, "a dry run deleted {d}");
    }
    assert_eq!(pull_blob(&app, &b, &orphan_b).await.unwrap(), b"uploaded into b, never used");

    let real = collect_now(&app, false).await;
    assert!(!real.dry_run);
    assert_eq!(counts(&real), counts(&dry), "the dry run predicted the real one: {real:?}");
    for d in &gone {
        assert!(!stored(&app, d).await, "{d} survived");
    }
    assert!(matches!(blobs::read(&app, &b, &orphan_b, None).await, Err(BlobError::Unknown(_))), "unlinked");
    // the other image, layer shared with the deleted one included, pulls intact
    assert_eq!(pull_manifest(&app, &b, "v1").await, manifest_b);
    for (d, bytes) in &blobs_b {
        assert_eq!(&pull_blob(&app, &b, d).await.unwrap(), bytes);
    }

    // nothing left to do: a second run deletes nothing
    let again = collect_now(&app, false).await;
    assert_eq!(counts(&again), [4, 0, 0, 0, 0, 0]);
    // runs list newest first, and read back as recorded
    let (runs, more) = gc::list(&app, None, 10).await.unwrap();
    assert!(!more);
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&again.id.as_str()) && ids.contains(&real.id.as_str()) && ids.contains(&dry.id.as_str()));
    assert!(runs.windows(2).all(|w| w[0].queued_at >= w[1].queued_at), "newest first");
    assert_eq!(gc::get(&app, &real.id).await.unwrap(), Some(real));
    assert_eq!(gc::get(&app, "no-such-run").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_deleted_image_loses_exactly_its_unshared_blobs() {
    deleted_image_loses_exactly_its_unshared_blobs(embedded(0).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_deleted_image_loses_exactly_its_unshared_blobs() {
    deleted_image_loses_exactly_its_unshared_blobs(aws(0).await).await;
}

// --- the grace window ---------------------------------------------------------------------------

/// Unreferenced blobs and links younger than the grace window survive; once older they go, but
/// uploading a blob again (its bytes old, its link new) restarts its window.
async fn young_blobs_survive(backend: Backend) {
    let mut app = backend.app;
    let r = repo("gc/young");
    let orphan = push_blob(&app, &r, b"an orphan").await.unwrap();
    let again = push_blob(&app, &r, b"uploaded again later").await.unwrap();
    let (_, image) = push_image(&app, &r, "v1", b"config", &[b"layer"]).await.unwrap();

    let run = collect_now(&app, false).await;
    assert_eq!(counts(&run), [5, 0, 0, 0, 5, 0], "all in grace: {run:?}");
    app.clock = Arc::new(Shifted(3000));
    let run = collect_now(&app, false).await;
    assert_eq!(counts(&run), [5, 0, 0, 0, 5, 0], "still in grace: {run:?}");

    // the bytes are old now; uploading a blob again makes its link young (its bytes stay old)
    app.clock = Arc::new(Shifted(7300));
    push_blob(&app, &r, b"uploaded again later").await.unwrap();
    let run = collect_now(&app, false).await;
    assert_eq!((run.blobs_deleted, run.links_removed, run.blobs_in_grace), (1, 1, 0), "{run:?}");
    assert!(!stored(&app, &orphan).await);
    assert_eq!(pull_blob(&app, &r, &again).await.unwrap(), b"uploaded again later");
    for (d, bytes) in &image {
        assert_eq!(&pull_blob(&app, &r, d).await.unwrap(), bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_young_blobs_survive() {
    young_blobs_survive(embedded(3600).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_young_blobs_survive() {
    young_blobs_survive(aws(3600).await).await;
}

// --- a manifest pushed again while collection deletes it -----------------------------------------

/// A deleted manifest is pushed again while a collector holds its digest and deletes its bytes
/// (which the push found still stored, so it did not write them): the push waits for the fence,
/// stores its record, and then finds and restores the missing bytes.
async fn manifest_pushed_again_while_collected_keeps_its_bytes(backend: Backend) {
    let app = backend.app;
    let r = repo("gc/again");
    let (m, _) = push_image(&app, &r, "v1", b"config", &[b"layer"]).await.unwrap();
    let bytes = pull_manifest(&app, &r, "v1").await;
    manifests::delete(&app, &r, &Reference::Digest(m.clone())).await.unwrap();
    assert!(stored(&app, &m).await, "deleting a manifest leaves its bytes to collection");

    let generation = app.meta.fence_blob(&m, app.clock.now()).await.unwrap().expect("unreferenced: fenced");
    let push = {
        let (app, r, bytes) = (app.clone(), r.clone(), bytes.clone());
        tokio::spawn(async move {
            let reference = Reference::Tag(Tag::parse("v2").unwrap());
            manifests::push(&app, &r, &reference, vec![], Some(OCI_MANIFEST), once_stream(bytes)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.meta.manifest(&r, &m).await.unwrap().is_none(), "refused while the fence holds");
    app.blobs.delete(&m).await.unwrap();
    app.meta.unfence_blob(&m, generation).await.unwrap();
    push.await.unwrap().unwrap();
    assert!(stored(&app, &m).await, "the push restored the bytes collection deleted");
    assert_eq!(pull_manifest(&app, &r, "v2").await, bytes);
    assert_eq!(collect(app.blobs.read(&m, None).await.unwrap()).await.unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_manifest_pushed_again_while_collected_keeps_its_bytes() {
    manifest_pushed_again_while_collected_keeps_its_bytes(embedded(0).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_manifest_pushed_again_while_collected_keeps_its_bytes() {
    manifest_pushed_again_while_collected_keeps_its_bytes(aws(0).await).await;
}

// --- a run stopped part-way ---------------------------------------------------------------------

/// A run stopped after its first page (as if its worker died) is resumed by its job and ends with
/// the totals of an uninterrupted run; running it again changes nothing.
async fn stopped_run_resumes_with_correct_totals(backend: Backend) {
    let mut app = backend.app;
    let r = repo("gc/resume");
    let mut orphans = Vec::new();
    let mut orphan_bytes = 0;
    for i in 0..12 {
        let bytes = format!("orphan {i}");
        orphan_bytes += bytes.len() as u64;
        orphans.push(push_blob(&app, &r, bytes.as_bytes()).await.unwrap());
    }
    let (_, image) = push_image(&app, &r, "v1", b"config", &[b"layer"]).await.unwrap();
    app.clock = Arc::new(Shifted(10));

    let run = gc::create(&app, false).await.unwrap();
    let options = RunOptions { page_size: 5, max_pages: Some(1), ..RunOptions::default() };
    let (part, slice) = gc::run_with(&app, &run.id, options).await.unwrap();
    assert_eq!(slice, Slice::Paused);
    assert_eq!(part.status, GcStatus::Running);
    assert_eq!(part.blobs_scanned, 5);
    assert!(part.started_at.is_some() && part.finished_at.is_none());
    assert_eq!(gc::get(&app, &run.id).await.unwrap().unwrap(), part, "the page was recorded");

    // its job (redelivered, say) carries on from the recorded page
    app.queue.enqueue(&gc::job(&run.id), Duration::ZERO).await.unwrap();
    let done = work_until_finished(&app, &run.id).await;
    assert_eq!(done.status, GcStatus::Succeeded, "{done:?}");
    assert_eq!(counts(&done), [15, 12, orphan_bytes, 12, 0, 0], "{done:?}");
    for d in &orphans {
        assert!(!stored(&app, d).await);
    }
    for (d, bytes) in &image {
        assert_eq!(&pull_blob(&app, &r, d).await.unwrap(), bytes);
    }
    // a duplicate delivery of a finished run changes nothing
    app.queue.enqueue(&gc::job(&run.id), Duration::ZERO).await.unwrap();
    assert_eq!(work_until_finished(&app, &run.id).await, done);
    assert_eq!(gc::run(&app, &run.id).await.unwrap(), done);

    // `start` records a run and enqueues its job
    let started = gc::start(&app, true).await.unwrap();
    assert_eq!(started.status, GcStatus::Queued);
    let dry = work_until_finished(&app, &started.id).await;
    assert_eq!((dry.status, dry.blobs_scanned, dry.blobs_deleted), (GcStatus::Succeeded, 3, 0));
}

/// Works the job queue until run `id` has finished (other jobs run along).
async fn work_until_finished(app: &App, id: &str) -> GcRun {
    for _ in 0..50 {
        berth::jobs::work_once(app, 10).await.unwrap();
        let run = gc::get(app, id).await.unwrap().unwrap();
        if matches!(run.status, GcStatus::Succeeded | GcStatus::Failed) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stopped_run_resumes_with_correct_totals() {
    stopped_run_resumes_with_correct_totals(embedded(0).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_stopped_run_resumes_with_correct_totals() {
    stopped_run_resumes_with_correct_totals(aws(0).await).await;
}

// --- pushes racing collection -------------------------------------------------------------------

/// `pushes` concurrent image pushes (each a unique config, a layer from a small shared pool, so
/// digests are uploaded again and again, and a unique layer, then the manifest) while collection
/// runs in a loop with no grace window and the clock one second ahead (so every blob's bytes are
/// old the moment they land). A push may fail (retryably, or because collection unlinked a blob
/// before its manifest came); every push that succeeded must pull intact afterwards.
async fn collection_racing_pushes_loses_nothing(backend: Backend, pushes: usize) {
    let mut app = backend.app;
    app.clock = Arc::new(Shifted(1));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (app, done) = (app.clone(), done.clone());
        tokio::spawn(async move {
            let mut runs = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                runs.push(collect_now(&app, false).await);
            }
            runs
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..pushes {
        let app = app.clone();
        tasks.spawn(async move {
            let r = repo(&format!("race/r{}", i % 7));
            let config = format!("config {i}");
            let shared = format!("shared layer {}", i % 5);
            let own = format!("own layer {i}");
            let tag = format!("t{i}");
            let pushed = push_image(&app, &r, &tag, config.as_bytes(), &[shared.as_bytes(), own.as_bytes()]).await;
            (r, tag, pushed)
        });
    }
    let mut succeeded = Vec::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (r, tag, pushed) = joined.unwrap();
        match pushed {
            Ok((manifest, blobs)) => succeeded.push((r, tag, manifest, blobs)),
            Err(e) => {
                let kind = match &e {
                    PushFailure::Upload(UploadError::Reclaimed(_)) => "upload: reclaimed (503)",
                    PushFailure::Manifest(PushError::Reclaimed(_)) => "manifest: reclaimed (503)",
                    PushFailure::Manifest(PushError::Metadata(
                        berth::metadata::MetadataError::BlobNotInRepository(_),
                    )) => "manifest: blob unlinked before the manifest came",
                    other => panic!("a push failed unexpectedly: {other:?}"),
                };
                *failures.entry(kind.to_string()).or_default() += 1;
            }
        }
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let runs = collector.await.unwrap();
    // and collection once more after the pushes, racing nothing
    let last = collect_now(&app, false).await;
    let deleted: u64 = runs.iter().map(|r| r.blobs_deleted).sum::<u64>() + last.blobs_deleted;
    println!(
        "{pushes} pushes: {} succeeded, failures {failures:?}; {} collection runs deleted {deleted} blobs",
        succeeded.len(),
        runs.len() + 1
    );
    assert!(!succeeded.is_empty(), "no push succeeded at all: {failures:?}");
    assert!(runs.iter().chain([&last]).all(|r| r.errors == 0), "{runs:?}");
    // no link (what a blob HEAD answers from) and no manifest, pushed or not, names missing bytes
    let mut attempted: Vec<Digest> = Vec::new();
    for i in 0..pushes {
        for content in [format!("config {i}"), format!("shared layer {}", i % 5), format!("own layer {i}")] {
            attempted.push(Digest::sha256_of(content.as_bytes()));
        }
    }
    for d in &attempted {
        for link in app.meta.blob_links(d).await.unwrap() {
            assert!(stored(&app, d).await, "{} links {d}, whose bytes are gone", link.repo);
        }
    }
    for r in (0..7).map(|k| repo(&format!("race/r{k}"))) {
        let (records, _) = app.meta.list_manifests(&r, None, 1000).await.unwrap();
        for m in records {
            assert!(stored(&app, &m.digest).await, "{r}@{}: manifest bytes gone", m.digest);
            for d in &m.blobs {
                assert!(stored(&app, d).await, "{r}@{} lost {d}", m.digest);
            }
        }
    }
    for (r, tag, manifest, blobs) in &succeeded {
        let bytes = pull_manifest(&app, r, tag).await;
        assert_eq!(&Digest::sha256_of(&bytes), manifest);
        for (d, expected) in blobs {
            match pull_blob(&app, r, d).await {
                Ok(bytes) => assert_eq!(&bytes, expected),
                Err(e) => panic!("{r}:{tag} lost {d}: {e:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_collection_racing_100_concurrent_pushes_loses_nothing() {
    collection_racing_pushes_loses_nothing(embedded(0).await, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_collection_racing_100_concurrent_pushes_loses_nothing() {
    collection_racing_pushes_loses_nothing(aws(0).await, 100).await;
}
