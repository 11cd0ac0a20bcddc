//! Every kind of background job, as one typed value: what producers enqueue, what schedules
//! store and what the worker runs. On the queue a task travels as a [`Job`]
//! (`{"kind": "gc", "payload": {"run_id": "…"}}`), the wire shape SQS messages and stored
//! schedules have always had, so jobs in flight across an upgrade still run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::RegistryEvent;
use crate::metadata::UnixTime;
use crate::queue::{Job, QueueError};

/// One background job and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Task {
    /// Reclaim idle upload sessions and staged bytes no session owns.
    ExpireUploads {
        /// the schedule's due time this run is for, when a schedule enqueued it
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<UnixTime>,
    },
    /// Recount the storage one repository holds.
    RefreshUsage {
        /// the repository
        repository: String,
    },
    /// Run (or continue) a cleanup run of one registry: the run named, or the scheduled cycle
    /// of a due time.
    Cleanup {
        /// the registry
        registry: String,
        /// the run to continue (Run Now and Test Run name it)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<String>,
        /// the cycle's due time (the cleanup schedule sets it)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<UnixTime>,
    },
    /// Run (or continue) garbage collection: the run named, or the scheduled run of a due time.
    Gc {
        /// the run to continue
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        /// the scheduled run's due time
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<UnixTime>,
    },
    /// Fan one registry event out to its webhooks and the event bus, then clear its outbox entry.
    PublishEvent {
        /// the event
        event: Box<RegistryEvent>,
    },
    /// Deliver one event to one webhook (one attempt; a failure queues the next).
    DeliverWebhook {
        /// the webhook's scope: a registry, or `_all`
        registry: String,
        /// the webhook id
        webhook: String,
        /// the event
        event: Box<RegistryEvent>,
        /// the delivery's round (a redelivery starts a new one; jobs of older rounds are dropped)
        #[serde(default)]
        round: u32,
    },
    /// Re-queue events left in the outbox by a process that stopped before queuing them.
    RelayEvents {
        /// the schedule's due time
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<UnixTime>,
    },
    /// Check that a replication's target answers, and record it (its status follows).
    CheckReplication {
        /// the source registry
        registry: String,
        /// the replication id
        replication: String,
        /// the check chain (a change starts a new one; jobs of older chains do nothing)
        generation: u64,
    },
    /// Plan a replication execution: the one named (a manual run), or the scheduled one of a due time.
    Replicate {
        /// the source registry
        registry: String,
        /// the replication id
        replication: String,
        /// the execution to plan
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution: Option<String>,
        /// the schedule's due time
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<UnixTime>,
    },
    /// Copy (or continue copying) one artifact of a replication execution.
    ReplicateArtifact {
        /// the source registry
        registry: String,
        /// the replication id
        replication: String,
        /// the execution
        execution: String,
        /// the task
        task: String,
    },
    /// Record a manifest a cache registry fetched from its source (with its tag), once every
    /// blob and child manifest it references is cached.
    CacheImage {
        /// the cache registry's repository
        repository: String,
        /// the manifest
        digest: String,
        /// its media type, as the source served it
        #[serde(default)]
        media_type: String,
        /// the tag the pull named
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Cache one blob of a cache registry's repository from its source.
    CacheBlob {
        /// the cache registry's repository
        repository: String,
        /// the blob
        digest: String,
    },
    /// Start a scan of every artifact (the scheduled scan of the scan settings).
    ScanAll {
        /// the schedule's due time
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<UnixTime>,
    },
    /// Scan one artifact for vulnerabilities (or continue a scan a stopped worker left).
    Scan {
        /// the repository
        repository: String,
        /// the artifact
        digest: String,
        /// the scan this job belongs to (a new scan or a stop makes older jobs do nothing)
        scan: String,
    },
    /// Import the current vulnerability data (if no process did yet) and re-match every stored
    /// scan made with older data against it (new data was pushed, or a scan imported it).
    #[serde(rename = "update-vulndb")]
    UpdateVulnDb {
        /// the data artifact's digest that prompted it
        data: String,
    },
    /// Look again at the signatures of every signed artifact of a registry (its trusted keys
    /// changed), so what verifies under a new key shows and passes the gate.
    RefreshSignatures {
        /// the registry
        registry: String,
        /// when the keys changed (two changes are two jobs)
        at: UnixTime,
    },
}

