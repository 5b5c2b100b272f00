//! Defaulting and validation applied on create and update, per resource: kube-apiserver's
//! defaulting functions (`SetDefaults_*` of each group's v1 package, and the admission plugins
//! that fill Pods), then [`crate::validation`].

use base64::Engine;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceInfo;
use crate::store::Store;
use crate::util;
use crate::validation::{self, FieldValidation};

fn is(info: &ResourceInfo, group: &str, plural: &str) -> bool {
    info.group == group && info.plural == plural
}

/// Before a create: initial status, built-in defaults, CRD schema validation.
pub fn prepare_create(
    store: &Store,
    info: &ResourceInfo,
    obj: &mut Value,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    if info.status
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    decode_builtin(info, obj)?;
    default_builtin(info, obj);
    if is(info, "", "pods") {
        default_pod_admission(obj);
    }
    if is(info, "", "namespaces") {
        obj["status"] = json!({"phase": "Active"});
        let name = util::name(obj).to_string();
        util::obj_at(obj, &["metadata", "labels"])
            .insert("kubernetes.io/metadata.name".into(), json!(name));
        // The namespace strategy keeps the finalizers given and adds `kubernetes`.
        let spec = util::obj_at(obj, &["spec"]);
        let fins = spec.entry("finalizers").or_insert_with(|| json!([]));
        if !fins.is_array() {
            *fins = json!([]);
        }
        if let Some(a) = fins.as_array_mut()
            && !a.iter().any(|f| f == "kubernetes")
        {
            a.push(json!("kubernetes"));
        }
    }
    if is(info, "", "pods") {
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    }
    if is(info, "", "services") {
        obj["status"] = json!({"loadBalancer": {}});
        allocate_node_ports(Some(store), info, obj);
        let spec = util::obj_at(obj, &["spec"]);
        let external_name = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
        if !external_name
            && spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            let n = uuid::Uuid::new_v4().as_u128();
            let ip = format!("10.96.{}.{}", (n >> 8) % 256, (n % 253) + 2);
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
    }
    if is(info, "apiextensions.k8s.io", "customresourcedefinitions") {
        crate::crd::validate_crd(obj)?;
        let names = obj
            .pointer("/spec/names")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let storage: Vec<Value> = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v["storage"] == json!(true))
                    .map(|v| v["name"].clone())
                    .collect()
            })
            .unwrap_or_default();
        let now = util::now();
        obj["status"] = json!({
            "acceptedNames": names,
            "storedVersions": storage,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
        });
    }
    validation::validate(info, None, obj, "")?;
    validate_custom(info, obj, fv)
}

/// NodePort and LoadBalancer Services: each port without a `nodePort` gets a free one in
/// 30000-32767, picked at random as kube-apiserver's allocator does.
///
/// `store` is `None` on updates, which run under the store lock: the store cannot be read
/// then, so only the Service's own ports are avoided (a clash with another Service is then
/// possible, at about one chance in 2,768 per Service).
fn allocate_node_ports(store: Option<&Store>, info: &ResourceInfo, obj: &mut Value) {
    let ty = obj.pointer("/spec/type").and_then(Value::as_str);
    if !matches!(ty, Some("NodePort") | Some("LoadBalancer")) {
        return;
    }
    let services = store
        .map(|st| st.list_shared(&info.storage_key(), None).0)
        .unwrap_or_default();
    let mut used: std::collections::HashSet<u64> = services
        .iter()
        .flat_map(|s| {
            s.pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["nodePort"].as_u64())
        .collect();
    if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        used.extend(ports.iter().filter_map(|p| p["nodePort"].as_u64()));
        for p in ports
            .iter_mut()
            .filter(|p| p["nodePort"].as_u64().is_none())
        {
            let start = (uuid::Uuid::new_v4().as_u128() % 2768) as u64;
            if let Some(port) = (0..2768)
                .map(|i| 30000 + (start + i) % 2768)
                .find(|n| !used.contains(n))
            {
                used.insert(port);
                p["nodePort"] = json!(port);
            }
        }
    }
}

