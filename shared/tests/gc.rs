//! Online garbage collection end to end, through the registry's own push, pull and delete paths,
//! on the embedded backend (files + SQLite) and on the AWS backend (S3 + DynamoDB + SQS, moto on
//! loopback): what a run deletes and keeps, dry runs, the grace window, a run stopped part-way,
//! and pushes racing collection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth::app::App;
use berth::body::once_stream;
use berth::gc::{self, GcRun, GcStatus, RunOptions, Slice};
use berth::oci::{Digest, Reference, RepoName, Tag};
use berth::registry::manifests::{self, PushError};
use berth::registry::uploads::{self, Chunk, UploadError};
use berth::registry::{blobs, BlobError};
use berth::storage::fs::collect;
use common::registry::{image_manifest, TestRegistry, OCI_MANIFEST};

/// The registry with `grace` seconds as the garbage collector's grace window.
fn with_grace(r: TestRegistry, grace: u64) -> TestRegistry {
    r.with_settings(|s| s.gc_grace = Duration::from_secs(grace))
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name, None).unwrap()
}

/// Pushes an image through the registry API (config and layers, then the manifest under `tag`);
/// the manifest's digest and every blob it names with its bytes.
async fn push_image(
    r: &TestRegistry,
    repo: &RepoName,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> (Digest, Vec<(Digest, Vec<u8>)>) {
    let (_, digest) = r.push_image_of(repo.as_str(), Some(tag), config, layers).await;
    let blobs =
        std::iter::once(config).chain(layers.iter().copied()).map(|b| (Digest::sha256_of(b), b.to_vec())).collect();
    (digest, blobs)
}

/// Why a push failed.
#[derive(Debug)]
enum PushFailure {
    Upload(UploadError),
    Manifest(PushError),
}

/// [`push_image`] through the library instead, so that a failure keeps its type: the race with
/// collection tells the failures it allows apart from any other.
async fn try_push_image(
    app: &App,
    repo: &RepoName,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> Result<(Digest, Vec<(Digest, Vec<u8>)>), PushFailure> {
    let mut blobs = Vec::new();
    for bytes in std::iter::once(config).chain(layers.iter().copied()) {
        let digest = Digest::sha256_of(bytes);
        uploads::upload_whole(app, repo, "admin", &digest, Chunk::default(), once_stream(bytes.to_vec()))
            .await
            .map_err(PushFailure::Upload)?;
        blobs.push((digest, bytes.to_vec()));
    }
    let sized: Vec<(&Digest, usize)> = blobs.iter().map(|(d, b)| (d, b.len())).collect();
    let body = image_manifest(sized[0], &sized[1..], None);
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
async fn deleted_image_loses_exactly_its_unshared_blobs(registry: TestRegistry) {
    let registry = with_grace(registry, 0);
    let app = registry.app.clone();
    let (a, b) = (repo("gc/a"), repo("gc/b"));
    let shared: &[u8] = b"a layer both images use";
    let (ma, blobs_a) = push_image(&registry, &a, "v1", b"config a", &[shared, b"layer only a has"]).await;
    let (mb, blobs_b) = push_image(&registry, &b, "v1", b"config b", &[shared, b"layer only b has"]).await;
    let manifest_b = pull_manifest(&app, &b, "v1").await;
    let orphan_a = registry.push_blob(a.as_str(), b"uploaded into a, never used").await;
    let orphan_b = registry.push_blob(b.as_str(), b"uploaded into b, never used").await;
    berth::registry::artifacts::delete_image(&app, &a).await.unwrap();

    // everything so far is older than the (zero) grace window
    registry.advance(10);
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
    registry.work().await; // the usage refreshes the pushes queued
}

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    deleted_image_loses_exactly_its_unshared_blobs
);

// --- the grace window ---------------------------------------------------------------------------

/// Unreferenced blobs and links younger than the grace window survive; once older they go, but
/// uploading a blob again (its bytes old, its link new) restarts its window.
async fn young_blobs_survive(registry: TestRegistry) {
    let registry = with_grace(registry, 3600);
    let app = registry.app.clone();
    let r = repo("gc/young");
    let orphan = registry.push_blob(r.as_str(), b"an orphan").await;
    let again = registry.push_blob(r.as_str(), b"uploaded again later").await;
    let (_, image) = push_image(&registry, &r, "v1", b"config", &[b"layer"]).await;

    let run = collect_now(&app, false).await;
    assert_eq!(counts(&run), [5, 0, 0, 0, 5, 0], "all in grace: {run:?}");
    registry.advance(3000);
    let run = collect_now(&app, false).await;
    assert_eq!(counts(&run), [5, 0, 0, 0, 5, 0], "still in grace: {run:?}");

    // the bytes are old now; uploading a blob again makes its link young (its bytes stay old)
    registry.advance(4300); // 7300 s ahead of the wall clock now
    registry.push_blob(r.as_str(), b"uploaded again later").await;
    let run = collect_now(&app, false).await;
    assert_eq!((run.blobs_deleted, run.links_removed, run.blobs_in_grace), (1, 1, 0), "{run:?}");
    assert!(!stored(&app, &orphan).await);
    assert_eq!(pull_blob(&app, &r, &again).await.unwrap(), b"uploaded again later");
    for (d, bytes) in &image {
        assert_eq!(&pull_blob(&app, &r, d).await.unwrap(), bytes);
    }
    registry.work().await; // the usage refreshes the pushes queued
}

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    young_blobs_survive
);

// --- a manifest pushed again while collection deletes it -----------------------------------------

/// A deleted manifest is pushed again while a collector holds its digest and deletes its bytes
/// (which the push found still stored, so it did not write them): the push waits for the fence,
/// stores its record, and then finds and restores the missing bytes.
async fn manifest_pushed_again_while_collected_keeps_its_bytes(registry: TestRegistry) {
    let registry = with_grace(registry, 0);
    let app = registry.app.clone();
    let r = repo("gc/again");
    let (m, _) = push_image(&registry, &r, "v1", b"config", &[b"layer"]).await;
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
    registry.work().await; // the usage refreshes the pushes queued
}

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    manifest_pushed_again_while_collected_keeps_its_bytes
);

