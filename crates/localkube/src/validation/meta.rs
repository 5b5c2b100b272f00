//! Object metadata (`ValidateObjectMeta`): the name rule of each kind, labels, annotations,
//! finalizers; label selectors; immutable fields.

use serde_json::Value;

use super::content::{self, go_label_selector};
use super::field::{Bad, Errors, FieldError};
use crate::registry::ResourceInfo;

/// The total size of a metadata's annotations (keys and values), 256 KiB.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// How a kind's names are checked (kube-apiserver's per-kind `ValidateNameFunc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    PathSegment,
}

/// The name rule of a resource.
pub fn name_rule(info: &ResourceInfo) -> NameRule {
    if info.crd.is_some() {
        return NameRule::Dns1123Subdomain;
    }
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "namespaces") => NameRule::Dns1123Label,
        ("", "services") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// The messages of `rule` for `name` (`prefix`: a `generateName`, whose trailing dash is
/// allowed).
pub fn check_name(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Dns1123Subdomain => content::dns1123_subdomain(name),
        NameRule::Dns1123Label => content::dns1123_label(name),
        NameRule::Dns1035Label => content::dns1035_label(name),
        NameRule::PathSegment => content::path_segment_name(name),
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `ValidateObjectMeta` for `obj` of `info`.
pub fn object_meta(info: &ResourceInfo, obj: &Value, errs: &mut Errors) {
    let md = obj.get("metadata").cloned().unwrap_or(Value::Null);
    let rule = name_rule(info);
    let gen_name = str_of(&md, "generateName");
    if !gen_name.is_empty() {
        for m in check_name(rule, gen_name, true) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                Bad::str(gen_name),
                m,
            ));
        }
    }
    let name = str_of(&md, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for m in check_name(rule, name, false) {
            errs.push(FieldError::invalid("metadata.name", Bad::str(name), m));
        }
    }
    if info.namespaced {
        let ns = str_of(&md, "namespace");
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for m in content::dns1123_label(ns) {
                errs.push(FieldError::invalid("metadata.namespace", Bad::str(ns), m));
            }
        }
    }
    labels(md.get("labels"), "metadata.labels", errs);
    annotations(md.get("annotations"), "metadata.annotations", errs);
    finalizers(info, md.get("finalizers"), errs);
    owner_references(md.get("ownerReferences"), errs);
}

/// `ValidateOwnerReferences`: apiVersion, kind, name and uid set; at most one controller.
fn owner_references(list: Option<&Value>, errs: &mut Errors) {
    let Some(refs) = list.and_then(Value::as_array) else {
        return;
    };
    let path = "metadata.ownerReferences";
    let mut controller: Option<&str> = None;
    for r in refs {
        let api_version = str_of(r, "apiVersion");
        if api_version.is_empty() || api_version.starts_with('/') {
            errs.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                Bad::str(api_version),
                "version must not be empty",
            ));
        }
        for key in ["kind", "name", "uid"] {
            if str_of(r, key).is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.{key}"),
                    Bad::str(""),
                    format!("{key} must not be empty"),
                ));
            }
        }
        if r.get("controller") == Some(&Value::Bool(true)) {
            let name = str_of(r, "name");
            match controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    Bad::Go(go_owner_references(refs)),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {name}"
                    ),
                )),
                None => controller = Some(name),
            }
        }
    }
}

/// A `[]v1.OwnerReference` as Go's `%#v` prints it (pointers as `(*bool)`).
fn go_owner_references(refs: &[Value]) -> String {
    let flag = |r: &Value, key: &str| match r.get(key).and_then(Value::as_bool) {
        Some(_) => "(*bool)(0xc000000000)".to_string(),
        None => "(*bool)(nil)".to_string(),
    };
    let items: Vec<String> = refs
        .iter()
        .map(|r| {
            format!(
                "v1.OwnerReference{{APIVersion:{:?}, Kind:{:?}, Name:{:?}, UID:{:?}, Controller:{}, BlockOwnerDeletion:{}}}",
                str_of(r, "apiVersion"),
                str_of(r, "kind"),
                str_of(r, "name"),
                str_of(r, "uid"),
                flag(r, "controller"),
                flag(r, "blockOwnerDeletion"),
            )
        })
        .collect();
    format!("[]v1.OwnerReference{{{}}}", items.join(", "))
}

