//! A KEDA-like scaler for `keda.sh/v1alpha1` ScaledObjects (off unless
//! [`super::SimConfig::keda`] is set; it then installs the ScaledObject CRD, as installing KEDA
//! does).
//!
//! For each ScaledObject it keeps the HorizontalPodAutoscaler KEDA keeps (`keda-hpa-<name>`,
//! or `advanced.horizontalPodAutoscalerConfig.name`), with one External metric per trigger
//! (`s0-prometheus`, ...) that the simulated HPA controller reads (`ExternalMetrics`); every
//! `pollingInterval` it evaluates each `prometheus` trigger's query against the Prometheus at
//! `serverAddress` (a real one, reached through the data plane when it runs, so cluster
//! names resolve), activates a target at zero when a trigger is active and deactivates it
//! after `cooldownPeriod` when `minReplicaCount` is 0. The annotations
//! `autoscaling.keda.sh/paused-replicas` (scale to that count and stop) and
//! `autoscaling.keda.sh/paused` (stop where it is) pause it: the HPA is removed until they
//! go. The status and its conditions (`Ready`, `Active`, `Fallback`, `Paused`) are KEDA's.
//!
//! Other trigger types are not evaluated: the ScaledObject says so in its `Ready` condition.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::hpa_metrics::{ExternalMetrics, SCALED_OBJECT_LABEL};
use super::objects::{NsName, annotation, deleting, is, keys_of, log_err, opts, owner_ref, res};
use super::objects::{record_event, record_repeated_event};
use super::{http, queue};
use crate::api::{Api, DeleteOptions};
use crate::registry::ResourceInfo;
use crate::store::{EventType, StoreEvent};
use crate::util;

/// The field manager and event source of the scaler's writes.
const MANAGER: &str = "keda-operator";
/// The version KEDA's labels carry.
const KEDA_VERSION: &str = "2.16.0";
/// `autoscaling.keda.sh/paused-replicas`.
pub const PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// `autoscaling.keda.sh/paused`.
pub const PAUSED: &str = "autoscaling.keda.sh/paused";

/// A poll's answers, back from the task that queried Prometheus.
#[derive(Debug)]
pub(super) struct Answers {
    key: NsName,
    /// Per trigger: the metric name and its value (or the error).
    values: Vec<(String, Result<f64, String>)>,
}

/// What the scaler keeps per ScaledObject.
#[derive(Debug, Default)]
struct Scaled {
    next_poll: Option<Instant>,
    polling: bool,
    answers: Option<Vec<(String, Result<f64, String>)>>,
    last_active: Option<Instant>,
    failures: HashMap<String, u64>,
    announced: bool,
}

/// The scaler, keyed by ScaledObject (namespace, name).
pub(super) struct Keda {
    proxy: Option<SocketAddr>,
    external: ExternalMetrics,
    objects: HashMap<NsName, Scaled>,
    answers: mpsc::UnboundedSender<Answers>,
}

impl Keda {
    pub(super) fn new(
        proxy: Option<SocketAddr>,
        external: ExternalMetrics,
    ) -> (Self, mpsc::UnboundedReceiver<Answers>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let k = Self {
            proxy,
            external,
            objects: HashMap::new(),
            answers: tx,
        };
        (k, rx)
    }
}

