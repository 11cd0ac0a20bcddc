//! Registry events through the outbox: a change writes its event in its own transaction, a
//! refused change writes none, the publish job clears it, the relay re-queues one whose queueing
//! was lost, and on AWS the event reaches an EventBridge bus (moto) with its ECR-like shape.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use berth::events::{EventType, RegistryEvent};
use berth::metadata::{UnixTime, EVENT_OUTBOX};
use common::registry::{TestRegistry, OCI_MANIFEST};
use http::StatusCode;

const T0: UnixTime = 1_800_000_000;

/// The events waiting in the outbox, oldest first.
async fn outbox(env: &TestRegistry) -> Vec<RegistryEvent> {
    let page = env.app.meta.list_documents(EVENT_OUTBOX, "", None, 100).await.unwrap();
    page.items.into_iter().map(|d| serde_json::from_value(d.body).unwrap()).collect()
}

async fn changes_carry_their_events_and_refused_ones_none(env: TestRegistry) {
    let env = env.with_clock(T0);
    let digest = env.push_image("team/app", "v1").await;
    let waiting = outbox(&env).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let pushed = &waiting[0];
    assert_eq!(pushed.kind, EventType::PushArtifact);
    assert_eq!(pushed.repository.as_deref(), Some("team/app"));
    assert_eq!(pushed.digest.as_deref(), Some(digest.to_string().as_str()));
    assert_eq!(pushed.tag.as_deref(), Some("v1"));
    assert_eq!(pushed.operator, berth::identity::bootstrap::ADMIN_USER);
    assert_eq!(pushed.occurred_at, T0);

    // a manifest naming a blob the repository lacks is refused: no event
    let missing = berth::oci::Digest::sha256_of(b"never uploaded");
    let body = common::registry::image_manifest((&missing, 14), &[], None);
    let refused = env.push_manifest("team/app", "v2", OCI_MANIFEST, &body).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text());
    // deleting a tag that does not exist: no event either
    let gone = env.call_json(http::Method::DELETE, "/v2/team/app/manifests/nope", "").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(outbox(&env).await.len(), 1);

    // the publish job (no webhook subscribes) clears it
    env.work().await;
    assert!(outbox(&env).await.is_empty());

    // a tag delete and an artifact delete each carry theirs, naming the tags
    env.tag("team/app", "stable", &digest).await;
    env.work().await;
    let deleted = env.call_json(http::Method::DELETE, &format!("/v2/team/app/manifests/{digest}"), "").await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{}", deleted.text());
    let waiting = outbox(&env).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0].kind, EventType::DeleteArtifact);
    assert_eq!(waiting[0].tags, ["stable", "v1"]);
    env.work().await;
    assert!(outbox(&env).await.is_empty());
}
on_both_backends!(changes_carry_their_events_and_refused_ones_none);

async fn the_relay_requeues_an_event_whose_queueing_was_lost(env: TestRegistry) {
    let env = env.with_clock(T0);
    env.push_image("team/app", "v1").await;
    // as if the process stopped right after its commit: the publish job never reached the queue
    let lost = env.discard_pending_jobs().await;
    assert!(lost.iter().any(|j| j.kind == "publish-event"), "{lost:?}");
    assert_eq!(outbox(&env).await.len(), 1);
    // younger than a minute: still on its fast path, left alone
    env.advance(30);
    assert_eq!(berth::outbox::relay(&env.app).await.unwrap(), 0);
    env.advance(31);
    assert_eq!(berth::outbox::relay(&env.app).await.unwrap(), 1);
    env.work().await;
    assert!(outbox(&env).await.is_empty(), "published and cleared");
    assert_eq!(berth::outbox::relay(&env.app).await.unwrap(), 0);
}
on_both_backends!(the_relay_requeues_an_event_whose_queueing_was_lost);