/// `ValidateLabels`: keys are qualified names, values label values (the field is the map's).
pub fn labels(labels: Option<&Value>, path: &str, errs: &mut Errors) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        for msg in content::qualified_name(k) {
            errs.push(FieldError::invalid(path, Bad::str(k.as_str()), msg));
        }
        let v = v.as_str().unwrap_or_default();
        for msg in content::label_value(v) {
            errs.push(FieldError::invalid(path, Bad::str(v), msg));
        }
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitive), 256 KiB in total.
pub fn annotations(ann: Option<&Value>, path: &str, errs: &mut Errors) {
    let Some(m) = ann.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in m {
        for msg in content::qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, Bad::str(k.as_str()), msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

/// Finalizer names: qualified names; on built-in kinds a name without a `/` must be one of
/// the standard ones (`kubernetes`, `orphan`, `foregroundDeletion`).
fn finalizers(info: &ResourceInfo, list: Option<&Value>, errs: &mut Errors) {
    let Some(a) = list.and_then(Value::as_array) else {
        return;
    };
    let mut orphan = false;
    let mut foreground = false;
    for (i, f) in a.iter().enumerate() {
        let f = f.as_str().unwrap_or_default();
        let path = format!("metadata.finalizers[{i}]");
        let mut msgs = content::qualified_name(f);
        if info.crd.is_none()
            && !f.contains('/')
            && !matches!(f, "kubernetes" | "orphan" | "foregroundDeletion")
        {
            msgs.push("name is neither a standard finalizer name nor is it fully qualified".into());
        }
        for m in msgs {
            errs.push(FieldError::invalid(&path, Bad::str(f), m));
        }
        orphan |= f == "orphan";
        foreground |= f == "foregroundDeletion";
    }
    if orphan && foreground {
        errs.push(FieldError::invalid(
            "metadata.finalizers",
            Bad::Go(content::go_string_slice(list)),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
}

/// `ValidateLabelSelector` at `path`.
pub fn label_selector(sel: &Value, path: &str, errs: &mut Errors) {
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for (i, r) in exprs.iter().enumerate() {
            let p = format!("{path}.matchExpressions[{i}]");
            let op = str_of(r, "operator");
            let values = r
                .get("values")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match op {
                "In" | "NotIn" if values == 0 => errs.push(FieldError::required(
                    format!("{p}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                )),
                "Exists" | "DoesNotExist" if values > 0 => errs.push(FieldError::forbidden(
                    format!("{p}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => errs.push(FieldError::invalid(
                    format!("{p}.operator"),
                    Bad::str(other),
                    "not a valid selector operator",
                )),
            }
            let key = str_of(r, "key");
            for m in content::qualified_name(key) {
                errs.push(FieldError::invalid(format!("{p}.key"), Bad::str(key), m));
            }
        }
    }
    labels(sel.get("matchLabels"), &format!("{path}.matchLabels"), errs);
}

/// `ValidateImmutableField` for a label selector (`field is immutable`, the new value shown
/// as Go prints a `metav1.LabelSelector`).
pub fn immutable_selector(old: &Value, new: &Value, path: &str, errs: &mut Errors) {
    let (o, n) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
    if normalize_selector(o) != normalize_selector(n) {
        errs.push(FieldError::invalid(
            path,
            Bad::Go(n.map_or_else(|| "nil".to_string(), go_label_selector)),
            "field is immutable",
        ));
    }
}

/// A selector with empty parts dropped, for semantic comparison.
fn normalize_selector(v: Option<&Value>) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(m) = v.and_then(Value::as_object) {
        for (k, x) in m {
            let empty = match x {
                Value::Object(o) => o.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Null => true,
                _ => false,
            };
            if !empty {
                out.insert(k.clone(), x.clone());
            }
        }
    }
    Value::Object(out)
}

/// `ValidateNonnegativeField` for an optional integer at `path`.
pub fn nonnegative(v: Option<&Value>, path: &str, errs: &mut Errors) {
    if let Some(n) = v.and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            path,
            Bad::int(n),
            "must be greater than or equal to 0",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::testing::info;
    use serde_json::json;

    fn msgs(e: &Errors) -> Vec<String> {
        e.fields.iter().map(FieldError::message).collect()
    }

    #[test]
    fn owner_references_name_their_owner_and_at_most_one_controller() {
        let owner = |name: &str, controller: bool| {
            json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": name,
                   "uid": format!("uid-{name}"), "controller": controller})
        };
        let meta = |refs: Value| json!({"metadata": {"name": "c", "namespace": "default", "ownerReferences": refs}});
        let mut e = Errors::default();
        object_meta(
            &info("configmaps"),
            &meta(json!([owner("a", false), owner("b", true)])),
            &mut e,
        );
        assert!(e.fields.is_empty(), "{:?}", msgs(&e));
        let mut e = Errors::default();
        object_meta(
            &info("configmaps"),
            &meta(json!([owner("a", true), owner("b", true)])),
            &mut e,
        );
        let m = msgs(&e);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("metadata.ownerReferences: Invalid value: []v1.OwnerReference{v1.OwnerReference{APIVersion:\"flagger.app/v1beta1\""), "{}", m[0]);
        assert!(m[0].ends_with(": Only one reference can have Controller set to true. Found \"true\" in references for a and b"), "{}", m[0]);
        let mut e = Errors::default();
        object_meta(
            &info("configmaps"),
            &meta(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}])),
            &mut e,
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty"]
        );
    }

    #[test]
    fn names_per_kind() {
        let mut e = Errors::default();
        object_meta(
            &info("services"),
            &json!({"metadata": {"name": "1svc", "namespace": "default"}}),
            &mut e,
        );
        assert_eq!(
            msgs(&e),
            vec![
                "metadata.name: Invalid value: \"1svc\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        let mut e = Errors::default();
        object_meta(
            &info("configmaps"),
            &json!({"metadata": {"name": "a.b", "namespace": "default"}}),
            &mut e,
        );
        assert!(e.fields.is_empty());
        let mut e = Errors::default();
        object_meta(
            &info("namespaces"),
            &json!({"metadata": {"name": "a.b"}}),
            &mut e,
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]
        );
        let mut e = Errors::default();
        object_meta(
            &info("clusterroles"),
            &json!({"metadata": {"name": "system:flagger"}}),
            &mut e,
        );
        assert!(e.fields.is_empty());
        let mut e = Errors::default();
        object_meta(
            &info("pods"),
            &json!({"metadata": {"generateName": "podinfo-", "namespace": "default"}}),
            &mut e,
        );
        assert_eq!(
            msgs(&e),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
    }

    #[test]
    fn labels_annotations_finalizers() {
        let mut e = Errors::default();
        object_meta(
            &info("configmaps"),
            &json!({"metadata": {"name": "a", "namespace": "default",
                "labels": {"app": "a b"}, "annotations": {"bad key": "x"}, "finalizers": ["flagger"]}}),
            &mut e,
        );
        let m = msgs(&e);
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].starts_with(
            "metadata.labels: Invalid value: \"a b\": a valid label must be an empty string"
        ));
        assert!(m[1].starts_with(
            "metadata.annotations: Invalid value: \"bad key\": name part must consist of"
        ));
        assert_eq!(
            m[2],
            "metadata.finalizers[0]: Invalid value: \"flagger\": name is neither a standard finalizer name nor is it fully qualified"
        );
        let mut e = Errors::default();
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        annotations(Some(&json!({"a": big})), "metadata.annotations", &mut e);
        assert_eq!(
            msgs(&e),
            vec!["metadata.annotations: Too long: must have at most 262144 bytes"]
        );
    }

    #[test]
    fn selectors() {
        let mut e = Errors::default();
        label_selector(
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}, {"key": "b", "operator": "Exists", "values": ["x"]}, {"key": "c", "operator": "Is"}]}),
            "spec.selector",
            &mut e,
        );
        assert_eq!(
            msgs(&e),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Is\": not a valid selector operator",
            ]
        );
        let mut e = Errors::default();
        immutable_selector(
            &json!({"spec": {"selector": {"matchLabels": {"app": "a"}}}}),
            &json!({"spec": {"selector": {"matchLabels": {"app": "b"}}}}),
            "spec.selector",
            &mut e,
        );
        assert_eq!(
            msgs(&e),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
            ]
        );
    }
}
