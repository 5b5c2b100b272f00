//! The HorizontalPodAutoscaler controller (autoscaling/v2): every sync period each HPA reads
//! its target's scale and its metrics ([`super::hpa_metrics`]), computes the desired count
//! ([`super::autoscaling`]), writes it to the target's `spec.replicas` (as
//! `kube-controller-manager`) and reports the status, conditions and events a cluster shows.
//!
//! A target scaled to zero is left alone (`ScalingActive=False`, `ScalingDisabled`), as when
//! Flagger parks a canary; a metric that cannot be read makes `ScalingActive=False` with the
//! controller's reason (`FailedGetResourceMetric`, `FailedGetExternalMetric`, ...).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::autoscaling::{self, Behavior, Bounds, Cond, History};
use super::hpa_metrics::{Computed, ExternalMetrics, Failed, Sources, Target};
use super::objects::{NsName, deleting, is, keys_of, log_err, opts, res};
use super::objects::{record_event, record_repeated_event};
use super::queue;
use super::usage::Rates;
use crate::api::Api;
use crate::dataplane::metrics::RequestMetrics;
use crate::registry::ResourceInfo;
use crate::selectors::LabelSelector;
use crate::store::{EventType, StoreEvent};
use crate::util;

/// The field manager of the HPA's writes (the controller runs in kube-controller-manager).
const MANAGER: &str = "kube-controller-manager";
/// The component its events come from.
const COMPONENT: &str = "horizontal-pod-autoscaler";

/// Settings of the controller (kube-controller-manager's flags).
#[derive(Debug, Clone)]
pub struct HpaConfig {
    /// `--horizontal-pod-autoscaler-sync-period` (15s).
    pub sync_period: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5m).
    pub downscale_stabilization: Duration,
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: f64,
}

impl Default for HpaConfig {
    fn default() -> Self {
        Self {
            sync_period: Duration::from_secs(15),
            downscale_stabilization: Duration::from_secs(300),
            tolerance: autoscaling::TOLERANCE,
        }
    }
}

/// The HPA controller, keyed by HPA (namespace, name); each one is synced once per period.
pub(super) struct Autoscalers {
    config: HpaConfig,
    requests: Option<Arc<RequestMetrics>>,
    external: ExternalMetrics,
    rates: Rates,
    history: HashMap<NsName, History>,
    last_sync: HashMap<NsName, Instant>,
}

impl Autoscalers {
    pub(super) fn new(
        config: HpaConfig,
        requests: Option<Arc<RequestMetrics>>,
        external: ExternalMetrics,
    ) -> Self {
        Self {
            config,
            requests,
            external,
            rates: Rates::default(),
            history: HashMap::new(),
            last_sync: HashMap::new(),
        }
    }
}

impl queue::Reconciler for Autoscalers {
    type Key = NsName;

    fn resync(&mut self, api: &Api) -> Vec<NsName> {
        keys_of(api, "autoscaling/v2", "HorizontalPodAutoscaler")
    }

    fn keys(&mut self, api: &Api, ev: &StoreEvent, out: &mut Vec<NsName>) {
        if is(&ev.key, "autoscaling", "horizontalpodautoscalers") {
            let key = (ev.namespace.clone(), ev.name.clone());
            if ev.type_ == EventType::Deleted {
                self.history.remove(&key);
                self.last_sync.remove(&key);
            } else {
                out.push(key);
            }
        } else if is(&ev.key, "", "pods") && ev.type_ == EventType::Deleted {
            let live = |u: &str| api.store.uid_exists(u);
            self.rates.retain(&live);
        }
    }

    fn reconcile(&mut self, api: &Api, key: &NsName) -> Option<Duration> {
        let info = res(api, "autoscaling/v2", "HorizontalPodAutoscaler")?;
        let hpa = api.store.get(&info.storage_key(), &key.0, &key.1)?;
        if deleting(&hpa) {
            return None;
        }
        let now = Instant::now();
        if let Some(last) = self.last_sync.get(key)
            && now < *last + self.config.sync_period
        {
            return Some(*last + self.config.sync_period - now);
        }
        self.last_sync.insert(key.clone(), now);
        self.sync(api, &info, &hpa, now);
        Some(self.config.sync_period)
    }
}

