//! Delivering an event to one webhook: the attempt (SSRF-checked at send time, signed, with a
//! timeout), the delivery log it is recorded in, retries with exponential backoff up to a dead
//! state, redelivery on demand and the synchronous test ping.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::payload::{render, signature};
use super::policy::{self, seal_context, StoredPolicy};
use super::WebhookError;
use crate::app::App;
use crate::events::{EventType, RegistryEvent};
use crate::metadata::{Collection, Expect, MetadataError, UnixTime};
use crate::task::Task;

/// Where deliveries are logged: id `<scope>/<webhook>/<delivery id>`, newest first.
const DELIVERIES: Collection<Delivery> = Collection::new("webhook-delivery");

/// The most attempts one log entry keeps (the oldest are dropped).
const MAX_LOGGED_ATTEMPTS: usize = 20;
/// The most deliveries a webhook's log keeps (the oldest go first).
pub const MAX_LOGGED_DELIVERIES: usize = 1000;
/// On average every this many new deliveries, the log is trimmed to [`MAX_LOGGED_DELIVERIES`]
/// (reading the log on every delivery would cost more than the log).
const TRIM_EVERY: u8 = 32;

/// The most bytes of a receiver's answer kept in the log.
pub const RESPONSE_SNIPPET: usize = 512;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// queued, not yet attempted
    Pending,
    /// a receiver answered 2xx
    Delivered,
    /// failed; another attempt is queued
    Retrying,
    /// every attempt failed (dead letter); redeliver to try again
    Dead,
    /// the policy was disabled or no longer subscribed when its turn came
    Skipped,
}

/// One attempt, as the log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// when it started
    pub at: UnixTime,
    /// the URL posted to
    pub url: String,
    /// the receiver's status, if it answered
    pub status: Option<u16>,
    /// how long it took
    pub latency_ms: u64,
    /// why it failed, if it did
    pub error: Option<String>,
    /// the start of the receiver's answer
    pub response: Option<String>,
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `<inverted time>-<event id>`: newest first in the log
    pub id: String,
    /// the webhook
    pub webhook: String,
    /// the webhook's scope
    pub registry: String,
    /// the event's type
    pub event_type: EventType,
    /// the event
    pub event: RegistryEvent,
    /// where it stands
    pub status: DeliveryStatus,
    /// when it was first queued
    pub created_at: UnixTime,
    /// when the next attempt is due, while retrying
    pub next_attempt_at: Option<UnixTime>,
    /// the attempts, oldest first (the last [`MAX_LOGGED_ATTEMPTS`])
    pub attempts: Vec<Attempt>,
    /// attempts made since the last redelivery (the budget counts these)
    #[serde(default)]
    pub round_attempts: u32,
    /// how many times it was redelivered: a queued attempt of an earlier round is dropped
    #[serde(default)]
    pub round: u32,
}

/// The delivery id of an event: its inverted time in milliseconds first (from the event id, a
/// UUID v7), so the log lists newest first, then the event id.
pub fn delivery_id(event: &RegistryEvent) -> String {
    let millis = uuid::Uuid::parse_str(&event.id)
        .ok()
        .and_then(|u| u.get_timestamp())
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            i64::try_from(secs).unwrap_or(i64::MAX / 1000).saturating_mul(1000) + i64::from(nanos / 1_000_000)
        })
        .unwrap_or_else(|| event.occurred_at.saturating_mul(1000));
    format!("{:013}-{}", 9_999_999_999_999_i64.saturating_sub(millis).max(0), event.id)
}

fn delivery_key(scope: &str, webhook: &str, id: &str) -> String {
    format!("{scope}/{webhook}/{id}")
}