/// Before an update (of subresource `sub`): defaults, fields the server keeps, validation of
/// the result against the stored object.
pub fn prepare_update(
    info: &ResourceInfo,
    cur: &Value,
    new: &mut Value,
    sub: &str,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    decode_builtin(info, new)?;
    default_builtin(info, new);
    if is(info, "", "services") {
        keep_cluster_ip_pair(cur, new);
        for k in ["clusterIP", "clusterIPs"] {
            if let Some(v) = cur.pointer(&format!("/spec/{k}"))
                && new
                    .pointer(&format!("/spec/{k}"))
                    .is_none_or(|x| x.is_null() || x == "")
            {
                util::obj_at(new, &["spec"]).insert(k.into(), v.clone());
            }
        }
        // Allocated node ports stay with their port (as kube-apiserver carries them over when
        // an update leaves them out); ports still without one get one.
        let old_ports = cur
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let node_ports = matches!(
            new.pointer("/spec/type").and_then(Value::as_str),
            Some("NodePort") | Some("LoadBalancer")
        );
        if let Some(ports) = new
            .pointer_mut("/spec/ports")
            .and_then(Value::as_array_mut)
            .filter(|_| node_ports)
        {
            for p in ports.iter_mut().filter(|p| p["nodePort"].is_null()) {
                if let Some(n) = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                    .map(|o| o["nodePort"].clone())
                    .filter(|n| !n.is_null())
                {
                    p["nodePort"] = n;
                }
            }
        }
        allocate_node_ports(None, info, new);
    }
    if is(info, "", "namespaces")
        && let Some(s) = cur.get("spec")
    {
        new["spec"] = s.clone();
    }
    if is(info, "apiextensions.k8s.io", "customresourcedefinitions") {
        crate::crd::validate_crd(new)?;
    }
    validation::validate(info, Some(cur), new, sub)?;
    validate_custom(info, new, fv)
}

/// A `clusterIP` changed without `clusterIPs` moves `clusterIPs[0]` with it (as the Service
/// strategy normalizes the pair), so the change is then judged on `clusterIPs`.
fn keep_cluster_ip_pair(cur: &Value, new: &mut Value) {
    let ip = new.pointer("/spec/clusterIP").and_then(Value::as_str);
    let old_ip = cur.pointer("/spec/clusterIP").and_then(Value::as_str);
    let ips_unchanged = new
        .pointer("/spec/clusterIPs")
        .is_none_or(|v| v.is_null() || Some(v) == cur.pointer("/spec/clusterIPs"));
    if let Some(ip) = ip.filter(|ip| !ip.is_empty() && Some(*ip) != old_ip)
        && ips_unchanged
    {
        let ip = ip.to_string();
        util::obj_at(new, &["spec"]).insert("clusterIPs".into(), json!([ip]));
    }
}

/// What kube-apiserver's decoder does before defaulting: a Secret's `stringData` is folded
/// into `data` (base64) and never stored; `data` must be base64.
fn decode_builtin(info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    if !is(info, "", "secrets") {
        return Ok(());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(data) = obj.get("data").and_then(Value::as_object) {
        for v in data.values() {
            let text = v.as_str().unwrap_or_default();
            if let Err(e) = b64.decode(text) {
                let at = match e {
                    base64::DecodeError::InvalidByte(i, _)
                    | base64::DecodeError::InvalidLastSymbol(i, _) => i,
                    _ => text.len() / 4 * 4,
                };
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {at}"
                )));
            }
        }
    }
    let Some(string_data) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return Ok(());
    };
    if let Some(sd) = string_data.as_object() {
        let data = util::obj_at(obj, &["data"]);
        for (k, v) in sd {
            data.insert(k.clone(), json!(b64.encode(v.as_str().unwrap_or_default())));
        }
    }
    Ok(())
}

fn validate_custom(
    info: &ResourceInfo,
    obj: &mut Value,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    let Some(crd) = &info.crd else {
        return Ok(Vec::new());
    };
    let Some(schema) = &crd.schema else {
        return Ok(Vec::new());
    };
    crate::crd::validate_object(info, schema, obj, fv)
}

