//! The kubelet: drives the status of the pods bound to the simulated nodes (IP, container
//! statuses, conditions) and records the events a kubelet records. Readiness follows the
//! simulator's annotations ([`super::READY_AFTER`], [`super::NEVER_READY`],
//! [`super::CRASH_LOOP`]) and [`super::SimConfig::readiness_delay`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::objects::{
    NsName, annotation, condition, deleting, i64_at, is, list, log_err, opts, res, uid,
};
use super::scheduler::Scheduler;
use super::{CRASH_LOOP, NEVER_READY, READY_AFTER, SimConfig, parse_duration, queue};
use super::{record_event, short_hash};
use crate::api::Api;
use crate::registry::ResourceInfo;
use crate::store::{EventType, StoreEvent};
use crate::util;

const MANAGER: &str = "kubelet";

/// The scheduler and kubelet, keyed by pod (namespace, name); node events queue every pod.
pub(super) struct Kubelet {
    sim: Arc<SimConfig>,
    scheduler: Scheduler,
    started: HashMap<String, Instant>,
    next_ip: HashMap<usize, u32>,
    restarts: HashMap<String, Instant>,
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
        let node = self.scheduler.node_of(api, &pinfo, &nodes, &p)?;
        let cur = api.store.get(&pinfo.storage_key(), ns, name)?;
        let node_idx = nodes
            .iter()
            .position(|n| util::name(n) == node)
            .unwrap_or(0);
        self.sync_pod(api, &pinfo, node_idx, &cur)
    }
}

/// How the simulator says a pod behaves.
struct Behaviour {
    start: Instant,
    delay: Duration,
    never: bool,
    crash: bool,
}

impl Behaviour {
    fn ready(&self) -> bool {
        !self.never && !self.crash && self.start.elapsed() >= self.delay
    }
}

impl Kubelet {
    pub(super) fn new(sim: Arc<SimConfig>) -> Self {
        Self {
            sim,
            scheduler: Scheduler::default(),
            started: HashMap::new(),
            next_ip: HashMap::new(),
            restarts: HashMap::new(),
        }
    }

    fn behaviour(&mut self, p: &Value) -> Behaviour {
        let start = *self
            .started
            .entry(uid(p).to_string())
            .or_insert_with(Instant::now);
        Behaviour {
            start,
            delay: annotation(p, READY_AFTER)
                .and_then(parse_duration)
                .unwrap_or(self.sim.readiness_delay),
            never: annotation(p, NEVER_READY) == Some("true"),
            crash: annotation(p, CRASH_LOOP) == Some("true"),
        }
    }

    /// Drives a bound pod's status; `Some(d)`: look again after `d`.
    fn sync_pod(
        &mut self,
        api: &Api,
        pinfo: &ResourceInfo,
        node_idx: usize,
        cur: &Value,
    ) -> Option<Duration> {
        let b = self.behaviour(cur);
        let ready = b.ready();
        let mut want_tick = None;
        if !ready && !b.never && !b.crash {
            want_tick = Some(
                b.delay
                    .saturating_sub(b.start.elapsed())
                    .max(Duration::from_millis(1)),
            );
        }
        let prev = cur.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut status = prev.clone();
        status["phase"] = json!("Running");
        if status.get("podIP").and_then(Value::as_str).is_none() {
            self.assign_ip(&mut status, node_idx);
        }
        let (cs, tick) = self.container_statuses(cur, &prev, &b, ready);
        want_tick = tick.or(want_tick);
        status["containerStatuses"] = json!(cs);
        status["conditions"] = pod_conditions(&prev, ready);
        if status != prev {
            let mut np = cur.clone();
            np["status"] = status;
            log_err(
                "pod status",
                api.update(
                    pinfo,
                    util::namespace(cur),
                    util::name(cur),
                    np,
                    "status",
                    &opts(MANAGER),
                ),
            );
            if prev.get("podIP").is_none() {
                started_events(api, cur);
            }
        }
        want_tick
    }

    fn assign_ip(&mut self, status: &mut Value, node_idx: usize) {
        let n = self.next_ip.entry(node_idx).or_insert(1);
        *n += 1;
        let ip = format!("10.244.{}.{}", node_idx, *n % 250 + 2);
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
        status["hostIP"] = json!(format!("172.18.0.{}", node_idx + 2));
        status["startTime"] = json!(util::now());
    }

    /// The container statuses, and when to look again (crash loops restart on a timer).
    fn container_statuses(
        &mut self,
        cur: &Value,
        prev: &Value,
        b: &Behaviour,
        ready: bool,
    ) -> (Vec<Value>, Option<Duration>) {
        let now = util::now();
        let old_cs = prev
            .get("containerStatuses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut want_tick = None;
        let cs = containers(cur)
            .iter()
            .map(|c| {
                let cname = c["name"].as_str().unwrap_or_default();
                let old = old_cs.iter().find(|o| o["name"] == cname);
                let mut restarts = old.map(|o| i64_at(o, "/restartCount")).unwrap_or(0);
                let state = if b.crash {
                    want_tick = Some(self.sim.tick);
                    let last = self.restarts.entry(uid(cur).to_string()).or_insert(b.start);
                    if last.elapsed() >= Duration::from_secs(2) {
                        *last = Instant::now();
                        restarts += 1;
                    }
                    json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container {cname}")}})
                } else {
                    let started_at = old
                        .and_then(|o| o.pointer("/state/running/startedAt"))
                        .cloned()
                        .unwrap_or(json!(now));
                    json!({"running": {"startedAt": started_at}})
                };
                json!({
                    "name": cname, "image": c["image"], "imageID": format!("docker.io/library/{}", c["image"].as_str().unwrap_or_default()),
                    "containerID": format!("localkube://{}", short_hash(&json!([uid(cur), cname]))),
                    "ready": ready, "started": !b.crash, "restartCount": restarts, "state": state,
                })
            })
            .collect();
        (cs, want_tick)
    }
}

fn containers(p: &Value) -> Vec<Value> {
    p.pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The pod conditions, keeping each one's `lastTransitionTime` while its status holds.
fn pod_conditions(prev: &Value, ready: bool) -> Value {
    let now = util::now();
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
        if existing.as_ref().is_none_or(|c| c["status"] != b(v))
            && let Some(list) = holder["conditions"].as_array_mut()
        {
            list.retain(|c| c["type"] != t);
            let mut c = json!({"type": t, "status": b(v), "lastProbeTime": null, "lastTransitionTime": now});
            if !v {
                c["reason"] = json!("ContainersNotReady");
                c["message"] = json!("containers with unready status");
            }
            list.push(c);
        }
        conds = holder["conditions"].take();
    }
    conds
}

/// `Pulled` and `Started` for each container of a pod that just started.
fn started_events(api: &Api, p: &Value) {
    for c in &containers(p) {
        let img = c["image"].as_str().unwrap_or_default();
        record_event(
            api,
            p,
            "Normal",
            "Pulled",
            &format!("Container image \"{img}\" already present on machine"),
            MANAGER,
        );
        record_event(
            api,
            p,
            "Normal",
            "Started",
            &format!(
                "Started container {}",
                c["name"].as_str().unwrap_or_default()
            ),
            MANAGER,
        );
    }
}
