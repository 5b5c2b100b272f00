//! Events expire as kube-apiserver's do (`--event-ttl`, one hour by default): kube-apiserver
//! stores each Event under an etcd lease renewed at every write, so an Event nobody has written
//! for the TTL is deleted (its watchers see `DELETED`). localkube sweeps both Event resources
//! (`v1` and `events.k8s.io/v1`) every tenth of the TTL (at most every minute) and deletes
//! those whose last write is older than the TTL. The last write is read from the object: the
//! latest of `lastTimestamp`, `eventTime`, `series.lastObservedTime`, `deprecatedLastTimestamp`
//! and `creationTimestamp` (every recorder moves one of them when it writes the Event again).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;

use crate::api::{Api, DeleteOptions};
use crate::util;

/// kube-apiserver's default `--event-ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Where an Event records when it was last written.
const WRITTEN_AT: [&str; 5] = [
    "/lastTimestamp",
    "/eventTime",
    "/series/lastObservedTime",
    "/deprecatedLastTimestamp",
    "/metadata/creationTimestamp",
];

/// When the Event was last written, as far as it says.
fn last_write(e: &Value) -> Option<DateTime<Utc>> {
    WRITTEN_AT
        .iter()
        .filter_map(|p| e.pointer(p).and_then(Value::as_str))
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .max()
}

/// Deletes the Events last written more than `ttl` before `now`; returns how many.
pub fn expire(api: &Api, ttl: Duration, now: DateTime<Utc>) -> usize {
    let Ok(ttl) = chrono::Duration::from_std(ttl) else {
        return 0;
    };
    let mut deleted = 0;
    for api_version in ["v1", "events.k8s.io/v1"] {
        let Some(info) = api.registry.by_kind(api_version, "Event") else {
            continue;
        };
        let (events, _) = api.store.list_shared(&info.storage_key(), None);
        for e in events {
            if last_write(&e).is_none_or(|t| now - t <= ttl) {
                continue;
            }
            // Only the state read here: an Event written again since then lives on.
            let opts = DeleteOptions {
                precondition_rv: e
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(String::from),
                ..Default::default()
            };
            if api
                .delete(&info, util::namespace(&e), util::name(&e), &opts)
                .is_ok()
            {
                deleted += 1;
            }
        }
    }
    deleted
}

/// Sweeps until shutdown.
pub async fn run(api: Api, ttl: Duration, mut shutdown: watch::Receiver<bool>) {
    let period = (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let n = expire(&api, ttl, Utc::now());
        if n > 0 {
            tracing::debug!(events = n, "expired events");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::api::WriteOptions;
    use crate::registry::Registry;
    use crate::store::Store;

    /// `now` moved by `secs` seconds, as an Event writes it.
    fn at(now: DateTime<Utc>, secs: i64) -> String {
        (now + chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    #[test]
    fn an_event_not_written_for_the_ttl_is_deleted_and_the_others_stay() {
        let api = Api::new(Arc::new(Registry::new()), Arc::new(Store::new(64)));
        let opts = WriteOptions::default();
        let ns = api.resource("v1", "Namespace").unwrap();
        api.create(&ns, "", json!({"metadata": {"name": "a"}}), &opts)
            .unwrap();
        // Every Event is created now (its creationTimestamp); those written again later say
        // so in their own timestamps (50 minutes from now).
        let now = Utc::now();
        let core = api.resource("v1", "Event").unwrap();
        let event = |name: &str, fields: Value| {
            let mut e = json!({"metadata": {"name": name, "namespace": "a"},
                "involvedObject": {"kind": "Pod", "name": "p", "namespace": "a"},
                "reason": "Started", "message": "m", "type": "Normal"});
            for (k, v) in fields.as_object().unwrap() {
                e[k] = v.clone();
            }
            e
        };
        for (name, fields) in [
            // Its own timestamps are older than its creation: the creation counts.
            (
                "old",
                json!({"firstTimestamp": at(now, -7300), "lastTimestamp": at(now, -7200)}),
            ),
            (
                "once",
                json!({"firstTimestamp": at(now, 0), "lastTimestamp": at(now, 0)}),
            ),
            (
                "repeated",
                json!({"firstTimestamp": at(now, 0), "lastTimestamp": at(now, 3000), "count": 40}),
            ),
            (
                "series",
                json!({"eventTime": "2020-01-01T00:00:00.000000Z",
                "series": {"count": 3, "lastObservedTime": at(now, 3000)}}),
            ),
        ] {
            api.create(&core, "a", event(name, fields), &opts).unwrap();
        }
        let new_api = api.resource("events.k8s.io/v1", "Event").unwrap();
        api.create(
            &new_api,
            "a",
            json!({"metadata": {"name": "new", "namespace": "a"},
                "eventTime": "2020-01-01T00:00:00.000000Z", "reportingController": "x",
                "reportingInstance": "x", "action": "A", "reason": "R", "type": "Normal",
                "regarding": {"kind": "Pod", "name": "p", "namespace": "a"},
                "deprecatedLastTimestamp": at(now, 3000)}),
            &opts,
        )
        .unwrap();
        let names = |info: &crate::registry::ResourceInfo| -> Vec<String> {
            api.store
                .list_shared(&info.storage_key(), Some("a"))
                .0
                .iter()
                .map(|e| util::name(e).to_string())
                .collect()
        };
        let secs = |s: i64| now + chrono::Duration::seconds(s);
        assert_eq!(expire(&api, DEFAULT_TTL, secs(3500)), 0, "within the hour");
        let mut rx = api.store.subscribe();
        assert_eq!(expire(&api, DEFAULT_TTL, secs(3700)), 2);
        assert_eq!(names(&core), ["repeated", "series"]);
        assert_eq!(names(&new_api), ["new"]);
        for name in ["old", "once"] {
            let ev = rx.try_recv().unwrap();
            assert_eq!(
                (ev.type_, ev.name.as_str()),
                (crate::store::EventType::Deleted, name),
                "watchers see the expiry"
            );
        }
        // An hour after their last writes, the rest go too; then nothing is left.
        assert_eq!(expire(&api, DEFAULT_TTL, secs(3000 + 3500)), 0);
        assert_eq!(expire(&api, DEFAULT_TTL, secs(3000 + 3700)), 3);
        assert!(names(&core).is_empty() && names(&new_api).is_empty());
    }
}
