//! The Services a Canary generates (apex, `-primary`, `-canary`) and Services that select the
//! target's pods.

use std::collections::BTreeMap;

use flagger_core::generated::Role;
use flagger_core::services::ServiceRole;

use crate::canary::{CanaryView, knative, named};
use crate::finding::{Finding, Level, Rule, finding};
use crate::object::{Object, argo_ignores, same_namespace};

pub(super) fn generated_services(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
    if knative(c) {
        return;
    }
    // The core's list of generated Services, apex first.
    let mut names: Vec<(String, &str)> = flagger_core::generated::services(&c.names())
        .into_iter()
        .filter_map(|o| match o.role {
            Role::Service(ServiceRole::Apex) => Some((o.name, "apex")),
            Role::Service(ServiceRole::Primary) => Some((o.name, "primary")),
            Role::Service(ServiceRole::Canary) => Some((o.name, "canary")),
            _ => None,
        })
        .collect();
    names.sort_by_key(|(_, role)| match *role {
        "apex" => 0,
        "primary" => 1,
        _ => 2,
    });
    for (name, role) in &names {
        for o in named(objects, c, "Service", "", name) {
            let mut message = if c.is_workload() {
                workload_service_message(c, o, role)
            } else {
                format!(
                    "collides with the {role} Service Flagger generates for Canary {} as a copy \
                     of Service/{} and rewrites from it; the GitOps tool re-applies this \
                     manifest on every sync, so they overwrite each other",
                    c.display(),
                    c.target_name
                )
            };
            message.push_str(". Remove it from the repository: Flagger creates it");
            let level = if let Some(annotation) = o.flux_hands_off() {
                message.push_str(&format!(
                    " (it is marked {annotation}, so Flux's kustomize-controller does not apply \
                     it over the live object; other tools do not read that annotation)"
                ));
                Level::Warning
            } else if argo_ignores(objects, o, &["/spec/selector"]) {
                message.push_str(
                    " (an Argo CD Application ignores its /spec/selector with \
                     RespectIgnoreDifferences=true, so syncs leave Flagger's selector alone)",
                );
                Level::Warning
            } else {
                Level::Error
            };
            out.push(finding(level, Rule::GeneratedService, o, message));
        }
    }
}

/// Why a Service manifest named like a generated Service of a workload Canary fights.
fn workload_service_message(c: &CanaryView<'_>, o: &Object, role: &str) -> String {
    let selector = service_selector(o)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let desired = match role {
        "canary" => match &c.selector {
            Some((k, v)) => format!("{k}: {v}"),
            None => "<label>: <value>".to_string(),
        },
        _ => c.primary_selector(),
    };
    let mut message = format!(
        "collides with the {role} Service Flagger generates for Canary {}: the controller sets \
         its selector to {{{desired}}}",
        c.display()
    );
    if selector == desired {
        message.push_str(
            " as this manifest does, but both still own the object: ports, labels and \
             annotations flip on every sync, and the GitOps tool prunes the Service when the \
             manifest goes",
        );
        return message;
    }
    message.push_str(" and the GitOps tool re-applies this manifest");
    if !selector.is_empty() {
        message.push_str(&format!(" with {{{selector}}}"));
    }
    message.push_str(" on every sync, so they overwrite each other");
    if role == "apex" && selects_target(o, c) {
        message.push_str(
            "; this selector picks the target's pods, which Flagger scales to zero: requests \
             fail (503) until the controller corrects it again",
        );
    }
    message
}

/// The target's pod-template labels.
fn target_pod_labels(c: &CanaryView<'_>) -> Option<BTreeMap<String, String>> {
    let labels = c
        .target?
        .value
        .pointer("/spec/template/metadata/labels")?
        .as_object()?;
    Some(
        labels
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect(),
    )
}

/// The Service's selector, when it has a non-empty one.
fn service_selector(o: &Object) -> Option<BTreeMap<String, String>> {
    let m = o.value.pointer("/spec/selector")?.as_object()?;
    let sel: BTreeMap<String, String> = m
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect();
    (!sel.is_empty()).then_some(sel)
}

fn subset(sel: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether the Service's selector picks the target's (canary's) pods.
fn selects_target(o: &Object, c: &CanaryView<'_>) -> bool {
    match (service_selector(o), target_pod_labels(c)) {
        (Some(sel), Some(labels)) => subset(&sel, &labels),
        _ => false,
    }
}

pub(super) fn selects_canary_pods(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
    if !c.is_workload() {
        return;
    }
    let (Some(labels), Some((key, value))) = (target_pod_labels(c), c.selector.clone()) else {
        return;
    };
    // The primary's pods: the same labels, with the selector label's value suffixed.
    let mut primary = labels.clone();
    primary.insert(key.clone(), format!("{value}-primary"));
    let generated = [
        c.apex.clone(),
        format!("{}-primary", c.apex),
        format!("{}-canary", c.apex),
    ];
    for o in objects {
        if o.kind() != "Service"
            || !o.group().is_empty()
            || generated.iter().any(|g| g == o.name())
            || !same_namespace(o.namespace(), c.namespace)
        {
            continue;
        }
        let Some(sel) = service_selector(o) else {
            continue;
        };
        let canary = subset(&sel, &labels);
        let stable = subset(&sel, &primary);
        let message = match (canary, stable) {
            (true, false) => format!(
                "selects the pods of {}/{}, the target of Canary {}, which Flagger scales to \
                 zero outside an analysis: this Service has no endpoints then (503s), and during \
                 an analysis it sends all its traffic to the new version. Send clients to the \
                 apex Service {} or select {{{key}: {value}-primary}}",
                c.target_kind,
                c.target_name,
                c.display(),
                c.apex
            ),
            (true, true) => format!(
                "selects both the primary and the canary pods of Canary {} (its selector does \
                 not use {key}), so its traffic bypasses Flagger's split. Send clients to the \
                 apex Service {} or add {key}: {value}-primary to the selector",
                c.display(),
                c.apex
            ),
            _ => continue,
        };
        out.push(finding(Level::Warning, Rule::SelectsCanaryPods, o, message));
    }
}
