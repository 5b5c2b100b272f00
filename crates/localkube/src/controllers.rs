//! Simulated controllers: Deployment → ReplicaSet → Pod (with a simulated kubelet), DaemonSet,
//! Endpoints/EndpointSlices, garbage collection by ownerReferences and namespace deletion.
//!
//! Each controller is level-triggered: it wakes on store events of the resources it cares
//! about (and on a timer while something is time-dependent) and reconciles every object.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::{Api, DeleteOptions, Propagation, WriteOptions};
use crate::error::ApiError;
use crate::registry::ResourceInfo;
use crate::selectors::LabelSelector;
use crate::store::{EventType, ObjectRef, ResourceKey, StoreEvent};
use crate::util;

mod knative;
mod queue;

/// Pod-template annotation: the pod never becomes ready.
pub const NEVER_READY: &str = "localkube.dev/never-ready";
/// Pod-template annotation: the pod's containers crash-loop.
pub const CRASH_LOOP: &str = "localkube.dev/crash-loop";
/// Pod-template annotation: the pod becomes ready after this long (e.g. `5s`, `500ms`).
pub const READY_AFTER: &str = "localkube.dev/ready-after";

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of simulated nodes.
    pub nodes: usize,
    /// Extra labels per node (by index).
    pub node_labels: Vec<HashMap<String, String>>,
    /// How long a new pod takes to become ready (overridden by `localkube.dev/ready-after`).
    pub readiness_delay: Duration,
    /// How often time-dependent work (readiness delays, progress deadlines) is rechecked.
    pub tick: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 1,
            node_labels: Vec::new(),
            readiness_delay: Duration::from_millis(0),
            tick: Duration::from_millis(100),
        }
    }
}

/// Parses durations like `5s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

fn opts(manager: &str) -> WriteOptions {
    WriteOptions {
        field_manager: Some(manager.into()),
        ..Default::default()
    }
}

fn res(api: &Api, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
    api.registry.by_kind(api_version, kind)
}

fn list(api: &Api, info: &ResourceInfo, ns: Option<&str>) -> Vec<Value> {
    api.store.list(&info.storage_key(), ns).0
}

fn uid(o: &Value) -> &str {
    util::str_at(o, &["metadata", "uid"]).unwrap_or_default()
}

fn controller_uid(o: &Value) -> Option<&str> {
    o.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == json!(true))?
        .get("uid")?
        .as_str()
}

fn owner_ref(o: &Value) -> Value {
    json!({
        "apiVersion": o["apiVersion"], "kind": o["kind"], "name": util::name(o), "uid": uid(o),
        "controller": true, "blockOwnerDeletion": true,
    })
}

fn deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

