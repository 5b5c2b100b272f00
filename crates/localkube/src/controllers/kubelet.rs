//! The kubelet: runs the containers of the pods bound to the simulated nodes
//! ([`super::containers`]: image pulls against the simulated registry, starts, restarts),
//! probes them ([`super::probes`]: real requests to the pods' simulated apps, through the data
//! plane when it runs), and reports the pod's status (IP, container statuses, phase,
//! conditions) and the events a kubelet records.
//!
//! A container's readiness follows its readiness probe when it has one; without one it is
//! ready once its app listens. The simulator's annotations shape the app: it listens
//! [`super::READY_AFTER`] (or [`super::SimConfig::readiness_delay`]) after it starts,
//! [`super::NEVER_READY`] keeps it from ever being ready, [`super::CRASH_LOOP`] makes it
//! crash-loop.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::config::{CRASH_LOOP, NEVER_READY, READY_AFTER, SimConfig};
use super::containers::{Container, Ctx, Event};
use super::objects::record_repeated_event;
use super::objects::{NsName, annotation, condition, deleting, is, list, log_err, opts, res, uid};
use super::probes::{self, Kind, Outcome, Target};
use super::queue;
use super::scheduler::Scheduler;
use crate::api::Api;
use crate::registry::ResourceInfo;
use crate::store::{EventType, StoreEvent};
use crate::util;
use crate::util::parse_duration;

const MANAGER: &str = "kubelet";

/// A probe's answer, back from the task that ran it.
#[derive(Debug)]
pub(super) struct ProbeReport {
    key: NsName,
    uid: String,
    container: String,
    kind: Kind,
    instance: u64,
    outcome: Outcome,
}

/// What the kubelet keeps about a pod.
struct PodState {
    containers: Vec<Container>,
    /// Probe answers not taken in yet.
    reports: Vec<ProbeReport>,
}

/// The scheduler and kubelet, keyed by pod (namespace, name); node events queue every pod,
/// probe answers their pod.
pub(super) struct Kubelet {
    sim: Arc<SimConfig>,
    /// The data plane's proxy: probes go through it when it runs.
    proxy: Option<SocketAddr>,
    scheduler: Scheduler,
    pods: HashMap<String, PodState>,
    next_ip: HashMap<usize, u32>,
    reports: mpsc::UnboundedSender<ProbeReport>,
}