#[tokio::test]
async fn events_reach_the_eventbridge_bus_with_ecr_like_details() {
    let mut env = TestRegistry::aws().await;
    let sdk = common::testing::aws_config().await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // a bus with a rule sending Berth's image actions to a queue, where the test reads them
    let bus = common::testing::unique_name("berth-bus");
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs.create_queue().queue_name(common::testing::unique_name("bus-sink")).send().await.unwrap();
    let queue_url = queue_url.queue_url().unwrap().to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let queue_arn = attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    events
        .put_rule()
        .name("berth-image-actions")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["berth.registry"],"detail-type":["Berth Image Action"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("berth-image-actions")
        .event_bus_name(&bus)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("sink").arn(queue_arn).build().unwrap())
        .send()
        .await
        .unwrap();
    env.app.events = Arc::new(berth::events::EventState {
        bus: Some(Arc::new(berth::events::bus::EventBridgeBus::new(events.clone(), bus.clone()))),
        ..Default::default()
    });

    let digest = env.push_image("team/app", "v1").await;
    env.work().await;
    let received = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<serde_json::Value> =
        received.messages().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let event = &bodies[0];
    assert_eq!(event["source"], "berth.registry");
    assert_eq!(event["detail-type"], "Berth Image Action");
    assert_eq!(event["detail"]["action-type"], "PUSH");
    assert_eq!(event["detail"]["result"], "SUCCESS");
    assert_eq!(event["detail"]["repository-name"], "team/app");
    assert_eq!(event["detail"]["image-digest"], digest.to_string());
    assert_eq!(event["detail"]["image-tag"], "v1");
    assert_eq!(event["detail"]["event-type"], "PUSH_ARTIFACT");
    assert!(outbox(&env).await.is_empty());
}

#[tokio::test]
async fn a_failing_receiver_trips_the_breaker_and_its_deliveries_wait_without_attempts() {
    let env = TestRegistry::embedded().with_settings(|s| {
        s.webhooks.outbound = berth::outbound::OutboundPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        s.webhooks.timeout = std::time::Duration::from_secs(2);
    });
    // a port nobody listens on: every attempt is refused at once
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let made = env
        .call_json(
            http::Method::POST,
            "/api/v1/registries/team/webhooks",
            &format!(r#"{{"name":"down","url":"http://127.0.0.1:{closed}/hook","events":["PUSH_ARTIFACT"]}}"#),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let id = made.json()["id"].as_str().unwrap().to_string();
    let attempts = |log: &serde_json::Value| -> usize {
        log["items"].as_array().unwrap().iter().map(|d| d["attempts"].as_array().unwrap().len()).sum()
    };
    let log_path = format!("/api/v1/registries/team/webhooks/{id}/deliveries");
    for i in 0..6 {
        env.push_image("team/app", &format!("v{i}")).await;
    }
    env.work().await;
    // attempts made side by side in one batch all fail; from the third failure on, the breaker
    // holds the rest back
    let first = attempts(&env.get_json(&log_path).await);
    assert!((3..=6).contains(&first), "{first}");
    for i in 6..12 {
        env.push_image("team/app", &format!("v{i}")).await;
    }
    env.work().await;
    let log = env.get_json(&log_path).await;
    assert_eq!(attempts(&log), first, "no attempt while the breaker is open: {log}");
    assert!(log["items"].as_array().unwrap().iter().all(|d| d["status"] == "retrying"), "{log}");
    let waiting = env.discard_pending_jobs().await;
    assert_eq!(waiting.iter().filter(|j| j.kind == "deliver-webhook").count(), 12, "{waiting:?}");
}

#[tokio::test]
async fn a_webhook_log_keeps_its_newest_thousand_deliveries() {
    let env = TestRegistry::embedded();
    // delivery ids sort newest first; bodies need not decode for trimming
    for i in 0..1010 {
        let id = format!("team/wh-1/{i:05}");
        env.app
            .meta
            .put_document("webhook-delivery", &id, &serde_json::json!({}), berth::metadata::Expect::Any)
            .await
            .unwrap();
    }
    env.app
        .meta
        .put_document("webhook-delivery", "team/wh-2/00000", &serde_json::json!({}), berth::metadata::Expect::Any)
        .await
        .unwrap();
    assert_eq!(berth::webhook::delivery::trim_log(&env.app, "team", "wh-1").await.unwrap(), 10);
    let kept = env.app.meta.list_documents("webhook-delivery", "team/wh-1/", None, 2000).await.unwrap().items;
    assert_eq!(kept.len(), 1000);
    assert_eq!(kept.last().unwrap().id, "team/wh-1/00999", "the oldest went");
    assert!(
        env.app.meta.get_document("webhook-delivery", "team/wh-2/00000").await.unwrap().is_some(),
        "another webhook's log stays"
    );
    assert_eq!(berth::webhook::delivery::trim_log(&env.app, "team", "wh-1").await.unwrap(), 0);
}
