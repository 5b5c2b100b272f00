//! Validation of built-in objects as kube-apiserver does it (`pkg/apis/*/validation` and
//! apimachinery's `util/validation`), with its wording: every rule yields a [`FieldError`] whose
//! text is what the real server puts in `details.causes` and in the `422 Invalid` message, so
//! `kubectl` prints the same lines.
//!
//! The entry point is [`validate`], run on every create, update, patch and server-side apply
//! (on the resulting object, after defaulting). Custom resources get the metadata rules here
//! and their schema in [`crate::crd`].
//!
//! Values are plain JSON (`serde_json::Value`); a field of the wrong JSON type is left to the
//! decoding step kube-apiserver has before validation, which localkube models only for
//! quantities and Secret data ([`DecodeError`]).
//!
//! Layering inside: [`content`] (Go's value rules), then [`field`] (the errors), at the bottom,
//! [`meta`], then [`core`], then [`apps`] and the other groups' rules; this file declares them,
//! re-exports the errors and dispatches per kind, and nothing below reaches back up.

pub mod apps;
pub mod autoscaling;
pub mod content;
pub mod core;
pub mod field;
pub mod meta;
pub mod networking;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::registry::ResourceInfo;
pub use field::{Bad, DecodeError, ErrorType, Errors, FieldError};

/// Server-side field validation (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    #[default]
    Strict,
    Warn,
    Ignore,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Ignore") => Self::Ignore,
            Some("Warn") => Self::Warn,
            // kube-apiserver defaults to Warn when the client sends nothing.
            Some("Strict") => Self::Strict,
            _ => Self::Warn,
        }
    }
}

/// Validates `obj` (the state about to be stored) as kube-apiserver would: `old` is the
/// stored object on updates; `sub` the subresource written (`status` writes validate the
/// metadata only, as `ValidateXStatusUpdate` does for the kinds here).
pub fn validate(info: &ResourceInfo, old: Option<&Value>, obj: &Value, sub: &str) -> ApiResult<()> {
    // A Service's IP and node-port allocation runs before validation and answers alone.
    if sub.is_empty() && info.crd.is_none() && info.group.is_empty() && info.plural == "services" {
        let alloc = core::service_allocation(obj);
        if !alloc.is_empty() {
            return Err(ApiError::invalid_causes(
                &info.kind,
                &info.group,
                crate::util::name(obj),
                alloc.iter().map(FieldError::cause).collect(),
            ));
        }
    }
    let mut errs = Errors::default();
    // core/v1 Events keep their legacy validation, which leaves the metadata alone (old
    // recorders name them `<object>.` + a suffix).
    let legacy_event = info.crd.is_none() && info.group.is_empty() && info.plural == "events";
    if sub != "scale" && !legacy_event {
        meta::object_meta(info, obj, &mut errs);
    }
    if sub.is_empty() {
        kind_rules(info, old, obj, &mut errs);
    }
    if let Some(DecodeError(msg)) = errs.decode {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {msg}",
            kind = info.kind,
            v = info.version
        )));
    }
    if errs.fields.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_causes(
        &info.kind,
        &info.group,
        crate::util::name(obj),
        errs.fields.iter().map(FieldError::cause).collect(),
    ))
}

/// Scalar fields the decoder types (Go struct, JSON path from the object, Go type), per
/// resource: a value of another JSON type there is a 400 before validation runs, as Go's
/// `encoding/json` refuses it. A `*` segment stands for every value of a map or every
/// element of a list; Go's field path names neither keys nor indexes.
type Typed = (&'static str, &'static str, &'static str);

/// Every object's metadata (kubectl checks the top-level one itself; other clients do not).
const META: &[Typed] = &[
    ("ObjectMeta", "metadata.labels.*", "string"),
    ("ObjectMeta", "metadata.annotations.*", "string"),
];

/// A pod spec at `spec` (pods) or `spec.template.spec` (workloads), and a template's metadata.
macro_rules! pod_fields {
    ($spec:literal) => {
        [
            (
                "ContainerPort",
                concat!($spec, ".containers.*.ports.*.containerPort"),
                "int32",
            ),
            ("Container", concat!($spec, ".containers.*.image"), "string"),
            (
                "Container",
                concat!($spec, ".containers.*.command.*"),
                "string",
            ),
            (
                "Container",
                concat!($spec, ".containers.*.args.*"),
                "string",
            ),
            (
                "EnvVar",
                concat!($spec, ".containers.*.env.*.value"),
                "string",
            ),
            ("PodSpec", concat!($spec, ".nodeSelector.*"), "string"),
        ]
    };
}

const POD: [Typed; 6] = pod_fields!("spec");
const TEMPLATE: [Typed; 8] = {
    let p: [Typed; 6] = pod_fields!("spec.template.spec");
    [
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5],
        ("ObjectMeta", "spec.template.metadata.labels.*", "string"),
        (
            "ObjectMeta",
            "spec.template.metadata.annotations.*",
            "string",
        ),
    ]
};
const MATCH_LABELS: Typed = ("LabelSelector", "spec.selector.matchLabels.*", "string");