impl queue::Reconciler for Kubelet {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        let Some(pinfo) = res(api, "v1", "Pod") else {
            return Vec::new();
        };
        let pods = list(api, &pinfo, None);
        let live: HashSet<&str> = pods.iter().map(|p| uid(p)).collect();
        self.pods.retain(|u, _| live.contains(u.as_str()));
        pods.iter()
            .map(|p| (util::namespace(p).to_string(), util::name(p).to_string()))
            .collect()
    }

    fn keys(&mut self, api: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "", "pods") {
            if ev.type_ == EventType::Deleted {
                self.pods.remove(uid(&ev.object));
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

impl queue::Inputs for Kubelet {
    type Input = ProbeReport;

    fn input(&mut self, _: &Api, report: ProbeReport, out: &mut Vec<NsName>) {
        if let Some(st) = self.pods.get_mut(&report.uid) {
            out.push(report.key.clone());
            st.reports.push(report);
        }
    }
}

fn containers(p: &Value) -> Vec<Value> {
    p.pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

impl Kubelet {
    /// A kubelet, and where its probes' answers come back.
    pub(super) fn new(
        sim: Arc<SimConfig>,
        proxy: Option<SocketAddr>,
    ) -> (Self, mpsc::UnboundedReceiver<ProbeReport>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let k = Self {
            sim,
            proxy,
            scheduler: Scheduler::default(),
            pods: HashMap::new(),
            next_ip: HashMap::new(),
            reports: tx,
        };
        (k, rx)
    }

    fn ctx<'a>(sim: &'a SimConfig, p: &Value) -> Ctx<'a> {
        Ctx {
            registry: &sim.registry,
            delay: annotation(p, READY_AFTER)
                .and_then(parse_duration)
                .unwrap_or(sim.readiness_delay),
            never_ready: annotation(p, NEVER_READY) == Some("true"),
            crash: annotation(p, CRASH_LOOP) == Some("true"),
            pod_ref: format!("{}_{}({})", util::name(p), util::namespace(p), uid(p)),
        }
    }

    /// Runs a bound pod's containers and reports its status; `Some(d)`: look again after `d`.
    fn sync_pod(
        &mut self,
        api: &Api,
        pinfo: &ResourceInfo,
        node_idx: usize,
        cur: &Value,
    ) -> Option<Duration> {
        let now = Instant::now();
        let specs = containers(cur);
        let mut st = self.pods.remove(uid(cur)).unwrap_or_else(|| PodState {
            containers: specs.iter().map(|c| Container::new(c, now)).collect(),
            reports: Vec::new(),
        });
        let mut events = Vec::new();
        let sim = self.sim.clone();
        let ctx = Self::ctx(&sim, cur);
        for r in std::mem::take(&mut st.reports) {
            if let Some(c) = st.containers.iter_mut().find(|c| c.name == r.container) {
                c.probed((r.kind, r.instance), &r.outcome, &ctx, now, &mut events);
            }
        }
        st.containers
            .retain(|c| specs.iter().any(|s| s["name"] == c.name.as_str()));
        for spec in &specs {
            let name = spec["name"].as_str().unwrap_or_default();
            if !st.containers.iter().any(|c| c.name == name) {
                st.containers.push(Container::new(spec, now));
            }
            if let Some(c) = st.containers.iter_mut().find(|c| c.name == name) {
                c.sync(spec, &ctx, now, &mut events);
            }
        }
        let prev = cur.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut status = prev.clone();
        if status.get("podIP").and_then(Value::as_str).is_none() {
            self.assign_ip(&mut status, node_idx);
        }
        pod_status(&mut status, &prev, &st.containers, &ctx, now);
        if status != prev {
            let mut np = cur.clone();
            np["status"] = status.clone();
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
        }
        record(api, cur, &events);
        let pod_ip = status["podIP"].as_str().unwrap_or_default().to_string();
        self.launch_probes(cur, &pod_ip, &mut st.containers, &ctx, now);
        let wake = st
            .containers
            .iter()
            .filter_map(|c| c.wake_at(&ctx, now))
            .min();
        self.pods.insert(uid(cur).to_string(), st);
        wake.map(|at| {
            at.saturating_duration_since(now)
                .max(Duration::from_millis(1))
        })
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

    /// Starts the probes due now; each answer comes back as an input.
    fn launch_probes(
        &self,
        pod: &Value,
        pod_ip: &str,
        containers: &mut [Container],
        ctx: &Ctx,
        now: Instant,
    ) {
        for c in containers.iter_mut() {
            let listening = c.listening(ctx, now);
            for launch in c.due_probes(now) {
                let target = Target {
                    pod_ip: pod_ip.to_string(),
                    pod: pod.clone(),
                    container: launch.container,
                    listening,
                    proxy: self.proxy,
                };
                let tx = self.reports.clone();
                let key = (
                    util::namespace(pod).to_string(),
                    util::name(pod).to_string(),
                );
                let (uid, container) = (uid(pod).to_string(), c.name.clone());
                tokio::spawn(async move {
                    let spec = launch.spec;
                    let outcome = probes::run(&spec.action, spec.timeout, &target).await;
                    let _ = tx.send(ProbeReport {
                        key,
                        uid,
                        container,
                        kind: launch.kind,
                        instance: launch.instance,
                        outcome,
                    });
                });
            }
        }
    }
}

/// Records the kubelet's events about a pod (an event repeated, a restart's `Started` or a
/// probe's `Unhealthy`, counted on one event, as the event recorder aggregates them).
fn record(api: &Api, pod: &Value, events: &[Event]) {
    for e in events {
        record_repeated_event(api, pod, e.type_, e.reason, &e.message, MANAGER);
    }
}

/// Sets the phase, container statuses and conditions of a pod from its containers.
fn pod_status(status: &mut Value, prev: &Value, cs: &[Container], ctx: &Ctx, now: Instant) {
    let all_ran = cs.iter().all(|c| c.ever_ran(ctx));
    status["phase"] = json!(if all_ran { "Running" } else { "Pending" });
    status["containerStatuses"] = json!(cs.iter().map(|c| c.status(ctx, now)).collect::<Vec<_>>());
    let unready: Vec<&str> = cs
        .iter()
        .filter(|c| !c.ready(ctx, now))
        .map(|c| c.name.as_str())
        .collect();
    status["conditions"] = pod_conditions(prev, &unready);
}

/// The pod conditions, keeping each one's `lastTransitionTime` while its status holds.
fn pod_conditions(prev: &Value, unready: &[&str]) -> Value {
    let now = util::now();
    let ready = unready.is_empty();
    let b = |x: bool| if x { "True" } else { "False" };
    let message = format!("containers with unready status: [{}]", unready.join(" "));
    let mut conds = prev.get("conditions").cloned().unwrap_or_else(|| json!([]));
    for (t, v) in [
        ("PodScheduled", true),
        ("Initialized", true),
        ("ContainersReady", ready),
        ("Ready", ready),
    ] {
        let mut holder = json!({"conditions": conds});
        let existing = condition(&holder, t).cloned();
        let changed = existing
            .as_ref()
            .is_none_or(|c| c["status"] != b(v) || (!v && c["message"] != message.as_str()));
        if changed && let Some(list) = holder["conditions"].as_array_mut() {
            let since = existing
                .as_ref()
                .filter(|c| c["status"] == b(v))
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or(json!(now));
            list.retain(|c| c["type"] != t);
            let mut c = json!({"type": t, "status": b(v), "lastProbeTime": null, "lastTransitionTime": since});
            if !v {
                c["reason"] = json!("ContainersNotReady");
                c["message"] = json!(message);
            }
            list.push(c);
        }
        conds = holder["conditions"].take();
    }
    conds
}
