//! Small helpers the simulated controllers share: reading objects, writing them under a
//! controller's field manager, owner references, conditions and events.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::api::{Api, WriteOptions};
use crate::error::ApiError;
use crate::registry::ResourceInfo;
use crate::store::{ResourceKey, StoreEvent};
use crate::util;

/// `(namespace, name)` of an object.
pub(super) type NsName = (String, String);

/// Write options under a controller's field manager.
pub(super) fn opts(manager: &str) -> WriteOptions {
    WriteOptions {
        field_manager: Some(manager.into()),
        ..Default::default()
    }
}

/// The resource serving `kind` in `api_version`.
pub(super) fn res(api: &Api, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
    api.registry.by_kind(api_version, kind)
}

/// Every object of a resource, in one namespace or all, shared with the store (clone only the
/// ones you change).
pub(super) fn list(api: &Api, info: &ResourceInfo, ns: Option<&str>) -> Vec<Arc<Value>> {
    api.store.list_shared(&info.storage_key(), ns).0
}

pub(super) fn uid(o: &Value) -> &str {
    util::str_at(o, &["metadata", "uid"]).unwrap_or_default()
}

/// The uid of the controlling owner of `o`.
pub(super) fn controller_uid(o: &Value) -> Option<&str> {
    o.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == json!(true))?
        .get("uid")?
        .as_str()
}

/// An owner reference to `o` as its controller.
pub(super) fn owner_ref(o: &Value) -> Value {
    json!({
        "apiVersion": o["apiVersion"], "kind": o["kind"], "name": util::name(o), "uid": uid(o),
        "controller": true, "blockOwnerDeletion": true,
    })
}

pub(super) fn deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

pub(super) fn i64_at(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn annotation<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
    o.pointer("/metadata/annotations")?.get(k)?.as_str()
}

/// Logs a failed write (not-found and conflicts are expected: the next event retries).
pub(super) fn log_err(what: &str, r: Result<impl Sized, ApiError>) {
    if let Err(e) = r
        && e.code != 404
        && e.code != 409
    {
        tracing::debug!("localkube controller {what}: {e}");
    }
}

/// Whether a store event is about `group`/`resource`.
pub(super) fn is(k: &ResourceKey, group: &str, resource: &str) -> bool {
    k.group == group && k.resource == resource
}

/// The name of the controlling owner of `o` when it is of `kind`.
pub(super) fn controller_of<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
    o.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == json!(true) && r["kind"] == kind)?
        .get("name")?
        .as_str()
}

/// Queues the `kind` owner of the event's object (before and after the change).
pub(super) fn owner_keys(ev: &StoreEvent, kind: &str, out: &mut Vec<NsName>) {
    for o in std::iter::once(&ev.object).chain(ev.old.as_ref()) {
        if let Some(n) = controller_of(o, kind) {
            out.push((ev.namespace.clone(), n.to_string()));
        }
    }
}

/// Every key of a resource.
pub(super) fn keys_of(api: &Api, api_version: &str, kind: &str) -> Vec<NsName> {
    res(api, api_version, kind)
        .map(|i| api.store.keys(&i.storage_key()))
        .unwrap_or_default()
}

/// Sets a workload condition (`lastUpdateTime` moves on a change of status or reason, or when
/// `progress` says the workload made progress).
pub(super) fn set_condition(
    status: &mut Value,
    type_: &str,
    st: &str,
    reason: &str,
    message: &str,
    progress: bool,
) {
    let now = util::now();
    let conds = util::obj_at(status, &[])
        .entry("conditions")
        .or_insert_with(|| json!([]));
    let Some(list) = conds.as_array_mut() else {
        return;
    };
    match list.iter_mut().find(|c| c["type"] == type_) {
        Some(c) => {
            let changed = c["status"] != st;
            if changed {
                c["lastTransitionTime"] = json!(now);
            }
            if changed || c["reason"] != reason || progress {
                c["lastUpdateTime"] = json!(now);
            }
            c["status"] = json!(st);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => list.push(json!({"type": type_, "status": st, "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": now})),
    }
}

/// The condition of `type_` in a status.
pub(super) fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Whether a pod's `Ready` condition is true.
pub(super) fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Whether a node satisfies a pod spec's `nodeSelector`.
pub(super) fn node_matches(node: &Value, pod_spec: &Value) -> bool {
    let labels = node.pointer("/metadata/labels");
    pod_spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| {
            sel.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
}

/// Removes zero-valued counters from a status, as the API's `omitempty` does.
pub(super) fn drop_zeros(status: &mut Value, keys: &[&str]) {
    if let Some(m) = status.as_object_mut() {
        for k in keys {
            if m.get(*k) == Some(&json!(0)) {
                m.remove(*k);
            }
        }
    }
}

/// Writes `status` into the stored object when it differs from `before`.
pub(super) fn write_status(
    api: &Api,
    info: &ResourceInfo,
    cur: &Value,
    status: Value,
    manager: &str,
    what: &str,
) {
    if cur.get("status") == Some(&status) {
        return;
    }
    let mut n = cur.clone();
    n["status"] = status;
    log_err(
        what,
        api.update(
            info,
            util::namespace(cur),
            util::name(cur),
            n,
            "status",
            &opts(manager),
        ),
    );
}

/// A short stable hash, like pod-template-hash.
pub(super) fn short_hash(v: &Value) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (0..10)
        .map(|i| ALPHA[((h >> (i * 6)) % ALPHA.len() as u64) as usize] as char)
        .collect()
}

/// The Event resource and the namespace of events about `obj`.
fn event_home<'a>(api: &Api, obj: &'a Value) -> Option<(Arc<ResourceInfo>, &'a str)> {
    let ns = match util::namespace(obj) {
        "" => "default",
        n => n,
    };
    Some((res(api, "v1", "Event")?, ns))
}

/// Records a core/v1 Event about `obj`.
pub(super) fn record_event(
    api: &Api,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some((info, ns)) = event_home(api, obj) else {
        return;
    };
    let now = util::now();
    let ev = json!({
        "metadata": {"generateName": format!("{}.", util::name(obj)), "namespace": ns},
        "involvedObject": {
            "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": util::name(obj),
            "namespace": util::namespace(obj), "uid": uid(obj),
            "resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
        },
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "reportingComponent": component, "reportingInstance": "localkube",
        "eventTime": Value::Null,
    });
    log_err("event", api.create(&info, ns, ev, &opts(component)));
}

/// Records an Event about `obj`, or counts one more on the same event (same object, reason,
/// message and component), as the event recorder aggregates repeated events.
pub(super) fn record_repeated_event(
    api: &Api,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some((info, ns)) = event_home(api, obj) else {
        return;
    };
    let same = |e: &Value| {
        e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(uid(obj))
            && e["reason"] == reason
            && e["message"] == message
            && e.pointer("/source/component").and_then(Value::as_str) == Some(component)
    };
    // The events about `obj` come from the store's index, not a scan of the namespace.
    let about = match uid(obj) {
        "" => list(api, &info, Some(ns)),
        u => api.store.involving(&info.storage_key(), ns, u),
    };
    let found = about
        .into_iter()
        .find(|e| same(e))
        .map(Arc::unwrap_or_clone);
    let Some(mut e) = found else {
        return record_event(api, obj, type_, reason, message, component);
    };
    let n = e["count"].as_i64().unwrap_or(1) + 1;
    e["count"] = json!(n);
    e["lastTimestamp"] = json!(util::now());
    let name = util::name(&e).to_string();
    log_err(
        "event",
        api.update(&info, ns, &name, e, "", &opts(component)),
    );
}
