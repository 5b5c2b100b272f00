//! The primary workload, the config copies of config tracking, the primary autoscaler, and the
//! target's `spec.replicas`.

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;

use flagger_api::labels::CONFIG_TRACKING;

use crate::canary::{CanaryView, named};
use crate::finding::{Finding, Level, Rule, finding};
use crate::object::{Object, argo_ignores, same_namespace};

pub(super) fn generated_workload(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
    if !c.is_workload() {
        return;
    }
    let name = format!("{}-primary", c.target_name);
    for o in named(objects, c, &c.target_kind, "apps", &name) {
        out.push(finding(
            Level::Error,
            Rule::GeneratedWorkload,
            o,
            format!(
                "collides with the primary {} Flagger generates from {}/{} for Canary {} and \
                 rewrites on every promotion; the GitOps tool would roll the primary back to \
                 this manifest. Remove it from the repository",
                c.target_kind,
                c.target_kind,
                c.target_name,
                c.display()
            ),
        ));
    }
}

pub(super) fn generated_configs(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
    let Some(target) = c.target.filter(|_| c.is_workload()) else {
        return;
    };
    let Some(spec) = target
        .value
        .pointer("/spec/template/spec")
        .and_then(|s| serde_json::from_value::<PodSpec>(s.clone()).ok())
    else {
        return;
    };
    for r in flagger_core::workload::config_refs(&spec) {
        let kind = match r.kind {
            flagger_core::workload::ConfigKind::ConfigMap => "ConfigMap",
            flagger_core::workload::ConfigKind::Secret => "Secret",
        };
        // A source object that opts out of tracking is shared by the primary, not copied.
        let untracked = named(objects, c, kind, "", &r.name)
            .any(|o| o.annotation(CONFIG_TRACKING) == Some("disabled"));
        if untracked {
            continue;
        }
        let name = format!("{}-primary", r.name);
        for o in named(objects, c, kind, "", &name) {
            out.push(finding(
                Level::Error,
                Rule::GeneratedConfig,
                o,
                format!(
                    "collides with the copy of {kind}/{} that Flagger's config tracking makes for \
                     the primary of Canary {} and updates on every promotion. Remove it from the \
                     repository",
                    r.name,
                    c.display()
                ),
            ));
        }
    }
}

pub(super) fn generated_autoscalers(
    c: &CanaryView<'_>,
    objects: &[Object],
    out: &mut Vec<Finding>,
) {
    if !c.is_workload() {
        return;
    }
    let primary = format!("{}-primary", c.target_name);
    for o in objects {
        let kind = o.kind();
        let is_hpa = kind == "HorizontalPodAutoscaler" && o.group() == "autoscaling";
        let is_so = kind == "ScaledObject" && o.group() == "keda.sh";
        if !(is_hpa || is_so) || !same_namespace(o.namespace(), c.namespace) {
            continue;
        }
        let generated = c
            .autoscaler
            .as_ref()
            .is_some_and(|(k, n)| k == kind && o.name() == format!("{n}-primary"));
        let scales_primary = o.str_at("/spec/scaleTargetRef/name") == Some(primary.as_str());
        if !(generated || scales_primary) {
            continue;
        }
        let message = if generated {
            format!(
                "collides with the {kind} Flagger generates from spec.autoscalerRef of Canary {} \
                 to scale {primary}. Remove it from the repository",
                c.display()
            )
        } else {
            format!(
                "scales {primary}, the primary {} of Canary {}, which Flagger scales itself{}; \
                 both would set its replicas. Remove it from the repository and point \
                 spec.autoscalerRef at an autoscaler of {}",
                c.target_kind,
                c.display(),
                if c.autoscaler.is_some() {
                    " with the copy of spec.autoscalerRef"
                } else {
                    ""
                },
                c.target_name
            )
        };
        out.push(finding(Level::Error, Rule::GeneratedAutoscaler, o, message));
    }
}

pub(super) fn target_replicas(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
    let Some(t) = c.target.filter(|t| t.kind() == "Deployment") else {
        return;
    };
    if t.flux_hands_off().is_some() || argo_ignores(objects, t, &["/spec/replicas"]) {
        return;
    }
    let Some(replicas) = t.value.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return;
    };
    out.push(finding(
        Level::Warning,
        Rule::TargetReplicas,
        t,
        format!(
            "sets spec.replicas: {replicas} on the target of Canary {}: Flagger scales this \
             Deployment to zero between analyses and the GitOps tool scales it back to \
             {replicas} on every sync. Remove spec.replicas (or scale it with an HPA named in \
             spec.autoscalerRef)",
            c.display()
        ),
    ));
}
