//! The event bus port: where every registry event is also put, so infra teams route events with
//! their own rules. The AWS adapter puts them on an EventBridge bus with ECR-like detail-types.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{EventType, RegistryEvent};

/// The `source` of every event Berth puts on a bus.
pub const SOURCE: &str = "berth.registry";

/// A sink for registry events besides webhooks.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Puts one event; an error makes the publish job retry.
    async fn put(&self, event: &RegistryEvent) -> Result<(), String>;
}

/// The EventBridge `detail-type` of an event, shaped after ECR's.
pub fn detail_type(kind: EventType) -> &'static str {
    match kind {
        EventType::PushArtifact | EventType::PullArtifact | EventType::DeleteArtifact | EventType::DeleteImage => {
            "Berth Image Action"
        }
        EventType::CreateTag | EventType::DeleteTag => "Berth Tag Action",
        EventType::TagRetention => "Berth Cleanup Action",
        EventType::ScanningCompleted | EventType::ScanningFailed | EventType::ScanningStopped => "Berth Image Scan",
        EventType::Replication => "Berth Replication Action",
        EventType::Ping => "Berth Webhook Ping",
    }
}

/// The EventBridge `detail` of an event: ECR's field names where ECR has the concept.
pub fn detail(event: &RegistryEvent) -> Value {
    let action = match event.kind {
        EventType::PushArtifact => "PUSH",
        EventType::PullArtifact => "PULL",
        EventType::DeleteArtifact | EventType::DeleteImage | EventType::DeleteTag => "DELETE",
        EventType::CreateTag => "TAG",
        _ => "INFO",
    };
    json!({
        "event-id": event.id,
        "event-type": event.kind.as_str(),
        "action-type": action,
        "result": "SUCCESS",
        "registry": event.registry,
        "repository-name": event.repository,
        "image-digest": event.digest,
        "image-tag": event.tag,
        "image-tags": event.tags,
        "manifest-media-type": event.media_type,
        "operator": event.operator,
        "details": event.details,
    })
}

/// The AWS adapter: `PutEvents` on one EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeBus {
    /// Puts events on the bus named `bus` (name or ARN).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> EventBridgeBus {
        EventBridgeBus { client, bus }
    }
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn put(&self, event: &RegistryEvent) -> Result<(), String> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(detail_type(event.kind))
            .detail(detail(event).to_string())
            .build();
        let out = self.client.put_events().entries(entry).send().await.map_err(|e| format!("PutEvents: {e:?}"))?;
        if out.failed_entry_count() > 0 {
            let reason =
                out.entries().iter().filter_map(|e| e.error_message()).next().unwrap_or("an entry failed").to_string();
            return Err(format!("PutEvents refused the event: {reason}"));
        }
        Ok(())
    }
}
