//! The Endpoints and EndpointSlice controllers: for each Service with a selector, the
//! addresses of the pods it selects (ready and not ready apart) and its ports, with named
//! target ports resolved against the pods' containers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::objects::short_hash;
use super::objects::{NsName, deleting, is, list, log_err, opts, owner_ref, pod_ready, res, uid};
use super::queue;
use crate::api::Api;
use crate::registry::ResourceInfo;
use crate::selectors::LabelSelector;
use crate::store::{EventType, StoreEvent};
use crate::util;

/// Label pairs of a selector or an object's labels (non-string values as "", as selectors
/// compare them).
fn pairs(m: Option<&serde_json::Map<String, Value>>) -> Vec<(String, String)> {
    m.into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

fn labels_of(o: &Value) -> Vec<(String, String)> {
    pairs(o.pointer("/metadata/labels").and_then(Value::as_object))
}

/// Endpoints and EndpointSlices, keyed by Service (namespace, name). A pod event queues the
/// services whose selector matches its labels (before or after the change); the selectors and
/// the pods' labels are indexed so that neither lookup scans the namespace.
#[derive(Default)]
pub(super) struct EndpointsController {
    /// Service → its selector's pairs (services without a selector are not kept).
    svc_sel: HashMap<NsName, Vec<(String, String)>>,
    /// (namespace, key, value) of a selector's first pair → services.
    svc_index: HashMap<(String, String, String), HashSet<String>>,
    /// Namespace → services with an empty selector (they match every pod).
    svc_all: HashMap<String, HashSet<String>>,
    /// Pod → its labels.
    pod_labels: HashMap<NsName, Vec<(String, String)>>,
    /// (namespace, key, value) → pods with that label, in name order.
    pod_index: HashMap<(String, String, String), BTreeSet<String>>,
}

impl EndpointsController {
    fn forget_service(&mut self, key: &NsName) {
        let Some(sel) = self.svc_sel.remove(key) else {
            return;
        };
        let (ns, name) = key;
        let set = match sel.first() {
            Some((k, v)) => self.svc_index.get_mut(&(ns.clone(), k.clone(), v.clone())),
            None => self.svc_all.get_mut(ns),
        };
        if let Some(set) = set {
            set.remove(name);
        }
    }

    fn learn_service(&mut self, svc: &Value) {
        let key = (
            util::namespace(svc).to_string(),
            util::name(svc).to_string(),
        );
        self.forget_service(&key);
        let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
            return;
        };
        let sel = pairs(Some(sel));
        let (ns, name) = &key;
        match sel.first() {
            Some((k, v)) => self
                .svc_index
                .entry((ns.clone(), k.clone(), v.clone()))
                .or_default()
                .insert(name.clone()),
            None => self
                .svc_all
                .entry(ns.clone())
                .or_default()
                .insert(name.clone()),
        };
        self.svc_sel.insert(key, sel);
    }

    fn forget_pod(&mut self, key: &NsName) {
        let Some(labels) = self.pod_labels.remove(key) else {
            return;
        };
        let (ns, name) = key;
        for (k, v) in labels {
            let ik = (ns.clone(), k, v);
            if let Some(set) = self.pod_index.get_mut(&ik) {
                set.remove(name);
                if set.is_empty() {
                    self.pod_index.remove(&ik);
                }
            }
        }
    }

    fn learn_pod(&mut self, p: &Value) {
        let key = (util::namespace(p).to_string(), util::name(p).to_string());
        let labels = labels_of(p);
        if self.pod_labels.get(&key) == Some(&labels) {
            return;
        }
        self.forget_pod(&key);
        let (ns, name) = &key;
        for (k, v) in &labels {
            self.pod_index
                .entry((ns.clone(), k.clone(), v.clone()))
                .or_default()
                .insert(name.clone());
        }
        self.pod_labels.insert(key, labels);
    }

    /// Services in `ns` whose selector matches `labels`.
    fn services_for(&self, ns: &str, labels: &[(String, String)], out: &mut Vec<NsName>) {
        let mut found = |name: &String| {
            let key = (ns.to_string(), name.clone());
            if self
                .svc_sel
                .get(&key)
                .is_some_and(|sel| sel.iter().all(|p| labels.contains(p)))
            {
                out.push(key);
            }
        };
        for (k, v) in labels {
            if let Some(set) = self.svc_index.get(&(ns.to_string(), k.clone(), v.clone())) {
                set.iter().for_each(&mut found);
            }
        }
        if let Some(set) = self.svc_all.get(ns) {
            set.iter().for_each(&mut found);
        }
    }

    /// Names of the pods in `ns` that may match `sel` (a superset, in name order).
    fn candidates(
        &self,
        api: &Api,
        pinfo: &ResourceInfo,
        ns: &str,
        sel: &[(String, String)],
    ) -> Vec<Arc<Value>> {
        let smallest = sel
            .iter()
            .map(|(k, v)| self.pod_index.get(&(ns.to_string(), k.clone(), v.clone())))
            .min_by_key(|set| set.map_or(0, |s| s.len()));
        match smallest {
            None => list(api, pinfo, Some(ns)),
            Some(None) => Vec::new(),
            Some(Some(names)) => names
                .iter()
                .filter_map(|n| api.store.get_shared(&pinfo.storage_key(), ns, n))
                .collect(),
        }
    }
}

