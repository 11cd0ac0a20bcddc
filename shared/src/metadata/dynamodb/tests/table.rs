//! The table and its items: creation, size limits, undecodable items, sort-key bounds, read cost.

#[allow(unused_imports)]
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_table_is_idempotent_and_enables_ttl() {
    let store = fresh_store().await;
    DynamoMetadataStore::create_table(&store.client, store.table()).await.unwrap();
    let ttl = store.client.describe_time_to_live().table_name(store.table()).send().await.unwrap();
    let desc = ttl.time_to_live_description().unwrap();
    assert_eq!(desc.attribute_name(), Some(EXPIRES_AT));
    assert_eq!(desc.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));

    // a table with another layout is refused
    let other = testing::unique_name("berth-other");
    let key = KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap();
    let attr =
        AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap();
    store
        .client
        .create_table()
        .table_name(&other)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key)
        .attribute_definitions(attr)
        .send()
        .await
        .unwrap();
    assert!(matches!(DynamoMetadataStore::create_table(&store.client, &other).await, Err(MetadataError::Backend(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_records_are_refused_clearly() {
    let store = fresh_store().await;
    let r = repo("too/big");
    let mut annotations = Map::new();
    annotations.insert("huge".into(), Value::String("x".repeat(450 * 1024)));
    let m = ManifestRecord { annotations: Some(annotations), ..image(&r, "m", vec![], vec![]) };
    match store.put_manifest(&m, &[tag("t")]).await {
        Err(MetadataError::Backend(msg)) => assert!(msg.contains("DynamoDB item"), "{msg}"),
        other => panic!("expected Backend, got {other:?}"),
    }
    assert!(!store.repository_exists(&r).await.unwrap());
    let session = UploadSession {
        id: UploadId::generate(),
        repo: r.clone(),
        offset: 0,
        hash_state: vec![],
        staging: vec![7; 500 * 1024],
        owner: None,
        created_at: 1,
        updated_at: 1,
    };
    assert!(matches!(store.create_upload(&session).await, Err(MetadataError::Backend(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_documents_are_refused_clearly() {
    let store = fresh_store().await;
    let body = Value::String("x".repeat(MAX_ITEM_BYTES));
    for expect in [Expect::Absent, Expect::Any, Expect::Version(1)] {
        match store.put_document("big", "doc", &body, expect).await {
            Err(MetadataError::Backend(msg)) => assert!(msg.contains("DynamoDB item"), "{msg}"),
            other => panic!("expected Backend, got {other:?}"),
        }
    }
    assert_eq!(store.get_document("big", "doc").await.unwrap(), None);
    let fits = Value::String("x".repeat(300 * 1024));
    assert_eq!(store.put_document("big", "doc", &fits, Expect::Absent).await.unwrap(), 1);
    assert_eq!(store.get_document("big", "doc").await.unwrap().unwrap().body, fits);
}

/// Rewrites attributes of a stored item behind the store's back (`:v` is `value`).
async fn overwrite(
    store: &DynamoMetadataStore,
    key: &HashMap<String, AttributeValue>,
    expr: &'static str,
    value: AttributeValue,
) -> Result<(), String> {
    store
        .client
        .update_item()
        .table_name(store.table())
        .set_key(Some(key.clone()))
        .update_expression(expr)
        .set_expression_attribute_names(expression_names(&[Some(expr)]))
        .expression_attribute_values(":v", value)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_documents_are_corrupt() {
    let store = fresh_store().await;
    store.put_document("c", "d", &Value::Null, Expect::Absent).await.unwrap();
    let key = key_item(&document_key("c", "d"));
    let set = |expr: &'static str, value: AttributeValue| overwrite(&store, &key, expr, value);
    set("SET #body = :v", s("{not json")).await.unwrap();
    assert!(matches!(store.get_document("c", "d").await, Err(MetadataError::Corrupt(_))));
    assert!(matches!(store.list_documents("c", "", None, 10).await, Err(MetadataError::Corrupt(_))));
    set("SET #body = :v", s("[]")).await.unwrap();
    assert_eq!(store.get_document("c", "d").await.unwrap().unwrap().body, Value::Array(vec![]));
    set("SET #version = :v", s("one")).await.unwrap();
    assert!(matches!(store.get_document("c", "d").await, Err(MetadataError::Corrupt(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_items_are_corrupt() {
    let store = fresh_store().await;
    let r = repo("broken");
    let m = image(&r, "m", vec![], vec![]);
    store.put_manifest(&m, &[tag("t")]).await.unwrap();
    let key = key_item(&manifest_key(r.as_str(), &m.digest.to_string()));
    let set = |expr: &'static str, value: AttributeValue| overwrite(&store, &key, expr, value);
    set("SET #annotations = :v", s("not json")).await.unwrap();
    assert!(matches!(store.manifest(&r, &m.digest).await, Err(MetadataError::Corrupt(_))));
    set("REMOVE #annotations SET #blobs = :v", AttributeValue::L(vec![s("sha256:nope")])).await.unwrap();
    assert!(matches!(store.resolve_tag(&r, &tag("t")).await, Err(MetadataError::Corrupt(_))));
    set("SET #blobs = :v", AttributeValue::L(vec![])).await.unwrap();
    assert_eq!(store.manifest(&r, &m.digest).await.unwrap().unwrap().blobs, vec![]);
    set("SET #size = :v", s("big")).await.unwrap();
    assert!(matches!(store.manifest(&r, &m.digest).await, Err(MetadataError::Corrupt(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_after_a_last_longer_than_a_sort_key() {
    let store = fresh_store().await;
    let r = repo("long/last");
    let m = image(&r, "m", vec![], vec![]);
    store.put_manifest(&m, &[tag("a"), tag("b"), tag("c")]).await.unwrap();
    let long_b = format!("b{}", "é".repeat(1500));
    let page = store.list_tags(&r, Some(&long_b), 10).await.unwrap().unwrap();
    assert_eq!(page.items, vec!["c".to_string()]);
    let long_a = "a".repeat(3000);
    let page = store.list_tags(&r, Some(&long_a), 1).await.unwrap().unwrap();
    assert_eq!((page.items, page.more), (vec!["b".to_string()], true));
    let page = store.list_repositories(Some(&format!("{r}{}", "z".repeat(2000))), 10).await.unwrap();
    assert!(page.items.iter().all(|name| name.as_str() > r.as_str()));
}

/// Not an assertion: the cost of the hottest read against moto on loopback. Run with
/// `cargo test -p berth --lib dynamodb::tests::table::resolve_tag_timing -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_tag_timing() {
    let store = fresh_store().await;
    let r = repo("bench/app");
    let m = image(&r, "bench", link_many(&store, &r, 6).await, vec![]);
    store.put_manifest(&m, &[tag("latest")]).await.unwrap();
    let n = 200u32;
    let start = Instant::now();
    for _ in 0..n {
        assert!(store.resolve_tag(&r, &tag("latest")).await.unwrap().is_some());
    }
    let per_call = start.elapsed() / n;
    let start = Instant::now();
    for _ in 0..n {
        store.get(&tag_key(r.as_str(), "latest"), None).await.unwrap().unwrap();
    }
    let per_get = start.elapsed() / n;
    println!("resolve_tag against moto: {per_call:?}/call (two GetItems; one GetItem: {per_get:?})");
}
