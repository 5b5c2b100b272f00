//! autoscaling/v2 HorizontalPodAutoscalers (`pkg/apis/autoscaling/validation`).

use serde_json::Value;

use super::content;
use super::field::{Bad, Errors, FieldError};

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

const SOURCES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

/// An HPA: replica bounds, the scale target, its metrics.
pub fn hpa(obj: &Value, errs: &mut Errors) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let min = spec.get("minReplicas").and_then(Value::as_i64);
    let max = spec.get("maxReplicas").and_then(Value::as_i64).unwrap_or(0);
    if let Some(m) = min
        && m < 1
    {
        errs.push(FieldError::invalid(
            "spec.minReplicas",
            Bad::int(m),
            "must be greater than or equal to 1",
        ));
    }
    if max < 1 {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            Bad::int(max),
            "must be greater than 0",
        ));
    }
    if let Some(m) = min
        && max < m
    {
        errs.push(FieldError::invalid(
            "spec.maxReplicas",
            Bad::int(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let target = spec.get("scaleTargetRef").cloned().unwrap_or(Value::Null);
    for f in ["kind", "name"] {
        let v = s(&target, f);
        let p = format!("spec.scaleTargetRef.{f}");
        if v.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else {
            for m in content::path_segment_name(v) {
                errs.push(FieldError::invalid(&p, Bad::str(v), m));
            }
        }
    }
    for (i, m) in spec
        .get("metrics")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .enumerate()
    {
        metric(m, &format!("spec.metrics[{i}]"), errs);
    }
}

fn metric(m: &Value, path: &str, errs: &mut Errors) {
    let ty = s(m, "type");
    if ty.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.type"),
            "must specify a metric source type",
        ));
    }
    if !SOURCES.contains(&ty) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            Bad::str(ty),
            SOURCES,
        ));
        return;
    }
    let field = match ty {
        "ContainerResource" => "containerResource",
        "External" => "external",
        "Object" => "object",
        "Pods" => "pods",
        _ => "resource",
    };
    let Some(src) = m.get(field).filter(|v| !v.is_null()) else {
        errs.push(FieldError::required(
            format!("{path}.{field}"),
            "must populate information for the given metric source",
        ));
        return;
    };
    for other in [
        "containerResource",
        "external",
        "object",
        "pods",
        "resource",
    ] {
        if other != field && m.get(other).is_some_and(|v| !v.is_null()) {
            errs.push(FieldError::forbidden(
                format!("{path}.{other}"),
                "must populate the given metric source only",
            ));
        }
    }
    let sp = format!("{path}.{field}");
    if matches!(field, "resource" | "containerResource") && s(src, "name").is_empty() {
        errs.push(FieldError::required(
            format!("{sp}.name"),
            "must specify a resource name",
        ));
    }
    if matches!(field, "pods" | "object" | "external")
        && src
            .pointer("/metric/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
    {
        errs.push(FieldError::required(
            format!("{sp}.metric.name"),
            "must specify a metric name",
        ));
    }
    let target = src.get("target").cloned().unwrap_or(Value::Null);
    let tp = format!("{sp}.target");
    let tt = s(&target, "type");
    if tt.is_empty() {
        errs.push(FieldError::required(
            format!("{tp}.type"),
            "must specify a metric target type",
        ));
    }
    if !matches!(tt, "Utilization" | "Value" | "AverageValue") {
        errs.push(FieldError::invalid(
            format!("{tp}.type"),
            Bad::str(tt),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for q in ["value", "averageValue"] {
        if let Some(v) = target.get(q).filter(|v| !v.is_null()) {
            match content::Quantity::parse(v) {
                None => errs.decode(format!(
                    "quantities must match the regular expression '{}'",
                    content::QUANTITY_FMT
                )),
                Some(x) if x.nanos <= 0 => errs.push(FieldError::invalid(
                    format!("{tp}.{q}"),
                    Bad::str(x.canonical()),
                    "must be positive",
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(u) = target.get("averageUtilization").and_then(Value::as_i64)
        && u < 1
    {
        errs.push(FieldError::invalid(
            format!("{tp}.averageUtilization"),
            Bad::int(u),
            "must be greater than 0",
        ));
    }
    if matches!(field, "resource" | "containerResource")
        && target.get("averageValue").is_none_or(Value::is_null)
        && target.get("averageUtilization").is_none_or(Value::is_null)
    {
        errs.push(FieldError::required(
            format!("{tp}.averageUtilization"),
            "must set either a target raw value or a target utilization",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::testing;
    use serde_json::json;

    fn run(obj: Value) -> Vec<String> {
        testing::run(|e| hpa(&obj, e))
    }

    #[test]
    fn bounds_and_target() {
        assert_eq!(
            run(
                json!({"spec": {"minReplicas": 5, "maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment", "name": "podinfo"}}})
            ),
            vec![
                "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
            ]
        );
        assert_eq!(
            run(json!({"spec": {"minReplicas": 0, "maxReplicas": 0, "scaleTargetRef": {}}})),
            vec![
                "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.scaleTargetRef.kind: Required value",
                "spec.scaleTargetRef.name: Required value",
            ]
        );
    }

    #[test]
    fn metrics() {
        let m = run(
            json!({"spec": {"minReplicas": 1, "maxReplicas": 2, "scaleTargetRef": {"kind": "Deployment", "name": "p"},
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}},
                {"type": "Memory"},
                {"type": "Pods"},
            ]}}),
        );
        assert_eq!(
            m,
            vec![
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
                "spec.metrics[1].type: Unsupported value: \"Memory\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"",
                "spec.metrics[2].pods: Required value: must populate information for the given metric source",
            ]
        );
    }
}