impl queue::Reconciler for EndpointsController {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        let (Some(sinfo), Some(pinfo)) = (res(api, "v1", "Service"), res(api, "v1", "Pod")) else {
            return Vec::new();
        };
        *self = Self::default();
        for p in list(api, &pinfo, None) {
            self.learn_pod(&p);
        }
        let services = list(api, &sinfo, None);
        for svc in &services {
            self.learn_service(svc);
        }
        services
            .iter()
            .map(|s| (util::namespace(s).to_string(), util::name(s).to_string()))
            .collect()
    }

    fn keys(&mut self, _: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        let key = (ev.namespace.clone(), ev.name.clone());
        if is(&ev.key, "", "services") {
            if ev.type_ == EventType::Deleted {
                self.forget_service(&key);
            } else {
                self.learn_service(&ev.object);
            }
            out.push(key);
        } else if is(&ev.key, "", "pods") {
            if ev.type_ == EventType::Deleted {
                self.forget_pod(&key);
            } else {
                self.learn_pod(&ev.object);
            }
            let new = labels_of(&ev.object);
            self.services_for(&ev.namespace, &new, out);
            if let Some(old) = &ev.old {
                let old = labels_of(old);
                if old != new {
                    self.services_for(&ev.namespace, &old, out);
                }
            }
        }
    }

    fn reconcile(&mut self, api: &Api, (ns, name): &NsName) -> Option<Duration> {
        let (sinfo, pinfo, einfo, esinfo) = (
            res(api, "v1", "Service")?,
            res(api, "v1", "Pod")?,
            res(api, "v1", "Endpoints")?,
            res(api, "discovery.k8s.io/v1", "EndpointSlice")?,
        );
        let svc = api.store.get(&sinfo.storage_key(), ns, name)?;
        if deleting(&svc) {
            return None;
        }
        let sel_map = svc.pointer("/spec/selector").and_then(Value::as_object)?;
        let sel = LabelSelector::from_map(sel_map);
        let pods: Vec<Arc<Value>> = self
            .candidates(api, &pinfo, ns, &pairs(Some(sel_map)))
            .into_iter()
            .filter(|p| {
                sel.matches_object(p) && p.pointer("/status/podIP").is_some() && !deleting(p)
            })
            .collect();
        reconcile_endpoints(api, &einfo, &esinfo, &svc, &pods);
        None
    }
}

/// The Service's ports as endpoints carry them (named target ports resolved on `pod`).
fn endpoint_ports(svc: &Value, pod: Option<&Value>) -> Vec<Value> {
    let resolve_port = |sp: &Value| -> Value {
        match sp.get("targetPort") {
            Some(Value::String(named)) => pod
                .and_then(|p| p.pointer("/spec/containers"))
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                        .find(|p| p["name"] == named.as_str())
                        .map(|p| p["containerPort"].clone())
                })
                .unwrap_or(Value::Null),
            Some(v) => v.clone(),
            None => sp["port"].clone(),
        }
    };
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|sp| {
            let mut p = json!({"port": resolve_port(sp), "protocol": sp["protocol"].as_str().unwrap_or("TCP")});
            if let Some(n) = sp.get("name") {
                p["name"] = n.clone();
            }
            p
        })
        .collect()
}