/// `SetDefaults_Probe` and its handler's (`httpGet` path `/` and scheme `HTTP`).
fn default_probe(p: &mut Value) {
    let Some(m) = p.as_object_mut() else { return };
    for (k, d) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        if m.get(k).is_none_or(|v| v.is_null() || v == 0) {
            m.insert(k.into(), json!(d));
        }
    }
    if let Some(h) = m.get_mut("httpGet").and_then(Value::as_object_mut) {
        if h.get("path")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            h.insert("path".into(), json!("/"));
        }
        h.entry("scheme").or_insert_with(|| json!("HTTP"));
    }
}

/// `SetDefaults_Container` and what it holds: pull policy, termination message, ports,
/// probes, `fieldRef` API versions.
fn default_container(c: &mut serde_json::Map<String, Value>) {
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // The tag is after the last ':' of the last path element; a digest pins the image too.
    let last = image.rsplit('/').next().unwrap_or_default();
    let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
    c.entry("imagePullPolicy")
        .or_insert_with(|| json!(if latest { "Always" } else { "IfNotPresent" }));
    c.entry("terminationMessagePath")
        .or_insert_with(|| json!("/dev/termination-log"));
    c.entry("terminationMessagePolicy")
        .or_insert_with(|| json!("File"));
    c.entry("resources").or_insert_with(|| json!({}));
    if let Some(ps) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ps.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("protocol").or_insert_with(|| json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            default_probe(p);
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut() {
            if let Some(f) = e
                .pointer_mut("/valueFrom/fieldRef")
                .and_then(Value::as_object_mut)
            {
                f.entry("apiVersion").or_insert_with(|| json!("v1"));
            }
        }
    }
}

/// `SetDefaults_Volume` and the sources' file modes (0644).
fn default_volume(v: &mut serde_json::Map<String, Value>) {
    const SOURCES: &[&str] = &[
        "hostPath",
        "emptyDir",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "persistentVolumeClaim",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "downwardAPI",
        "fc",
        "azureFile",
        "configMap",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "projected",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "csi",
        "ephemeral",
        "image",
    ];
    if !SOURCES.iter().any(|s| v.contains_key(*s)) {
        v.insert("emptyDir".into(), json!({}));
    }
    for src in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(m) = v.get_mut(src).and_then(Value::as_object_mut) {
            m.entry("defaultMode").or_insert_with(|| json!(420));
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        h.entry("type").or_insert_with(|| json!(""));
    }
}

/// `SetDefaults_PodSpec` (pods and pod templates alike).
fn default_pod_spec(spec: &mut Value) {
    let Some(s) = spec.as_object_mut() else {
        return;
    };
    s.entry("restartPolicy").or_insert_with(|| json!("Always"));
    s.entry("dnsPolicy")
        .or_insert_with(|| json!("ClusterFirst"));
    s.entry("schedulerName")
        .or_insert_with(|| json!("default-scheduler"));
    s.entry("terminationGracePeriodSeconds")
        .or_insert_with(|| json!(30));
    s.entry("securityContext").or_insert_with(|| json!({}));
    for field in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(field).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c);
            }
        }
    }
    if let Some(vs) = s.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vs.iter_mut().filter_map(Value::as_object_mut) {
            default_volume(v);
        }
    }
}

