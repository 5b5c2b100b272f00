//! CustomResourceDefinitions: serving their resources, and validating, pruning and defaulting
//! custom objects against the structural schema.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::registry::{ALL_VERBS, CrdInfo, PrinterColumn, Registry, ResourceInfo, ScaleInfo};
use crate::store::Store;
use crate::util;
use crate::validation::FieldValidation;

/// Checks the parts of a CRD that serving needs.
pub fn validate_crd(crd: &Value) -> ApiResult<()> {
    let name = util::name(crd).to_string();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let mut causes = Vec::new();
    if group.is_empty() {
        causes.push(("spec.group".to_string(), "Required value".to_string()));
    }
    if plural.is_empty() {
        causes.push(("spec.names.plural".into(), "Required value".into()));
    }
    if spec["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        causes.push(("spec.names.kind".into(), "Required value".into()));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage_versions = versions
        .iter()
        .filter(|v| v["storage"] == json!(true))
        .count();
    if storage_versions != 1 {
        causes.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            &name,
            causes,
        ))
    }
}

/// The served resources of a CRD, one per served version.
pub fn resources_from_crd(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    let storage = versions
        .iter()
        .find(|v| v["storage"] == json!(true))
        .map(|v| s(&v["name"]))
        .unwrap_or_default();
    let kind = s(&names["kind"]);
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    versions
        .iter()
        .filter(|v| v["served"] != json!(false))
        .map(|v| {
            let sub = &v["subresources"];
            ResourceInfo {
                group: s(&spec["group"]),
                version: s(&v["name"]),
                kind: kind.clone(),
                plural: s(&names["plural"]),
                singular: singular.clone(),
                short_names: list(&names["shortNames"]),
                categories: list(&names["categories"]),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                verbs: ALL_VERBS.iter().map(|v| v.to_string()).collect(),
                status: sub.get("status").is_some(),
                scale: sub.get("scale").map(|sc| ScaleInfo {
                    spec_replicas_path: s(&sc["specReplicasPath"]),
                    status_replicas_path: s(&sc["statusReplicasPath"]),
                    label_selector_path: sc["labelSelectorPath"].as_str().map(String::from),
                }),
                crd: Some(CrdInfo {
                    crd_name: util::name(crd).to_string(),
                    schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                    printer_columns: v["additionalPrinterColumns"]
                        .as_array()
                        .map(|cols| {
                            cols.iter()
                                .map(|c| PrinterColumn {
                                    name: s(&c["name"]),
                                    type_: s(&c["type"]),
                                    json_path: s(&c["jsonPath"]),
                                    description: s(&c["description"]),
                                    priority: c["priority"].as_i64().unwrap_or(0),
                                    format: s(&c["format"]),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    storage_version: storage.clone(),
                }),
            }
        })
        .collect()
}

/// Brings the registry in line with a CRD after a write (or its deletion when `deleted`).
pub fn sync(registry: &Registry, store: &Store, crd: &Value, deleted: bool) {
    let name = util::name(crd);
    if deleted {
        let old = registry
            .all()
            .into_iter()
            .filter(|r| r.crd.as_ref().is_some_and(|c| c.crd_name == name))
            .collect::<Vec<_>>();
        registry.remove_crd(name);
        if let Some(r) = old.first() {
            store.remove_all(&r.storage_key());
        }
        return;
    }
    registry.set_crd(name, resources_from_crd(crd));
}

/// Validates a custom object against its schema, pruning unknown fields and applying
/// defaults. Strict: unknown fields are a 400; Warn: they are reported as warnings.
pub fn validate_object(
    info: &ResourceInfo,
    schema: &Value,
    obj: &mut Value,
    fv: FieldValidation,
) -> ApiResult<Vec<String>> {
    let mut unknown = Vec::new();
    let mut errors = Vec::new();
    if let Some(m) = obj.as_object_mut() {
        let props = schema.get("properties").and_then(Value::as_object);
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&k)) {
                Some(ps) => {
                    if let Some(v) = m.get_mut(&k) {
                        walk(ps, v, &k, &mut unknown, &mut errors);
                    }
                }
                None if schema["x-kubernetes-preserve-unknown-fields"] == json!(true) => {}
                None => {
                    unknown.push(k.clone());
                    m.remove(&k);
                }
            }
        }
        if let Some(p) = props {
            apply_defaults(p, m);
            required(schema, m, "", &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(
            &info.kind,
            &info.group,
            util::name(obj),
            errors,
        ));
    }
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    match fv {
        FieldValidation::Strict => {
            let list: Vec<String> = unknown
                .iter()
                .map(|u| format!("unknown field \"{u}\""))
                .collect();
            Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                info.kind,
                info.version,
                info.kind,
                list.join(", ")
            )))
        }
        FieldValidation::Warn => Ok(unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect()),
        FieldValidation::Ignore => Ok(Vec::new()),
    }
}

