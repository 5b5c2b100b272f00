//! The ReplicaSet controller: as many pods as `spec.replicas` (not-ready and newest go first
//! when scaling down), and the replica counts of its status.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::objects::record_event;
use super::objects::{
    NsName, controller_uid, deleting, drop_zeros, i64_at, is, keys_of, log_err, opts, owner_keys,
    owner_ref, pod_ready, res, uid, write_status,
};
use super::queue;
use crate::api::{Api, DeleteOptions};
use crate::registry::ResourceInfo;
use crate::selectors::LabelSelector;
use crate::store::StoreEvent;
use crate::util;

const MANAGER: &str = "replicaset-controller";

/// ReplicaSets, keyed by (namespace, name); Pod events queue their owning ReplicaSet.
pub(super) struct ReplicaSets;

impl queue::Reconciler for ReplicaSets {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        keys_of(api, "apps/v1", "ReplicaSet")
    }

    fn keys(&mut self, _: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "apps", "replicasets") {
            out.push((ev.namespace.clone(), ev.name.clone()));
        } else if is(&ev.key, "", "pods") {
            owner_keys(ev, "ReplicaSet", out);
        }
    }

    fn reconcile(&mut self, api: &Api, (ns, name): &NsName) -> Option<Duration> {
        let (rsinfo, pinfo) = (res(api, "apps/v1", "ReplicaSet")?, res(api, "v1", "Pod")?);
        let rs = api.store.get(&rsinfo.storage_key(), ns, name)?;
        if !deleting(&rs) {
            reconcile_replicaset(api, &rsinfo, &pinfo, rs);
        }
        None
    }
}

fn reconcile_replicaset(api: &Api, rsinfo: &ResourceInfo, pinfo: &ResourceInfo, rs: Value) {
    let want = i64_at(&rs, "/spec/replicas");
    let mut pods: Vec<Value> = api
        .store
        .owned(&pinfo.storage_key(), uid(&rs))
        .into_iter()
        .filter(|p| controller_uid(p) == Some(uid(&rs)) && !deleting(p))
        .map(Arc::unwrap_or_clone)
        .collect();
    let have = pods.len() as i64;
    if have < want {
        create_pods(api, pinfo, &rs, want - have, &mut pods);
    } else if have > want {
        delete_pods(api, pinfo, &rs, (have - want) as usize, &mut pods);
    }
    let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let sel = LabelSelector::from_object(&rs["spec"]["selector"]);
    let labeled = pods.iter().filter(|p| sel.matches_object(p)).count() as i64;
    let mut status = json!({
        "replicas": pods.len(),
        "fullyLabeledReplicas": labeled,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"]["generation"],
    });
    drop_zeros(
        &mut status,
        &["readyReplicas", "availableReplicas", "fullyLabeledReplicas"],
    );
    if rs.get("status") != Some(&status)
        && let Some(cur) =
            api.store
                .get(&rsinfo.storage_key(), util::namespace(&rs), util::name(&rs))
    {
        write_status(api, rsinfo, &cur, status, MANAGER, "rs status");
    }
}

/// Creates `n` pods from the template (stops at the first failure).
fn create_pods(api: &Api, pinfo: &ResourceInfo, rs: &Value, n: i64, pods: &mut Vec<Value>) {
    let ns = util::namespace(rs);
    for _ in 0..n {
        let mut tpl = rs
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let md = util::obj_at(&mut tpl, &["metadata"]);
        md.insert("generateName".into(), json!(format!("{}-", util::name(rs))));
        md.insert("namespace".into(), json!(ns));
        md.insert("ownerReferences".into(), json!([owner_ref(rs)]));
        md.remove("name");
        tpl["apiVersion"] = json!("v1");
        tpl["kind"] = json!("Pod");
        match api.create(pinfo, ns, tpl, &opts(MANAGER)) {
            Ok(o) => {
                record_event(
                    api,
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", util::name(&o.object)),
                    MANAGER,
                );
                pods.push(o.object);
            }
            Err(e) => {
                log_err("create pod", Err::<(), _>(e));
                break;
            }
        }
    }
}

/// Deletes `extra` pods: not-ready first, then newest.
fn delete_pods(api: &Api, pinfo: &ResourceInfo, rs: &Value, extra: usize, pods: &mut Vec<Value>) {
    let ns = util::namespace(rs);
    pods.sort_by(|a, b| {
        pod_ready(a).cmp(&pod_ready(b)).then_with(|| {
            util::str_at(b, &["metadata", "creationTimestamp"])
                .cmp(&util::str_at(a, &["metadata", "creationTimestamp"]))
        })
    });
    for p in pods.drain(..extra) {
        if api
            .delete(pinfo, ns, util::name(&p), &DeleteOptions::default())
            .is_ok()
        {
            record_event(
                api,
                rs,
                "Normal",
                "SuccessfulDelete",
                &format!("Deleted pod: {}", util::name(&p)),
                MANAGER,
            );
        }
    }
}