/// The target as its scale subresource shows it.
struct Scale {
    info: Arc<ResourceInfo>,
    object: Value,
    spec_path: String,
    target: Target,
}

/// The target's scale, or the condition message saying why it cannot be read.
fn read_scale(api: &Api, hpa: &Value) -> Result<Scale, String> {
    let ns = util::namespace(hpa);
    let r = &hpa["spec"]["scaleTargetRef"];
    let (api_version, kind, name) = (
        r["apiVersion"].as_str().unwrap_or_default(),
        r["kind"].as_str().unwrap_or_default(),
        r["name"].as_str().unwrap_or_default(),
    );
    let (group, _) = crate::registry::split_api_version(api_version);
    let info = res(api, api_version, kind)
        .ok_or_else(|| format!("no matches for kind \"{kind}\" in group \"{group}\""))?;
    let Some(sc) = info.scale.clone() else {
        return Err(format!(
            "the server could not find the requested resource ({}/scale.{})",
            info.plural, info.group
        ));
    };
    let object = api
        .store
        .get(&info.storage_key(), ns, name)
        .ok_or_else(|| {
            let resource = match info.group.as_str() {
                "" => format!("{}/scale", info.plural),
                g => format!("{}/scale.{g}", info.plural),
            };
            format!("{resource} \"{name}\" not found")
        })?;
    let int_at = |p: &str, default: i64| {
        util::jsonpath(&object, p)
            .and_then(Value::as_i64)
            .unwrap_or(default)
    };
    let selector = match (&info.crd, &sc.label_selector_path) {
        (Some(_), Some(p)) => util::jsonpath(&object, p)
            .and_then(Value::as_str)
            .and_then(|s| LabelSelector::parse(s).ok())
            .unwrap_or_else(|| LabelSelector::from_object(&json!({}))),
        _ => LabelSelector::from_object(&object["spec"]["selector"]),
    };
    let target = Target {
        namespace: ns.to_string(),
        selector,
        current: i32::try_from(int_at(&sc.spec_replicas_path, 1)).unwrap_or(i32::MAX),
        status_replicas: i32::try_from(int_at(&sc.status_replicas_path, 0)).unwrap_or(0),
    };
    Ok(Scale {
        info,
        object,
        spec_path: sc.spec_replicas_path,
        target,
    })
}

/// What one sync concluded.
struct Outcome {
    current: i32,
    desired: i32,
    metrics: Vec<Value>,
    conditions: Vec<(&'static str, bool, String, String)>,
    rescaled: bool,
}

impl Outcome {
    fn set(&mut self, type_: &'static str, status: bool, reason: &str, message: &str) {
        self.conditions.retain(|c| c.0 != type_);
        self.conditions
            .push((type_, status, reason.to_string(), message.to_string()));
    }