const TYPED: &[(&str, &[Typed])] = &[
    (
        "services",
        &[
            ("ServicePort", "spec.ports.*.port", "int32"),
            ("ServicePort", "spec.ports.*.nodePort", "int32"),
            ("ServiceSpec", "spec.selector.*", "string"),
        ],
    ),
    ("pods", &POD),
    ("configmaps", &[("ConfigMap", "data.*", "string")]),
    ("secrets", &[("Secret", "stringData.*", "string")]),
    (
        "deployments",
        &[("DeploymentSpec", "spec.replicas", "int32"), MATCH_LABELS],
    ),
    (
        "replicasets",
        &[("ReplicaSetSpec", "spec.replicas", "int32"), MATCH_LABELS],
    ),
    ("daemonsets", &[MATCH_LABELS]),
    (
        "statefulsets",
        &[("StatefulSetSpec", "spec.replicas", "int32"), MATCH_LABELS],
    ),
    (
        "horizontalpodautoscalers",
        &[
            ("HorizontalPodAutoscalerSpec", "spec.minReplicas", "int32"),
            ("HorizontalPodAutoscalerSpec", "spec.maxReplicas", "int32"),
        ],
    ),
];

/// The values at a dotted path (`*`: every value of a map or element of a list).
fn values_at<'a>(v: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
    match (v, path) {
        (_, []) => out.push(v),
        (Value::Array(items), ["*", rest @ ..]) => {
            for i in items {
                values_at(i, rest, out);
            }
        }
        (Value::Object(m), ["*", rest @ ..]) => {
            for c in m.values() {
                values_at(c, rest, out);
            }
        }
        (Value::Object(m), [first, rest @ ..]) => {
            if let Some(c) = m.get(*first) {
                values_at(c, rest, out);
            }
        }
        _ => {}
    }
}

/// How Go's decoder names a JSON value it cannot put in a field of `go_type`; `None` when it
/// fits (or is null, which leaves the field empty).
fn misfit(v: &Value, go_type: &str) -> Option<String> {
    let what = match v {
        Value::Null => return None,
        Value::String(_) if go_type == "string" => return None,
        Value::String(_) => "string".to_string(),
        Value::Bool(_) => "bool".to_string(),
        Value::Object(_) => "object".to_string(),
        Value::Array(_) => "array".to_string(),
        Value::Number(_) if go_type == "string" => "number".to_string(),
        Value::Number(n) if n.as_i64().is_none_or(|i| i32::try_from(i).is_err()) => {
            format!("number {n}")
        }
        Value::Number(_) => return None,
    };
    Some(what)
}

/// The decoder's `UnmarshalTypeError` for typed fields holding another JSON type (the first
/// one, as the decoder stops there).
fn typed_fields(info: &ResourceInfo, obj: &Value, errs: &mut Errors) {
    let own = TYPED
        .iter()
        .find(|(p, _)| *p == info.plural)
        .map_or(&[][..], |(_, f)| *f);
    let template: &[Typed] = match info.plural.as_str() {
        "deployments" | "replicasets" | "daemonsets" | "statefulsets" => &TEMPLATE,
        _ => &[],
    };
    for (strukt, path, go_type) in META.iter().chain(own).chain(template) {
        let parts: Vec<&str> = path.split('.').collect();
        let mut found = Vec::new();
        values_at(obj, &parts, &mut found);
        if let Some(what) = found.into_iter().find_map(|v| misfit(v, go_type)) {
            let go_path = path.replace(".*", "");
            errs.decode(format!(
                "json: cannot unmarshal {what} into Go struct field {strukt}.{go_path} of type {go_type}"
            ));
            return;
        }
    }
}

fn kind_rules(info: &ResourceInfo, old: Option<&Value>, obj: &Value, errs: &mut Errors) {
    if info.crd.is_some() {
        return;
    }
    typed_fields(info, obj, errs);
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "services") => core::service(obj, old, errs),
        ("", "pods") => core::pod(obj, errs),
        ("", "configmaps") => core::config_map(obj, old, errs),
        ("", "secrets") => core::secret(obj, old, errs),
        ("", "namespaces") => core::namespace(obj, errs),
        ("apps", "deployments") => apps::deployment(obj, old, errs),
        ("apps", "replicasets") => apps::replica_set(obj, old, errs),
        ("apps", "daemonsets") => apps::daemon_set(obj, old, errs),
        ("apps", "statefulsets") => apps::stateful_set(obj, old, errs),
        ("autoscaling", "horizontalpodautoscalers") => autoscaling::hpa(obj, errs),
        ("networking.k8s.io", "ingresses") => networking::ingress(obj, errs),
        _ => {}
    }
}

