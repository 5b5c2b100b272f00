//! Prometheus service discovery of the simulated pods: the targets and meta labels Prometheus's
//! Kubernetes service discovery gives for its `pod` role, served in the format of Prometheus's
//! HTTP service discovery (`http_sd_configs`).
//!
//! Debian's Prometheus is built without `kubernetes_sd_configs`; with this, a scrape job from a
//! cluster (Flagger's `kubernetes-pods` job, say) runs with its `relabel_configs` unchanged:
//! only its discovery block becomes `http_sd_configs: [{url: <data plane>/sd/kubernetes/pods}]`
//! and `proxy_url` sends the scrapes through the data plane, which hands each one to its pod.
//!
//! As Kubernetes discovery does: a pod without an IP has no target; each container port of
//! each container (init containers included, marked) is a target `IP:PORT`, and a container
//! without ports is one target `IP`; every target carries the pod's labels
//! (`__meta_kubernetes_namespace`, `__meta_kubernetes_pod_name`, `_ip`, `_ready`, `_phase`,
//! `_node_name`, `_host_ip`, `_uid`, `_controller_kind`, `_controller_name`, `_label_<name>`
//! and `_labelpresent_<name>`, `_annotation_<name>` and `_annotationpresent_<name>`) and its
//! container's (`_container_name`, `_container_id`, `_container_image`, `_container_init`,
//! `_container_port_name`, `_container_port_number`, `_container_port_protocol`). Label names
//! are sanitized as Prometheus does (every character outside `[a-zA-Z0-9_]` becomes `_`).

use serde_json::{Map, Value, json};

use crate::Api;
use crate::util;

/// Where the data plane serves the pod targets (`?namespace=NS`, repeatable, keeps only those
/// namespaces, as `kubernetes_sd_configs`' `namespaces.names`).
pub const PODS_PATH: &str = "/sd/kubernetes/pods";

const META: &str = "__meta_kubernetes_";

/// A label name as Prometheus sanitizes it.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn s(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

/// `true`, `false` or `unknown`, from the pod's `Ready` condition.
fn ready(pod: &Value) -> &'static str {
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "true",
        Some("False") => "false",
        _ => "unknown",
    }
}

/// The pod-wide labels of one pod.
fn pod_labels(pod: &Value) -> Map<String, Value> {
    let mut l = Map::new();
    let mut put = |k: String, v: String| {
        l.insert(k, Value::String(v));
    };
    put(format!("{META}namespace"), util::namespace(pod).to_string());
    put(format!("{META}pod_name"), util::name(pod).to_string());
    put(format!("{META}pod_ip"), s(pod.pointer("/status/podIP")));
    put(format!("{META}pod_ready"), ready(pod).to_string());
    put(format!("{META}pod_phase"), s(pod.pointer("/status/phase")));
    put(
        format!("{META}pod_node_name"),
        s(pod.pointer("/spec/nodeName")),
    );
    put(
        format!("{META}pod_host_ip"),
        s(pod.pointer("/status/hostIP")),
    );
    put(format!("{META}pod_uid"), s(pod.pointer("/metadata/uid")));
    for (field, kind) in [("labels", "label"), ("annotations", "annotation")] {
        let map = pod
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object);
        for (k, v) in map.into_iter().flatten() {
            let name = sanitize(k);
            put(format!("{META}pod_{kind}_{name}"), s(Some(v)));
            put(format!("{META}pod_{kind}present_{name}"), "true".into());
        }
    }
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    if let Some(c) = owners
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == true)
    {
        for (label, key) in [("kind", "kind"), ("name", "name")] {
            let v = s(c.get(key));
            if !v.is_empty() {
                put(format!("{META}pod_controller_{label}"), v);
            }
        }
    }
    l
}

/// The ID of container `name` in the pod's `statuses` (`containerStatuses` or
/// `initContainerStatuses`).
fn container_id(pod: &Value, statuses: &str, name: &str) -> String {
    pod.pointer(&format!("/status/{statuses}"))
        .and_then(Value::as_array)
        .and_then(|ss| ss.iter().find(|c| c["name"] == name))
        .map(|c| s(c.get("containerID")))
        .unwrap_or_default()
}

