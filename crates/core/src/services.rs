//! The apex, `-primary` and `-canary` Services a canary needs (reference §3.4), as desired
//! objects, and [`plan`]: what to write to make a live Service so, decided from what was
//! observed (the live Service and its managedFields, who else writes it, whether the target
//! and the primary serve).
//!
//! A Service the canary created is server-side applied whole. A Service someone else made (an
//! apex that existed before the Canary, or one handed back by an earlier Canary) is taken over
//! as Flagger's update does: its selector and ports are replaced (an apply could not remove a
//! port another manager owns), the annotations that keep Flux and Helm off it are added, and
//! what it was is recorded once so that it can be given back. Another writer changing it again
//! is a fight ([`crate::conflict`]): put back, or after too many reversions left to that writer,
//! in which case the target keeps serving when the Service routes to its pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use flagger_api::labels::{
    FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED, ORIGINAL_SERVICE, TOOLKIT_MARKER,
};

use crate::conflict::{self, ConflictReport, FightLog, FightPolicy, Verdict};
use crate::converge;
use crate::model::ValidatedCanary;

/// Which of the three Services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceRole {
    /// `<apex>`: what clients call; selects the primary pods.
    Apex,
    /// `<apex>-primary`: selects the primary pods.
    Primary,
    /// `<apex>-canary`: selects the target (canary) pods.
    Canary,
}

impl ServiceRole {
    /// The Service name for a canary.
    pub fn name(self, canary: &ValidatedCanary) -> String {
        match self {
            Self::Apex => canary.apex.clone(),
            Self::Primary => canary.primary_service(),
            Self::Canary => canary.canary_service(),
        }
    }
}

/// The extra ports port discovery adds: every container port of the target's containers but
/// the main one, skipping mesh sidecars.
pub fn discovered_ports(canary: &ValidatedCanary, pod: &PodSpec) -> Vec<ServicePort> {
    let svc = &canary.service;
    let mut ports = Vec::new();
    for c in &pod.containers {
        if c.name == "istio-proxy" || c.name == "envoy" {
            continue;
        }
        for (i, p) in c.ports.iter().flatten().enumerate() {
            let is_main = match &svc.target_port {
                Some(IntOrString::Int(n)) => p.container_port == *n,
                Some(IntOrString::String(name)) => p.name.as_deref() == Some(name.as_str()),
                None => p.container_port == svc.port,
            };
            if is_main {
                continue;
            }
            ports.push(ServicePort {
                name: Some(
                    p.name
                        .clone()
                        .unwrap_or_else(|| format!("tcp-{}-{i}", c.name)),
                ),
                protocol: Some("TCP".into()),
                port: p.container_port,
                target_port: Some(IntOrString::Int(p.container_port)),
                ..Default::default()
            });
        }
    }
    ports
}