fn i64_at(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn log_err(what: &str, r: Result<impl Sized, ApiError>) {
    if let Err(e) = r
        && e.code != 404
        && e.code != 409
    {
        tracing::debug!("localkube controller {what}: {e}");
    }
}

/// A short stable hash, like pod-template-hash.
pub fn short_hash(v: &Value) -> String {
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

/// Records a core/v1 Event about `obj`.
pub fn record_event(
    api: &Api,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some(info) = res(api, "v1", "Event") else {
        return;
    };
    let ns = match util::namespace(obj) {
        "" => "default",
        n => n,
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

/// Starts all simulated controllers.
pub fn spawn_all(
    api: Api,
    sim: SimConfig,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tick = sim.tick;
    let sim = Arc::new(sim);
    vec![
        tokio::spawn(queue::run(
            api.clone(),
            "deployment",
            Deployments { tick },
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "replicaset",
            ReplicaSets,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "kubelet",
            Kubelet::new(sim.clone()),
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "daemonset",
            DaemonSets,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "endpoints",
            EndpointsController::default(),
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "knative-serving",
            knative::KnativeServices,
            shutdown.clone(),
        )),
        tokio::spawn(queue::run(
            api.clone(),
            "garbage-collector",
            GarbageCollector { tick },
            shutdown.clone(),
        )),
    ]
}

fn is(k: &ResourceKey, group: &str, resource: &str) -> bool {
    k.group == group && k.resource == resource
}

/// `(namespace, name)` of an object.
type NsName = (String, String);

/// The name of the controlling owner of `o` when it is of `kind`.
fn controller_of<'a>(o: &'a Value, kind: &str) -> Option<&'a str> {
    o.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == json!(true) && r["kind"] == kind)?
        .get("name")?
        .as_str()
}

/// Queues the `kind` owner of the event's object (before and after the change).
fn owner_keys(ev: &StoreEvent, kind: &str, out: &mut Vec<NsName>) {
    for o in std::iter::once(&ev.object).chain(ev.old.as_ref()) {
        if let Some(n) = controller_of(o, kind) {
            out.push((ev.namespace.clone(), n.to_string()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deployments

fn resolve(v: Option<&Value>, total: i64, round_up: bool, default_pct: i64) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) if s.ends_with('%') => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(default_pct);
            if round_up {
                (total * p + 99) / 100
            } else {
                total * p / 100
            }
        }
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => {
            if round_up {
                (total * default_pct + 99) / 100
            } else {
                total * default_pct / 100
            }
        }
    }
}

fn set_condition(
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

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Deployments, keyed by (namespace, name); ReplicaSet events queue their owning Deployment.
struct Deployments {
    tick: Duration,
}

impl queue::Reconciler for Deployments {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        res(api, "apps/v1", "Deployment")
            .map(|i| api.store.keys(&i.storage_key()))
            .unwrap_or_default()
    }

    fn keys(&mut self, _: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "apps", "deployments") {
            out.push((ev.namespace.clone(), ev.name.clone()));
        } else if is(&ev.key, "apps", "replicasets") {
            owner_keys(ev, "Deployment", out);
        }
    }

    fn reconcile(&mut self, api: &Api, (ns, name): &NsName) -> Option<Duration> {
        let (dinfo, rsinfo) = (
            res(api, "apps/v1", "Deployment")?,
            res(api, "apps/v1", "ReplicaSet")?,
        );
        let d = api.store.get(&dinfo.storage_key(), ns, name)?;
        if deleting(&d) {
            return None;
        }
        let owned = api.store.owned(&rsinfo.storage_key(), uid(&d));
        reconcile_deployment(api, &dinfo, &rsinfo, &d, &owned).then_some(self.tick)
    }
}

fn reconcile_deployment(
    api: &Api,
    dinfo: &ResourceInfo,
    rsinfo: &ResourceInfo,
    d: &Value,
    all_rs: &[Value],
) -> bool {
    let ns = util::namespace(d);
    let name = util::name(d);
    let manager = "deployment-controller";
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let template = d
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = short_hash(&template);
    let mut owned: Vec<Value> = all_rs
        .iter()
        .filter(|rs| {
            util::namespace(rs) == ns && controller_uid(rs) == Some(uid(d)) && !deleting(rs)
        })
        .cloned()
        .collect();
    let revision = |rs: &Value| -> i64 {
        rs.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    owned.sort_by_key(revision);
    let max_rev = owned.iter().map(revision).max().unwrap_or(0);
    let paused = d.pointer("/spec/paused") == Some(&json!(true));
    let recreate = d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
    let max_surge = if recreate {
        0
    } else {
        resolve(
            d.pointer("/spec/strategy/rollingUpdate/maxSurge"),
            desired,
            true,
            25,
        )
    };
    let mut max_unavailable = if recreate {
        desired
    } else {
        resolve(
            d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
            desired,
            false,
            25,
        )
    };
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let mut new_rs = owned
        .iter()
        .find(|rs| {
            rs.pointer("/metadata/labels/pod-template-hash")
                .and_then(Value::as_str)
                == Some(hash.as_str())
        })
        .cloned();
    let mut created_new = false;
    let mut events: Vec<String> = Vec::new();
    if new_rs.is_none() && !paused {
        let mut tpl = template.clone();
        util::obj_at(&mut tpl, &["metadata", "labels"])
            .insert("pod-template-hash".into(), json!(hash));
        let mut selector = d
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or_else(|| json!({}));
        util::obj_at(&mut selector, &["matchLabels"])
            .insert("pod-template-hash".into(), json!(hash));
        let mut labels = template
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        labels["pod-template-hash"] = json!(hash);
        let old_total: i64 = owned.iter().map(|r| i64_at(r, "/spec/replicas")).sum();
        let initial = if recreate {
            0
        } else {
            (desired + max_surge - old_total).clamp(0, desired)
        };
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": format!("{name}-{hash}"), "namespace": ns, "labels": labels,
                "annotations": {
                    "deployment.kubernetes.io/revision": (max_rev + 1).to_string(),
                    "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                    "deployment.kubernetes.io/max-replicas": (desired + max_surge).to_string(),
                },
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {"replicas": initial, "minReadySeconds": d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)), "selector": selector, "template": tpl},
        });
        match api.create(rsinfo, ns, rs, &opts(manager)) {
            Ok(o) => {
                created_new = true;
                if initial > 0 {
                    events.push(format!(
                        "Scaled up replica set {} from 0 to {initial}",
                        util::name(&o.object)
                    ));
                }
                new_rs = Some(o.object.clone());
                owned.push(o.object);
            }
            Err(e) if e.code == 409 => {
                // A same-named RS exists (e.g. adopted after a rollback): take it over.
                if let Ok(existing) = api.get(rsinfo, ns, &format!("{name}-{hash}")) {
                    new_rs = Some(existing);
                }
            }
            Err(e) => log_err("create replicaset", Err::<(), _>(e)),
        }
    } else if let Some(rs) = &new_rs {
        // Rollback to an older template: bump its revision.
        if revision(rs) < max_rev {
            let mut r = rs.clone();
            r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] =
                json!((max_rev + 1).to_string());
            if let Ok(o) = api.update(rsinfo, ns, util::name(rs), r, "", &opts(manager)) {
                new_rs = Some(o.object);
            }
        }
    }
    let new_name = new_rs
        .as_ref()
        .map(|r| util::name(r).to_string())
        .unwrap_or_default();
    let olds: Vec<Value> = owned
        .iter()
        .filter(|r| util::name(r) != new_name)
        .cloned()
        .collect();
    let scale = |rs: &Value, n: i64, events: &mut Vec<String>| {
        let cur = i64_at(rs, "/spec/replicas");
        if cur == n {
            return;
        }
        let mut r = rs.clone();
        r["spec"]["replicas"] = json!(n);
        r["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
            json!(desired.to_string());
        if api
            .update(
                rsinfo,
                util::namespace(rs),
                util::name(rs),
                r,
                "",
                &opts(manager),
            )
            .is_ok()
        {
            let verb = if n > cur { "up" } else { "down" };
            events.push(format!(
                "Scaled {verb} replica set {} from {cur} to {n}",
                util::name(rs)
            ));
        }
    };
    if !paused && let Some(nrs) = &new_rs {
        let new_spec = i64_at(nrs, "/spec/replicas");
        let old_spec: i64 = olds.iter().map(|r| i64_at(r, "/spec/replicas")).sum();
        let old_pods: i64 = olds.iter().map(|r| i64_at(r, "/status/replicas")).sum();
        if recreate {
            for o in &olds {
                scale(o, 0, &mut events);
            }
            if old_pods == 0 && old_spec == 0 {
                scale(nrs, desired, &mut events);
            }
        } else {
            // Scale up the new RS within the surge budget.
            let total = new_spec + old_spec;
            let allowed = desired + max_surge - total;
            let target = if new_spec > desired {
                desired
            } else if allowed > 0 {
                (new_spec + allowed).min(desired)
            } else {
                new_spec
            };
            scale(nrs, target, &mut events);
            // Scale down old RSs within the unavailability budget.
            let available: i64 = owned
                .iter()
                .map(|r| i64_at(r, "/status/availableReplicas"))
                .sum();
            let min_available = desired - max_unavailable;
            let new_unavailable = (target - i64_at(nrs, "/status/availableReplicas")).max(0);
            let mut budget = (old_spec + target - min_available - new_unavailable).max(0);
            // Unhealthy old pods can always go.
            for o in &olds {
                let spec = i64_at(o, "/spec/replicas");
                let unhealthy = (spec - i64_at(o, "/status/availableReplicas")).max(0);
                let _ = available;
                let cut = (unhealthy + budget.min(spec - unhealthy)).min(spec);
                if cut > 0 {
                    budget -= (cut - unhealthy).max(0);
                    scale(o, spec - cut, &mut events);
                }
            }
        }
    }
    for e in &events {
        record_event(
            api,
            d,
            "Normal",
            "ScalingReplicaSet",
            e,
            "deployment-controller",
        );
    }
    // Old RSs beyond revisionHistoryLimit with no replicas are removed.
    let limit = d
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10);
    let idle: Vec<&Value> = olds
        .iter()
        .filter(|r| i64_at(r, "/spec/replicas") == 0 && i64_at(r, "/status/replicas") == 0)
        .collect();
    if idle.len() as i64 > limit {
        for r in idle.iter().take(idle.len() - limit as usize) {
            log_err(
                "delete old rs",
                api.delete(rsinfo, ns, util::name(r), &DeleteOptions::default()),
            );
        }
    }
    // Status, from the ReplicaSets as they are now.
    let fresh: Vec<Value> = owned
        .iter()
        .filter_map(|r| api.store.get(&rsinfo.storage_key(), ns, util::name(r)))
        .collect();
    let sum = |p: &str| -> i64 { fresh.iter().map(|r| i64_at(r, p)).sum() };
    let replicas = sum("/status/replicas");
    let ready = sum("/status/readyReplicas");
    let available = sum("/status/availableReplicas");
    let spec_total = sum("/spec/replicas");
    let new_fresh = fresh.iter().find(|r| util::name(r) == new_name);
    let updated = new_fresh
        .map(|r| i64_at(r, "/status/replicas"))
        .unwrap_or(0);
    let new_available = new_fresh
        .map(|r| i64_at(r, "/status/availableReplicas"))
        .unwrap_or(0);
    let Some(cur) = api.store.get(&dinfo.storage_key(), ns, name) else {
        return false;
    };
    let mut status = cur.get("status").cloned().unwrap_or_else(|| json!({}));
    let prev = status.clone();
    status["observedGeneration"] = cur["metadata"]["generation"].clone();
    status["replicas"] = json!(replicas);
    status["updatedReplicas"] = json!(updated);
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["unavailableReplicas"] = json!((spec_total.max(desired) - available).max(0));
    if let Some(m) = status.as_object_mut() {
        for k in [
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "updatedReplicas",
            "replicas",
        ] {
            if m.get(k) == Some(&json!(0)) {
                m.remove(k);
            }
        }
    }
    if available >= desired - max_unavailable {
        set_condition(
            &mut status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            false,
        );
    } else {
        set_condition(
            &mut status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            false,
        );
    }
    let complete = updated == desired
        && new_available == desired
        && replicas == desired
        && !new_name.is_empty();
    let progress_changed = [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ]
    .iter()
    .any(|k| prev.get(*k) != status.get(*k));
    let mut want_tick = false;
    if paused {
        set_condition(
            &mut status,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            false,
        );
    } else if complete {
        set_condition(
            &mut status,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            progress_changed,
        );
    } else if created_new {
        set_condition(
            &mut status,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{new_name}\""),
            true,
        );
        want_tick = true;
    } else {
        let deadline = d
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(600);
        let pc = condition(&status, "Progressing").cloned();
        let already_failed = pc
            .as_ref()
            .is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded");
        let since = pc
            .as_ref()
            .and_then(|c| c["lastUpdateTime"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds())
            .unwrap_or(0);
        if progress_changed
            || pc.is_none()
            || (pc
                .as_ref()
                .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable")
                && !already_failed)
        {
            set_condition(
                &mut status,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{new_name}\" is progressing."),
                true,
            );
            want_tick = true;
        } else if !already_failed && since > deadline * 1000 {
            set_condition(
                &mut status,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                false,
            );
        } else if !already_failed {
            want_tick = true;
        }
    }
    if status != prev {
        let mut newd = cur.clone();
        newd["status"] = status;
        log_err(
            "deployment status",
            api.update(dinfo, ns, name, newd, "status", &opts(manager)),
        );
    }
    let rev = new_fresh.map(revision).unwrap_or(0);
    if rev > 0
        && cur
            .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
            .and_then(Value::as_str)
            != Some(rev.to_string().as_str())
        && let Some(fresh_d) = api.store.get(&dinfo.storage_key(), ns, name)
    {
        let mut nd = fresh_d;
        util::obj_at(&mut nd, &["metadata", "annotations"]).insert(
            "deployment.kubernetes.io/revision".into(),
            json!(rev.to_string()),
        );
        log_err(
            "deployment revision",
            api.update(dinfo, ns, name, nd, "", &opts(manager)),
        );
    }
    want_tick || !complete
}

