//! Kubernetes Events on Canaries, written as Flagger writes them (core/v1, reason `Synced`,
//! source component `flagger`), aggregated like client-go's recorder: a repeated event bumps the
//! count of the existing object instead of creating another.

use std::collections::HashMap;
use std::sync::Mutex;

use flagger_api::Canary;
use flagger_api::labels::{EVENT_COMPONENT, EVENT_REASON};
use flagger_core::effects::EventType;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::Patch;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

/// Tries of one event write before it is given up (logged).
const EVENT_ATTEMPTS: u32 = 4;
/// The first pause between tries; doubled after each.
const RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(50);

/// How many distinct events are remembered for aggregation (client-go's event correlator
/// keeps 4,096 in an LRU cache); past it the memory starts again, and an event repeated after
/// that is written anew instead of counted on the old one.
const SEEN_CAPACITY: usize = 4096;

/// Writes and aggregates events.
pub struct Recorder {
    client: Client,
    seen: Mutex<HashMap<String, (String, i32)>>,
}

impl Recorder {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event on a canary; failures are logged, never fatal. Credentials in the
    /// message (a URL's token, a webhook path) are redacted first: events are readable by
    /// anyone who can read the namespace.
    pub async fn record(
        &self,
        canary: &Canary,
        event_type: EventType,
        message: &str,
        now: Timestamp,
    ) {
        let message = &*flagger_core::redact::text(message);
        let ns = canary.namespace().unwrap_or_default();
        let kind = match event_type {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        match event_type {
            EventType::Normal => {
                tracing::info!(canary = %format!("{}.{ns}", canary.name_any()), "{message}")
            }
            EventType::Warning => {
                tracing::warn!(canary = %format!("{}.{ns}", canary.name_any()), "{message}")
            }
        }
        let uid = canary.uid().unwrap_or_default();
        let key = format!("{uid}/{kind}/{message}");
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let existing = self.seen.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some((name, count)) = existing {
            let patch = json!({"count": count + 1, "lastTimestamp": Time(now)});
            if api
                .patch(&name, &crate::write::patch_params(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                if let Ok(mut m) = self.seen.lock() {
                    m.insert(key, (name, count + 1));
                }
                return;
            }
        }
        let name = format!("{}.{:x}", canary.name_any(), now.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(Canary::api_version(&()).to_string()),
                kind: Some(Canary::kind(&()).to_string()),
                name: Some(canary.name_any()),
                namespace: Some(ns.clone()),
                uid: canary.uid(),
                resource_version: canary.resource_version(),
                ..Default::default()
            },
            reason: Some(EVENT_REASON.into()),
            message: Some(message.to_string()),
            type_: Some(kind.into()),
            source: Some(EventSource {
                component: Some(EVENT_COMPONENT.into()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        // A failed write is tried again a few times with a short backoff, as client-go's
        // recorder does (it tries 12 times, 10 s apart, from a queue): an API server answering
        // one request in twenty with a 500 must not lose a step's event. The name is fixed, so
        // a retry of a create that did land is answered AlreadyExists: it counts as written.
        let mut delay = RETRY_BASE;
        for attempt in 1..=EVENT_ATTEMPTS {
            match api.create(&crate::write::post_params(), &event).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {}
                Err(e) if attempt < EVENT_ATTEMPTS => {
                    tracing::debug!(
                        error = %crate::error::api_text(&e),
                        attempt,
                        "recording event failed, trying again"
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::api_text(&e), "recording event failed");
                    return;
                }
            }
            if let Ok(mut m) = self.seen.lock() {
                if m.len() >= SEEN_CAPACITY {
                    m.clear();
                }
                m.insert(key, (name, 1));
            }
            return;
        }
    }
}