impl queue::Reconciler for Keda {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        install_crd(api);
        keys_of(api, "keda.sh/v1alpha1", "ScaledObject")
    }

    fn keys(&mut self, _: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "keda.sh", "scaledobjects") {
            let key = (ev.namespace.clone(), ev.name.clone());
            if ev.type_ == EventType::Deleted {
                self.objects.remove(&key);
                self.external.forget(&key.0, &key.1);
            } else {
                out.push(key);
            }
        } else if is(&ev.key, "autoscaling", "horizontalpodautoscalers")
            && ev.type_ == EventType::Deleted
            && let Some(so) = ev
                .object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(SCALED_OBJECT_LABEL))
                .and_then(Value::as_str)
        {
            out.push((ev.namespace.clone(), so.to_string()));
        }
    }

    fn reconcile(&mut self, api: &Api, key: &NsName) -> Option<Duration> {
        let info = res(api, "keda.sh/v1alpha1", "ScaledObject")?;
        let so = api.store.get(&info.storage_key(), &key.0, &key.1)?;
        if deleting(&so) {
            return None;
        }
        let mut st = self.objects.remove(key).unwrap_or_default();
        let wait = self.sync(api, &info, &so, &mut st);
        self.objects.insert(key.clone(), st);
        wait
    }
}

impl queue::Inputs for Keda {
    type Input = Answers;

    fn input(&mut self, _: &Api, a: Answers, out: &mut Vec<NsName>) {
        if let Some(st) = self.objects.get_mut(&a.key) {
            st.polling = false;
            st.answers = Some(a.values);
            out.push(a.key);
        }
    }
}

/// The ScaledObject CRD, as KEDA's chart installs it (schema left open).
fn install_crd(api: &Api) {
    let Some(crds) = res(api, "apiextensions.k8s.io/v1", "CustomResourceDefinition") else {
        return;
    };
    let name = "scaledobjects.keda.sh";
    if api.store.get(&crds.storage_key(), "", name).is_some() {
        return;
    }
    let col = |n: &str, path: &str| json!({"name": n, "type": "string", "jsonPath": path});
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "keda-operator", "app.kubernetes.io/version": KEDA_VERSION}},
        "spec": {
            "group": "keda.sh", "scope": "Namespaced",
            "names": {"kind": "ScaledObject", "listKind": "ScaledObjectList", "plural": "scaledobjects", "singular": "scaledobject", "shortNames": ["so"]},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "additionalPrinterColumns": [
                    col("ScaleTargetKind", ".status.scaleTargetKind"),
                    col("ScaleTargetName", ".spec.scaleTargetRef.name"),
                    {"name": "Min", "type": "integer", "jsonPath": ".spec.minReplicaCount"},
                    {"name": "Max", "type": "integer", "jsonPath": ".spec.maxReplicaCount"},
                    col("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
                    col("Active", ".status.conditions[?(@.type==\"Active\")].status"),
                    col("Fallback", ".status.conditions[?(@.type==\"Fallback\")].status"),
                    col("Paused", ".status.conditions[?(@.type==\"Paused\")].status"),
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    });
    match api.create(&crds, "", crd, &opts(MANAGER)) {
        Ok(o) => crate::crd::sync(&api.registry, &api.store, &o.object, false),
        Err(e) => log_err("scaledobject crd", Err::<(), _>(e)),
    }
}

/// One prometheus trigger.
#[derive(Debug, Clone)]
struct Trigger {
    metric: String,
    server: String,
    query: String,
    threshold: String,
    activation: f64,
    ignore_null: bool,
    value_target: bool,
}

/// The triggers of a ScaledObject, or why they cannot be evaluated.
fn triggers(so: &Value) -> Result<Vec<Trigger>, String> {
    let list = so
        .pointer("/spec/triggers")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "no triggers defined in the ScaledObject/ScaledJob".to_string())?;
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let type_ = t["type"].as_str().unwrap_or_default();
            if type_ != "prometheus" {
                return Err(format!(
                    "trigger type \"{type_}\" is not simulated by localkube (prometheus triggers are)"
                ));
            }
            let md = &t["metadata"];
            let s = |k: &str| md[k].as_str().unwrap_or_default().to_string();
            let threshold = s("threshold");
            if threshold.parse::<f64>().is_err() {
                return Err(format!("error parsing prometheus metadata: invalid threshold \"{threshold}\""));
            }
            if s("serverAddress").is_empty() || s("query").is_empty() {
                return Err("error parsing prometheus metadata: serverAddress and query are required".into());
            }
            Ok(Trigger {
                metric: format!("s{i}-prometheus"),
                server: s("serverAddress"),
                query: s("query"),
                threshold,
                activation: s("activationThreshold").parse().unwrap_or(0.0),
                ignore_null: md["ignoreNullValues"].as_str() != Some("false"),
                value_target: t["metricType"].as_str() == Some("Value"),
            })
        })
        .collect()
}