// ---------------------------------------------------------------------------------------------
// ReplicaSets

fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// ReplicaSets, keyed by (namespace, name); Pod events queue their owning ReplicaSet.
struct ReplicaSets;

impl queue::Reconciler for ReplicaSets {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        res(api, "apps/v1", "ReplicaSet")
            .map(|i| api.store.keys(&i.storage_key()))
            .unwrap_or_default()
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
    let ns = util::namespace(&rs);
    let want = i64_at(&rs, "/spec/replicas");
    let mut pods: Vec<Value> = api
        .store
        .owned(&pinfo.storage_key(), uid(&rs))
        .into_iter()
        .filter(|p| controller_uid(p) == Some(uid(&rs)) && !deleting(p))
        .collect();
    let have = pods.len() as i64;
    if have < want {
        for _ in have..want {
            let mut tpl = rs
                .pointer("/spec/template")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let md = util::obj_at(&mut tpl, &["metadata"]);
            md.insert(
                "generateName".into(),
                json!(format!("{}-", util::name(&rs))),
            );
            md.insert("namespace".into(), json!(ns));
            md.insert("ownerReferences".into(), json!([owner_ref(&rs)]));
            md.remove("name");
            tpl["apiVersion"] = json!("v1");
            tpl["kind"] = json!("Pod");
            match api.create(pinfo, ns, tpl, &opts("replicaset-controller")) {
                Ok(o) => {
                    record_event(
                        api,
                        &rs,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", util::name(&o.object)),
                        "replicaset-controller",
                    );
                    pods.push(o.object);
                }
                Err(e) => {
                    log_err("create pod", Err::<(), _>(e));
                    break;
                }
            }
        }
    } else if have > want {
        // Not-ready first, then newest.
        pods.sort_by(|a, b| {
            pod_ready(a).cmp(&pod_ready(b)).then_with(|| {
                util::str_at(b, &["metadata", "creationTimestamp"])
                    .cmp(&util::str_at(a, &["metadata", "creationTimestamp"]))
            })
        });
        let extra = (have - want) as usize;
        for p in pods.drain(..extra) {
            if api
                .delete(pinfo, ns, util::name(&p), &DeleteOptions::default())
                .is_ok()
            {
                record_event(
                    api,
                    &rs,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", util::name(&p)),
                    "replicaset-controller",
                );
            }
        }
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
    if let Some(m) = status.as_object_mut() {
        for k in ["readyReplicas", "availableReplicas", "fullyLabeledReplicas"] {
            if m.get(k) == Some(&json!(0)) {
                m.remove(k);
            }
        }
    }
    if rs.get("status") != Some(&status)
        && let Some(cur) = api.store.get(&rsinfo.storage_key(), ns, util::name(&rs))
    {
        let mut n = cur;
        n["status"] = status;
        log_err(
            "rs status",
            api.update(
                rsinfo,
                ns,
                util::name(&rs),
                n,
                "status",
                &opts("replicaset-controller"),
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Kubelet: schedules pods to nodes and drives their status.

/// The scheduler and kubelet, keyed by pod (namespace, name); node events queue every pod.
struct Kubelet {
    sim: Arc<SimConfig>,
    started: HashMap<String, Instant>,
    next_ip: HashMap<usize, u32>,
    restarts: HashMap<String, Instant>,
    /// Round-robin position for scheduling.
    rr: usize,
}

fn annotation<'a>(p: &'a Value, k: &str) -> Option<&'a str> {
    p.pointer("/metadata/annotations")?.get(k)?.as_str()
}

fn node_matches(node: &Value, pod_spec: &Value) -> bool {
    let labels = node.pointer("/metadata/labels");
    pod_spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| {
            sel.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
}

impl queue::Reconciler for Kubelet {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        let Some(pinfo) = res(api, "v1", "Pod") else {
            return Vec::new();
        };
        let pods = list(api, &pinfo, None);
        let live: HashSet<&str> = pods.iter().map(uid).collect();
        self.started.retain(|u, _| live.contains(u.as_str()));
        self.restarts.retain(|u, _| live.contains(u.as_str()));
        pods.iter()
            .map(|p| (util::namespace(p).to_string(), util::name(p).to_string()))
            .collect()
    }

    fn keys(&mut self, api: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "", "pods") {
            if ev.type_ == EventType::Deleted {
                self.started.remove(uid(&ev.object));
                self.restarts.remove(uid(&ev.object));
            } else {
                out.push((ev.namespace.clone(), ev.name.clone()));
            }
        } else if is(&ev.key, "", "nodes")
            && let Some(pinfo) = res(api, "v1", "Pod")
        {
            out.extend(api.store.keys(&pinfo.storage_key()));
        }
    }

    fn reconcile(&mut self, api: &Api, (ns, name): &NsName) -> Option<Duration> {
        let (pinfo, ninfo) = (res(api, "v1", "Pod")?, res(api, "v1", "Node")?);
        let p = api.store.get(&pinfo.storage_key(), ns, name)?;
        if deleting(&p) {
            return None;
        }
        let nodes = list(api, &ninfo, None);
        self.reconcile_pod(api, &pinfo, &nodes, &p)
    }
}

impl Kubelet {
    fn new(sim: Arc<SimConfig>) -> Self {
        Self {
            sim,
            started: HashMap::new(),
            next_ip: HashMap::new(),
            restarts: HashMap::new(),
            rr: 0,
        }
    }

    /// Schedules a pod and drives its status; `Some(d)`: look again after `d`.
    fn reconcile_pod(
        &mut self,
        api: &Api,
        pinfo: &ResourceInfo,
        nodes: &[Value],
        p: &Value,
    ) -> Option<Duration> {
        let sim = self.sim.clone();
        let mut want_tick = None;
        let ns = util::namespace(p);
        let name = util::name(p);
        let mut spec_node = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if spec_node.is_empty() {
            let spec = p.get("spec").cloned().unwrap_or_default();
            let fits: Vec<&Value> = nodes.iter().filter(|n| node_matches(n, &spec)).collect();
            if fits.is_empty() {
                let mut np = p.clone();
                let msg = format!(
                    "0/{} nodes are available: {} node(s) didn't match Pod's node affinity/selector.",
                    nodes.len(),
                    nodes.len()
                );
                let st = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastTransitionTime": util::now()}]});
                if p.get("status").and_then(|s| s.get("conditions")) != st.get("conditions") {
                    np["status"] = st;
                    log_err(
                        "pod unschedulable",
                        api.update(pinfo, ns, name, np, "status", &opts("default-scheduler")),
                    );
                }
                return None;
            }
            self.rr += 1;
            let node = fits[self.rr % fits.len()];
            spec_node = util::name(node).to_string();
            let mut np = p.clone();
            np["spec"]["nodeName"] = json!(spec_node);
            if api
                .update(pinfo, ns, name, np, "", &opts("default-scheduler"))
                .is_ok()
            {
                record_event(
                    api,
                    p,
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {ns}/{name} to {spec_node}"),
                    "default-scheduler",
                );
            }
        }
        let cur = api.store.get(&pinfo.storage_key(), ns, name)?;
        let node_idx = nodes
            .iter()
            .position(|n| util::name(n) == spec_node)
            .unwrap_or(0);
        let start = *self
            .started
            .entry(uid(&cur).to_string())
            .or_insert_with(Instant::now);
        let delay = annotation(&cur, READY_AFTER)
            .and_then(parse_duration)
            .unwrap_or(sim.readiness_delay);
        let never = annotation(&cur, NEVER_READY) == Some("true");
        let crash = annotation(&cur, CRASH_LOOP) == Some("true");
        let ready = !never && !crash && start.elapsed() >= delay;
        if !ready && !never && !crash {
            want_tick = Some(
                delay
                    .saturating_sub(start.elapsed())
                    .max(Duration::from_millis(1)),
            );
        }
        let mut status = cur.get("status").cloned().unwrap_or_else(|| json!({}));
        let prev = status.clone();
        let now = util::now();
        status["phase"] = json!("Running");
        if status.get("podIP").and_then(Value::as_str).is_none() {
            let n = self.next_ip.entry(node_idx).or_insert(1);
            *n += 1;
            let ip = format!("10.244.{}.{}", node_idx, *n % 250 + 2);
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
            status["hostIP"] = json!(format!("172.18.0.{}", node_idx + 2));
            status["startTime"] = json!(now);
        }
        let containers = cur
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let old_cs = prev
            .get("containerStatuses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let cs: Vec<Value> = containers
                .iter()
                .map(|c| {
                    let cname = c["name"].as_str().unwrap_or_default();
                    let old = old_cs.iter().find(|o| o["name"] == cname);
                    let mut restarts = old.map(|o| i64_at(o, "/restartCount")).unwrap_or(0);
                    let state = if crash {
                        want_tick = Some(self.sim.tick);
                        let last = self.restarts.entry(uid(&cur).to_string()).or_insert(start);
                        if last.elapsed() >= Duration::from_secs(2) {
                            *last = Instant::now();
                            restarts += 1;
                        }
                        json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container {cname}")}})
                    } else {
                        let started_at = old.and_then(|o| o.pointer("/state/running/startedAt")).cloned().unwrap_or(json!(now));
                        json!({"running": {"startedAt": started_at}})
                    };
                    json!({
                        "name": cname, "image": c["image"], "imageID": format!("docker.io/library/{}", c["image"].as_str().unwrap_or_default()),
                        "containerID": format!("localkube://{}", short_hash(&json!([uid(&cur), cname]))),
                        "ready": ready, "started": !crash, "restartCount": restarts, "state": state,
                    })
                })
                .collect();
        status["containerStatuses"] = json!(cs);
        let b = |x: bool| if x { "True" } else { "False" };
        let mut conds = prev.get("conditions").cloned().unwrap_or_else(|| json!([]));
        for (t, v) in [
            ("PodScheduled", true),
            ("Initialized", true),
            ("ContainersReady", ready),
            ("Ready", ready),
        ] {
            let mut holder = json!({"conditions": conds});
            let existing = condition(&holder, t).cloned();
            if existing.as_ref().is_none_or(|c| c["status"] != b(v)) {
                let list = holder["conditions"].as_array_mut();
                if let Some(list) = list {
                    list.retain(|c| c["type"] != t);
                    let mut c = json!({"type": t, "status": b(v), "lastProbeTime": null, "lastTransitionTime": now});
                    if !v {
                        c["reason"] = json!("ContainersNotReady");
                        c["message"] = json!("containers with unready status");
                    }
                    list.push(c);
                }
            }
            conds = holder["conditions"].take();
        }
        status["conditions"] = conds;
        if status != prev {
            let mut np = cur.clone();
            np["status"] = status;
            log_err(
                "pod status",
                api.update(pinfo, ns, name, np, "status", &opts("kubelet")),
            );
            if prev.get("podIP").is_none() {
                for c in &containers {
                    let img = c["image"].as_str().unwrap_or_default();
                    record_event(
                        api,
                        &cur,
                        "Normal",
                        "Pulled",
                        &format!("Container image \"{img}\" already present on machine"),
                        "kubelet",
                    );
                    record_event(
                        api,
                        &cur,
                        "Normal",
                        "Started",
                        &format!(
                            "Started container {}",
                            c["name"].as_str().unwrap_or_default()
                        ),
                        "kubelet",
                    );
                }
            }
        }
        want_tick
    }
}

// ---------------------------------------------------------------------------------------------
// DaemonSets

/// DaemonSets, keyed by (namespace, name); Pod events queue their owning DaemonSet, node events
/// every DaemonSet.
struct DaemonSets;

impl queue::Reconciler for DaemonSets {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        res(api, "apps/v1", "DaemonSet")
            .map(|i| api.store.keys(&i.storage_key()))
            .unwrap_or_default()
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

fn reconcile_daemonset(
    api: &Api,
    dsinfo: &ResourceInfo,
    pinfo: &ResourceInfo,
    nodes: &[Value],
    ds: Value,
) {
    let ns = util::namespace(&ds);
    let tpl = ds
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = short_hash(&tpl);
    let spec = tpl.get("spec").cloned().unwrap_or_default();
    let eligible: Vec<&Value> = nodes.iter().filter(|n| node_matches(n, &spec)).collect();
    let pods = api.store.owned(&pinfo.storage_key(), uid(&ds));
    let owned: Vec<&Value> = pods
        .iter()
        .filter(|p| controller_uid(p) == Some(uid(&ds)) && !deleting(p))
        .collect();
    let mut unavailable = owned.iter().filter(|p| !pod_ready(p)).count();
    for n in &eligible {
        let node = util::name(n);
        let on_node: Vec<&&Value> = owned
            .iter()
            .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
            .collect();
        if on_node.is_empty() {
            let mut p = tpl.clone();
            let md = util::obj_at(&mut p, &["metadata"]);
            md.insert(
                "generateName".into(),
                json!(format!("{}-", util::name(&ds))),
            );
            md.insert("ownerReferences".into(), json!([owner_ref(&ds)]));
            util::obj_at(&mut p, &["metadata", "labels"])
                .insert("controller-revision-hash".into(), json!(hash));
            p["spec"]["nodeName"] = json!(node);
            p["apiVersion"] = json!("v1");
            p["kind"] = json!("Pod");
            log_err(
                "ds pod",
                api.create(pinfo, ns, p, &opts("daemonset-controller")),
            );
            continue;
        }
        for p in on_node {
            let stale = p
                .pointer("/metadata/labels/controller-revision-hash")
                .and_then(Value::as_str)
                != Some(hash.as_str());
            // Rolling update, one unavailable pod at a time.
            if stale && (unavailable == 0 || !pod_ready(p)) {
                if pod_ready(p) {
                    unavailable += 1;
                }
                log_err(
                    "ds delete stale",
                    api.delete(pinfo, ns, util::name(p), &DeleteOptions::default()),
                );
            }
        }
    }
    for p in &owned {
        let node = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !eligible.iter().any(|n| util::name(n) == node) {
            log_err(
                "ds delete misplaced",
                api.delete(pinfo, ns, util::name(p), &DeleteOptions::default()),
            );
        }
    }
    let fresh: Vec<Value> = api
        .store
        .owned(&pinfo.storage_key(), uid(&ds))
        .into_iter()
        .filter(|p| controller_uid(p) == Some(uid(&ds)) && !deleting(p))
        .collect();
    let ready = fresh.iter().filter(|p| pod_ready(p)).count();
    let updated = fresh
        .iter()
        .filter(|p| {
            p.pointer("/metadata/labels/controller-revision-hash")
                .and_then(Value::as_str)
                == Some(hash.as_str())
        })
        .count();
    let desired = eligible.len();
    let status = json!({
        "currentNumberScheduled": fresh.len(),
        "desiredNumberScheduled": desired,
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": desired.saturating_sub(ready),
        "updatedNumberScheduled": updated,
        "observedGeneration": ds["metadata"]["generation"],
    });
    if ds.get("status") != Some(&status) {
        let mut n = ds.clone();
        n["status"] = status;
        log_err(
            "ds status",
            api.update(
                dsinfo,
                ns,
                util::name(&ds),
                n,
                "status",
                &opts("daemonset-controller"),
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints and EndpointSlices

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
struct EndpointsController {
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
    ) -> Vec<Value> {
        let smallest = sel
            .iter()
            .map(|(k, v)| self.pod_index.get(&(ns.to_string(), k.clone(), v.clone())))
            .min_by_key(|set| set.map_or(0, |s| s.len()));
        match smallest {
            None => list(api, pinfo, Some(ns)),
            Some(None) => Vec::new(),
            Some(Some(names)) => names
                .iter()
                .filter_map(|n| api.store.get(&pinfo.storage_key(), ns, n))
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
        let pods: Vec<Value> = self
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

fn reconcile_endpoints(
    api: &Api,
    einfo: &ResourceInfo,
    esinfo: &ResourceInfo,
    svc: &Value,
    pods: &[Value],
) {
    let ns = util::namespace(svc);
    let name = util::name(svc);
    let svc_ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let resolve_port = |sp: &Value, pod: Option<&Value>| -> Value {
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
    let ports: Vec<Value> = svc_ports
            .iter()
            .map(|sp| {
                let mut p = json!({"port": resolve_port(sp, pods.first()), "protocol": sp["protocol"].as_str().unwrap_or("TCP")});
                if let Some(n) = sp.get("name") {
                    p["name"] = n.clone();
                }
                p
            })
            .collect();
    let addr = |p: &Value| {
        json!({
            "ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"],
            "targetRef": {"kind": "Pod", "name": util::name(p), "namespace": ns, "uid": uid(p)},
        })
    };
    let ready: Vec<Value> = pods.iter().filter(|p| pod_ready(p)).map(addr).collect();
    let not_ready: Vec<Value> = pods.iter().filter(|p| !pod_ready(p)).map(addr).collect();
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
    let labels = svc
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    match api.store.get(&einfo.storage_key(), ns, name) {
        None => {
            let ep = json!({"metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": subsets});
            log_err(
                "endpoints",
                api.create(einfo, ns, ep, &opts("endpoint-controller")),
            );
        }
        Some(cur) => {
            if cur.get("subsets").cloned().unwrap_or(json!([])) != subsets {
                let mut n = cur.clone();
                n["subsets"] = subsets;
                log_err(
                    "endpoints",
                    api.update(einfo, ns, name, n, "", &opts("endpoint-controller")),
                );
            }
        }
    }
    // EndpointSlice.
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
    let mut slabels = labels.clone();
    slabels["kubernetes.io/service-name"] = json!(name);
    slabels["endpointslice.kubernetes.io/managed-by"] = json!("endpointslice-controller.k8s.io");
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice_name, "namespace": ns, "labels": slabels,
                     "ownerReferences": [owner_ref(svc)]},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    });
    match api.store.get(&esinfo.storage_key(), ns, &slice_name) {
        None => log_err(
            "endpointslice",
            api.create(esinfo, ns, body, &opts("endpointslice-controller")),
        ),
        Some(cur) => {
            if cur.get("endpoints") != body.get("endpoints")
                || cur.get("ports") != body.get("ports")
            {
                let mut n = cur.clone();
                n["endpoints"] = body["endpoints"].clone();
                n["ports"] = body["ports"].clone();
                log_err(
                    "endpointslice",
                    api.update(
                        esinfo,
                        ns,
                        &slice_name,
                        n,
                        "",
                        &opts("endpointslice-controller"),
                    ),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Garbage collection and namespace deletion

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
            &opts("garbage-collector"),
        ),
    );
}

fn has_finalizer(o: &Value, f: &str) -> bool {
    o.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == f))
}

/// Garbage collection and namespace deletion, keyed by object. Deleting an object queues its
/// dependents (found by the store's owner index) and its owners (which may wait on it in
/// foreground deletion); an object being deleted with an `orphan`/`foregroundDeletion`
/// finalizer queues itself, as does a terminating namespace or an object whose owners are all
/// gone.
struct GarbageCollector {
    tick: Duration,
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
        let me = || (ev.key.clone(), ev.namespace.clone(), ev.name.clone());
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
            out.push(me());
        }
    }

    fn reconcile(&mut self, api: &Api, at: &ObjectRef) -> Option<Duration> {
        let (key, ns, name) = at;
        let o = api.store.get(key, ns, name)?;
        let info = info_for(api, key)?;
        // Namespace deletion: empty it, then let it go.
        if info.group.is_empty() && info.plural == "namespaces" {
            if !deleting(&o) {
                return None;
            }
            let ns = util::name(&o);
            let mut seen = HashSet::new();
            let mut content: Vec<(Arc<ResourceInfo>, Value)> = Vec::new();
            for i in api.registry.all() {
                if i.namespaced && seen.insert(i.storage_key()) {
                    for x in list(api, &i, Some(ns)) {
                        content.push((i.clone(), x));
                    }
                }
            }
            if content.is_empty() {
                let _ = api.store.write(&info.storage_key(), "", ns, false, |_| {
                    Ok::<_, ApiError>(crate::store::Write::Delete)
                });
                return None;
            }
            for (i, x) in content {
                if !deleting(&x) {
                    log_err(
                        "namespace content",
                        api.delete(&i, ns, util::name(&x), &DeleteOptions::default()),
                    );
                }
            }
            return Some(self.tick);
        }
        if deleting(&o) {
            if has_finalizer(&o, "orphan") {
                for ((dkey, dns, dname), d) in api.store.dependents(uid(&o)) {
                    let Some(di) = info_for(api, &dkey) else {
                        continue;
                    };
                    let mut n = d;
                    if let Some(refs) = n
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        refs.retain(|r| r["uid"] != uid(&o));
                    }
                    log_err(
                        "orphan",
                        api.update(&di, &dns, &dname, n, "", &opts("garbage-collector")),
                    );
                }
                remove_finalizer(api, &info, &o, "orphan");
            } else if has_finalizer(&o, "foregroundDeletion") {
                let deps: Vec<(Arc<ResourceInfo>, Value)> = api
                    .store
                    .dependents(uid(&o))
                    .into_iter()
                    .filter_map(|((dkey, _, _), d)| Some((info_for(api, &dkey)?, d)))
                    .collect();
                let blocking = deps.iter().filter(|(_, d)| {
                    d.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|refs| {
                            refs.iter().any(|r| {
                                r["uid"] == uid(&o) && r["blockOwnerDeletion"] == json!(true)
                            })
                        })
                });
                let mut any = false;
                for (di, d) in blocking {
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
                if any {
                    return Some(self.tick);
                }
                remove_finalizer(api, &info, &o, "foregroundDeletion");
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