/// What a Pod (not a template) gets besides: `SetDefaults_Pod` (service links, requests from
/// limits) and the admission plugins every cluster runs (ServiceAccount, Priority,
/// DefaultTolerationSeconds).
fn default_pod_admission(pod: &mut Value) {
    let Some(s) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    s.entry("enableServiceLinks").or_insert_with(|| json!(true));
    let sa = s
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    s.insert("serviceAccountName".into(), json!(sa));
    s.insert("serviceAccount".into(), json!(sa));
    s.entry("priority").or_insert_with(|| json!(0));
    s.entry("preemptionPolicy")
        .or_insert_with(|| json!("PreemptLowerPriority"));
    let tolerations = s.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(ts) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let has = ts
                .iter()
                .any(|t| t["key"] == key && (t["effect"] == "NoExecute" || t["effect"].is_null()));
            if !has {
                ts.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    for field in ["containers", "initContainers"] {
        for c in s
            .get_mut(field)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(limits) = c.pointer("/resources/limits").cloned() else {
                continue;
            };
            let Some(lm) = limits.as_object() else {
                continue;
            };
            let req = util::obj_at(c, &["resources", "requests"]);
            for (k, v) in lm {
                req.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

/// `SetDefaults_HorizontalPodAutoscaler` (autoscaling/v2): one replica at least, CPU at 80%
/// when no metric is given, and the default scaling rules filled in a given `behavior`.
fn default_hpa(obj: &mut Value) {
    let spec = util::obj_at(obj, &["spec"]);
    spec.entry("minReplicas").or_insert_with(|| json!(1));
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    let Some(b) = spec.get_mut("behavior").and_then(Value::as_object_mut) else {
        return;
    };
    let up = b.entry("scaleUp").or_insert_with(|| json!({}));
    if let Some(u) = up.as_object_mut() {
        u.entry("stabilizationWindowSeconds")
            .or_insert_with(|| json!(0));
        u.entry("selectPolicy").or_insert_with(|| json!("Max"));
        u.entry("policies").or_insert_with(|| {
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])
        });
    }
    let down = b.entry("scaleDown").or_insert_with(|| json!({}));
    if let Some(d) = down.as_object_mut() {
        d.entry("selectPolicy").or_insert_with(|| json!("Max"));
        d.entry("policies")
            .or_insert_with(|| json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]));
    }
}

/// A Service's defaults: type, session affinity, ports, IP families and traffic policies.
fn default_service(obj: &mut Value) {
    let spec = util::obj_at(obj, &["spec"]);
    spec.entry("type").or_insert_with(|| json!("ClusterIP"));
    spec.entry("sessionAffinity")
        .or_insert_with(|| json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(ps) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ps.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("protocol").or_insert_with(|| json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                p.entry("targetPort").or_insert(port);
            }
        }
    }
    if ty == "ExternalName" {
        return;
    }
    spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
    spec.entry("ipFamilyPolicy")
        .or_insert_with(|| json!("SingleStack"));
    spec.entry("internalTrafficPolicy")
        .or_insert_with(|| json!("Cluster"));
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        spec.entry("externalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        spec.entry("allocateLoadBalancerNodePorts")
            .or_insert_with(|| json!(true));
    }
}

/// A rolling update's `maxUnavailable` and `maxSurge`, each defaulted on its own.
fn default_rolling_update(strategy: &mut Value, max_unavailable: Value, max_surge: Value) {
    if strategy["type"] != "RollingUpdate" {
        return;
    }
    let ru = util::obj_at(strategy, &["rollingUpdate"]);
    ru.entry("maxUnavailable").or_insert(max_unavailable);
    ru.entry("maxSurge").or_insert(max_surge);
}