/// The target's resource and object, or why it cannot be found.
fn target(api: &Api, so: &Value) -> Result<(std::sync::Arc<ResourceInfo>, Value), String> {
    let r = &so["spec"]["scaleTargetRef"];
    let api_version = r["apiVersion"].as_str().unwrap_or("apps/v1");
    let kind = r["kind"].as_str().unwrap_or("Deployment");
    let name = r["name"].as_str().unwrap_or_default();
    let info = res(api, api_version, kind)
        .ok_or_else(|| format!("no matches for kind \"{kind}\" in version \"{api_version}\""))?;
    let o = api
        .store
        .get(&info.storage_key(), util::namespace(so), name)
        .ok_or_else(|| format!("{}.{} \"{name}\" not found", info.plural, info.group))?;
    Ok((info, o))
}

fn int(v: &Value, default: i64) -> i64 {
    v.as_i64().unwrap_or(default)
}

/// Sets a KEDA condition (no timestamps, as KEDA's conditions have none).
fn set_condition(status: &mut Value, type_: &str, st: &str, reason: &str, message: &str) {
    let conds = util::obj_at(status, &[])
        .entry("conditions")
        .or_insert_with(|| {
            json!(
                ["Ready", "Active", "Fallback", "Paused"]
                    .iter()
                    .map(|t| json!({"type": t, "status": "Unknown"}))
                    .collect::<Vec<_>>()
            )
        });
    if let Some(list) = conds.as_array_mut() {
        let c = json!({"type": type_, "status": st, "reason": reason, "message": message});
        match list.iter_mut().find(|c| c["type"] == type_) {
            Some(slot) => *slot = c,
            None => list.push(c),
        }
    }
}