/// Helpers of the unit tests of validation and defaulting.
#[cfg(test)]
pub mod testing {
    use super::{Errors, FieldError};
    use crate::registry::{ResourceInfo, builtins};

    /// The built-in resource named `plural`.
    pub fn info(plural: &str) -> ResourceInfo {
        builtins()
            .into_iter()
            .find(|i| i.plural == plural)
            .expect("a built-in resource")
    }

    /// The messages `f` collects.
    pub fn run(f: impl Fn(&mut Errors)) -> Vec<String> {
        let mut e = Errors::default();
        f(&mut e);
        e.fields.iter().map(FieldError::message).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_go_error_body() {
        let e = FieldError::required("spec.ports[1].name", "");
        assert_eq!(e.message(), "spec.ports[1].name: Required value");
        let e = FieldError::duplicate("spec.ports[1].name", Bad::str("http"));
        assert_eq!(e.message(), "spec.ports[1].name: Duplicate value: \"http\"");
        let e = FieldError::not_supported("spec.type", Bad::str("Foo"), &["ClusterIP", "NodePort"]);
        assert_eq!(
            e.message(),
            "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"NodePort\""
        );
        let e = FieldError::invalid(
            "spec.replicas",
            Bad::int(-1),
            "must be greater than or equal to 0",
        );
        assert_eq!(
            e.message(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let e = FieldError::too_long("metadata.annotations", 262144);
        assert_eq!(
            e.message(),
            "metadata.annotations: Too long: must have at most 262144 bytes"
        );
        let e = FieldError::forbidden("data", "field is immutable when `immutable` is set");
        assert_eq!(
            e.body(),
            "Forbidden: field is immutable when `immutable` is set"
        );
    }

    #[test]
    fn wrongly_typed_integers_are_decode_errors() {
        let svc = testing::info("services");
        let obj = serde_json::json!({"metadata": {"name": "s", "namespace": "d"},
            "spec": {"type": "ClusterIP", "sessionAffinity": "None", "ports": [{"port": "80", "protocol": "TCP"}]}});
        let e = validate(&svc, None, &obj, "").expect_err("refused");
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Service in version \"v1\" cannot be handled as a Service: json: cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32"
        );
        let d = testing::info("deployments");
        let obj = serde_json::json!({"metadata": {"name": "d", "namespace": "d"}, "spec": {"replicas": 1.5}});
        let e = validate(&d, None, &obj, "").expect_err("refused");
        assert!(e.message.ends_with("json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"), "{}", e.message);
    }

    #[test]
    fn strings_of_another_json_type_are_decode_errors() {
        let refused = |plural: &str, obj: serde_json::Value| {
            let e = validate(&testing::info(plural), None, &obj, "").expect_err("refused");
            assert_eq!(e.code, 400);
            e.message
        };
        let m = refused(
            "configmaps",
            serde_json::json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"x": 1}}),
        );
        assert_eq!(
            m,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
        );
        let m = refused(
            "services",
            serde_json::json!({"metadata": {"name": "s", "namespace": "d"},
                "spec": {"selector": {"app": true}, "ports": [{"port": 80}]}}),
        );
        assert!(m.ends_with("json: cannot unmarshal bool into Go struct field ServiceSpec.spec.selector of type string"), "{m}");
        let m = refused(
            "deployments",
            serde_json::json!({"metadata": {"name": "d", "namespace": "d"}, "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [
                    {"name": "c", "image": "i", "env": [{"name": "A", "value": 1}]}]}}}}),
        );
        assert!(m.ends_with("json: cannot unmarshal number into Go struct field EnvVar.spec.template.spec.containers.env.value of type string"), "{m}");
        let m = refused(
            "deployments",
            serde_json::json!({"metadata": {"name": "d", "namespace": "d"}, "spec": {
                "selector": {"matchLabels": {"app": true}},
                "template": {"metadata": {"labels": {"app": true}}}}}),
        );
        assert!(m.ends_with("json: cannot unmarshal bool into Go struct field LabelSelector.spec.selector.matchLabels of type string"), "{m}");
        let m = refused(
            "pods",
            serde_json::json!({"metadata": {"name": "p", "namespace": "d", "annotations": {"a": 2}}}),
        );
        assert!(m.ends_with("json: cannot unmarshal number into Go struct field ObjectMeta.metadata.annotations of type string"), "{m}");
        // Null leaves the field empty, as the decoder does.
        let ok =
            serde_json::json!({"metadata": {"name": "c", "namespace": "d"}, "data": {"x": null}});
        assert!(
            !matches!(validate(&testing::info("configmaps"), None, &ok, ""), Err(e) if e.code == 400)
        );
    }
}
