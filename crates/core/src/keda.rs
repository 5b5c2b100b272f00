//! KEDA ScaledObjects (`keda.sh/v1alpha1`, reference §3.7): the `-primary` copy that scales the
//! primary workload, and the pause annotation on the target's ScaledObject. Objects are plain
//! JSON: the controller reads and writes them as dynamic objects, and fields this module does
//! not copy are left alone.

use std::collections::BTreeMap;

use flagger_api::labels::TOOLKIT_MARKER;
use serde_json::{Map, Value, json};

use crate::model::Autoscaler;
use crate::workload::LabelPolicy;

/// API group/version of ScaledObjects.
pub const API_VERSION: &str = "keda.sh/v1alpha1";
/// Kind of ScaledObjects.
pub const KIND: &str = "ScaledObject";
/// Plural resource name.
pub const PLURAL: &str = "scaledobjects";
/// Annotation that pauses a ScaledObject at a replica count; Flagger pauses at `"0"`.
pub const PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";

/// The spec fields Flagger copies to the primary ScaledObject (besides `scaleTargetRef`).
const COPIED_SPEC_FIELDS: &[&str] = &[
    "pollingInterval",
    "cooldownPeriod",
    "minReplicaCount",
    "maxReplicaCount",
    "advanced",
    "triggers",
    "fallback",
    "idleReplicaCount",
];

/// Name of the primary ScaledObject.
pub fn primary_name(autoscaler: &Autoscaler) -> String {
    format!("{}-primary", autoscaler.name)
}

/// How the primary copy's metadata is filtered: at creation every label and annotation but the
/// Flux toolkit ones; on later updates (promotion, skip-analysis) those under
/// `-include-label-prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataRule {
    Create,
    Update,
}

/// The primary ScaledObject for `target` (the target's ScaledObject as JSON): same scaling
/// spec, aimed at `primary_workload`, with `primaryScalerReplicas` and the trigger queries of
/// the primary (see [`primary_triggers`]). The pause annotation is never copied: the primary
/// must keep scaling while the target is paused. No owner reference (the caller adds it).
pub fn primary_scaled_object(
    target: &Value,
    autoscaler: &Autoscaler,
    target_workload: &str,
    primary_workload: &str,
    namespace: &str,
    policy: &LabelPolicy,
    rule: MetadataRule,
) -> Value {
    let spec = target.get("spec").cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    for key in COPIED_SPEC_FIELDS {
        if let Some(v) = spec.get(*key).filter(|v| !v.is_null()) {
            out.insert((*key).to_string(), v.clone());
        }
    }
    let target_ref = spec.get("scaleTargetRef").cloned().unwrap_or(json!({}));
    let mut scale_ref = Map::new();
    scale_ref.insert("name".into(), json!(primary_workload));
    for key in ["kind", "apiVersion", "envSourceContainerName"] {
        if let Some(v) = target_ref.get(key).filter(|v| !v.is_null()) {
            scale_ref.insert(key.into(), v.clone());
        }
    }
    out.insert("scaleTargetRef".into(), Value::Object(scale_ref));
    if let Some(min) = autoscaler.primary_min_replicas {
        out.insert("minReplicaCount".into(), json!(min));
    }
    if let Some(max) = autoscaler.primary_max_replicas {
        out.insert("maxReplicaCount".into(), json!(max));
    }
    if let Some(name) = out
        .get_mut("advanced")
        .and_then(|a| a.get_mut("horizontalPodAutoscalerConfig"))
        .and_then(|h| h.get_mut("name"))
        && let Some(n) = name.as_str().filter(|n| !n.is_empty())
    {
        *name = json!(format!("{n}-primary"));
    }
    if let Some(triggers) = out.get_mut("triggers") {
        *triggers = primary_triggers(triggers, autoscaler, target_workload);
    }

    let filter = |field: &str| -> BTreeMap<String, String> {
        target
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != PAUSED_REPLICAS)
            .filter(|(k, _)| match rule {
                MetadataRule::Create => !k.contains(TOOLKIT_MARKER),
                MetadataRule::Update => policy.includes(k),
            })
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect()
    };
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": primary_name(autoscaler),
            "namespace": namespace,
            "labels": filter("labels"),
            "annotations": filter("annotations"),
        },
        "spec": out,
    })
}