/// The kind names of [`Task`], as jobs carry them.
pub const KINDS: [&str; 16] = [
    "expire-uploads",
    "refresh-usage",
    "cleanup",
    "gc",
    "publish-event",
    "deliver-webhook",
    "relay-events",
    "check-replication",
    "replicate",
    "replicate-artifact",
    "cache-image",
    "cache-blob",
    "scan",
    "scan-all",
    "update-vulndb",
    "refresh-signatures",
];

impl Task {
    /// The kind name the job carries.
    pub fn kind(&self) -> &'static str {
        match self {
            Task::ExpireUploads { .. } => KINDS[0],
            Task::RefreshUsage { .. } => KINDS[1],
            Task::Cleanup { .. } => KINDS[2],
            Task::Gc { .. } => KINDS[3],
            Task::PublishEvent { .. } => KINDS[4],
            Task::DeliverWebhook { .. } => KINDS[5],
            Task::RelayEvents { .. } => KINDS[6],
            Task::CheckReplication { .. } => KINDS[7],
            Task::Replicate { .. } => KINDS[8],
            Task::ReplicateArtifact { .. } => KINDS[9],
            Task::CacheImage { .. } => KINDS[10],
            Task::CacheBlob { .. } => KINDS[11],
            Task::Scan { .. } => KINDS[12],
            Task::ScanAll { .. } => KINDS[13],
            Task::UpdateVulnDb { .. } => KINDS[14],
            Task::RefreshSignatures { .. } => KINDS[15],
        }
    }

    /// The same task for one due time of its schedule (a schedule stores the task without it).
    pub fn due_at(mut self, at: UnixTime) -> Task {
        match &mut self {
            Task::ExpireUploads { due }
            | Task::Cleanup { due, .. }
            | Task::Gc { due, .. }
            | Task::RelayEvents { due }
            | Task::Replicate { due, .. }
            | Task::ScanAll { due } => *due = Some(at),
            Task::RefreshUsage { .. }
            | Task::PublishEvent { .. }
            | Task::DeliverWebhook { .. }
            | Task::CheckReplication { .. }
            | Task::ReplicateArtifact { .. }
            | Task::CacheImage { .. }
            | Task::CacheBlob { .. }
            | Task::Scan { .. }
            | Task::UpdateVulnDb { .. }
            | Task::RefreshSignatures { .. } => {}
        }
        self
    }

    /// What makes two deliveries the same work: running the task again for the same key finds
    /// its work done (a run id, a due time, a repository), which is why at-least-once delivery
    /// is safe. Logged with every run.
    pub fn idempotency_key(&self) -> String {
        match self {
            Task::ExpireUploads { due } => {
                format!("expire-uploads@{}", due.map_or("now".to_string(), |d| d.to_string()))
            }
            Task::RefreshUsage { repository } => format!("refresh-usage:{repository}"),
            Task::Cleanup { registry, run: Some(run), .. } => format!("cleanup:{registry}/{run}"),
            Task::Cleanup { registry, due, .. } => {
                format!("cleanup:{registry}@{}", due.map_or("?".to_string(), |d| d.to_string()))
            }
            Task::Gc { run_id: Some(run), .. } => format!("gc:{run}"),
            Task::Gc { due, .. } => format!("gc@{}", due.map_or("?".to_string(), |d| d.to_string())),
            Task::PublishEvent { event } => format!("publish-event:{}", event.id),
            Task::DeliverWebhook { registry, webhook, event, round } => {
                format!("deliver-webhook:{registry}/{webhook}/{}#{round}", event.id)
            }
            Task::RelayEvents { due } => format!("relay-events@{}", due.map_or("now".to_string(), |d| d.to_string())),
            Task::CheckReplication { registry, replication, generation } => {
                format!("check-replication:{registry}/{replication}#{generation}")
            }
            Task::Replicate { registry, replication, execution: Some(execution), .. } => {
                format!("replicate:{registry}/{replication}/{execution}")
            }
            Task::Replicate { registry, replication, due, .. } => {
                format!("replicate:{registry}/{replication}@{}", due.map_or("?".to_string(), |d| d.to_string()))
            }
            Task::ReplicateArtifact { registry, replication, execution, task } => {
                format!("replicate-artifact:{registry}/{replication}/{execution}/{task}")
            }
            Task::CacheImage { repository, digest, tag, .. } => {
                format!("cache-image:{repository}@{digest}#{}", tag.as_deref().unwrap_or(""))
            }
            Task::CacheBlob { repository, digest } => format!("cache-blob:{repository}@{digest}"),
            Task::Scan { repository, digest, scan } => format!("scan:{repository}@{digest}/{scan}"),
            Task::ScanAll { due } => format!("scan-all@{}", due.map_or("now".to_string(), |d| d.to_string())),
            Task::UpdateVulnDb { data } => format!("update-vulndb:{data}"),
            Task::RefreshSignatures { registry, at } => format!("refresh-signatures:{registry}@{at}"),
        }
    }

    /// The task as a queue job.
    pub fn to_job(&self) -> Job {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => Job {
                kind: self.kind().to_string(),
                payload: map.remove("payload").unwrap_or_else(|| Value::Object(Default::default())),
            },
            // a tagged enum of plain fields always serialises to an object
            _ => Job { kind: self.kind().to_string(), payload: Value::Object(Default::default()) },
        }
    }

    /// The task a queue job carries; an unknown kind or a payload of the wrong shape is an error.
    pub fn from_job(job: &Job) -> Result<Task, QueueError> {
        // jobs enqueued before tasks were typed sent `null` for "no arguments"
        let payload = match &job.payload {
            Value::Null => Value::Object(Default::default()),
            other => other.clone(),
        };
        serde_json::from_value(serde_json::json!({ "kind": job.kind, "payload": payload }))
            .map_err(|e| QueueError::Payload(format!("{} job: {e}", job.kind)))
    }
}

