//! The apex, `-primary` and `-canary` Services a canary needs (reference §3.4), as desired
//! objects for server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use flagger_api::labels::{FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED};

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
}
