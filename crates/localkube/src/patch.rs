//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch with the
//! merge keys of the built-in types.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The list merge key of a field in built-in types, by field name (and, for `ports`, by what
/// the elements hold).
pub fn merge_key(field: &str, sample: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "conditions" => "type",
        "ports" => {
            if sample.iter().any(|e| e.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists merged as sets by strategic merge patch.
fn primitive_merge(field: &str) -> bool {
    field == "finalizers"
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    // As in kube-apiserver, `test` with a null value succeeds on a missing path.
    let ops: Vec<Value> = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?
        .iter()
        .filter(|op| {
            !(op["op"] == "test"
                && op["value"].is_null()
                && op["path"]
                    .as_str()
                    .is_some_and(|p| target.pointer(p).is_none_or(Value::is_null)))
        })
        .cloned()
        .collect();
    let p: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &p).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// Applies a strategic merge patch for a built-in type.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "strategic merge patch must be a JSON object",
        ));
    }
    let t = std::mem::take(target);
    *target = smp_value(t, patch, "");
    Ok(())
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| e.get("$patch").is_none())
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn smp_value(original: Value, patch: &Value, field: &str) -> Value {
    match patch {
        Value::Object(pm) => {
            if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
                return strip_directives(patch);
            }
            let mut om = match original {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            for (k, pv) in pm {
                if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
                    continue;
                }
                if let Some(f) = k.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(list)), Some(del)) = (om.get_mut(f), pv.as_array()) {
                        list.retain(|e| !del.contains(e));
                    }
                    continue;
                }
                if pv.is_null() {
                    om.remove(k);
                    continue;
                }
                let old = om.remove(k).unwrap_or(Value::Null);
                let new = match (old, pv) {
                    (Value::Array(oa), Value::Array(pa)) => smp_list(oa, pa, k),
                    (old @ Value::Object(_), pv @ Value::Object(_)) => smp_value(old, pv, k),
                    // A patch map onto a missing field: its nulls delete nothing and are dropped.
                    (_, pv @ Value::Object(_)) => smp_value(Value::Object(Map::new()), pv, k),
                    (_, pv) => strip_directives(pv),
                };
                om.insert(k.clone(), new);
            }
            if let Some(keep) = pm.get("$retainKeys").and_then(Value::as_array) {
                let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
                om.retain(|k, _| keep.contains(&k.as_str()));
            }
            let _ = field;
            Value::Object(om)
        }
        other => strip_directives(other),
    }
}

fn smp_list(original: Vec<Value>, patch: &[Value], field: &str) -> Value {
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return strip_directives(&Value::Array(patch.to_vec()));
    }
    if primitive_merge(field) {
        let mut out = original;
        for p in patch {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        return Value::Array(out);
    }
    let Some(key) = merge_key(field, patch).filter(|_| patch.iter().all(Value::is_object)) else {
        return strip_directives(&Value::Array(patch.to_vec()));
    };
    let mut out = original;
    for p in patch {
        let kv = p.get(key);
        let pos = out.iter().position(|o| o.get(key) == kv && kv.is_some());
        let delete = p.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let old = std::mem::take(&mut out[i]);
                out[i] = smp_value(old, p, field);
            }
            (None, false) => out.push(strip_directives(p)),
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smp_nulls_in_a_new_map_are_dropped() {
        let mut d = json!({"metadata": {"name": "x"}});
        strategic_merge_patch(
            &mut d,
            &json!({"metadata": {"annotations": {"a": null, "b": "1"}}}),
        )
        .expect("patch applies");
        assert_eq!(
            d,
            json!({"metadata": {"name": "x", "annotations": {"b": "1"}}})
        );
    }

    #[test]
    fn smp_merges_containers_by_name() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}}}});
        strategic_merge_patch(
            &mut d,
            &json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "$patch": "delete"}
            ]}}}}),
        )
        .unwrap();
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 1);
        assert_eq!(c[0]["image"], "a:2");
        assert_eq!(c[0]["env"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn smp_replace_and_retain_keys() {
        let mut d = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "x": {"a": 1}}});
        strategic_merge_patch(
            &mut d,
            &json!({"spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "x": {"$patch": "replace", "b": 2}}}),
        )
        .unwrap();
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(d["spec"]["x"], json!({"b": 2}));
    }
}
