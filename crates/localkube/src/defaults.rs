//! Defaulting and validation applied on create and update, per resource.

use serde_json::{Value, json};

use crate::api::{Api, FieldValidation};
use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceInfo;
use crate::util;

fn is(info: &ResourceInfo, group: &str, plural: &str) -> bool {
    info.group == group && info.plural == plural
}

/// Before a create: initial status, built-in defaults, CRD schema validation.
pub fn prepare_create(
    api: &Api,
    info: &ResourceInfo,
    obj: &mut Value,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    if info.status
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    default_builtin(info, obj);
    if is(info, "", "namespaces") {
        obj["status"] = json!({"phase": "Active"});
        let name = util::name(obj).to_string();
        util::obj_at(obj, &["metadata", "labels"])
            .insert("kubernetes.io/metadata.name".into(), json!(name));
        util::obj_at(obj, &["spec"]).insert("finalizers".into(), json!(["kubernetes"]));
    }
    if is(info, "", "pods") {
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    }
    if is(info, "", "services") {
        obj["status"] = json!({"loadBalancer": {}});
        allocate_node_ports(Some(api), info, obj);
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
    if is(info, "apps", "deployments")
        || is(info, "apps", "replicasets")
        || is(info, "apps", "statefulsets")
        || is(info, "apps", "daemonsets")
    {
        if obj.pointer("/spec/selector").is_none() {
            return Err(ApiError::invalid(
                &info.kind,
                &info.group,
                util::name(obj),
                vec![("spec.selector".into(), "Required value".into())],
            ));
        }
        let sel = crate::selectors::LabelSelector::from_object(&obj["spec"]["selector"]);
        if !sel.matches(obj.pointer("/spec/template/metadata/labels")) {
            return Err(ApiError::invalid(
                &info.kind,
                &info.group,
                util::name(obj),
                vec![(
                    "spec.template.metadata.labels".into(),
                    "Invalid value: `selector` does not match template `labels`".into(),
                )],
            ));
        }
    }
    validate_custom(info, obj, fv)
}

/// NodePort and LoadBalancer Services: each port without a `nodePort` gets a free one in
/// 30000-32767, picked at random as kube-apiserver's allocator does.
///
/// `api` is `None` on updates, which run under the store lock: the store cannot be read
/// then, so only the Service's own ports are avoided (a clash with another Service is then
/// possible, at about one chance in 2,768 per Service).
fn allocate_node_ports(api: Option<&Api>, info: &ResourceInfo, obj: &mut Value) {
    let ty = obj.pointer("/spec/type").and_then(Value::as_str);
    if !matches!(ty, Some("NodePort") | Some("LoadBalancer")) {
        return;
    }
    let services = api
        .map(|a| a.store.list(&info.storage_key(), None).0)
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

/// Before an update: keep immutable fields, validate custom resources.
pub fn prepare_update(
    _api: &Api,
    info: &ResourceInfo,
    cur: &Value,
    new: &mut Value,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    default_builtin(info, new);
    if is(info, "", "services") {
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
    validate_custom(info, new, fv)
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
            for c in cs {
                let Some(c) = c.as_object_mut() else { continue };
                let image = c
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let latest = !image.rsplit('/').next().unwrap_or_default().contains(':')
                    || image.ends_with(":latest");
                c.entry("imagePullPolicy")
                    .or_insert_with(|| json!(if latest { "Always" } else { "IfNotPresent" }));
                c.entry("terminationMessagePath")
                    .or_insert_with(|| json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy")
                    .or_insert_with(|| json!("File"));
                c.entry("resources").or_insert_with(|| json!({}));
                if let Some(ps) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ps {
                        if let Some(p) = p.as_object_mut() {
                            p.entry("protocol").or_insert_with(|| json!("TCP"));
                        }
                    }
                }
            }
        }
    }
}

fn default_builtin(info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
        }
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
            if strategy["type"] == "RollingUpdate" && strategy.get("rollingUpdate").is_none() {
                strategy["rollingUpdate"] = json!({"maxUnavailable": "25%", "maxSurge": "25%"});
            }
            if let Some(ps) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(ps);
            }
        }
        ("apps", "replicasets") | ("apps", "statefulsets") | ("apps", "daemonsets") => {
            if info.plural != "daemonsets" {
                util::obj_at(obj, &["spec"])
                    .entry("replicas")
                    .or_insert_with(|| json!(1));
            }
            if let Some(ps) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(ps);
            }
        }
        ("", "services") => {
            let spec = util::obj_at(obj, &["spec"]);
            spec.entry("type").or_insert_with(|| json!("ClusterIP"));
            spec.entry("sessionAffinity")
                .or_insert_with(|| json!("None"));
            if let Some(ps) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ps {
                    if let Some(p) = p.as_object_mut() {
                        p.entry("protocol").or_insert_with(|| json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            p.entry("targetPort").or_insert(port);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}
