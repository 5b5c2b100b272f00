//! The garbage collector: dependents whose owners are all gone are deleted (background),
//! `orphan` deletion releases dependents, `foregroundDeletion` waits for blocking dependents;
//! it also drives namespace termination ([`crate::namespace`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::objects::{deleting, log_err, opts, uid};
use super::queue;
use crate::api::{Api, DeleteOptions, Propagation};
use crate::registry::ResourceInfo;
use crate::store::{EventType, ObjectRef, ResourceKey, StoreEvent};
use crate::util;

const MANAGER: &str = "garbage-collector";

/// Garbage collection and namespace deletion, keyed by object. Deleting an object queues its
/// dependents (found by the store's owner index) and its owners (which may wait on it in
/// foreground deletion); an object being deleted with an `orphan`/`foregroundDeletion`
/// finalizer queues itself, as does a terminating namespace or an object whose owners are all
/// gone.
pub(super) struct GarbageCollector {
    tick: Duration,
}

impl GarbageCollector {
    pub(super) fn new(tick: Duration) -> Self {
        Self { tick }
    }
}

fn remove_finalizer(api: &Api, info: &ResourceInfo, o: &Value, f: &str) {
    let Some(mut cur) = api
        .store
        .get(&info.storage_key(), util::namespace(o), util::name(o))
    else {
        return;
    };
    if let Some(list) = cur
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        list.retain(|x| x != f);
    }
    log_err(
        "remove finalizer",
        api.update(
            info,
            util::namespace(o),
            util::name(o),
            cur,
            "",
            &opts(MANAGER),
        ),
    );
}

fn has_finalizer(o: &Value, f: &str) -> bool {
    o.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == f))
}

/// Whether every owner `o` names is gone (false without owners).
fn orphaned(api: &Api, o: &Value) -> bool {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            !refs.is_empty()
                && refs
                    .iter()
                    .all(|r| !api.store.uid_exists(r["uid"].as_str().unwrap_or_default()))
        })
}

/// The resource stored under `key` (the first one registered, as served first).
fn info_for(api: &Api, key: &ResourceKey) -> Option<Arc<ResourceInfo>> {
    api.registry
        .all()
        .into_iter()
        .find(|i| &i.storage_key() == key)
}

impl queue::Reconciler for GarbageCollector {
    type Key = ObjectRef;

    fn resync(&mut self, api: &Api) -> Vec<ObjectRef> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for info in api.registry.all() {
            let key = info.storage_key();
            if seen.insert(key.clone()) {
                out.extend(
                    api.store
                        .keys(&key)
                        .into_iter()
                        .map(|(ns, name)| (key.clone(), ns, name)),
                );
            }
        }
        out
    }

    fn keys(&mut self, api: &Api, ev: &StoreEvent, out: &mut Vec<ObjectRef>) {
        if ev.type_ == EventType::Deleted {
            // Its dependents may be orphans now; an owner in foreground deletion may be free.
            let u = uid(&ev.object);
            if !u.is_empty() {
                out.extend(api.store.dependents(u).into_iter().map(|(at, _)| at));
            }
            for r in ev
                .object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(at) = r["uid"].as_str().and_then(|u| api.store.by_uid(u)) {
                    out.push(at);
                }
            }
        } else if deleting(&ev.object) || orphaned(api, &ev.object) {
            out.push((ev.key.clone(), ev.namespace.clone(), ev.name.clone()));
        }
    }

    fn reconcile(&mut self, api: &Api, at: &ObjectRef) -> Option<Duration> {
        let (key, ns, name) = at;
        let o = api.store.get(key, ns, name)?;
        let info = info_for(api, key)?;
        if info.group.is_empty() && info.plural == "namespaces" {
            if !deleting(&o) {
                return None;
            }
            return crate::namespace::reconcile_terminating(api, &o).then_some(self.tick);
        }
        if deleting(&o) {
            if has_finalizer(&o, "orphan") {
                orphan_dependents(api, &info, &o);
            } else if has_finalizer(&o, "foregroundDeletion") && foreground(api, &info, &o) {
                return Some(self.tick);
            }
            return None;
        }
        // Background: dependents whose owners are all gone.
        if orphaned(api, &o) {
            log_err(
                "gc dependent",
                api.delete(&info, ns, name, &DeleteOptions::default()),
            );
        }
        None
    }
}

/// `orphan`: the dependents lose their reference to `o`, then `o` goes.
fn orphan_dependents(api: &Api, info: &ResourceInfo, o: &Value) {
    for ((dkey, dns, dname), d) in api.store.dependents(uid(o)) {
        let Some(di) = info_for(api, &dkey) else {
            continue;
        };
        let mut n = Arc::unwrap_or_clone(d);
        if let Some(refs) = n
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r["uid"] != uid(o));
        }
        log_err(
            "orphan",
            api.update(&di, &dns, &dname, n, "", &opts(MANAGER)),
        );
    }
    remove_finalizer(api, info, o, "orphan");
}

/// `foregroundDeletion`: every dependent is deleted (blocking ones in the foreground too), and
/// `o` goes once no blocking dependent is left; true while it waits.
fn foreground(api: &Api, info: &ResourceInfo, o: &Value) -> bool {
    let deps: Vec<(Arc<ResourceInfo>, Arc<Value>)> = api
        .store
        .dependents(uid(o))
        .into_iter()
        .filter_map(|((dkey, _, _), d)| Some((info_for(api, &dkey)?, d)))
        .collect();
    let blocks = |d: &Value| {
        d.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r["uid"] == uid(o) && r["blockOwnerDeletion"] == json!(true))
            })
    };
    let mut any = false;
    for (di, d) in deps.iter().filter(|(_, d)| blocks(d)) {
        any = true;
        if !deleting(d) {
            let dopts = DeleteOptions {
                propagation: Some(Propagation::Foreground),
                ..Default::default()
            };
            log_err(
                "foreground dependent",
                api.delete(di, util::namespace(d), util::name(d), &dopts),
            );
        }
    }
    for (di, d) in &deps {
        if !deleting(d) {
            log_err(
                "foreground dependent",
                api.delete(
                    di,
                    util::namespace(d),
                    util::name(d),
                    &DeleteOptions::default(),
                ),
            );
        }
    }
    if !any {
        remove_finalizer(api, info, o, "foregroundDeletion");
    }
    any
}
