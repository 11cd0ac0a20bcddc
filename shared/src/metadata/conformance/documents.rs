//! Checks of [`super::super::Documents`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unused_imports)]
use super::*;

/// A document is created at version 1 and reads back whole; creating it again is a conflict
/// that changes nothing.
pub async fn documents_create_and_read_back(store: &dyn MetadataStore) {
    let c = unique_collection("create");
    let body = json!({
        "name": "ünïcode ✓",
        "n": 42,
        "big": u64::MAX,
        "neg": -7,
        "frac": 1.5,
        "list": [1, "two", null, {"nested": true}],
        "empty": {},
    });
    assert_eq!(store.get_document(&c, "reg/one").await.unwrap(), None);
    assert_eq!(store.put_document(&c, "reg/one", &body, Expect::Absent).await.unwrap(), 1);
    let doc = Document { id: "reg/one".into(), body: body.clone(), version: 1 };
    assert_eq!(store.get_document(&c, "reg/one").await.unwrap().as_ref(), Some(&doc));

    match store.put_document(&c, "reg/one", &json!({"other": 1}), Expect::Absent).await {
        Err(MetadataError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get_document(&c, "reg/one").await.unwrap(), Some(doc));
    // ids differing only in case or by a trailing separator are different documents
    assert_eq!(store.get_document(&c, "Reg/one").await.unwrap(), None);
    assert_eq!(store.get_document(&c, "reg/one/").await.unwrap(), None);

    // a body that is not an object is stored as is
    assert_eq!(store.put_document(&c, "scalar", &json!("text"), Expect::Absent).await.unwrap(), 1);
    assert_eq!(store.get_document(&c, "scalar").await.unwrap().unwrap().body, json!("text"));
}

/// Writes conditioned on a version succeed only at that version and move it by one; `Any`
/// creates or overwrites.
pub async fn documents_compare_and_swap(store: &dyn MetadataStore) {
    let c = unique_collection("cas");
    let id = "user:alice#1";
    store.put_document(&c, id, &json!({"v": 1}), Expect::Absent).await.unwrap();
    assert_eq!(store.put_document(&c, id, &json!({"v": 2}), Expect::Version(1)).await.unwrap(), 2);
    assert_eq!(store.put_document(&c, id, &json!({"v": 3}), Expect::Version(2)).await.unwrap(), 3);
    for stale in [0, 1, 2, 4, u64::MAX] {
        match store.put_document(&c, id, &json!({"v": "stale"}), Expect::Version(stale)).await {
            Err(MetadataError::Conflict(_)) => {}
            other => panic!("expected Conflict at version {stale}, got {other:?}"),
        }
    }
    let doc = store.get_document(&c, id).await.unwrap().unwrap();
    assert_eq!((doc.body, doc.version), (json!({"v": 3}), 3), "a refused write changes nothing");

    // a versioned write never creates
    match store.put_document(&c, "missing", &json!({}), Expect::Version(1)).await {
        Err(MetadataError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get_document(&c, "missing").await.unwrap(), None);

    // Any: an upsert that still moves the version
    assert_eq!(store.put_document(&c, id, &json!({"v": "any"}), Expect::Any).await.unwrap(), 4);
    assert_eq!(store.get_document(&c, id).await.unwrap().unwrap().body, json!({"v": "any"}));
    assert_eq!(store.put_document(&c, "fresh", &json!([1]), Expect::Any).await.unwrap(), 1);
    assert_eq!(store.put_document(&c, "fresh", &json!([2]), Expect::Any).await.unwrap(), 2);
    let fresh = store.get_document(&c, "fresh").await.unwrap().unwrap();
    assert_eq!(fresh, Document { id: "fresh".into(), body: json!([2]), version: 2 });
    assert_eq!(store.put_document(&c, "fresh", &json!([3]), Expect::Version(2)).await.unwrap(), 3);
}

/// Deletes under a version refuse another version; deleting what is not there reports false.
pub async fn documents_delete_under_expect(store: &dyn MetadataStore) {
    let c = unique_collection("delete");
    store.put_document(&c, "k", &json!({"a": 1}), Expect::Absent).await.unwrap();
    store.put_document(&c, "k", &json!({"a": 2}), Expect::Version(1)).await.unwrap();
    for wrong in [1, 3] {
        match store.delete_document(&c, "k", Expect::Version(wrong)).await {
            Err(MetadataError::Conflict(_)) => {}
            other => panic!("expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(store.get_document(&c, "k").await.unwrap().unwrap().version, 2, "a refused delete keeps it");
    assert!(store.delete_document(&c, "k", Expect::Version(2)).await.unwrap());
    assert_eq!(store.get_document(&c, "k").await.unwrap(), None);
    assert!(!store.delete_document(&c, "k", Expect::Version(2)).await.unwrap());
    assert!(!store.delete_document(&c, "k", Expect::Any).await.unwrap());
    assert!(!store.delete_document(&c, "k", Expect::Absent).await.unwrap());

    // Any and Absent delete whatever version is there
    store.put_document(&c, "k", &json!(1), Expect::Absent).await.unwrap();
    assert!(store.delete_document(&c, "k", Expect::Any).await.unwrap());
    store.put_document(&c, "k", &json!(1), Expect::Absent).await.unwrap();
    store.put_document(&c, "k", &json!(2), Expect::Any).await.unwrap();
    assert!(store.delete_document(&c, "k", Expect::Absent).await.unwrap());
    assert!(!store.delete_document(&c, "k", Expect::Absent).await.unwrap());
    // recreated after a delete, a document starts again at version 1
    assert_eq!(store.put_document(&c, "k", &json!(3), Expect::Absent).await.unwrap(), 1);
}

/// Documents list in byte-wise id order, filtered by prefix, after `after`, `limit` at a time,
/// with `more` exact on every page.
pub async fn documents_list_in_id_order(store: &dyn MetadataStore) {
    let c = unique_collection("list");
    // byte order: '#' < '/' < digits < ':' < upper case < lower case < multi-byte
    let names = ["a/b", "a#b", "a", "a/b/c", "a:1", "a/B", "b", "ab", "a/é", "Z"];
    for (i, id) in names.iter().enumerate() {
        store.put_document(&c, id, &json!({"i": i}), Expect::Absent).await.unwrap();
    }
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_unstable();
    let all = store.list_documents(&c, "", None, 100).await.unwrap();
    assert_eq!(ids(&all), expected);
    assert!(!all.more);
    for doc in &all.items {
        let i = names.iter().position(|n| *n == doc.id).unwrap();
        assert_eq!((&doc.body, doc.version), (&json!({"i": i}), 1));
    }

    // seven documents under one prefix, three at a time
    let under: Vec<&str> = expected.iter().copied().filter(|id| id.starts_with("a")).collect();
    assert_eq!(under.len(), 8);
    let prefix_a = store.list_documents(&c, "a", None, 100).await.unwrap();
    assert_eq!((ids(&prefix_a), prefix_a.more), (under.clone(), false));
    let seven: Vec<&str> = under[1..].to_vec(); // everything after "a" itself
    let mut seen = Vec::new();
    let mut after = "a".to_string();
    let mut pages = Vec::new();
    loop {
        let page = store.list_documents(&c, "a", Some(&after), 3).await.unwrap();
        pages.push((page.items.len(), page.more));
        seen.extend(page.items.iter().map(|d| d.id.clone()));
        if !page.more {
            break;
        }
        after = page.items.last().unwrap().id.clone();
    }
    assert_eq!(seen, seven);
    assert_eq!(pages, vec![(3, true), (3, true), (1, false)]);
    let exact = store.list_documents(&c, "a", Some(seven[3]), 3).await.unwrap();
    assert_eq!((ids(&exact), exact.more), (seven[4..].to_vec(), false), "no more when the page ends exactly");

    // prefixes with separators; ids that merely share a shorter prefix are excluded
    let slash = store.list_documents(&c, "a/", None, 10).await.unwrap();
    assert_eq!((ids(&slash), slash.more), (vec!["a/B", "a/b", "a/b/c", "a/é"], false));
    let deep = store.list_documents(&c, "a/b", None, 10).await.unwrap();
    assert_eq!(ids(&deep), vec!["a/b", "a/b/c"]);
    let hash = store.list_documents(&c, "a#", None, 10).await.unwrap();
    assert_eq!(ids(&hash), vec!["a#b"]);
    assert!(store.list_documents(&c, "a/x", None, 10).await.unwrap().items.is_empty());
    assert!(store.list_documents(&c, "zz", None, 10).await.unwrap().items.is_empty());
    assert!(store.list_documents(&c, &"a".repeat(600), None, 10).await.unwrap().items.is_empty());

    // `after` before the prefix, inside it (not an existing id), and past it
    let page = store.list_documents(&c, "a/", Some("a"), 2).await.unwrap();
    assert_eq!((ids(&page), page.more), (vec!["a/B", "a/b"], true));
    let page = store.list_documents(&c, "a/", Some("a/a"), 10).await.unwrap();
    assert_eq!(ids(&page), vec!["a/b", "a/b/c", "a/é"]);
    let page = store.list_documents(&c, "a/", Some("a0"), 10).await.unwrap();
    assert!(page.items.is_empty() && !page.more);
    let page = store.list_documents(&c, "", Some("a:1"), 2).await.unwrap();
    assert_eq!((ids(&page), page.more), (vec!["ab", "b"], false));
    // an `after` longer than any id
    let long = format!("a/b{}", "é".repeat(800));
    let page = store.list_documents(&c, "", Some(&long), 10).await.unwrap();
    assert_eq!(ids(&page), vec!["a/é", "a:1", "ab", "b"]);

    // limit 0: no items, `more` tells whether any match
    let zero = store.list_documents(&c, "a/", None, 0).await.unwrap();
    assert!(zero.items.is_empty() && zero.more);
    let zero = store.list_documents(&c, "q", None, 0).await.unwrap();
    assert!(zero.items.is_empty() && !zero.more);

    // deleted documents are not listed; rewritten ones show their new version
    store.delete_document(&c, "a/b", Expect::Any).await.unwrap();
    store.put_document(&c, "a/B", &json!("new"), Expect::Version(1)).await.unwrap();
    let slash = store.list_documents(&c, "a/", None, 10).await.unwrap();
    assert_eq!(ids(&slash), vec!["a/B", "a/b/c", "a/é"]);
    assert_eq!((&slash.items[0].body, slash.items[0].version), (&json!("new"), 2));
}

/// The same id in two collections is two documents; listing one never shows the other, even
/// when one collection's name is a prefix of the other's.
pub async fn documents_collections_are_isolated(store: &dyn MetadataStore) {
    let c1 = unique_collection("iso");
    let c2 = format!("{c1}2");
    let c3 = format!("{c1}/x");
    for (i, c) in [&c1, &c2, &c3].into_iter().enumerate() {
        assert_eq!(store.put_document(c, "same", &json!({"c": i}), Expect::Absent).await.unwrap(), 1);
    }
    store.put_document(&c2, "same", &json!({"c": "again"}), Expect::Version(1)).await.unwrap();
    assert_eq!(store.get_document(&c1, "same").await.unwrap().unwrap().body, json!({"c": 0}));
    assert_eq!(store.get_document(&c2, "same").await.unwrap().unwrap().version, 2);
    assert!(store.delete_document(&c1, "same", Expect::Version(1)).await.unwrap());
    assert_eq!(store.get_document(&c1, "same").await.unwrap(), None);
    assert_eq!(store.get_document(&c3, "same").await.unwrap().unwrap().body, json!({"c": 2}));
    store.put_document(&c1, "only-here", &json!(null), Expect::Absent).await.unwrap();
    let page = store.list_documents(&c1, "", None, 10).await.unwrap();
    assert_eq!((ids(&page), page.more), (vec!["only-here"], false));
    let page = store.list_documents(&c2, "", None, 10).await.unwrap();
    assert_eq!((ids(&page), page.more), (vec!["same"], false));
    assert!(store.list_documents(&unique_collection("empty"), "", None, 10).await.unwrap().items.is_empty());
}

/// Empty collections or ids, and ones over the length limit, are refused (not conflicts); ids
/// at the limit work.
pub async fn documents_refuse_invalid_keys(store: &dyn MetadataStore) {
    let c = unique_collection("keys");
    let refused = |r: Result<(), MetadataError>| match r {
        Err(MetadataError::Conflict(e)) => panic!("an invalid key is no conflict: {e}"),
        Err(_) => {}
        Ok(()) => panic!("an invalid key was accepted"),
    };
    let body = json!({});
    refused(store.put_document(&c, "", &body, Expect::Any).await.map(drop));
    refused(store.put_document("", "id", &body, Expect::Absent).await.map(drop));
    refused(store.get_document(&c, "").await.map(drop));
    refused(store.get_document("", "id").await.map(drop));
    refused(store.delete_document(&c, "", Expect::Any).await.map(drop));
    refused(store.list_documents("", "", None, 10).await.map(drop));
    let too_long = "x".repeat(crate::metadata::MAX_DOCUMENT_KEY_BYTES + 1);
    refused(store.put_document(&c, &too_long, &body, Expect::Any).await.map(drop));
    refused(store.put_document(&too_long, "id", &body, Expect::Any).await.map(drop));
    assert!(store.list_documents(&c, "", None, 10).await.unwrap().items.is_empty(), "nothing was written");

    // at the limit, in multi-byte characters, with every separator
    let longest = format!("/#:{}", "é".repeat((crate::metadata::MAX_DOCUMENT_KEY_BYTES - 3) / 2));
    assert!(
        longest.len() <= crate::metadata::MAX_DOCUMENT_KEY_BYTES
            && longest.len() > crate::metadata::MAX_DOCUMENT_KEY_BYTES - 2
    );
    assert_eq!(store.put_document(&c, &longest, &body, Expect::Absent).await.unwrap(), 1);
    assert_eq!(store.get_document(&c, &longest).await.unwrap().unwrap().id, longest);
    assert_eq!(ids(&store.list_documents(&c, "/#:", None, 10).await.unwrap()), vec![longest.as_str()]);
    assert!(store.delete_document(&c, &longest, Expect::Version(1)).await.unwrap());
}

/// Eight concurrent creates of one document: exactly one wins, and its body is what is stored.
pub async fn concurrent_document_creates(store: &dyn MetadataStore) {
    let c = unique_collection("race");
    let bodies: Vec<Value> = (0..8).map(|i| json!({"writer": i})).collect();
    let results = join_all(bodies.iter().map(|b| store.put_document(&c, "the/one", b, Expect::Absent))).await;
    let mut winners = Vec::new();
    for (body, result) in bodies.iter().zip(results) {
        match result {
            Ok(version) => {
                assert_eq!(version, 1);
                winners.push(body);
            }
            Err(MetadataError::Conflict(_)) => {}
            Err(e) => panic!("expected Ok or Conflict, got {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    let doc = store.get_document(&c, "the/one").await.unwrap().unwrap();
    assert_eq!((&doc.body, doc.version), (winners[0], 1));

    // and eight concurrent updates from that version: again exactly one
    let results = join_all(bodies.iter().map(|b| store.put_document(&c, "the/one", b, Expect::Version(1)))).await;
    let wins: Vec<&Value> = bodies.iter().zip(results).filter_map(|(b, r)| r.ok().map(|_| b)).collect();
    assert_eq!(wins.len(), 1, "exactly one update wins");
    let doc = store.get_document(&c, "the/one").await.unwrap().unwrap();
    assert_eq!((&doc.body, doc.version), (wins[0], 2));
}