fn required(
    schema: &Value,
    m: &Map<String, Value>,
    path: &str,
    errors: &mut Vec<(String, String)>,
) {
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                let p = if path.is_empty() {
                    r.to_string()
                } else {
                    format!("{path}.{r}")
                };
                errors.push((p, "Required value".into()));
            }
        }
    }
}

fn apply_defaults(props: &Map<String, Value>, m: &mut Map<String, Value>) {
    for (k, ps) in props {
        if !m.contains_key(k)
            && let Some(d) = ps.get("default")
        {
            m.insert(k.clone(), d.clone());
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(
    schema: &Value,
    v: &mut Value,
    path: &str,
    unknown: &mut Vec<String>,
    errors: &mut Vec<(String, String)>,
) {
    if v.is_null() && schema["nullable"] == json!(true) {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == json!(true);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == t
            || (t == "number" && actual == "integer")
            || (int_or_string && (actual == "integer" || actual == "string"));
        if !ok {
            let shown = match v {
                Value::String(s) => format!("\"{s}\""),
                other => other.to_string(),
            };
            errors.push((
                path.to_string(),
                format!("Invalid value: \"{actual}\": {path} in body must be of type {t}: {shown}"),
            ));
            return;
        }
    }
    if let Some(en) = schema.get("enum").and_then(Value::as_array)
        && !en.contains(v)
    {
        let allowed: Vec<String> = en.iter().map(|e| e.to_string()).collect();
        errors.push((
            path.to_string(),
            format!(
                "Unsupported value: {v}: supported values: {}",
                allowed.join(", ")
            ),
        ));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        errors.push((
            path.to_string(),
            format!("Invalid value: {n}: {path} in body should be greater than or equal to {min}"),
        ));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64())
        && n > max
    {
        errors.push((
            path.to_string(),
            format!("Invalid value: {n}: {path} in body should be less than or equal to {max}"),
        ));
    }
    match v {
        Value::Object(m) => {
            if path.ends_with(".metadata") {
                return;
            }
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == json!(true);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child_path = format!("{path}.{k}");
                let child_schema = props.and_then(|p| p.get(&k)).or(match additional {
                    Some(a) if a.is_object() => Some(a),
                    _ => None,
                });
                match child_schema {
                    Some(cs) => {
                        if let Some(c) = m.get_mut(&k) {
                            walk(cs, c, &child_path, unknown, errors);
                        }
                    }
                    None if preserve || additional == Some(&json!(true)) => {}
                    None => {
                        unknown.push(child_path);
                        m.remove(&k);
                    }
                }
            }
            if let Some(p) = props {
                apply_defaults(p, m);
            }
            required(schema, m, path, errors);
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, it) in items.iter_mut().enumerate() {
                    walk(is, it, &format!("{path}[{i}]"), unknown, errors);
                }
            }
        }
        _ => {}
    }
}
