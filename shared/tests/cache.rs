//! Image caches in process: a source that sends bytes other than the digest it was asked for
//! (or more than it announced) is never served as a complete answer nor cached; the single-flight
//! lease is exclusive, lapses when its holder stops renewing it, and a lapsed holder learns it
//! lost it; a worker's note that the source lacks a blob lasts a pull's wait, and the sweep
//! deletes lapsed documents only; an ECR source's IAM key is exchanged for a registry password with
//! `GetAuthorizationToken` (moto's ECR).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::SocketAddr;

use berth::cache::lease::{self, Claim, Failure};
use berth::cache::pull::{self, ServedBlob};
use berth::cache::{source, upstream};
use berth::metadata::UnixTime;
use berth::oci::{Digest, RepoName};
use berth::outbound::OutboundPolicy;
use common::registry::TestRegistry;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2027-01-15T00:00:00Z
const T0: UnixTime = 1_799_971_200;

/// A source registry on loopback that answers `/v2/` without auth and every blob `GET` with
/// `body` under a `Content-Length` of `announced`: a registry gone bad, or a tampering proxy.
async fn lying_source(body: Vec<u8>, announced: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&request[..n]).lines().next().unwrap_or_default().to_string();
                let answer = if line.contains("/blobs/") {
                    let mut a = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                    )
                    .into_bytes();
                    a.extend_from_slice(&body);
                    a
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{}".to_vec()
                };
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    addr
}

/// A registry that may reach loopback sources on any port, with cache registry `mirror` over
/// a `docker-registry` cache of `url`.
async fn cache_registry(url: &str) -> (TestRegistry, source::StoredCache) {
    let env = TestRegistry::embedded().with_clock(T0).with_settings(|s| {
        s.webhooks.outbound = OutboundPolicy::new(OutboundPolicy::parse_allow("127.0.0.0/8").unwrap());
        s.cache.source_ports = None;
        s.cache.lease = std::time::Duration::from_secs(30);
    });
    env.ready().await;
    let new: source::NewCache =
        serde_json::from_value(serde_json::json!({ "name": "src", "type": "docker-registry", "url": url })).unwrap();
    let cache = source::create(&env.app, new, "admin").await.unwrap();
    source::claim(&env.app, "src", "mirror").await.unwrap();
    let record = berth::identity::Registry {
        name: "mirror".into(),
        created_at: T0,
        created_by: "admin".into(),
        public_access: true,
        private_networks: vec![],
        cache: Some("src".into()),
    };
    berth::identity::registry::create_record(env.app.meta.as_ref(), record).await.unwrap();
    (env, cache)
}

/// Reads a served stream to its end: the bytes, and whether it ended in an error.
async fn drain(served: ServedBlob) -> (Vec<u8>, bool) {
    let ServedBlob::Streaming { mut stream, .. } = served else { panic!("expected a streamed blob") };
    let mut bytes = vec![];
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => bytes.extend_from_slice(&c),
            Err(_) => return (bytes, true),
        }
    }
    (bytes, false)
}