/// The delivery job: one attempt, then the log updated and, on failure, the next attempt queued.
pub async fn run(app: &App, scope: &str, webhook: &str, event: &RegistryEvent, round: u32) -> Result<(), WebhookError> {
    let policy = match policy::get(app, scope, webhook).await {
        Ok((policy, _)) => policy,
        // deleted since: its log is gone with it
        Err(WebhookError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let id = delivery_id(event);
    let key = delivery_key(scope, webhook, &id);
    let (mut delivery, version) = match DELIVERIES.get(app.meta.as_ref(), &key).await? {
        Some(v) => (v.record, Expect::Version(v.version)),
        None => (new_delivery(app, &policy, event, id), Expect::Absent),
    };
    if round != delivery.round
        || matches!(delivery.status, DeliveryStatus::Delivered | DeliveryStatus::Dead | DeliveryStatus::Skipped)
    {
        return Ok(()); // a duplicate job, or one of a round a redelivery replaced: settled
    }
    if !policy.wants(event.kind) {
        delivery.status = DeliveryStatus::Skipped;
        delivery.next_attempt_at = None;
        return save(app, &key, &delivery, version).await;
    }
    let next = Task::DeliverWebhook {
        registry: scope.to_string(),
        webhook: webhook.to_string(),
        event: Box::new(event.clone()),
        round,
    }
    .to_job();
    let breaker = policy.key();
    if let Some(wait) = breaker_open(app, &breaker) {
        // the receiver failed its last attempts: wait without spending an attempt (or a worker)
        app.queue.enqueue(&next, wait).await?;
        return Ok(());
    }
    let (attempt, refused) = send(app, &policy, event, &delivery.id).await;
    let ok = attempt.error.is_none();
    note_outcome(app, &breaker, ok || refused);
    record_attempt(&mut delivery, attempt);
    let settings = &app.settings.webhooks;
    if ok {
        delivery.status = DeliveryStatus::Delivered;
        delivery.next_attempt_at = None;
    } else if refused {
        // the target is not one outbound requests may reach: another attempt is refused too
        delivery.status = DeliveryStatus::Dead;
        delivery.next_attempt_at = None;
    } else if delivery.round_attempts >= settings.max_attempts {
        delivery.status = DeliveryStatus::Dead;
        delivery.next_attempt_at = None;
        tracing::warn!(webhook, delivery = %delivery.id, "webhook delivery failed every attempt; dead-lettered");
    } else {
        let delay = settings.retry_delay(delivery.round_attempts);
        delivery.status = DeliveryStatus::Retrying;
        delivery.next_attempt_at = Some(app.clock.now() + delay.as_secs() as i64);
        app.queue.enqueue(&next, delay).await?;
    }
    save(app, &key, &delivery, version).await
}

/// Consecutive failed attempts after which a webhook's deliveries wait instead of trying.
const BREAKER_THRESHOLD: u32 = 3;

/// How long a webhook's deliveries still wait, if its breaker is open.
fn breaker_open(app: &App, key: &str) -> Option<Duration> {
    let breakers = app.events.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (_, until) = breakers.get(key)?;
    let left = until - app.clock.now();
    (left > 0).then(|| Duration::from_secs(left.unsigned_abs()))
}

/// How long an open breaker holds a webhook's deliveries back.
const BREAKER_OPEN_SECS: i64 = 30;

/// Records an attempt's outcome, per process: a success closes the breaker; the third failure in
/// a row opens it for [`BREAKER_OPEN_SECS`], and every failure after that (the one attempt let
/// through when it closes) opens it again. A held-back delivery waits at most that long, so the
/// breaker never delays a receiver that recovered by more than 30 s.
fn note_outcome(app: &App, key: &str, ok: bool) {
    let mut breakers = app.events.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if ok {
        breakers.remove(key);
        return;
    }
    let now = app.clock.now();
    let entry = breakers.entry(key.to_string()).or_insert((0, now));
    entry.0 = entry.0.saturating_add(1);
    if entry.0 >= BREAKER_THRESHOLD && entry.1 <= now {
        entry.1 = now + BREAKER_OPEN_SECS;
    }
}

fn new_delivery(app: &App, policy: &StoredPolicy, event: &RegistryEvent, id: String) -> Delivery {
    Delivery {
        id,
        webhook: policy.id.clone(),
        registry: policy.registry.clone(),
        event_type: event.kind,
        event: event.clone(),
        status: DeliveryStatus::Pending,
        created_at: app.clock.now(),
        next_attempt_at: None,
        attempts: Vec::new(),
        round_attempts: 0,
        round: 0,
    }
}

fn record_attempt(delivery: &mut Delivery, attempt: Attempt) {
    delivery.attempts.push(attempt);
    if delivery.attempts.len() > MAX_LOGGED_ATTEMPTS {
        let excess = delivery.attempts.len() - MAX_LOGGED_ATTEMPTS;
        delivery.attempts.drain(..excess);
    }
    delivery.round_attempts = delivery.round_attempts.saturating_add(1);
}

async fn save(app: &App, key: &str, delivery: &Delivery, expect: Expect) -> Result<(), WebhookError> {
    let new = matches!(expect, Expect::Absent);
    match DELIVERIES.put(app.meta.as_ref(), key, delivery, expect).await {
        Ok(_) => {
            if new && one_in(TRIM_EVERY) {
                trim_log(app, &delivery.registry, &delivery.webhook).await?;
            }
            Ok(())
        }
        // another worker recorded the same delivery meanwhile (a duplicate job): theirs stands
        Err(MetadataError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sends one attempt. Never fails: what went wrong is the attempt's `error`; the flag says the
/// outbound guard refused the target (no attempt can succeed).
async fn send(app: &App, policy: &StoredPolicy, event: &RegistryEvent, delivery_id: &str) -> (Attempt, bool) {
    let at = app.clock.now();
    let started = Instant::now();
    let outcome = post(app, policy, event, delivery_id).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let url = policy.url.clone();
    let attempt = match outcome {
        Ok((status, response)) if (200..300).contains(&status) => {
            Attempt { at, url, status: Some(status), latency_ms, error: None, response: Some(response) }
        }
        Ok((status, response)) => {
            let error = if (300..400).contains(&status) {
                format!("answered {status}: redirects are not followed")
            } else {
                format!("answered {status}")
            };
            Attempt { at, url, status: Some(status), latency_ms, error: Some(error), response: Some(response) }
        }
        Err(PostError::Refused(e)) => {
            return (Attempt { at, url, status: None, latency_ms, error: Some(e), response: None }, true)
        }
        Err(PostError::Failed(e)) => Attempt { at, url, status: None, latency_ms, error: Some(e), response: None },
    };
    (attempt, false)
}

/// Why a request was not answered.
enum PostError {
    /// the outbound guard refused the target
    Refused(String),
    /// anything else (connection, timeout, secrets)
    Failed(String),
}

impl From<String> for PostError {
    fn from(e: String) -> Self {
        PostError::Failed(e)
    }
}

/// The request itself: the target is checked again now (its name may resolve elsewhere than at
/// creation), the body signed, the answer read up to [`RESPONSE_SNIPPET`] bytes.
async fn post(
    app: &App,
    policy: &StoredPolicy,
    event: &RegistryEvent,
    delivery_id: &str,
) -> Result<(u16, String), PostError> {
    let settings = &app.settings.webhooks;
    let url = settings.outbound.check_url(&policy.url).await.map_err(|e| match e {
        crate::outbound::OutboundError::Refused { .. } | crate::outbound::OutboundError::InvalidUrl(_) => {
            PostError::Refused(e.to_string())
        }
        other => PostError::Failed(other.to_string()),
    })?;
    let key = crate::secrets::key(app).await.map_err(|e| e.to_string())?;
    let secret =
        key.open(&policy.secret, &seal_context(&policy.registry, &policy.id, "secret")).map_err(|e| e.to_string())?;
    let public = match crate::identity::registry::get(app.meta.as_ref(), &event.registry).await {
        Ok(Some(registry)) => registry.public_access,
        _ => false,
    };
    let rendered = render(policy, event, public);
    let timestamp = app.clock.now();
    let client = settings.outbound.client(policy.skip_tls_verify, settings.timeout).map_err(|e| e.to_string())?;
    let mut request = client
        .post(url)
        .header(http::header::CONTENT_TYPE, rendered.content_type)
        .header(http::header::USER_AGENT, concat!("Berth-Webhook/", env!("CARGO_PKG_VERSION")))
        .header("X-Berth-Event", event.kind.as_str())
        .header("X-Berth-Event-Id", &event.id)
        .header("X-Berth-Delivery", delivery_id)
        .header("X-Berth-Timestamp", timestamp.to_string())
        .header("X-Berth-Signature", signature(&secret, timestamp, &rendered.body))
        .body(rendered.body);
    if let Some(sealed) = &policy.auth_header {
        let value = key.open(sealed, &seal_context(&policy.registry, &policy.id, "auth")).map_err(|e| e.to_string())?;
        request = request.header(http::header::AUTHORIZATION, value);
    }
    let mut response = request.send().await.map_err(|e| crate::outbound::describe_failure(&e))?;
    let status = response.status().as_u16();
    let mut snippet = Vec::new();
    while snippet.len() < RESPONSE_SNIPPET {
        match response.chunk().await {
            Ok(Some(chunk)) => snippet.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_SNIPPET - snippet.len())]),
            Ok(None) => break,
            // the status counts; a body cut short does not make a 2xx a failure
            Err(_) => break,
        }
    }
    Ok((status, String::from_utf8_lossy(&snippet).into_owned()))
}

/// The delivery log of a webhook, newest first.
pub async fn list(
    app: &App,
    scope: &str,
    webhook: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Delivery>, bool), WebhookError> {
    policy::get(app, scope, webhook).await?;
    let prefix = delivery_key(scope, webhook, "");
    let after = after.map(|a| delivery_key(scope, webhook, a));
    let (items, more) = DELIVERIES.list(app.meta.as_ref(), &prefix, after.as_deref(), limit).await?;
    Ok((items.into_iter().map(|v| v.record).collect(), more))
}

/// Queues a delivery again now, with a fresh attempt budget.
pub async fn redeliver(app: &App, scope: &str, webhook: &str, id: &str) -> Result<Delivery, WebhookError> {
    policy::get(app, scope, webhook).await?;
    let key = delivery_key(scope, webhook, id);
    let Some(found) = DELIVERIES.get(app.meta.as_ref(), &key).await? else {
        return Err(WebhookError::NotFound(format!("delivery {id} of webhook {webhook}")));
    };
    let mut delivery = found.record;
    if delivery.event_type == EventType::Ping {
        return Err(WebhookError::Invalid("a test ping is not redelivered; send another".into()));
    }
    delivery.status = DeliveryStatus::Pending;
    delivery.round_attempts = 0;
    delivery.round = delivery.round.saturating_add(1);
    delivery.next_attempt_at = Some(app.clock.now());
    match DELIVERIES.put(app.meta.as_ref(), &key, &delivery, Expect::Version(found.version)).await {
        Ok(_) => {}
        Err(MetadataError::Conflict(_)) => {
            return Err(WebhookError::Conflict(format!("delivery {id} is being attempted; try again")))
        }
        Err(e) => return Err(e.into()),
    }
    let job = Task::DeliverWebhook {
        registry: scope.to_string(),
        webhook: webhook.to_string(),
        event: Box::new(delivery.event.clone()),
        round: delivery.round,
    }
    .to_job();
    // a redelivery asks for an attempt now, whatever the breaker says
    app.events
        .breakers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&policy::policy_key(scope, webhook));
    app.queue.enqueue(&job, Duration::ZERO).await?;
    Ok(delivery)
}

/// Sends a `PING` event now and records it; the answer is the logged delivery.
pub async fn ping(app: &App, scope: &str, webhook: &str) -> Result<Delivery, WebhookError> {
    let (policy, _) = policy::get(app, scope, webhook).await?;
    let registry = if scope == super::ALL_REGISTRIES { scope } else { policy.registry.as_str() };
    let mut event = RegistryEvent::new(EventType::Ping, registry, app.clock.now(), app.settings.public_url.as_deref());
    event.details = Some(serde_json::json!({ "webhook": webhook }));
    let mut delivery = new_delivery(app, &policy, &event, delivery_id(&event));
    let (attempt, _) = send(app, &policy, &event, &delivery.id).await;
    delivery.status = if attempt.error.is_none() { DeliveryStatus::Delivered } else { DeliveryStatus::Dead };
    record_attempt(&mut delivery, attempt);
    let key = delivery_key(scope, webhook, &delivery.id);
    DELIVERIES.put(app.meta.as_ref(), &key, &delivery, Expect::Absent).await?;
    Ok(delivery)
}

/// Deletes the delivery log of a deleted webhook.
pub async fn forget(app: &App, scope: &str, webhook: &str) -> Result<(), WebhookError> {
    let prefix = delivery_key(scope, webhook, "");
    loop {
        let (items, more) = DELIVERIES.entries(app.meta.as_ref(), &prefix, None, 100).await?;
        for entry in &items {
            DELIVERIES.delete(app.meta.as_ref(), &entry.id, Expect::Any).await?;
        }
        if !more || items.is_empty() {
            return Ok(());
        }
    }
}

/// True about once in `n` calls.
pub(crate) fn one_in(n: u8) -> bool {
    let mut byte = [0u8; 1];
    getrandom::getrandom(&mut byte).is_ok() && byte[0] % n == 0
}

/// Deletes the deliveries of a webhook beyond the newest [`MAX_LOGGED_DELIVERIES`]; how many.
pub async fn trim_log(app: &App, scope: &str, webhook: &str) -> Result<usize, WebhookError> {
    let prefix = delivery_key(scope, webhook, "");
    let (newest, more) = DELIVERIES.entries(app.meta.as_ref(), &prefix, None, MAX_LOGGED_DELIVERIES).await?;
    let Some(last) = newest.last().filter(|_| more) else {
        return Ok(0);
    };
    let mut after = last.id.clone();
    let mut trimmed = 0;
    loop {
        let (older, more) = DELIVERIES.entries(app.meta.as_ref(), &prefix, Some(&after), 100).await?;
        for entry in &older {
            DELIVERIES.delete(app.meta.as_ref(), &entry.id, Expect::Any).await?;
            trimmed += 1;
        }
        match older.last() {
            Some(last) if more => after = last.id.clone(),
            _ => return Ok(trimmed),
        }
    }
}