fn reconcile_endpoints(
    api: &Api,
    einfo: &ResourceInfo,
    esinfo: &ResourceInfo,
    svc: &Value,
    pods: &[Arc<Value>],
) {
    let ports = endpoint_ports(svc, pods.first().map(Arc::as_ref));
    sync_endpoints(api, einfo, svc, pods, &ports);
    sync_slice(api, esinfo, svc, pods, &ports);
}

/// The Endpoints object: one subset with the ready and the not-ready addresses.
fn sync_endpoints(
    api: &Api,
    einfo: &ResourceInfo,
    svc: &Value,
    pods: &[Arc<Value>],
    ports: &[Value],
) {
    let (ns, name) = (util::namespace(svc), util::name(svc));
    let addr = |p: &Value| {
        json!({
            "ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"],
            "targetRef": {"kind": "Pod", "name": util::name(p), "namespace": ns, "uid": uid(p)},
        })
    };
    let ready: Vec<Value> = pods
        .iter()
        .filter(|p| pod_ready(p))
        .map(|p| addr(p))
        .collect();
    let not_ready: Vec<Value> = pods
        .iter()
        .filter(|p| !pod_ready(p))
        .map(|p| addr(p))
        .collect();
    let mut subset = json!({"ports": ports});
    if !ready.is_empty() {
        subset["addresses"] = json!(ready);
    }
    if !not_ready.is_empty() {
        subset["notReadyAddresses"] = json!(not_ready);
    }
    let subsets = if ready.is_empty() && not_ready.is_empty() {
        json!([])
    } else {
        json!([subset])
    };
    let manager = opts("endpoint-controller");
    match api.store.get(&einfo.storage_key(), ns, name) {
        None => {
            let labels = svc
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let ep = json!({"metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets});
            log_err("endpoints", api.create(einfo, ns, ep, &manager));
        }
        Some(cur) => {
            if cur.get("subsets").cloned().unwrap_or(json!([])) != subsets {
                let mut n = cur.clone();
                n["subsets"] = subsets;
                log_err("endpoints", api.update(einfo, ns, name, n, "", &manager));
            }
        }
    }
}

/// The Service's EndpointSlice: one endpoint per pod with its readiness.
fn sync_slice(api: &Api, esinfo: &ResourceInfo, svc: &Value, pods: &[Arc<Value>], ports: &[Value]) {
    let (ns, name) = (util::namespace(svc), util::name(svc));
    let slice_name = format!("{name}-{}", &short_hash(&json!(uid(svc)))[..5]);
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| {
            let r = pod_ready(p);
            json!({
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": r, "serving": r, "terminating": false},
                "nodeName": p["spec"]["nodeName"],
                "targetRef": {"kind": "Pod", "name": util::name(p), "namespace": ns, "uid": uid(p)},
            })
        })
        .collect();
    let mut labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    labels["kubernetes.io/service-name"] = json!(name);
    labels["endpointslice.kubernetes.io/managed-by"] = json!("endpointslice-controller.k8s.io");
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice_name, "namespace": ns, "labels": labels,
                     "ownerReferences": [owner_ref(svc)]},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    });
    let manager = opts("endpointslice-controller");
    match api.store.get(&esinfo.storage_key(), ns, &slice_name) {
        None => log_err("endpointslice", api.create(esinfo, ns, body, &manager)),
        Some(cur) => {
            if cur.get("endpoints") != body.get("endpoints")
                || cur.get("ports") != body.get("ports")
            {
                let mut n = cur.clone();
                n["endpoints"] = body["endpoints"].clone();
                n["ports"] = body["ports"].clone();
                log_err(
                    "endpointslice",
                    api.update(esinfo, ns, &slice_name, n, "", &manager),
                );
            }
        }
    }
}