impl From<Task> for Job {
    fn from(task: Task) -> Job {
        task.to_job()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// The wire shapes producers sent before tasks were typed: each must still parse, and each
    /// task must still be sent this way.
    #[test]
    fn the_wire_shape_is_unchanged() {
        let cases = [
            (json!({"kind": "expire-uploads", "payload": null}), Task::ExpireUploads { due: None }),
            (json!({"kind": "expire-uploads", "payload": {"due": 60}}), Task::ExpireUploads { due: Some(60) }),
            (
                json!({"kind": "refresh-usage", "payload": {"repository": "team/app"}}),
                Task::RefreshUsage { repository: "team/app".into() },
            ),
            (
                json!({"kind": "cleanup", "payload": {"registry": "team"}}),
                Task::Cleanup { registry: "team".into(), run: None, due: None },
            ),
            (
                json!({"kind": "cleanup", "payload": {"registry": "team", "run": "r1"}}),
                Task::Cleanup { registry: "team".into(), run: Some("r1".into()), due: None },
            ),
            (
                json!({"kind": "cleanup", "payload": {"registry": "team", "due": 120}}),
                Task::Cleanup { registry: "team".into(), run: None, due: Some(120) },
            ),
            (json!({"kind": "gc", "payload": {}}), Task::Gc { run_id: None, due: None }),
            (json!({"kind": "gc", "payload": {"run_id": "g1"}}), Task::Gc { run_id: Some("g1".into()), due: None }),
            (json!({"kind": "gc", "payload": {"due": 5}}), Task::Gc { run_id: None, due: Some(5) }),
        ];
        for (wire, task) in cases {
            let job: Job = serde_json::from_value(wire.clone()).unwrap();
            assert_eq!(Task::from_job(&job).unwrap(), task, "{wire}");
            let sent = serde_json::to_value(task.to_job()).unwrap();
            let expected = if wire["payload"].is_null() { json!({"kind": wire["kind"], "payload": {}}) } else { wire };
            assert_eq!(sent, expected);
        }
    }

    #[test]
    fn unknown_kinds_and_bad_payloads_are_errors() {
        let job = |kind: &str, payload: Value| Job { kind: kind.into(), payload };
        assert!(Task::from_job(&job("reindex", json!({}))).is_err());
        assert!(Task::from_job(&job("refresh-usage", json!({}))).is_err());
        assert!(Task::from_job(&job("gc", json!({"run_id": 5}))).is_err());
        assert!(Task::from_job(&job("gc", json!({"runid": "x"}))).is_err());
    }

    #[test]
    fn due_times_and_keys() {
        let cycle = Task::Cleanup { registry: "team".into(), run: None, due: None }.due_at(300);
        assert_eq!(cycle, Task::Cleanup { registry: "team".into(), run: None, due: Some(300) });
        assert_eq!(cycle.idempotency_key(), "cleanup:team@300");
        assert_eq!(Task::Gc { run_id: Some("g1".into()), due: None }.idempotency_key(), "gc:g1");
        let usage = Task::RefreshUsage { repository: "a/b".into() };
        assert_eq!(usage.clone().due_at(9), usage);
        for (kind, task) in
            KINDS.iter().zip([Task::ExpireUploads { due: None }, usage, cycle, Task::Gc { run_id: None, due: None }])
        {
            assert_eq!(task.kind(), *kind);
        }
    }
}