    fn set_cond(&mut self, type_: &'static str, c: &Cond) {
        self.set(type_, c.status, c.reason, c.message);
    }
}

impl Autoscalers {
    fn sync(&mut self, api: &Api, info: &ResourceInfo, hpa: &Value, now: Instant) {
        let key = (
            util::namespace(hpa).to_string(),
            util::name(hpa).to_string(),
        );
        let mut out = Outcome {
            current: hpa["status"]["currentReplicas"]
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
            desired: 0,
            metrics: Vec::new(),
            conditions: Vec::new(),
            rescaled: false,
        };
        let scale = match read_scale(api, hpa) {
            Ok(s) => s,
            Err(e) => {
                let msg =
                    format!("the HPA controller was unable to get the target's current scale: {e}");
                out.set("AbleToScale", false, "FailedGetScale", &msg);
                record_repeated_event(api, hpa, "Warning", "FailedGetScale", &e, COMPONENT);
                write_status(api, info, hpa, &out);
                return;
            }
        };
        out.set(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let spec = &hpa["spec"];
        let current = scale.target.current;
        out.current = current;
        let min = spec["minReplicas"].as_i64().unwrap_or(1) as i32;
        let max = spec["maxReplicas"].as_i64().unwrap_or(1) as i32;
        let (desired, reason) = if current == 0 && min != 0 {
            out.set(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            (0, String::new())
        } else if current > max {
            (
                max,
                "Current number of replicas above Spec.MaxReplicas".into(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".into(),
            )
        } else {
            match self.desired_from_metrics(api, hpa, &scale, &mut out, now) {
                Some(d) => d,
                None => {
                    write_status(api, info, hpa, &out);
                    return;
                }
            }
        };
        out.desired = desired;
        if desired != current {
            self.rescale(api, hpa, &scale, (desired, &reason), &mut out);
            if out.rescaled {
                self.history
                    .entry(key)
                    .or_default()
                    .rescaled(now, current, desired);
            }
        }
        write_status(api, info, hpa, &out);
    }

    /// The desired count from the metrics and the rescale reason; `None` when no count could
    /// be computed (the conditions and events say why).
    fn desired_from_metrics(
        &mut self,
        api: &Api,
        hpa: &Value,
        scale: &Scale,
        out: &mut Outcome,
        now: Instant,
    ) -> Option<(i32, String)> {
        let spec = &hpa["spec"];
        let default_metric = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]);
        let metrics = spec["metrics"]
            .as_array()
            .filter(|m| !m.is_empty())
            .cloned()
            .or_else(|| default_metric.as_array().cloned())
            .unwrap_or_default();
        let mut sources = Sources {
            api,
            requests: self.requests.as_deref(),
            rates: &mut self.rates,
            external: &self.external,
            now,
            tolerance: self.config.tolerance,
        };
        let mut best: Option<Computed> = None;
        let mut invalid: Vec<Failed> = Vec::new();
        for m in &metrics {
            match sources.compute(m, &scale.target) {
                Ok(c) => {
                    out.metrics.push(c.status.clone());
                    if best
                        .as_ref()
                        .is_none_or(|b| c.proposal.replicas > b.proposal.replicas)
                    {
                        best = Some(c);
                    }
                }
                Err(f) => {
                    // The status keeps one entry per metric, empty for one not read.
                    out.metrics.push(json!({"type": ""}));
                    invalid.push(f);
                }
            }
        }
        let current = scale.target.current;
        let scale_down = best.as_ref().is_some_and(|b| b.proposal.replicas < current);
        if let Some(first) = invalid.first()
            && (best.is_none() || scale_down)
        {
            let msg = format!(
                "the HPA was unable to compute the replica count: {}",
                first.message
            );
            out.set("ScalingActive", false, first.reason, &msg);
            for f in &invalid {
                record_repeated_event(api, hpa, "Warning", f.reason, &f.message, COMPONENT);
            }
            let err = format!(
                "invalid metrics ({} invalid out of {}), first error is: {}",
                invalid.len(),
                metrics.len(),
                first.message
            );
            record_repeated_event(
                api,
                hpa,
                "Warning",
                "FailedComputeMetricsReplicas",
                &err,
                COMPONENT,
            );
            return None;
        }
        let best = best?;
        out.set(
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!(
                "the HPA was able to successfully calculate a replica count from {}",
                best.name
            ),
        );
        let key = (
            util::namespace(hpa).to_string(),
            util::name(hpa).to_string(),
        );
        let down_window = self.config.downscale_stabilization;
        let behavior = Behavior::of(spec, down_window);
        let bounds = Bounds {
            current,
            min: spec["minReplicas"].as_i64().unwrap_or(1) as i32,
            max: spec["maxReplicas"].as_i64().unwrap_or(1) as i32,
        };
        let history = self.history.entry(key).or_default();
        let d = autoscaling::normalize(
            history,
            now,
            best.proposal.replicas,
            bounds,
            behavior.as_ref(),
            down_window,
        );
        out.set_cond("AbleToScale", &d.able);
        out.set_cond("ScalingLimited", &d.limited);
        let reason = if d.desired > current {
            format!("{} above target", best.name)
        } else {
            "All metrics below target".to_string()
        };
        Some((d.desired, reason))
    }

    /// Writes the target's new replica count (`to`: the count and the reason).
    fn rescale(&self, api: &Api, hpa: &Value, scale: &Scale, to: (i32, &str), out: &mut Outcome) {
        let (desired, reason) = to;
        let mut o = scale.object.clone();
        set_path(&mut o, &scale.spec_path, json!(desired));
        let written = api.update(
            &scale.info,
            util::namespace(&o),
            util::name(&o),
            o.clone(),
            "",
            &opts(MANAGER),
        );
        match written {
            Ok(_) => {
                out.rescaled = true;
                out.set(
                    "AbleToScale",
                    true,
                    "SucceededRescale",
                    &format!("the HPA controller was able to update the target scale to {desired}"),
                );
                let msg = format!("New size: {desired}; reason: {reason}");
                record_event(api, hpa, "Normal", "SuccessfulRescale", &msg, COMPONENT);
            }
            Err(e) => {
                out.set(
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    &format!("the HPA controller was unable to update the target scale: {e}"),
                );
                let msg = format!("New size: {desired}; reason: {reason}; error: {e}");
                record_repeated_event(api, hpa, "Warning", "FailedRescale", &msg, COMPONENT);
            }
        }
    }
}

/// Sets `.a.b` in an object.
fn set_path(o: &mut Value, path: &str, v: Value) {
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    if let Some((last, parents)) = parts.split_last() {
        util::obj_at(o, parents).insert(last.to_string(), v);
    }
}

/// Writes the status: replica counts, current metrics, conditions (each keeping its
/// `lastTransitionTime` while its status holds), `lastScaleTime` after a rescale.
fn write_status(api: &Api, info: &ResourceInfo, hpa: &Value, out: &Outcome) {
    let Some(cur) = api
        .store
        .get(&info.storage_key(), util::namespace(hpa), util::name(hpa))
    else {
        return;
    };
    let prev = cur.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut status = json!({
        "currentReplicas": out.current,
        "desiredReplicas": out.desired,
    });
    if let Some(g) = cur.pointer("/metadata/generation") {
        status["observedGeneration"] = g.clone();
    }
    if !out.metrics.is_empty() {
        status["currentMetrics"] = json!(out.metrics);
    }
    match (&prev["lastScaleTime"], out.rescaled) {
        (_, true) => status["lastScaleTime"] = json!(util::now()),
        (Value::String(t), false) => status["lastScaleTime"] = json!(t),
        _ => {}
    }
    let old = prev["conditions"].as_array().cloned().unwrap_or_default();
    let mut conditions: Vec<Value> = Vec::new();
    for type_ in ["AbleToScale", "ScalingActive", "ScalingLimited"] {
        let fresh = out.conditions.iter().find(|c| c.0 == type_);
        let before = old.iter().find(|c| c["type"] == type_);
        let c = match (fresh, before) {
            (Some((t, st, reason, message)), before) => {
                let st = if *st { "True" } else { "False" };
                let since = before
                    .filter(|b| b["status"] == st)
                    .map(|b| b["lastTransitionTime"].clone())
                    .unwrap_or_else(|| json!(util::now()));
                json!({"type": t, "status": st, "lastTransitionTime": since, "reason": reason, "message": message})
            }
            (None, Some(b)) => b.clone(),
            (None, None) => continue,
        };
        conditions.push(c);
    }
    status["conditions"] = json!(conditions);
    if prev == status {
        return;
    }
    let mut n = cur.clone();
    n["status"] = status;
    log_err(
        "hpa status",
        api.update(
            info,
            util::namespace(&cur),
            util::name(&cur),
            n,
            "status",
            &opts(MANAGER),
        ),
    );
}