// --- a run stopped part-way ---------------------------------------------------------------------

/// A run stopped after its first page (as if its worker died) is resumed by its job and ends with
/// the totals of an uninterrupted run; running it again changes nothing.
async fn stopped_run_resumes_with_correct_totals(registry: TestRegistry) {
    let registry = with_grace(registry, 0);
    let app = registry.app.clone();
    let r = repo("gc/resume");
    let mut orphans = Vec::new();
    let mut orphan_bytes = 0;
    for i in 0..12 {
        let bytes = format!("orphan {i}");
        orphan_bytes += bytes.len() as u64;
        orphans.push(registry.push_blob(r.as_str(), bytes.as_bytes()).await);
    }
    let (_, image) = push_image(&registry, &r, "v1", b"config", &[b"layer"]).await;
    registry.advance(10);

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
    let done = work_until_finished(&registry, &run.id).await;
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
    assert_eq!(work_until_finished(&registry, &run.id).await, done);
    assert_eq!(gc::run(&app, &run.id).await.unwrap(), done);

    // `start` records a run and enqueues its job
    let started = gc::start(&app, true).await.unwrap();
    assert_eq!(started.status, GcStatus::Queued);
    let dry = work_until_finished(&registry, &started.id).await;
    assert_eq!((dry.status, dry.blobs_scanned, dry.blobs_deleted), (GcStatus::Succeeded, 3, 0));
}

/// Works the job queue until run `id` has finished (other jobs run along).
async fn work_until_finished(registry: &TestRegistry, id: &str) -> GcRun {
    for _ in 0..50 {
        registry.work().await;
        let run = gc::get(&registry.app, id).await.unwrap().unwrap();
        if matches!(run.status, GcStatus::Succeeded | GcStatus::Failed) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not finish");
}

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    stopped_run_resumes_with_correct_totals
);

// --- pushes racing collection -------------------------------------------------------------------

/// `pushes` concurrent image pushes (each a unique config, a layer from a small shared pool, so
/// digests are uploaded again and again, and a unique layer, then the manifest) while collection
/// runs in a loop with no grace window and the clock one second ahead (so every blob's bytes are
/// old the moment they land). A push may fail (retryably, or because collection unlinked a blob
/// before its manifest came); every push that succeeded must pull intact afterwards.
async fn collection_racing_pushes_loses_nothing(registry: TestRegistry, pushes: usize) {
    let registry = with_grace(registry, 0);
    let app = registry.app.clone();
    registry.advance(1);
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
            let pushed = try_push_image(&app, &r, &tag, config.as_bytes(), &[shared.as_bytes(), own.as_bytes()]).await;
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
    registry.work().await; // the usage refreshes the pushes queued
}

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    collection_racing_100_concurrent_pushes_loses_nothing
);

async fn collection_racing_100_concurrent_pushes_loses_nothing(registry: TestRegistry) {
    collection_racing_pushes_loses_nothing(registry, 100).await;
}