fn condition_is(status: &Value, type_: &str, st: &str) -> bool {
    status["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_ && c["status"] == st))
}

impl Keda {
    /// Reconciles one ScaledObject; when to look again.
    fn sync(
        &mut self,
        api: &Api,
        info: &ResourceInfo,
        so: &Value,
        st: &mut Scaled,
    ) -> Option<Duration> {
        let prev = so.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut status = prev.clone();
        let result = self.drive(api, so, st, &mut status);
        if status != prev {
            let mut n = so.clone();
            n["status"] = status;
            log_err(
                "scaledobject status",
                api.update(
                    info,
                    util::namespace(so),
                    util::name(so),
                    n,
                    "status",
                    &opts(MANAGER),
                ),
            );
        }
        result
    }

    fn drive(
        &mut self,
        api: &Api,
        so: &Value,
        st: &mut Scaled,
        status: &mut Value,
    ) -> Option<Duration> {
        let (tinfo, target_obj) = match target(api, so) {
            Ok(t) => t,
            Err(e) => {
                set_condition(
                    status,
                    "Ready",
                    "False",
                    "ScaledObjectCheckFailed",
                    "ScaledObject doesn't have correct scaleTargetRef specification",
                );
                record_repeated_event(
                    api,
                    so,
                    "Warning",
                    "ScaledObjectCheckFailed",
                    &format!("Target resource doesn't exist: {e}"),
                    MANAGER,
                );
                return None;
            }
        };
        let (min, max) = (
            int(&so["spec"]["minReplicaCount"], 0),
            int(&so["spec"]["maxReplicaCount"], 100),
        );
        if min > max {
            set_condition(
                status,
                "Ready",
                "False",
                "ScaledObjectCheckFailed",
                "ScaledObject doesn't have correct Idle/Min/Max Replica Counts specification",
            );
            return None;
        }
        let trig = match triggers(so) {
            Ok(t) => t,
            Err(e) => {
                set_condition(status, "Ready", "False", "ScaledObjectCheckFailed", &e);
                return None;
            }
        };
        let kind = tinfo.kind.clone();
        status["scaleTargetKind"] = json!(format!("{}.{kind}", tinfo.api_version()));
        status["scaleTargetGVKR"] = json!({"group": tinfo.group, "kind": kind, "resource": tinfo.plural, "version": tinfo.version});
        if status.get("originalReplicaCount").is_none() {
            status["originalReplicaCount"] = json!(int(&target_obj["spec"]["replicas"], 1));
        }
        status["externalMetricNames"] =
            json!(trig.iter().map(|t| t.metric.clone()).collect::<Vec<_>>());
        if self.paused(api, so, &tinfo, &target_obj, status) {
            return None;
        }
        let hpa_name = self.ensure_hpa(api, so, &trig, min, max);
        status["hpaName"] = json!(hpa_name);
        set_condition(
            status,
            "Ready",
            "True",
            "ScaledObjectReady",
            "ScaledObject is defined correctly and is ready for scaling",
        );
        if !condition_is(status, "Fallback", "False") {
            set_condition(
                status,
                "Fallback",
                "False",
                "NoFallbackFound",
                "No fallbacks are active on this ScaledObject",
            );
        }
        if !st.announced {
            st.announced = true;
            record_event(
                api,
                so,
                "Normal",
                "ScaledObjectReady",
                "ScaledObject is ready for scaling",
                MANAGER,
            );
        }
        if let Some(answers) = st.answers.take() {
            self.act(api, so, st, status, (&tinfo, &target_obj), &answers, min);
        }
        self.poll(so, st, &trig)
    }

    /// Applies the pause annotations; true while paused.
    fn paused(
        &self,
        api: &Api,
        so: &Value,
        tinfo: &ResourceInfo,
        target_obj: &Value,
        status: &mut Value,
    ) -> bool {
        let replicas = annotation(so, PAUSED_REPLICAS).and_then(|v| v.trim().parse::<i64>().ok());
        let paused = replicas.is_some() || annotation(so, PAUSED) == Some("true");
        if !paused {
            if condition_is(status, "Paused", "True") {
                set_condition(
                    status,
                    "Paused",
                    "False",
                    "ScaledObjectUnpaused",
                    "pause annotation removed for ScaledObject",
                );
                record_event(
                    api,
                    so,
                    "Normal",
                    "ScaledObjectUnpaused",
                    "ScaledObject is unpaused",
                    MANAGER,
                );
            } else if !condition_is(status, "Paused", "False") {
                set_condition(
                    status,
                    "Paused",
                    "False",
                    "ScaledObjectUnpaused",
                    "ScaledObject is not paused",
                );
            }
            if let Some(m) = status.as_object_mut() {
                m.remove("pausedReplicaCount");
            }
            return false;
        }
        self.delete_hpa(api, so);
        if let Some(n) = replicas {
            status["pausedReplicaCount"] = json!(n);
            scale(api, so, tinfo, target_obj, n, None);
        }
        if !condition_is(status, "Paused", "True") {
            set_condition(
                status,
                "Paused",
                "True",
                "ScaledObjectPaused",
                "ScaledObject is paused",
            );
            record_event(
                api,
                so,
                "Normal",
                "ScaledObjectPaused",
                "ScaledObject is paused",
                MANAGER,
            );
        }
        true
    }

    fn hpa_name(so: &Value) -> String {
        so.pointer("/spec/advanced/horizontalPodAutoscalerConfig/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .unwrap_or_else(|| format!("keda-hpa-{}", util::name(so)))
    }

    /// The HPA KEDA keeps for a ScaledObject, created or brought back in line; its name.
    fn ensure_hpa(&self, api: &Api, so: &Value, trig: &[Trigger], min: i64, max: i64) -> String {
        let name = Self::hpa_name(so);
        let Some(info) = res(api, "autoscaling/v2", "HorizontalPodAutoscaler") else {
            return name;
        };
        let so_name = util::name(so);
        let r = &so["spec"]["scaleTargetRef"];
        let metrics: Vec<Value> = trig
            .iter()
            .map(|t| {
                let target = if t.value_target {
                    json!({"type": "Value", "value": t.threshold})
                } else {
                    json!({"type": "AverageValue", "averageValue": t.threshold})
                };
                json!({"type": "External", "external": {
                    "metric": {"name": t.metric, "selector": {"matchLabels": {SCALED_OBJECT_LABEL: so_name}}},
                    "target": target,
                }})
            })
            .collect();
        let mut spec = json!({
            "scaleTargetRef": {"apiVersion": r["apiVersion"].as_str().unwrap_or("apps/v1"), "kind": r["kind"].as_str().unwrap_or("Deployment"), "name": r["name"]},
            "minReplicas": min.max(1),
            "maxReplicas": max,
            "metrics": metrics,
        });
        if let Some(b) = so.pointer("/spec/advanced/horizontalPodAutoscalerConfig/behavior") {
            spec["behavior"] = b.clone();
        }
        let mut labels = so
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        for (k, v) in [
            ("app.kubernetes.io/managed-by", "keda-operator"),
            ("app.kubernetes.io/name", name.as_str()),
            ("app.kubernetes.io/part-of", so_name),
            ("app.kubernetes.io/version", KEDA_VERSION),
            (SCALED_OBJECT_LABEL, so_name),
        ] {
            labels[k] = json!(v);
        }
        let ns = util::namespace(so);
        match api.store.get(&info.storage_key(), ns, &name) {
            None => {
                let hpa = json!({
                    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner_ref(so)]},
                    "spec": spec,
                });
                log_err("keda hpa", api.create(&info, ns, hpa, &opts(MANAGER)));
            }
            Some(cur) if cur["spec"] != spec || cur["metadata"]["labels"] != labels => {
                let mut n = cur.clone();
                n["spec"] = spec;
                n["metadata"]["labels"] = labels;
                log_err(
                    "keda hpa",
                    api.update(&info, ns, &name, n, "", &opts(MANAGER)),
                );
            }
            Some(_) => {}
        }
        name
    }

    /// Removes the HPA KEDA made for this ScaledObject (never someone else's).
    fn delete_hpa(&self, api: &Api, so: &Value) {
        let Some(info) = res(api, "autoscaling/v2", "HorizontalPodAutoscaler") else {
            return;
        };
        let (ns, name) = (util::namespace(so), Self::hpa_name(so));
        let ours = api
            .store
            .get(&info.storage_key(), ns, &name)
            .is_some_and(|h| {
                h.pointer("/metadata/labels")
                    .and_then(|l| l.get(SCALED_OBJECT_LABEL))
                    .and_then(Value::as_str)
                    == Some(util::name(so))
            });
        if ours {
            log_err(
                "keda hpa delete",
                api.delete(&info, ns, &name, &DeleteOptions::default()),
            );
        }
    }

    /// Starts a poll when one is due; when to look again.
    fn poll(&self, so: &Value, st: &mut Scaled, trig: &[Trigger]) -> Option<Duration> {
        let every = Duration::from_secs(int(&so["spec"]["pollingInterval"], 30).max(1) as u64);
        let now = Instant::now();
        if st.polling {
            return Some(every);
        }
        if let Some(at) = st.next_poll
            && now < at
        {
            return Some(at - now);
        }
        st.polling = true;
        st.next_poll = Some(now + every);
        let (proxy, tx, trig) = (self.proxy, self.answers.clone(), trig.to_vec());
        let key = (util::namespace(so).to_string(), util::name(so).to_string());
        tokio::spawn(async move {
            let mut values = Vec::new();
            for t in &trig {
                values.push((t.metric.clone(), query(proxy, t).await));
            }
            let _ = tx.send(Answers { key, values });
        });
        Some(every)
    }

    /// Takes a poll's answers: the external metrics, activation, health and conditions.
    #[allow(clippy::too_many_arguments)]
    fn act(
        &self,
        api: &Api,
        so: &Value,
        st: &mut Scaled,
        status: &mut Value,
        target: (&ResourceInfo, &Value),
        answers: &[(String, Result<f64, String>)],
        min: i64,
    ) {
        let (ns, name) = (util::namespace(so), util::name(so));
        let trig = triggers(so).unwrap_or_default();
        let mut active = false;
        let mut health = serde_json::Map::new();
        for (metric, v) in answers {
            self.external.set(ns, metric, name, v.clone());
            let failures = st.failures.entry(metric.clone()).or_default();
            match v {
                Ok(x) => {
                    *failures = 0;
                    let activation = trig
                        .iter()
                        .find(|t| &t.metric == metric)
                        .map_or(0.0, |t| t.activation);
                    active |= *x > activation;
                }
                Err(e) => {
                    *failures += 1;
                    record_repeated_event(api, so, "Warning", "KEDAScalerFailed", e, MANAGER);
                }
            }
            let state = if *failures == 0 { "Happy" } else { "Failing" };
            health.insert(
                metric.clone(),
                json!({"numberOfFailures": *failures, "status": state}),
            );
        }
        status["health"] = Value::Object(health);
        let now = Instant::now();
        let (tinfo, target_obj) = target;
        let current = int(&target_obj["spec"]["replicas"], 1);
        let cooldown = Duration::from_secs(int(&so["spec"]["cooldownPeriod"], 300).max(0) as u64);
        if active {
            st.last_active = Some(now);
            status["lastActiveTime"] = json!(util::now());
            if current == 0 {
                scale(
                    api,
                    so,
                    tinfo,
                    target_obj,
                    min.max(1),
                    Some("KEDAScaleTargetActivated"),
                );
            }
            set_condition(
                status,
                "Active",
                "True",
                "ScalerActive",
                "Scaling is performed because triggers are active",
            );
        } else {
            set_condition(
                status,
                "Active",
                "False",
                "ScalerNotActive",
                "Scaling is not performed because triggers are not active",
            );
            let cooled = st.last_active.is_none_or(|t| now >= t + cooldown);
            if min == 0 && current > 0 && cooled {
                scale(
                    api,
                    so,
                    tinfo,
                    target_obj,
                    0,
                    Some("KEDAScaleTargetDeactivated"),
                );
            } else if current < min {
                scale(api, so, tinfo, target_obj, min, None);
            }
        }
    }
}