/// The desired Service. `selector` is the selector label and the target's value for it;
/// `extra_ports` come from [`discovered_ports`] when `portDiscovery` is on.
pub fn desired_service(
    canary: &ValidatedCanary,
    role: ServiceRole,
    selector: (&str, &str),
    extra_ports: &[ServicePort],
) -> Service {
    let svc = &canary.service;
    let name = role.name(canary);
    let (label, value) = selector;
    let selector_value = match role {
        ServiceRole::Canary => value.to_string(),
        ServiceRole::Apex | ServiceRole::Primary => format!("{value}-primary"),
    };
    let metadata = match role {
        ServiceRole::Apex => svc.apex.as_ref(),
        ServiceRole::Primary => svc.primary.as_ref(),
        ServiceRole::Canary => svc.canary.as_ref(),
    };
    let mut labels: BTreeMap<String, String> =
        metadata.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(label.to_string(), name.clone());
    let mut annotations: BTreeMap<String, String> = metadata
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    for (k, v) in [FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED] {
        annotations.insert(k.to_string(), v.to_string());
    }
    let mut ports = vec![ServicePort {
        name: Some(svc.port_name.clone().unwrap_or_else(|| "http".into())),
        protocol: Some("TCP".into()),
        port: svc.port,
        target_port: Some(
            svc.target_port
                .clone()
                .unwrap_or(IntOrString::Int(svc.port)),
        ),
        app_protocol: svc.app_protocol.clone(),
        ..Default::default()
    }];
    if svc.port_discovery.unwrap_or(false) {
        ports.extend(extra_ports.iter().cloned());
    }
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(canary.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: svc.headless.unwrap_or(false).then(|| "None".to_string()),
            selector: Some(BTreeMap::from([(label.to_string(), selector_value)])),
            ports: Some(ports),
            traffic_distribution: svc.traffic_distribution.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

/// What the plan for one Service works from.
#[derive(Clone, Debug)]
pub struct ServiceObservation<'a> {
    pub role: ServiceRole,
    /// The Service the canary wants ([`desired_service`]).
    pub desired: &'a Service,
    /// The Service as it is, with its managedFields.
    pub live: Option<&'a Service>,
    /// `service.unmanagedMetadata`: keys whose live values an owned Service keeps.
    pub unmanaged: Option<&'a flagger_api::UnmanagedMetadata>,
    /// The live Service is controlled by this Canary (owner reference).
    pub owned: bool,
    /// The owner reference to the Canary that generated Services carry.
    pub owner: Option<&'a OwnerReference>,
    /// The controller's field manager.
    pub manager: &'a str,
    /// The labels of the target's pods.
    pub target_pod_labels: &'a BTreeMap<String, String>,
    /// The target has ready pods.
    pub target_serving: bool,
    /// The primary is ready.
    pub primary_ready: bool,
    pub now: Timestamp,
    pub policy: FightPolicy,
}

/// How to write a Service.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceWrite {
    /// Server-side apply of this document (a Service the canary owns).
    Apply(Value),
    /// An update of the whole Service (taken over from another writer): selector and ports
    /// replaced, with the resourceVersion it was read at.
    Replace(Box<Service>),
}

/// What to do about one Service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePlan {
    pub write: Option<ServiceWrite>,
    /// Another writer's change, and the verdict on it.
    pub conflict: Option<ConflictReport>,
    /// The Service is left to another writer and routes to the target's pods: the target
    /// must keep serving.
    pub keep_target_serving: bool,
    /// The Service routes to the target's pods and the primary is not ready yet: it is
    /// switched once the primary serves.
    pub waiting_for_primary: bool,
}

/// Decides what to write to one Service, and records fights in `log`. Once the apex Service
/// was left to another writer, the target keeps serving (until the Service is deleted or the
/// controller restarts), whether the Service routes to it right now or was put back while the
/// target had no ready pods.
pub fn plan(o: &ServiceObservation<'_>, log: &mut FightLog) -> ServicePlan {
    let mut plan = plan_write(o, log);
    let object = format!(
        "Service/{}",
        o.desired.metadata.name.as_deref().unwrap_or_default()
    );
    plan.keep_target_serving =
        o.role == ServiceRole::Apex && o.live.is_some() && log.yielded_to(&object).is_some();
    plan
}

fn plan_write(o: &ServiceObservation<'_>, log: &mut FightLog) -> ServicePlan {
    let name = o.desired.metadata.name.clone().unwrap_or_default();
    let object = format!("Service/{name}");
    let Some(live) = o.live else {
        // Created afresh: any fight over an earlier incarnation is over.
        log.settle(&object);
        let mut desired = o.desired.clone();
        desired.metadata.owner_references = o.owner.map(|r| vec![r.clone()]);
        return ServicePlan {
            write: Some(ServiceWrite::Apply(to_json(&desired))),
            ..Default::default()
        };
    };
    let (write, wanted) = if o.owned {
        let mut desired = o.desired.clone();
        desired.metadata.owner_references = o.owner.map(|r| vec![r.clone()]);
        keep_unmanaged(o.unmanaged, &mut desired.metadata, &live.metadata);
        if let Some(spec) = desired.spec.as_mut() {
            // `clusterIP` is immutable: left out, so that the apply neither changes it nor
            // drops it from our managed fields. `trafficDistribution` is mutable and follows
            // the spec (Flagger sets it at creation only; a change in the Canary is applied).
            spec.cluster_ip = None;
        }
        let doc = to_json(&desired);
        (ServiceWrite::Apply(doc.clone()), doc)
    } else {
        let (taken, wanted) = take_over(live, o.desired, o.manager);
        (ServiceWrite::Replace(Box::new(taken)), wanted)
    };
    let live_json = to_json(live);
    if converge::holds(&live_json, &wanted) {
        // Reversions age out of their window on their own; a yield lasts until the object is
        // deleted or the controller restarts.
        return ServicePlan::default();
    }
    let apex = o.role == ServiceRole::Apex;
    let selects_target = selects(live, o.target_pod_labels);
    // Leaving the apex Service to a writer that points it at the target is only safe once the
    // target serves; until then it is put back.
    let hold_for_target = apex && selects_target && !o.target_serving;
    let managed = live.metadata.managed_fields.as_deref().unwrap_or_default();
    let contested = conflict::contenders_since_ours(
        managed,
        o.manager,
        &conflict::differences(&live_json, &wanted),
    );
    let mut plan = ServicePlan::default();
    if let Some(first) = contested.first() {
        if log.yielded_to(&object).is_some() {
            // Yielded earlier and still held by the other writer: leave it, unless traffic
            // would reach no ready pod.
            if !hold_for_target {
                return plan;
            }
        } else {
            let verdict = log.observe(&object, &first.manager, o.now, o.policy);
            let yielded = matches!(verdict, Verdict::Yield { .. });
            plan.conflict = Some(ConflictReport {
                object,
                kind: "Service".into(),
                name,
                apex,
                contender: first.clone(),
                verdict,
                selects_target,
            });
            if yielded && !hold_for_target {
                return plan;
            }
        }
    }
    // A Service that sends traffic to the target's pods (taken over, or handed back by an
    // uninstall) is switched to the primary only once the primary serves.
    if apex && selects_target && !o.primary_ready {
        plan.waiting_for_primary = true;
        return plan;
    }
    plan.write = Some(write);
    plan
}