/// The primary's triggers: with `primaryScalerQueries`, the `metadata.query` of each trigger
/// named there is replaced (others are kept as they are); without it, every query is rewritten
/// by [`rewrite_query`].
pub fn primary_triggers(triggers: &Value, autoscaler: &Autoscaler, target_workload: &str) -> Value {
    let Some(list) = triggers.as_array() else {
        return triggers.clone();
    };
    let queries = &autoscaler.primary_scaler_queries;
    Value::Array(
        list.iter()
            .map(|t| {
                let mut t = t.clone();
                let replacement = if queries.is_empty() {
                    t.pointer("/metadata/query")
                        .and_then(Value::as_str)
                        .map(|q| rewrite_query(q, target_workload))
                } else {
                    t.get("name")
                        .and_then(Value::as_str)
                        .and_then(|n| queries.get(n))
                        .cloned()
                };
                if let Some(q) = replacement
                    && let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    meta.insert("query".into(), json!(q));
                }
                t
            })
            .collect(),
    )
}

/// Flagger's automatic query rewrite: every `<target>-canary` and every other `<target>`
/// becomes `<target>-primary`, in one pass, so nothing turns into `-primary-canary` or
/// `-primary-primary` through a second replacement.
pub fn rewrite_query(query: &str, target: &str) -> String {
    if target.is_empty() {
        return query.to_string();
    }
    let primary = format!("{target}-primary");
    let canary = format!("{target}-canary");
    let mut out = String::with_capacity(query.len() + 16);
    let mut rest = query;
    while let Some(i) = rest.find(target) {
        out.push_str(&rest[..i]);
        out.push_str(&primary);
        rest = &rest[i..];
        rest = if rest.starts_with(&canary) {
            &rest[canary.len()..]
        } else {
            &rest[target.len()..]
        };
    }
    out.push_str(rest);
    out
}

/// Replicas for a Deployment scaled up from zero under a ScaledObject: its `minReplicaCount`
/// when above 1, else 1.
pub fn replicas_from_zero(scaled_object: Option<&Value>) -> i32 {
    scaled_object
        .and_then(|so| so.pointer("/spec/minReplicaCount"))
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .filter(|n| *n > 1)
        .unwrap_or(1)
}

