//! The DaemonSet controller: one pod per eligible node (by `nodeSelector`), a rolling update
//! one unavailable pod at a time, and the counts of its status.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::objects::short_hash;
use super::objects::{
    NsName, controller_uid, deleting, is, keys_of, list, log_err, node_matches, opts, owner_keys,
    owner_ref, pod_ready, res, uid, write_status,
};
use super::queue;
use crate::api::{Api, DeleteOptions};
use crate::registry::ResourceInfo;
use crate::store::StoreEvent;
use crate::util;

const MANAGER: &str = "daemonset-controller";

/// DaemonSets, keyed by (namespace, name); Pod events queue their owning DaemonSet, node events
/// every DaemonSet.
pub(super) struct DaemonSets;

impl queue::Reconciler for DaemonSets {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        keys_of(api, "apps/v1", "DaemonSet")
    }

    fn keys(&mut self, api: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "apps", "daemonsets") {
            out.push((ev.namespace.clone(), ev.name.clone()));
        } else if is(&ev.key, "", "pods") {
            owner_keys(ev, "DaemonSet", out);
        } else if is(&ev.key, "", "nodes") {
            out.extend(self.resync(api));
        }
    }

    fn reconcile(&mut self, api: &Api, (ns, name): &NsName) -> Option<Duration> {
        let (dsinfo, pinfo, ninfo) = (
            res(api, "apps/v1", "DaemonSet")?,
            res(api, "v1", "Pod")?,
            res(api, "v1", "Node")?,
        );
        let ds = api.store.get(&dsinfo.storage_key(), ns, name)?;
        if !deleting(&ds) {
            let nodes = list(api, &ninfo, None);
            reconcile_daemonset(api, &dsinfo, &pinfo, &nodes, ds);
        }
        None
    }
}

/// The DaemonSet's live pods.
fn owned_pods(api: &Api, pinfo: &ResourceInfo, ds: &Value) -> Vec<Value> {
    api.store
        .owned(&pinfo.storage_key(), uid(ds))
        .into_iter()
        .filter(|p| controller_uid(p) == Some(uid(ds)) && !deleting(p))
        .map(Arc::unwrap_or_clone)
        .collect()
}

fn node_of(p: &Value) -> &str {
    p.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn revision_of(p: &Value) -> Option<&str> {
    p.pointer("/metadata/labels/controller-revision-hash")
        .and_then(Value::as_str)
}

fn reconcile_daemonset(
    api: &Api,
    dsinfo: &ResourceInfo,
    pinfo: &ResourceInfo,
    nodes: &[Arc<Value>],
    ds: Value,
) {
    let tpl = ds
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = short_hash(&tpl);
    let spec = tpl.get("spec").cloned().unwrap_or_default();
    let eligible: Vec<&Value> = nodes
        .iter()
        .filter(|n| node_matches(n, &spec))
        .map(Arc::as_ref)
        .collect();
    let owned = owned_pods(api, pinfo, &ds);
    let mut unavailable = owned.iter().filter(|p| !pod_ready(p)).count();
    for n in &eligible {
        let node = util::name(n);
        let on_node: Vec<&Value> = owned.iter().filter(|p| node_of(p) == node).collect();
        if on_node.is_empty() {
            create_pod(api, pinfo, &ds, &tpl, &hash, node);
            continue;
        }
        for p in on_node {
            let stale = revision_of(p) != Some(hash.as_str());
            // Rolling update, one unavailable pod at a time.
            if stale && (unavailable == 0 || !pod_ready(p)) {
                if pod_ready(p) {
                    unavailable += 1;
                }
                delete_pod(api, pinfo, p, "ds delete stale");
            }
        }
    }
    for p in &owned {
        if !eligible.iter().any(|n| util::name(n) == node_of(p)) {
            delete_pod(api, pinfo, p, "ds delete misplaced");
        }
    }
    let status = status_of(&ds, &owned_pods(api, pinfo, &ds), &hash, eligible.len());
    write_status(api, dsinfo, &ds, status, MANAGER, "ds status");
}

fn create_pod(api: &Api, pinfo: &ResourceInfo, ds: &Value, tpl: &Value, hash: &str, node: &str) {
    let mut p = tpl.clone();
    let md = util::obj_at(&mut p, &["metadata"]);
    md.insert("generateName".into(), json!(format!("{}-", util::name(ds))));
    md.insert("ownerReferences".into(), json!([owner_ref(ds)]));
    util::obj_at(&mut p, &["metadata", "labels"])
        .insert("controller-revision-hash".into(), json!(hash));
    p["spec"]["nodeName"] = json!(node);
    p["apiVersion"] = json!("v1");
    p["kind"] = json!("Pod");
    log_err(
        "ds pod",
        api.create(pinfo, util::namespace(ds), p, &opts(MANAGER)),
    );
}

fn delete_pod(api: &Api, pinfo: &ResourceInfo, p: &Value, what: &str) {
    log_err(
        what,
        api.delete(
            pinfo,
            util::namespace(p),
            util::name(p),
            &DeleteOptions::default(),
        ),
    );
}

fn status_of(ds: &Value, fresh: &[Value], hash: &str, desired: usize) -> Value {
    let ready = fresh.iter().filter(|p| pod_ready(p)).count();
    let updated = fresh
        .iter()
        .filter(|p| revision_of(p) == Some(hash))
        .count();
    json!({
        "currentNumberScheduled": fresh.len(),
        "desiredNumberScheduled": desired,
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": desired.saturating_sub(ready),
        "updatedNumberScheduled": updated,
        "observedGeneration": ds["metadata"]["generation"],
    })
}
