//! Checks of [`super::super::UploadSessions`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)]
use super::*;

/// An upload session is created, read, advanced from its current offset only, and deleted.
pub async fn upload_sessions_advance_only_from_the_expected_offset(store: &dyn MetadataStore) {
    let repo = unique_repo("upload");
    // a fresh session has empty hasher and staging states
    let s = UploadSession { hash_state: vec![], staging: vec![], ..session(&repo, 0, 1_000) };
    assert_eq!(store.upload(&s.id).await.unwrap(), None);
    store.create_upload(&s).await.unwrap();
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(&s));
    assert!(!store.repository_exists(&repo).await.unwrap(), "an upload alone creates no repository");

    let moved = UploadSession {
        offset: 5 * 1024 * 1024,
        hash_state: vec![9; 200],
        staging: b"multipart-id parts=1".to_vec(),
        updated_at: 1_100,
        ..s.clone()
    };
    store.advance_upload(&moved, 0).await.unwrap();
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(&moved));

    // a stale expected offset is a conflict and changes nothing
    let stale = UploadSession { offset: 10, hash_state: vec![7], staging: vec![7], updated_at: 1_200, ..s.clone() };
    assert!(matches!(store.advance_upload(&stale, 0).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(&moved));

    let further = UploadSession {
        offset: moved.offset + 1,
        staging: b"multipart-id parts=2".to_vec(),
        updated_at: 1_300,
        ..moved.clone()
    };
    store.advance_upload(&further, moved.offset).await.unwrap();
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(&further));

    assert!(store.delete_upload(&s.id).await.unwrap());
    assert!(!store.delete_upload(&s.id).await.unwrap());
    assert_eq!(store.upload(&s.id).await.unwrap(), None);
    // advancing a vanished session is a conflict too
    assert!(matches!(store.advance_upload(&further, further.offset).await, Err(MetadataError::Conflict(_))));
    assert_eq!(store.upload(&s.id).await.unwrap(), None, "advancing never recreates a session");
}

/// `stale_uploads` returns the sessions last updated strictly before the cut-off.
pub async fn stale_uploads_are_those_idle_since_before(store: &dyn MetadataStore) {
    let repo = unique_repo("stale");
    let old = session(&repo, 0, 10_000);
    let edge = session(&repo, 0, 20_000);
    let fresh = session(&repo, 0, 30_000);
    for s in [&old, &edge, &fresh] {
        store.create_upload(s).await.unwrap();
    }
    // a session that was stale but then received data is no longer stale
    let revived = session(&repo, 0, 10_000);
    store.create_upload(&revived).await.unwrap();
    let revived_now = UploadSession { offset: 1, updated_at: 30_000, ..revived.clone() };
    store.advance_upload(&revived_now, 0).await.unwrap();

    let stale = store.stale_uploads(20_000).await.unwrap();
    let ours: Vec<&UploadSession> = stale.iter().filter(|s| s.repo == repo).collect();
    assert_eq!(ours, vec![&old], "strictly before the cut-off, and complete");
    let stale = store.stale_uploads(30_001).await.unwrap();
    let mut ids: Vec<&str> = stale.iter().filter(|s| s.repo == repo).map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![old.id.as_str(), edge.id.as_str(), fresh.id.as_str(), revived.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    store.delete_upload(&old.id).await.unwrap();
    assert!(store.stale_uploads(20_000).await.unwrap().iter().all(|s| s.repo != repo));
}

/// Creating a session whose id exists is refused rather than overwriting it.
pub async fn create_upload_does_not_overwrite(store: &dyn MetadataStore) {
    let repo = unique_repo("upload-dup");
    let s = session(&repo, 0, 1_000);
    store.create_upload(&s).await.unwrap();
    let again = UploadSession { offset: 0, hash_state: vec![], updated_at: 2_000, ..s.clone() };
    assert!(store.create_upload(&again).await.is_err());
    assert_eq!(store.upload(&s.id).await.unwrap(), Some(s));
}

/// Twenty concurrent advances of one session from the same offset: exactly one wins.
pub async fn concurrent_advances_of_one_session(store: &dyn MetadataStore) {
    let repo = unique_repo("race-upload");
    let s = session(&repo, 0, 1_000);
    store.create_upload(&s).await.unwrap();
    let attempts: Vec<UploadSession> = (1..=20u64)
        .map(|i| UploadSession {
            offset: i * 1000,
            hash_state: vec![i as u8],
            staging: vec![i as u8; 3],
            updated_at: 2_000,
            ..s.clone()
        })
        .collect();
    let results = join_all(attempts.iter().map(|a| store.advance_upload(a, 0))).await;
    let mut winners = Vec::new();
    for (a, r) in attempts.iter().zip(results) {
        match r {
            Ok(()) => winners.push(a),
            Err(MetadataError::Conflict(_)) => {}
            Err(e) => panic!("expected Ok or Conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one advance wins");
    assert_eq!(store.upload(&s.id).await.unwrap().as_ref(), Some(winners[0]));
}