/// The merge patch that pauses (`true`) or resumes (`false`) a ScaledObject.
pub fn pause_patch(paused: bool) -> Value {
    let value = if paused { json!("0") } else { Value::Null };
    json!({"metadata": {"annotations": {PAUSED_REPLICAS: value}}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AutoscalerKind;
    use pretty_assertions::assert_eq;

    fn autoscaler(queries: &[(&str, &str)], min: Option<i32>, max: Option<i32>) -> Autoscaler {
        Autoscaler {
            kind: AutoscalerKind::ScaledObject,
            api_version: API_VERSION.into(),
            name: "podinfo-so".into(),
            primary_scaler_queries: queries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            primary_min_replicas: min,
            primary_max_replicas: max,
        }
    }

    fn target() -> Value {
        json!({
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {
                "name": "podinfo-so",
                "namespace": "test",
                "resourceVersion": "42",
                "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {"team.example.com/owner": "payments", PAUSED_REPLICAS: "0"},
            },
            "spec": {
                "scaleTargetRef": {"name": "podinfo", "kind": "Deployment", "apiVersion": "apps/v1", "envSourceContainerName": "podinfod"},
                "pollingInterval": 10,
                "cooldownPeriod": 20,
                "initialCooldownPeriod": 5,
                "idleReplicaCount": 0,
                "minReplicaCount": 2,
                "maxReplicaCount": 6,
                "advanced": {"horizontalPodAutoscalerConfig": {"name": "podinfo-hpa", "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}},
                "fallback": {"failureThreshold": 3, "replicas": 4},
                "triggers": [
                    {"type": "prometheus", "name": "rps", "metadata": {"serverAddress": "http://prometheus:9090", "query": "sum(rate(http_requests_total{deployment=\"podinfo-canary\"}[1m])) + sum(rate(http_requests_total{app=\"podinfo\"}[1m]))"}},
                    {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "80"}},
                ],
            },
            "status": {"hpaName": "keda-hpa-podinfo-so"},
        })
    }

    #[test]
    fn primary_copy_targets_the_primary_workload_with_rewritten_queries() {
        let so = primary_scaled_object(
            &target(),
            &autoscaler(&[], None, None),
            "podinfo",
            "podinfo-primary",
            "test",
            &LabelPolicy::default(),
            MetadataRule::Create,
        );
        assert_eq!(
            so,
            json!({
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {
                    "name": "podinfo-so-primary",
                    "namespace": "test",
                    "labels": {"app": "podinfo"},
                    "annotations": {"team.example.com/owner": "payments"},
                },
                "spec": {
                    "scaleTargetRef": {"name": "podinfo-primary", "kind": "Deployment", "apiVersion": "apps/v1", "envSourceContainerName": "podinfod"},
                    "pollingInterval": 10,
                    "cooldownPeriod": 20,
                    "idleReplicaCount": 0,
                    "minReplicaCount": 2,
                    "maxReplicaCount": 6,
                    "advanced": {"horizontalPodAutoscalerConfig": {"name": "podinfo-hpa-primary", "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}},
                    "fallback": {"failureThreshold": 3, "replicas": 4},
                    "triggers": [
                        {"type": "prometheus", "name": "rps", "metadata": {"serverAddress": "http://prometheus:9090", "query": "sum(rate(http_requests_total{deployment=\"podinfo-primary\"}[1m])) + sum(rate(http_requests_total{app=\"podinfo-primary\"}[1m]))"}},
                        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "80"}},
                    ],
                },
            })
        );
    }

    #[test]
    fn primary_scaler_queries_and_replicas_override_the_copy() {
        let so = primary_scaled_object(
            &target(),
            &autoscaler(
                &[("rps", "sum(rate(x{app=\"primary\"}[1m]))")],
                Some(3),
                Some(9),
            ),
            "podinfo",
            "podinfo-primary",
            "test",
            &LabelPolicy::default(),
            MetadataRule::Create,
        );
        assert_eq!(so["spec"]["minReplicaCount"], 3);
        assert_eq!(so["spec"]["maxReplicaCount"], 9);
        assert_eq!(
            so["spec"]["triggers"][0]["metadata"]["query"],
            "sum(rate(x{app=\"primary\"}[1m]))"
        );
        // A trigger not named in primaryScalerQueries keeps its query untouched.
        let unnamed = json!([{"type": "prometheus", "name": "other", "metadata": {"query": "up{app=\"podinfo\"}"}}]);
        assert_eq!(
            primary_triggers(
                &unnamed,
                &autoscaler(&[("rps", "q")], None, None),
                "podinfo"
            ),
            unnamed
        );
    }

    #[test]
    fn updates_copy_only_metadata_under_the_include_prefixes() {
        let policy = LabelPolicy {
            include_prefixes: vec!["team.example.com".into()],
            ..LabelPolicy::default()
        };
        let so = primary_scaled_object(
            &target(),
            &autoscaler(&[], None, None),
            "podinfo",
            "podinfo-primary",
            "test",
            &policy,
            MetadataRule::Update,
        );
        assert_eq!(so["metadata"]["labels"], json!({}));
        assert_eq!(
            so["metadata"]["annotations"],
            json!({"team.example.com/owner": "payments"})
        );
        let all = LabelPolicy {
            include_prefixes: vec!["*".into()],
            ..LabelPolicy::default()
        };
        let so = primary_scaled_object(
            &target(),
            &autoscaler(&[], None, None),
            "podinfo",
            "podinfo-primary",
            "test",
            &all,
            MetadataRule::Update,
        );
        assert_eq!(so["metadata"]["labels"], json!({"app": "podinfo"}));
        assert!(so["metadata"]["annotations"].get(PAUSED_REPLICAS).is_none());
    }

    #[test]
    fn query_rewrite_is_one_pass() {
        assert_eq!(
            rewrite_query("a{d=\"podinfo-canary\"} b{d=\"podinfo\"}", "podinfo"),
            "a{d=\"podinfo-primary\"} b{d=\"podinfo-primary\"}"
        );
        assert_eq!(
            rewrite_query("podinfopodinfo", "podinfo"),
            "podinfo-primarypodinfo-primary"
        );
        assert_eq!(rewrite_query("up", "podinfo"), "up");
        assert_eq!(rewrite_query("up", ""), "up");
        // As in Flagger: a query that already names the primary is rewritten too.
        assert_eq!(
            rewrite_query("podinfo-primary", "podinfo"),
            "podinfo-primary-primary"
        );
    }

    #[test]
    fn scale_from_zero_uses_min_replica_count_above_one() {
        assert_eq!(replicas_from_zero(Some(&target())), 2);
        assert_eq!(
            replicas_from_zero(Some(&json!({"spec": {"minReplicaCount": 0}}))),
            1
        );
        assert_eq!(replicas_from_zero(Some(&json!({"spec": {}}))), 1);
        assert_eq!(replicas_from_zero(None), 1);
    }

    #[test]
    fn pause_sets_and_resume_removes_the_annotation() {
        assert_eq!(
            pause_patch(true),
            json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": "0"}}})
        );
        assert_eq!(
            pause_patch(false),
            json!({"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": null}}})
        );
    }
}