async fn nothing_cached(env: &TestRegistry, repo: &RepoName, digest: &Digest) {
    // the caching runs beside the answer: its lease going is the sign it ended
    for _ in 0..100 {
        if lease::is_free(&env.app, &berth::cache::fill::blob_key(digest)).await.unwrap() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(lease::is_free(&env.app, &berth::cache::fill::blob_key(digest)).await.unwrap());
    assert_eq!(env.app.meta.linked_blob(repo, digest).await.unwrap(), None, "not linked");
    assert_eq!(env.app.blobs.stat(digest).await.unwrap(), None, "not stored");
}

#[tokio::test]
async fn a_source_sending_other_bytes_is_never_served_whole_nor_cached() {
    let wanted = vec![7u8; 300_000];
    let digest = Digest::sha256_of(&wanted);
    let mut tampered = wanted.clone();
    tampered[299_999] = 8;
    let addr = lying_source(tampered.clone(), tampered.len()).await;
    let (env, cache) = cache_registry(&format!("http://{addr}")).await;
    let repo = RepoName::parse("mirror/lib/app", None).unwrap();
    let served = pull::blob(&env.app, &cache, &repo, &digest, false).await.unwrap();
    let (bytes, failed) = drain(served).await;
    assert!(failed, "the answer must end in an error, not as a complete body");
    assert!(bytes.len() < tampered.len(), "the last chunk is held back: {} bytes arrived", bytes.len());
    nothing_cached(&env, &repo, &digest).await;
}

#[tokio::test]
async fn a_source_sending_more_than_it_announced_is_cut_off() {
    let wanted = vec![9u8; 100_000];
    let digest = Digest::sha256_of(&wanted);
    let mut longer = wanted.clone();
    longer.extend_from_slice(&[1u8; 5000]);
    // announces the right length, then keeps going (a reader trusting the stream would hash 105 000 bytes)
    let addr = lying_source(longer, wanted.len()).await;
    let (env, cache) = cache_registry(&format!("http://{addr}")).await;
    let repo = RepoName::parse("mirror/lib/app", None).unwrap();
    match pull::blob(&env.app, &cache, &repo, &digest, false).await {
        Ok(served) => {
            let (bytes, failed) = drain(served).await;
            // the HTTP client stops at Content-Length: what arrives is the right blob, or an error
            assert!(failed || bytes == wanted, "{} bytes, failed {failed}", bytes.len());
        }
        Err(e) => panic!("{e}"),
    }
    for _ in 0..100 {
        if env.app.meta.linked_blob(&repo, &digest).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if let Some(size) = env.app.meta.linked_blob(&repo, &digest).await.unwrap() {
        assert_eq!(size, wanted.len() as u64);
        let stored = env.app.blobs.read(&digest, None).await.unwrap();
        let stored: Vec<u8> = stored.map(|c| c.unwrap().to_vec()).concat().await;
        assert_eq!(stored, wanted, "only the verified bytes are cached");
    }
    env.work().await; // the storage recount the cached blob queued
}

#[tokio::test]
async fn the_single_flight_lease_is_exclusive_and_lapses() {
    let env = TestRegistry::embedded().with_clock(T0).with_settings(|s| {
        s.cache.lease = std::time::Duration::from_secs(6);
    });
    env.ready().await;
    let Claim::Held(first) = lease::take(&env.app, "b/x").await.unwrap() else { panic!("free lease refused") };
    let (a, b) = tokio::join!(lease::take(&env.app, "b/x"), lease::take(&env.app, "b/x"));
    assert!(matches!(a.unwrap(), Claim::Busy) && matches!(b.unwrap(), Claim::Busy), "held: nobody else gets it");
    assert!(!lease::is_free(&env.app, "b/x").await.unwrap());
    // the holder stops renewing (a crash): after the lease time another caller takes it over
    env.advance(7);
    assert!(lease::is_free(&env.app, "b/x").await.unwrap());
    let (a, b) = tokio::join!(lease::take(&env.app, "b/x"), lease::take(&env.app, "b/x"));
    let taken = [a.unwrap(), b.unwrap()];
    assert_eq!(taken.iter().filter(|c| matches!(c, Claim::Held(_))).count(), 1, "exactly one takes a lapsed lease");
    // the old holder's release leaves the new holder's lease alone
    first.release(&env.app).await;
    assert!(!lease::is_free(&env.app, "b/x").await.unwrap());
    for claim in taken {
        if let Claim::Held(h) = claim {
            h.release(&env.app).await;
        }
    }
    assert!(lease::is_free(&env.app, "b/x").await.unwrap());
}

#[tokio::test]
async fn failure_notes_last_the_wait_and_the_sweep_deletes_only_lapsed_documents() {
    let env = TestRegistry::embedded().with_clock(T0).with_settings(|s| {
        s.cache.lease = std::time::Duration::from_secs(6);
        s.cache.wait = std::time::Duration::from_secs(20);
    });
    env.ready().await;
    lease::note_failure(&env.app, "failed/m/x@d", Failure::Missing).await.unwrap();
    lease::note_failure(&env.app, "failed/m/z@d", Failure::Unusable).await.unwrap();
    assert_eq!(lease::noted_failure(&env.app, "failed/m/x@d").await.unwrap(), Some(Failure::Missing));
    assert_eq!(lease::noted_failure(&env.app, "failed/m/z@d").await.unwrap(), Some(Failure::Unusable));
    assert_eq!(lease::noted_failure(&env.app, "failed/m/y@d").await.unwrap(), None, "a note is per key");
    let Claim::Held(held) = lease::take(&env.app, "b/held").await.unwrap() else { panic!("free lease refused") };
    assert_eq!(lease::noted_failure(&env.app, "b/held").await.unwrap(), None, "a lease is no note");
    let Claim::Held(_crashed) = lease::take(&env.app, "b/crashed").await.unwrap() else { panic!("refused") };
    env.advance(7);
    // the crashed holder's lease lapsed; the live holder renews (a third of the lease has passed)
    let mut held = held;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(held.keep(&env.app).await);
    assert_eq!(lease::sweep(&env.app).await.unwrap(), 1, "only the lapsed lease goes");
    assert!(lease::is_free(&env.app, "b/crashed").await.unwrap());
    assert!(!lease::is_free(&env.app, "b/held").await.unwrap());
    assert_eq!(
        lease::noted_failure(&env.app, "failed/m/x@d").await.unwrap(),
        Some(Failure::Missing),
        "the note lasts the wait"
    );
    held.release(&env.app).await;
    env.advance(14);
    assert_eq!(lease::noted_failure(&env.app, "failed/m/x@d").await.unwrap(), None, "the note is gone after the wait");
    assert_eq!(lease::sweep(&env.app).await.unwrap(), 2, "the lapsed notes go");
    assert_eq!(lease::sweep(&env.app).await.unwrap(), 0);
}

#[tokio::test]
async fn an_ecr_source_signs_in_with_a_registry_password_from_get_authorization_token() {
    let moto = common::testing::moto().await;
    let endpoint = moto.endpoint.clone();
    let env = TestRegistry::embedded().with_settings(move |s| {
        s.cache.ecr_endpoint = Some(endpoint);
    });
    env.ready().await;
    let new: source::NewCache = serde_json::from_value(serde_json::json!({
        "name": "ecr", "type": "ecr", "url": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "access_id": "AKIAEXAMPLEKEY000001", "access_secret": "example-secret-access-key",
    }))
    .unwrap();
    let cache = source::create(&env.app, new, "admin").await.unwrap();
    assert_eq!(cache.endpoint, "https://123456789012.dkr.ecr.us-east-1.amazonaws.com");
    let signed_in = upstream::endpoint(&env.app, &cache).await.unwrap();
    assert_eq!(signed_in.username.as_deref(), Some("AWS"));
    let password = signed_in.password.unwrap();
    assert!(!password.is_empty() && password != "example-secret-access-key", "{password}");
    assert_eq!(signed_in.actions, "pull");
    // the second connection reuses the password until shortly before it expires
    assert_eq!(upstream::endpoint(&env.app, &cache).await.unwrap().password.unwrap(), password);
    // the IAM secret is sealed at rest
    let stored = serde_json::to_string(&source::must_get(&env.app, "ecr").await.unwrap().0).unwrap();
    assert!(!stored.contains("example-secret-access-key"), "{stored}");
}