/// The Service taken over from another writer (its selector and ports replaced, the toolkit
/// annotations added, what it was recorded once), and what of it the canary holds (for the
/// convergence check).
fn take_over(live: &Service, desired: &Service, manager: &str) -> (Service, Value) {
    let spec = desired.spec.clone().unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = desired
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.contains(TOOLKIT_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // What the Service was before the controller took it over, recorded once, so that it can
    // be given back exactly.
    let taken_over_before = live
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|m| m.manager.as_deref() == Some(manager));
    let recorded = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ORIGINAL_SERVICE))
        .cloned();
    let original = recorded.or_else(|| {
        (!taken_over_before).then(|| {
            let was = live.spec.clone().unwrap_or_default();
            json!({"selector": was.selector, "ports": was.ports}).to_string()
        })
    });
    if let Some(original) = original {
        annotations.insert(ORIGINAL_SERVICE.into(), original);
    }
    let wanted = json!({
        "metadata": {"annotations": annotations},
        "spec": {"selector": spec.selector, "ports": spec.ports},
    });
    let mut taken = live.clone();
    taken.metadata.managed_fields = None;
    taken
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .extend(annotations);
    let live_spec = taken.spec.get_or_insert_with(Default::default);
    live_spec.selector = spec.selector;
    live_spec.ports = spec.ports;
    taken.status = None;
    (taken, wanted)
}

/// `service.unmanagedMetadata`: keys other controllers own. As Flagger does, a Service is
/// created with the spec's values for them, and afterwards keeps the values it has (written
/// back as they are, so that no apply takes them away).
fn keep_unmanaged(
    unmanaged: Option<&flagger_api::UnmanagedMetadata>,
    desired: &mut ObjectMeta,
    live: &ObjectMeta,
) {
    let Some(unmanaged) = unmanaged else { return };
    let keep = |keys: &Option<Vec<String>>,
                desired: &mut Option<BTreeMap<String, String>>,
                live: &Option<BTreeMap<String, String>>| {
        for key in keys.iter().flatten() {
            if let Some(value) = live.as_ref().and_then(|l| l.get(key)) {
                desired
                    .get_or_insert_with(Default::default)
                    .insert(key.clone(), value.clone());
            }
        }
    };
    keep(&unmanaged.labels, &mut desired.labels, &live.labels);
    keep(
        &unmanaged.annotations,
        &mut desired.annotations,
        &live.annotations,
    );
}