/// The target groups of one pod: one per target, each with all its labels (the HTTP format
/// has no per-target labels).
fn pod_groups(pod: &Value) -> Vec<Value> {
    let ip = s(pod.pointer("/status/podIP"));
    if ip.is_empty() {
        return Vec::new();
    }
    let base = pod_labels(pod);
    let mut groups = Vec::new();
    for (list, statuses, init) in [
        ("containers", "containerStatuses", false),
        ("initContainers", "initContainerStatuses", true),
    ] {
        let containers = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array);
        for c in containers.into_iter().flatten() {
            let name = s(c.get("name"));
            let mut labels = base.clone();
            labels.insert(format!("{META}pod_container_name"), json!(name));
            labels.insert(
                format!("{META}pod_container_id"),
                json!(container_id(pod, statuses, &name)),
            );
            labels.insert(
                format!("{META}pod_container_image"),
                json!(s(c.get("image"))),
            );
            labels.insert(format!("{META}pod_container_init"), json!(init.to_string()));
            let ports = c.get("ports").and_then(Value::as_array);
            if ports.is_none_or(|p| p.is_empty()) {
                groups.push(json!({"targets": [ip], "labels": labels}));
                continue;
            }
            for p in ports.into_iter().flatten() {
                let number = p["containerPort"].as_u64().unwrap_or_default().to_string();
                let mut labels = labels.clone();
                labels.insert(format!("{META}pod_container_port_number"), json!(number));
                labels.insert(
                    format!("{META}pod_container_port_name"),
                    json!(s(p.get("name"))),
                );
                let protocol = p["protocol"].as_str().unwrap_or("TCP");
                labels.insert(
                    format!("{META}pod_container_port_protocol"),
                    json!(protocol),
                );
                groups.push(json!({"targets": [format!("{ip}:{number}")], "labels": labels}));
            }
        }
    }
    groups
}

/// The target groups of every pod (of `namespaces` when not empty).
pub fn pod_targets(api: &Api, namespaces: &[String]) -> Vec<Value> {
    let Ok(info) = api.resource("v1", "Pod") else {
        return Vec::new();
    };
    let (pods, _) = api.store.list_shared(&info.storage_key(), None);
    pods.iter()
        .filter(|p| namespaces.is_empty() || namespaces.iter().any(|n| n == util::namespace(p)))
        .flat_map(|p| pod_groups(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_labels_as_kubernetes_discovery_gives_them() {
        let pod = json!({
            "metadata": {
                "name": "podinfo-7d9f-abcde", "namespace": "test", "uid": "u1",
                "labels": {"app": "podinfo", "pod-template-hash": "7d9f"},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9797"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "podinfo-7d9f", "controller": true}],
            },
            "spec": {
                "nodeName": "localkube-node-0",
                "containers": [
                    {"name": "podinfod", "image": "podinfo:6", "ports": [
                        {"name": "http", "containerPort": 9898, "protocol": "TCP"},
                        {"name": "http-metrics", "containerPort": 9797},
                    ]},
                    {"name": "sidecar", "image": "envoy"},
                ],
            },
            "status": {
                "podIP": "10.244.0.7", "hostIP": "172.18.0.2", "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "podinfod", "containerID": "containerd://abc"}],
            },
        });
        let groups = pod_groups(&pod);
        let targets: Vec<&str> = groups
            .iter()
            .filter_map(|g| g["targets"][0].as_str())
            .collect();
        assert_eq!(
            targets,
            ["10.244.0.7:9898", "10.244.0.7:9797", "10.244.0.7"]
        );
        let l = &groups[1]["labels"];
        for (k, v) in [
            ("namespace", "test"),
            ("pod_name", "podinfo-7d9f-abcde"),
            ("pod_ip", "10.244.0.7"),
            ("pod_ready", "true"),
            ("pod_phase", "Running"),
            ("pod_node_name", "localkube-node-0"),
            ("pod_host_ip", "172.18.0.2"),
            ("pod_uid", "u1"),
            ("pod_controller_kind", "ReplicaSet"),
            ("pod_controller_name", "podinfo-7d9f"),
            ("pod_label_app", "podinfo"),
            ("pod_label_pod_template_hash", "7d9f"),
            ("pod_labelpresent_app", "true"),
            ("pod_annotation_prometheus_io_scrape", "true"),
            ("pod_annotation_prometheus_io_port", "9797"),
            ("pod_annotationpresent_prometheus_io_port", "true"),
            ("pod_container_name", "podinfod"),
            ("pod_container_id", "containerd://abc"),
            ("pod_container_image", "podinfo:6"),
            ("pod_container_init", "false"),
            ("pod_container_port_name", "http-metrics"),
            ("pod_container_port_number", "9797"),
            ("pod_container_port_protocol", "TCP"),
        ] {
            assert_eq!(l[format!("{META}{k}")], v, "{k}");
        }
        assert_eq!(
            groups[2]["labels"][format!("{META}pod_container_name")],
            "sidecar"
        );
        assert!(groups[2]["labels"][format!("{META}pod_container_port_number")].is_null());
        // No IP yet: no target.
        let mut pending = pod.clone();
        pending["status"]["podIP"] = json!(null);
        assert!(pod_groups(&pending).is_empty());
    }
}