/// Sets the target's replicas (with KEDA's event when it (de)activates it).
fn scale(api: &Api, so: &Value, tinfo: &ResourceInfo, target: &Value, n: i64, event: Option<&str>) {
    let current = int(&target["spec"]["replicas"], 1);
    if current == n {
        return;
    }
    let mut t = target.clone();
    t["spec"]["replicas"] = json!(n);
    let written = api.update(
        tinfo,
        util::namespace(target),
        util::name(target),
        t,
        "",
        &opts(MANAGER),
    );
    if written.is_ok()
        && let Some(reason) = event
    {
        let what = format!(
            "{}.{} {}/{}",
            tinfo.api_version(),
            tinfo.kind,
            util::namespace(target),
            util::name(target)
        );
        let msg = if n == 0 {
            format!("Deactivated {what} from {current} to 0")
        } else {
            format!("Scaled {what} from {current} to {n}, triggered by prometheusScaler")
        };
        record_event(api, so, "Normal", reason, &msg, MANAGER);
    }
}

/// Evaluates a trigger's query: the single value it returns (0 for none, unless null values
/// are not ignored).
async fn query(proxy: Option<SocketAddr>, t: &Trigger) -> Result<f64, String> {
    let base = t.server.trim_end_matches('/');
    let mut url = url::Url::parse(&format!("{base}/api/v1/query"))
        .map_err(|e| format!("invalid serverAddress \"{}\": {e}", t.server))?;
    let unix = chrono::Utc::now().timestamp();
    url.query_pairs_mut()
        .append_pair("query", &t.query)
        .append_pair("time", &unix.to_string());
    let req = http::Get {
        url: url.clone(),
        headers: vec![("Accept".into(), "application/json".into())],
        timeout: Duration::from_secs(3),
    };
    let (status, body) = http::get(proxy, &req).await.map_err(|e| e.describe(&url))?;
    let text = String::from_utf8_lossy(&body);
    if !(200..300).contains(&status) {
        return Err(format!(
            "prometheus query api returned error. status: {status} response: {text}"
        ));
    }
    parse_answer(&text, &t.query, t.ignore_null)
}