/// Whether a Service's selector selects pods with `labels`.
pub fn selects(svc: &Service, labels: &BTreeMap<String, String>) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{ValidationContext, validate};
    use serde_json::json;

    fn canary(service: serde_json::Value) -> ValidatedCanary {
        let wire: flagger_api::Canary = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": "kubernetes",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": service,
                "analysis": {"interval": "1m", "threshold": 1, "iterations": 1}
            }
        }))
        .expect("canary");
        validate(&wire, &ValidationContext::default())
            .expect("valid")
            .canary
    }

    #[test]
    fn three_services_with_flaggers_selectors_labels_and_annotations() {
        let c = canary(json!({"port": 9898, "apex": {"labels": {"tier": "web"}}}));
        let apex = serde_json::to_value(desired_service(
            &c,
            ServiceRole::Apex,
            ("app", "podinfo"),
            &[],
        ))
        .expect("json");
        assert_eq!(apex["metadata"]["name"], "podinfo");
        assert_eq!(apex["spec"]["selector"], json!({"app": "podinfo-primary"}));
        assert_eq!(
            apex["metadata"]["labels"],
            json!({"app": "podinfo", "tier": "web"})
        );
        assert_eq!(
            apex["metadata"]["annotations"],
            json!({"helm.toolkit.fluxcd.io/driftDetection": "disabled", "kustomize.toolkit.fluxcd.io/reconcile": "disabled"})
        );
        assert_eq!(
            apex["spec"]["ports"],
            json!([{"name": "http", "port": 9898, "protocol": "TCP", "targetPort": 9898}])
        );
        let canary_svc = serde_json::to_value(desired_service(
            &c,
            ServiceRole::Canary,
            ("app", "podinfo"),
            &[],
        ))
        .expect("json");
        assert_eq!(canary_svc["metadata"]["name"], "podinfo-canary");
        assert_eq!(canary_svc["spec"]["selector"], json!({"app": "podinfo"}));
        assert_eq!(
            canary_svc["metadata"]["labels"],
            json!({"app": "podinfo-canary"})
        );
    }

    #[test]
    fn port_discovery_adds_container_ports_but_the_main_one_and_sidecars() {
        let c = canary(
            json!({"port": 80, "targetPort": "http", "portDiscovery": true, "headless": true}),
        );
        let pod: PodSpec = serde_json::from_value(json!({"containers": [
            {"name": "app", "ports": [{"name": "http", "containerPort": 9898}, {"containerPort": 9797}, {"name": "grpc", "containerPort": 9999}]},
            {"name": "istio-proxy", "ports": [{"containerPort": 15090}]}
        ]}))
        .expect("pod");
        let extra = discovered_ports(&c, &pod);
        let svc = serde_json::to_value(desired_service(
            &c,
            ServiceRole::Primary,
            ("app", "podinfo"),
            &extra,
        ))
        .expect("json");
        assert_eq!(svc["spec"]["clusterIP"], "None");
        assert_eq!(
            svc["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                {"name": "tcp-app-1", "port": 9797, "protocol": "TCP", "targetPort": 9797},
                {"name": "grpc", "port": 9999, "protocol": "TCP", "targetPort": 9999}
            ])
        );
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("timestamp")
    }

    fn managed(entries: serde_json::Value) -> serde_json::Value {
        entries
    }

    /// A Service `podinfo-svc` as `kubectl apply` made it (port `http: 9898`), with extra
    /// managedFields entries.
    fn kubectl_service(selector: &str, entries: serde_json::Value) -> Service {
        let mut fields = vec![json!({
            "manager": "kubectl-client-side-apply", "operation": "Update",
            "time": "2023-11-14T22:13:20Z",
            "fieldsV1": {"f:spec": {"f:ports": {"k:{\"port\":9898,\"protocol\":\"TCP\"}": {}}, "f:selector": {"f:app": {}}}}
        })];
        fields.extend(entries.as_array().cloned().unwrap_or_default());
        serde_json::from_value(json!({
            "metadata": {"name": "podinfo-svc", "namespace": "test", "resourceVersion": "7", "managedFields": fields},
            "spec": {"selector": {"app": selector}, "ports": [{"name": "http", "port": 9898, "targetPort": 9898, "protocol": "TCP"}], "clusterIP": "10.0.0.9"}
        }))
        .expect("service")
    }

    struct Case {
        c: ValidatedCanary,
        desired: Service,
        pods: BTreeMap<String, String>,
    }

    fn case() -> Case {
        let c = canary(json!({"name": "podinfo-svc", "port": 80, "targetPort": 9898}));
        let desired = desired_service(&c, ServiceRole::Apex, ("app", "podinfo"), &[]);
        Case {
            c,
            desired,
            pods: BTreeMap::from([("app".to_string(), "podinfo".to_string())]),
        }
    }

    fn observe<'a>(
        k: &'a Case,
        live: Option<&'a Service>,
        target_serving: bool,
    ) -> ServiceObservation<'a> {
        ServiceObservation {
            role: ServiceRole::Apex,
            desired: &k.desired,
            live,
            unmanaged: k.c.service.unmanaged_metadata.as_ref(),
            owned: false,
            owner: None,
            manager: "flagger",
            target_pod_labels: &k.pods,
            target_serving,
            primary_ready: true,
            now: at(100),
            policy: FightPolicy {
                max_reversions: 2,
                window: std::time::Duration::from_secs(600),
            },
        }
    }

    #[test]
    fn a_kubectl_service_is_taken_over_with_the_canarys_ports_only_and_no_fight() {
        let k = case();
        let live = kubectl_service("podinfo", json!([]));
        let mut log = FightLog::default();
        let plan = plan(&observe(&k, Some(&live), true), &mut log);
        assert_eq!(plan.conflict, None, "taking over is no fight");
        let Some(ServiceWrite::Replace(svc)) = plan.write else {
            panic!("a replace: {:?}", plan.write);
        };
        let v = serde_json::to_value(&svc).expect("json");
        assert_eq!(
            v["spec"]["ports"],
            json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9898}])
        );
        assert_eq!(v["spec"]["selector"], json!({"app": "podinfo-primary"}));
        assert_eq!(v["spec"]["clusterIP"], "10.0.0.9", "the rest is kept");
        assert_eq!(
            v["metadata"]["resourceVersion"], "7",
            "a conditional update"
        );
        assert!(v["metadata"]["managedFields"].is_null());
        let original: serde_json::Value = serde_json::from_str(
            v["metadata"]["annotations"][ORIGINAL_SERVICE]
                .as_str()
                .expect("original recorded"),
        )
        .expect("json");
        assert_eq!(original["ports"][0]["port"], 9898);
        assert_eq!(
            v["metadata"]["annotations"][FLUX_RECONCILE_DISABLED.0],
            FLUX_RECONCILE_DISABLED.1
        );
    }

    #[test]
    fn a_later_write_by_another_manager_is_a_fight_an_earlier_one_is_not() {
        let k = case();
        // Ours at 22:13:30, kubectl's at 22:13:20: the state taken over, then drifted by us.
        let ours = json!([{"manager": "flagger", "operation": "Update", "time": "2023-11-14T22:13:30Z",
            "fieldsV1": {"f:metadata": {"f:annotations": {}}}}]);
        let live = kubectl_service("podinfo", managed(ours));
        let mut log = FightLog::default();
        let plan_a = plan(&observe(&k, Some(&live), true), &mut log);
        assert_eq!(plan_a.conflict, None);
        assert!(matches!(plan_a.write, Some(ServiceWrite::Replace(_))));

        // Flux writes the selector after us: reverted, then left to it.
        let later = json!([{"manager": "flagger", "operation": "Update", "time": "2023-11-14T22:13:30Z",
            "fieldsV1": {"f:metadata": {"f:annotations": {}}}},
            {"manager": "kustomize-controller", "operation": "Apply", "time": "2023-11-14T22:14:00Z",
            "fieldsV1": {"f:spec": {"f:selector": {"f:app": {}}}}}]);
        let live = kubectl_service("podinfo", later);
        let first = plan(&observe(&k, Some(&live), true), &mut log);
        let report = first.conflict.expect("a fight");
        assert_eq!(report.contender.manager, "kustomize-controller");
        assert_eq!(report.verdict, Verdict::Revert { count: 1 });
        assert!(report.apex && report.selects_target);
        assert!(first.write.is_some(), "put back");
        plan(&observe(&k, Some(&live), true), &mut log);
        let third = plan(&observe(&k, Some(&live), true), &mut log);
        assert_eq!(
            third.conflict.expect("yield").verdict,
            Verdict::Yield { count: 2 }
        );
        assert!(third.write.is_none(), "left to Flux");
        assert!(third.keep_target_serving, "it routes to the target's pods");
        // Yielded: left alone, the target kept serving.
        let fourth = plan(&observe(&k, Some(&live), true), &mut log);
        assert!(fourth.write.is_none() && fourth.conflict.is_none() && fourth.keep_target_serving);
        // Unless the target has no ready pods: put back until it has.
        let held = plan(&observe(&k, Some(&live), false), &mut log);
        assert!(held.write.is_some() && held.keep_target_serving);
        // Put back, the Service still asks for the target to serve (its writer will be back).
        let back = kubectl_service("podinfo-primary", json!([]));
        let mut o = observe(&k, Some(&back), false);
        o.owned = false;
        assert!(plan(&o, &mut log).keep_target_serving);
    }

    #[test]
    fn a_service_routing_to_the_target_waits_for_the_primary() {
        let k = case();
        let live = kubectl_service("podinfo", json!([]));
        let mut log = FightLog::default();
        let mut o = observe(&k, Some(&live), true);
        o.primary_ready = false;
        let p = plan(&o, &mut log);
        assert!(p.waiting_for_primary && p.write.is_none());
    }

    #[test]
    fn an_owned_service_is_applied_whole_and_left_alone_once_as_desired() {
        let k = case();
        let mut log = FightLog::default();
        let created = plan(&observe(&k, None, true), &mut log);
        let Some(ServiceWrite::Apply(doc)) = created.write else {
            panic!("an apply: {:?}", created.write);
        };
        let live: Service = serde_json::from_value(doc).expect("service");
        let mut o = observe(&k, Some(&live), true);
        o.owned = true;
        assert_eq!(plan(&o, &mut log), ServicePlan::default());
    }

    #[test]
    fn unmanaged_keys_get_the_spec_value_at_creation_then_keep_the_live_one() {
        let c = canary(
            json!({"name": "podinfo-svc", "port": 80, "targetPort": 9898,
            "apex": {"labels": {"team": "payments", "tier": "web"}, "annotations": {"dns": "a.example.com"}},
            "unmanagedMetadata": {"labels": ["team"], "annotations": ["dns", "other"]}}),
        );
        let k = Case {
            desired: desired_service(&c, ServiceRole::Apex, ("app", "podinfo"), &[]),
            c,
            pods: BTreeMap::from([("app".to_string(), "podinfo".to_string())]),
        };
        let mut log = FightLog::default();
        let Some(ServiceWrite::Apply(created)) = plan(&observe(&k, None, true), &mut log).write
        else {
            panic!("created");
        };
        assert_eq!(created["metadata"]["labels"]["team"], "payments");
        assert_eq!(created["metadata"]["annotations"]["dns"], "a.example.com");
        // Another controller changes them (and sets `other`): an owned Service keeps its values
        // while the managed keys follow the spec.
        let mut live: Service = serde_json::from_value(created).expect("service");
        let labels = live.metadata.labels.get_or_insert_with(Default::default);
        labels.insert("team".into(), "search".into());
        labels.insert("tier".into(), "db".into());
        let annotations = live
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert("dns".into(), "b.example.com".into());
        annotations.insert("other".into(), "theirs".into());
        let mut o = observe(&k, Some(&live), true);
        o.owned = true;
        let Some(ServiceWrite::Apply(doc)) = plan(&o, &mut log).write else {
            panic!("the managed label is put back");
        };
        assert_eq!(doc["metadata"]["labels"]["tier"], "web");
        assert_eq!(doc["metadata"]["labels"]["team"], "search");
        assert_eq!(doc["metadata"]["annotations"]["dns"], "b.example.com");
        assert_eq!(doc["metadata"]["annotations"]["other"], "theirs");
    }

    #[test]
    fn a_traffic_distribution_changed_in_the_canary_is_applied_to_an_owned_service() {
        let service = |td: &str| json!({"name": "podinfo-svc", "port": 80, "targetPort": 9898, "trafficDistribution": td});
        let before = canary(service("PreferClose"));
        let live = desired_service(&before, ServiceRole::Apex, ("app", "podinfo"), &[]);
        let after = canary(service("PreferSameZone"));
        let k = Case {
            desired: desired_service(&after, ServiceRole::Apex, ("app", "podinfo"), &[]),
            c: after,
            pods: BTreeMap::from([("app".to_string(), "podinfo".to_string())]),
        };
        let mut o = observe(&k, Some(&live), true);
        o.owned = true;
        let mut log = FightLog::default();
        let Some(ServiceWrite::Apply(doc)) = plan(&o, &mut log).write else {
            panic!("the change is applied");
        };
        assert_eq!(doc["spec"]["trafficDistribution"], "PreferSameZone");
        assert!(doc["spec"]["clusterIP"].is_null(), "clusterIP is immutable");
    }
}