fn default_builtin(info: &ResourceInfo, obj: &mut Value) {
    if info.crd.is_some() {
        return;
    }
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
        }
        ("", "secrets") => {
            if let Some(m) = obj.as_object_mut() {
                m.entry("type").or_insert_with(|| json!("Opaque"));
            }
        }
        ("", "services") => default_service(obj),
        ("apps", "deployments") => {
            let spec = util::obj_at(obj, &["spec"]);
            spec.entry("replicas").or_insert_with(|| json!(1));
            spec.entry("revisionHistoryLimit")
                .or_insert_with(|| json!(10));
            spec.entry("progressDeadlineSeconds")
                .or_insert_with(|| json!(600));
            let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
            if strategy.get("type").is_none() {
                strategy["type"] = json!("RollingUpdate");
            }
            default_rolling_update(strategy, json!("25%"), json!("25%"));
        }
        ("apps", "daemonsets") => {
            let spec = util::obj_at(obj, &["spec"]);
            spec.entry("revisionHistoryLimit")
                .or_insert_with(|| json!(10));
            let us = spec.entry("updateStrategy").or_insert_with(|| json!({}));
            if us.get("type").is_none() {
                us["type"] = json!("RollingUpdate");
            }
            default_rolling_update(us, json!(1), json!(0));
        }
        ("apps", "statefulsets") => {
            let spec = util::obj_at(obj, &["spec"]);
            spec.entry("replicas").or_insert_with(|| json!(1));
            spec.entry("revisionHistoryLimit")
                .or_insert_with(|| json!(10));
            spec.entry("podManagementPolicy")
                .or_insert_with(|| json!("OrderedReady"));
            spec.entry("persistentVolumeClaimRetentionPolicy")
                .or_insert_with(|| json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
            let us = spec.entry("updateStrategy").or_insert_with(|| json!({}));
            if us.get("type").is_none() {
                us["type"] = json!("RollingUpdate");
            }
            if us["type"] == "RollingUpdate" {
                util::obj_at(us, &["rollingUpdate"])
                    .entry("partition")
                    .or_insert_with(|| json!(0));
            }
        }
        ("apps", "replicasets") => {
            util::obj_at(obj, &["spec"])
                .entry("replicas")
                .or_insert_with(|| json!(1));
        }
        ("autoscaling", "horizontalpodautoscalers") => default_hpa(obj),
        _ => {}
    }
    if info.group == "apps"
        && let Some(ps) = obj.pointer_mut("/spec/template/spec")
    {
        default_pod_spec(ps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::testing::info;

    fn defaulted(plural: &str, mut obj: Value) -> Value {
        default_builtin(&info(plural), &mut obj);
        obj
    }

    #[test]
    fn container_and_probe_defaults() {
        let d = defaulted(
            "deployments",
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                 "readinessProbe": {"httpGet": {"port": 9898}},
                 "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5},
                 "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
                {"name": "b", "image": "localhost:5000/busybox"},
                {"name": "c", "image": "nginx:latest"},
                {"name": "d", "image": "nginx@sha256:abc"}
            ], "volumes": [{"name": "v"}, {"name": "c", "configMap": {"name": "x"}}]}}}}),
        );
        let t = &d["spec"]["template"]["spec"];
        let c0 = &t["containers"][0];
        assert_eq!(c0["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            c0["readinessProbe"],
            json!({"httpGet": {"port": 9898, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c0["livenessProbe"]["periodSeconds"], 5);
        assert_eq!(c0["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c0["terminationMessagePolicy"], "File");
        assert_eq!(c0["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(t["containers"][1]["imagePullPolicy"], "Always");
        assert_eq!(t["containers"][2]["imagePullPolicy"], "Always");
        assert_eq!(t["containers"][3]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(t["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(t["volumes"][1]["configMap"]["defaultMode"], 420);
        for (k, v) in [
            ("restartPolicy", json!("Always")),
            ("dnsPolicy", json!("ClusterFirst")),
            ("schedulerName", json!("default-scheduler")),
            ("terminationGracePeriodSeconds", json!(30)),
            ("securityContext", json!({})),
        ] {
            assert_eq!(t[k], v, "{k}");
        }
        assert!(t.get("enableServiceLinks").is_none());
    }

    #[test]
    fn workload_defaults() {
        let d = defaulted(
            "deployments",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1}}}}),
        );
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}})
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let d = defaulted(
            "deployments",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let ds = defaulted("daemonsets", json!({"spec": {}}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        let ss = defaulted("statefulsets", json!({"spec": {}}));
        assert_eq!(
            ss["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(ss["spec"]["podManagementPolicy"], "OrderedReady");
        let rs = defaulted("replicasets", json!({"spec": {}}));
        assert_eq!(rs["spec"]["replicas"], 1);
    }

    #[test]
    fn service_defaults() {
        let s = defaulted("services", json!({"spec": {"ports": [{"port": 80}]}}));
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(s["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(s["spec"]["internalTrafficPolicy"], "Cluster");
        assert!(s["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(
            s["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        let s = defaulted(
            "services",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        );
        assert_eq!(s["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(s["spec"]["allocateLoadBalancerNodePorts"], true);
        let s = defaulted(
            "services",
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(s["spec"].get("ipFamilies").is_none());
    }

    #[test]
    fn hpa_defaults() {
        let h = defaulted(
            "horizontalpodautoscalers",
            json!({"spec": {"maxReplicas": 3}}),
        );
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert!(h["spec"].get("behavior").is_none());
        let h = defaulted(
            "horizontalpodautoscalers",
            json!({"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
        );
        assert_eq!(
            h["spec"]["behavior"]["scaleUp"]["policies"][0],
            json!({"type": "Pods", "value": 4, "periodSeconds": 15})
        );
        assert_eq!(
            h["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"],
            0
        );
        assert_eq!(
            h["spec"]["behavior"]["scaleDown"],
            json!({"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]})
        );
    }

    #[test]
    fn pod_admission_defaults() {
        let mut p = defaulted(
            "pods",
            json!({"spec": {"containers": [{"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "1"}}}]}}),
        );
        default_pod_admission(&mut p);
        assert_eq!(p["spec"]["enableServiceLinks"], true);
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        assert_eq!(p["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "1"
        );
    }

    /// One row per default docs/localkube.md lists: the object as written, where the default
    /// lands (a JSON pointer) and its value, after what a create applies (the group's
    /// `SetDefaults_*`, and for Pods the admission plugins).
    #[test]
    fn every_documented_default() {
        let c = json!({"name": "a", "image": "ghcr.io/stefanprodan/podinfo:6.5.0",
            "ports": [{"containerPort": 9898}],
            "readinessProbe": {"httpGet": {"port": 9898}},
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]});
        let pod = json!({"spec": {"containers": [c.clone()],
            "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "x"}}]}});
        let limited = json!({"spec": {"containers": [{"name": "a", "image": "x:1", "resources": {"limits": {"cpu": "1"}}}]}});
        let tmpl = |kind_spec: Value| {
            let mut v = kind_spec;
            v["spec"]["template"] = json!({"spec": {"containers": [c.clone()]}});
            v
        };
        let svc = json!({"spec": {"ports": [{"port": 80}]}});
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        let rows: Vec<(&str, &str, Value, &str, Value)> = vec![
            (
                "pod restartPolicy",
                "pods",
                pod.clone(),
                "/spec/restartPolicy",
                json!("Always"),
            ),
            (
                "pod dnsPolicy",
                "pods",
                pod.clone(),
                "/spec/dnsPolicy",
                json!("ClusterFirst"),
            ),
            (
                "pod schedulerName",
                "pods",
                pod.clone(),
                "/spec/schedulerName",
                json!("default-scheduler"),
            ),
            (
                "pod terminationGracePeriodSeconds",
                "pods",
                pod.clone(),
                "/spec/terminationGracePeriodSeconds",
                json!(30),
            ),
            (
                "pod securityContext",
                "pods",
                pod.clone(),
                "/spec/securityContext",
                json!({}),
            ),
            (
                "container imagePullPolicy (tag)",
                "pods",
                pod.clone(),
                "/spec/containers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
            (
                "container imagePullPolicy (no tag)",
                "pods",
                json!({"spec": {"containers": [{"name": "a", "image": "nginx"}]}}),
                "/spec/containers/0/imagePullPolicy",
                json!("Always"),
            ),
            (
                "container imagePullPolicy (:latest)",
                "pods",
                json!({"spec": {"containers": [{"name": "a", "image": "nginx:latest"}]}}),
                "/spec/containers/0/imagePullPolicy",
                json!("Always"),
            ),
            (
                "container imagePullPolicy (digest)",
                "pods",
                json!({"spec": {"containers": [{"name": "a", "image": "nginx@sha256:abc"}]}}),
                "/spec/containers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
            (
                "container terminationMessagePath",
                "pods",
                pod.clone(),
                "/spec/containers/0/terminationMessagePath",
                json!("/dev/termination-log"),
            ),
            (
                "container terminationMessagePolicy",
                "pods",
                pod.clone(),
                "/spec/containers/0/terminationMessagePolicy",
                json!("File"),
            ),
            (
                "container resources",
                "pods",
                pod.clone(),
                "/spec/containers/0/resources",
                json!({}),
            ),
            (
                "container port protocol",
                "pods",
                pod.clone(),
                "/spec/containers/0/ports/0/protocol",
                json!("TCP"),
            ),
            (
                "probe timeoutSeconds",
                "pods",
                pod.clone(),
                "/spec/containers/0/readinessProbe/timeoutSeconds",
                json!(1),
            ),
            (
                "probe periodSeconds",
                "pods",
                pod.clone(),
                "/spec/containers/0/readinessProbe/periodSeconds",
                json!(10),
            ),
            (
                "probe successThreshold",
                "pods",
                pod.clone(),
                "/spec/containers/0/readinessProbe/successThreshold",
                json!(1),
            ),
            (
                "probe failureThreshold",
                "pods",
                pod.clone(),
                "/spec/containers/0/readinessProbe/failureThreshold",
                json!(3),
            ),
            (
                "httpGet path",
                "pods",
                pod.clone(),
                "/spec/containers/0/readinessProbe/httpGet/path",
                json!("/"),
            ),
            (
                "httpGet scheme",
                "pods",
                pod.clone(),
                "/spec/containers/0/readinessProbe/httpGet/scheme",
                json!("HTTP"),
            ),
            (
                "fieldRef apiVersion",
                "pods",
                pod.clone(),
                "/spec/containers/0/env/0/valueFrom/fieldRef/apiVersion",
                json!("v1"),
            ),
            (
                "volume without a source is emptyDir",
                "pods",
                pod.clone(),
                "/spec/volumes/0/emptyDir",
                json!({}),
            ),
            (
                "volume defaultMode",
                "pods",
                pod.clone(),
                "/spec/volumes/1/configMap/defaultMode",
                json!(420),
            ),
            (
                "pod enableServiceLinks",
                "pods",
                pod.clone(),
                "/spec/enableServiceLinks",
                json!(true),
            ),
            (
                "pod requests from limits",
                "pods",
                limited,
                "/spec/containers/0/resources/requests",
                json!({"cpu": "1"}),
            ),
            (
                "pod serviceAccountName",
                "pods",
                pod.clone(),
                "/spec/serviceAccountName",
                json!("default"),
            ),
            (
                "pod serviceAccount",
                "pods",
                pod.clone(),
                "/spec/serviceAccount",
                json!("default"),
            ),
            (
                "pod priority",
                "pods",
                pod.clone(),
                "/spec/priority",
                json!(0),
            ),
            (
                "pod preemptionPolicy",
                "pods",
                pod.clone(),
                "/spec/preemptionPolicy",
                json!("PreemptLowerPriority"),
            ),
            (
                "pod tolerations",
                "pods",
                pod.clone(),
                "/spec/tolerations",
                json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
            ),
            (
                "template containers too",
                "deployments",
                tmpl(json!({"spec": {}})),
                "/spec/template/spec/containers/0/resources",
                json!({}),
            ),
            (
                "template has no Pod-only defaults",
                "deployments",
                tmpl(json!({"spec": {}})),
                "/spec/template/spec/priority",
                Value::Null,
            ),
            (
                "Service type",
                "services",
                svc.clone(),
                "/spec/type",
                json!("ClusterIP"),
            ),
            (
                "Service sessionAffinity",
                "services",
                svc.clone(),
                "/spec/sessionAffinity",
                json!("None"),
            ),
            (
                "Service port protocol",
                "services",
                svc.clone(),
                "/spec/ports/0/protocol",
                json!("TCP"),
            ),
            (
                "Service targetPort",
                "services",
                svc.clone(),
                "/spec/ports/0/targetPort",
                json!(80),
            ),
            (
                "Service ipFamilies",
                "services",
                svc.clone(),
                "/spec/ipFamilies",
                json!(["IPv4"]),
            ),
            (
                "Service ipFamilyPolicy",
                "services",
                svc.clone(),
                "/spec/ipFamilyPolicy",
                json!("SingleStack"),
            ),
            (
                "Service internalTrafficPolicy",
                "services",
                svc.clone(),
                "/spec/internalTrafficPolicy",
                json!("Cluster"),
            ),
            (
                "ClusterIP Service has no externalTrafficPolicy",
                "services",
                svc.clone(),
                "/spec/externalTrafficPolicy",
                Value::Null,
            ),
            (
                "LoadBalancer externalTrafficPolicy",
                "services",
                lb.clone(),
                "/spec/externalTrafficPolicy",
                json!("Cluster"),
            ),
            (
                "LoadBalancer allocateLoadBalancerNodePorts",
                "services",
                lb,
                "/spec/allocateLoadBalancerNodePorts",
                json!(true),
            ),
            (
                "Deployment replicas",
                "deployments",
                tmpl(json!({"spec": {}})),
                "/spec/replicas",
                json!(1),
            ),
            (
                "Deployment strategy",
                "deployments",
                tmpl(json!({"spec": {}})),
                "/spec/strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            ),
            (
                "Deployment maxUnavailable alone",
                "deployments",
                tmpl(json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 2}}}})),
                "/spec/strategy/rollingUpdate",
                json!({"maxSurge": 2, "maxUnavailable": "25%"}),
            ),
            (
                "Deployment revisionHistoryLimit",
                "deployments",
                tmpl(json!({"spec": {}})),
                "/spec/revisionHistoryLimit",
                json!(10),
            ),
            (
                "Deployment progressDeadlineSeconds",
                "deployments",
                tmpl(json!({"spec": {}})),
                "/spec/progressDeadlineSeconds",
                json!(600),
            ),
            (
                "DaemonSet updateStrategy",
                "daemonsets",
                tmpl(json!({"spec": {}})),
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            ),
            (
                "DaemonSet revisionHistoryLimit",
                "daemonsets",
                tmpl(json!({"spec": {}})),
                "/spec/revisionHistoryLimit",
                json!(10),
            ),
            (
                "StatefulSet replicas",
                "statefulsets",
                tmpl(json!({"spec": {}})),
                "/spec/replicas",
                json!(1),
            ),
            (
                "StatefulSet podManagementPolicy",
                "statefulsets",
                tmpl(json!({"spec": {}})),
                "/spec/podManagementPolicy",
                json!("OrderedReady"),
            ),
            (
                "StatefulSet updateStrategy",
                "statefulsets",
                tmpl(json!({"spec": {}})),
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            ),
            (
                "StatefulSet revisionHistoryLimit",
                "statefulsets",
                tmpl(json!({"spec": {}})),
                "/spec/revisionHistoryLimit",
                json!(10),
            ),
            (
                "StatefulSet PVC retention policy",
                "statefulsets",
                tmpl(json!({"spec": {}})),
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            ),
            (
                "ReplicaSet replicas",
                "replicasets",
                tmpl(json!({"spec": {}})),
                "/spec/replicas",
                json!(1),
            ),
            (
                "HPA minReplicas",
                "horizontalpodautoscalers",
                json!({"spec": {"maxReplicas": 3}}),
                "/spec/minReplicas",
                json!(1),
            ),
            (
                "HPA CPU metric",
                "horizontalpodautoscalers",
                json!({"spec": {"maxReplicas": 3}}),
                "/spec/metrics",
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            ),
            (
                "HPA behavior scaleUp",
                "horizontalpodautoscalers",
                json!({"spec": {"maxReplicas": 3, "behavior": {}}}),
                "/spec/behavior/scaleUp",
                json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}),
            ),
            (
                "HPA behavior scaleDown",
                "horizontalpodautoscalers",
                json!({"spec": {"maxReplicas": 3, "behavior": {}}}),
                "/spec/behavior/scaleDown",
                json!({"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}),
            ),
            (
                "Secret type",
                "secrets",
                json!({"data": {}}),
                "/type",
                json!("Opaque"),
            ),
        ];
        let mut wrong = Vec::new();
        for (name, plural, obj, pointer, want) in rows {
            let mut d = defaulted(plural, obj);
            if plural == "pods" {
                default_pod_admission(&mut d);
            }
            let got = d.pointer(pointer).cloned().unwrap_or(Value::Null);
            if got != want {
                wrong.push(format!("{name}: {pointer} is {got}, want {want}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn secrets_fold_string_data() {
        let mut s = json!({"type": "Opaque", "data": {"a": "eA=="}, "stringData": {"b": "hello"}});
        decode_builtin(&info("secrets"), &mut s).expect("decodes");
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"a": "eA==", "b": "aGVsbG8="}})
        );
        let mut s = json!({"data": {"a": "not base64!"}});
        let e = decode_builtin(&info("secrets"), &mut s).expect_err("bad base64");
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3"
        );
    }
}