/// The value of a Prometheus instant-query answer, as KEDA's prometheus scaler reads it.
fn parse_answer(text: &str, query: &str, ignore_null: bool) -> Result<f64, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("invalid prometheus answer: {e}"))?;
    let data = &v["data"];
    let raw = if data["resultType"] == "scalar" {
        &data["result"][1]
    } else {
        let result = data["result"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        match result {
            [] if ignore_null => return Ok(0.0),
            [] => {
                return Err(format!(
                    "prometheus metrics 'prometheus' target may be lost, the result is empty (query {query})"
                ));
            }
            [one] => &one["value"][1],
            _ => {
                return Err(format!(
                    "prometheus query {query} returned multiple elements"
                ));
            }
        }
    };
    let s = raw.as_str().unwrap_or_default();
    let x: f64 = s
        .parse()
        .map_err(|_| format!("prometheus query {query} returned an invalid value \"{s}\""))?;
    if x.is_infinite() {
        return Err(format!("prometheus query {query} returned Inf"));
    }
    if x.is_nan() {
        return if ignore_null {
            Ok(0.0)
        } else {
            Err(format!("prometheus query {query} returned NaN"))
        };
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_answers_are_read_as_keda_reads_them() {
        let one = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42.5"]}]}}"#;
        assert_eq!(parse_answer(one, "q", true), Ok(42.5));
        let none = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(none, "q", true), Ok(0.0));
        assert!(parse_answer(none, "q", false).is_err());
        let two = r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert_eq!(
            parse_answer(two, "q", true),
            Err("prometheus query q returned multiple elements".into())
        );
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#;
        assert_eq!(parse_answer(scalar, "q", true), Ok(7.0));
        let nan =
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"NaN"]}]}}"#;
        assert_eq!(parse_answer(nan, "q", true), Ok(0.0));
    }

    #[test]
    fn triggers_name_their_metrics_and_refuse_what_is_not_simulated() {
        let so = json!({"spec": {"triggers": [
            {"type": "prometheus", "metadata": {"serverAddress": "http://prometheus:9090", "query": "up", "threshold": "5"}},
            {"type": "prometheus", "metricType": "Value", "metadata": {"serverAddress": "http://p:9090", "query": "up", "threshold": "2", "activationThreshold": "1"}},
        ]}});
        let t = triggers(&so).expect("prometheus triggers");
        assert_eq!(t[0].metric, "s0-prometheus");
        assert_eq!(t[1].metric, "s1-prometheus");
        assert!(t[1].value_target);
        assert_eq!(t[1].activation, 1.0);
        let cron = json!({"spec": {"triggers": [{"type": "cron", "metadata": {}}]}});
        assert_eq!(
            triggers(&cron).expect_err("not simulated"),
            "trigger type \"cron\" is not simulated by localkube (prometheus triggers are)"
        );
    }
}
