//! The Canary as the rules see it: its provider, target, apex and selector label, resolved
//! against the other objects of the repository.

use serde_json::Value;

use flagger_core::model::Provider;

use crate::object::{Object, same_namespace};
use crate::settings::Context;

/// What the rules need from one Canary.
pub(crate) struct CanaryView<'a> {
    pub(crate) object: &'a Object,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) provider: Provider,
    pub(crate) target_kind: String,
    pub(crate) target_name: String,
    pub(crate) apex: String,
    pub(crate) ingress_ref: Option<String>,
    pub(crate) route_ref: Option<String>,
    pub(crate) autoscaler: Option<(String, String)>,
    /// The target workload's manifest, when it is in the repository.
    pub(crate) target: Option<&'a Object>,
    /// `(label, value)` of the target's selector (§3.2), when the target is known.
    pub(crate) selector: Option<(String, String)>,
}

impl CanaryView<'_> {
    /// What the core's list of generated objects is worked out from.
    pub(crate) fn names(&self) -> flagger_core::generated::Names<'_> {
        flagger_core::generated::Names {
            provider: self.provider,
            namespace: self.namespace,
            target_kind: &self.target_kind,
            target_name: &self.target_name,
            apex: &self.apex,
            ingress_ref: self.ingress_ref.as_deref(),
            route_ref: self.route_ref.as_deref(),
            autoscaler: self
                .autoscaler
                .as_ref()
                .map(|(k, n)| (k.as_str(), n.as_str())),
        }
    }

    pub(crate) fn display(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{ns}/{}", self.object.name()),
            None => self.object.name().to_string(),
        }
    }

    pub(crate) fn is_workload(&self) -> bool {
        matches!(self.target_kind.as_str(), "Deployment" | "DaemonSet")
    }

    /// Primary pods' selector, as text for messages.
    pub(crate) fn primary_selector(&self) -> String {
        match &self.selector {
            Some((k, v)) => format!("{k}: {v}-primary"),
            None => "<label>: <value>-primary".to_string(),
        }
    }
}

fn selector_label(target: &Object, selector_labels: &[String]) -> Option<(String, String)> {
    let labels = target.value.pointer("/spec/selector/matchLabels")?;
    selector_labels.iter().find_map(|k| {
        labels
            .get(k)
            .and_then(Value::as_str)
            .map(|v| (k.clone(), v.to_string()))
    })
}

pub(crate) fn view<'a>(
    o: &'a Object,
    canary: &flagger_api::Canary,
    objects: &'a [Object],
    ctx: &Context,
) -> CanaryView<'a> {
    let spec = &canary.spec;
    let provider = match spec.provider.as_deref().filter(|p| !p.is_empty()) {
        // Flagger's factory falls back to Istio for anything it does not know.
        Some(p) => Provider::parse_flag(p).unwrap_or(Provider::Istio),
        None => ctx.default_provider,
    };
    let target_name = spec.target_ref.name.clone();
    let target_kind = spec.target_ref.kind.clone();
    let apex = spec
        .service
        .as_ref()
        .and_then(|s| s.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| target_name.clone());
    let namespace = o.namespace();
    let target = objects.iter().find(|t| {
        t.kind() == target_kind
            && t.name() == target_name
            && same_namespace(t.namespace(), namespace)
    });
    let selector = target.and_then(|t| selector_label(t, &ctx.selector_labels));
    CanaryView {
        object: o,
        namespace,
        provider,
        target_kind,
        target_name,
        apex,
        ingress_ref: spec.ingress_ref.as_ref().map(|r| r.name.clone()),
        route_ref: spec.route_ref.as_ref().map(|r| r.name.clone()),
        autoscaler: spec
            .autoscaler_ref
            .as_ref()
            .map(|r| (r.kind.clone(), r.name.clone())),
        target,
        selector,
    }
}

/// Objects of `kind` (in a group ending with `group_suffix`; `""` = core) named `name` in the
/// Canary's namespace.
pub(crate) fn named<'a>(
    objects: &'a [Object],
    c: &'a CanaryView<'_>,
    kind: &'a str,
    group_suffix: &'a str,
    name: &'a str,
) -> impl Iterator<Item = &'a Object> + 'a {
    objects.iter().filter(move |o| {
        o.kind() == kind
            && o.name() == name
            && (if group_suffix.is_empty() {
                o.group().is_empty()
            } else {
                o.group().ends_with(group_suffix)
            })
            && same_namespace(o.namespace(), c.namespace)
    })
}

pub(crate) fn knative(c: &CanaryView<'_>) -> bool {
    c.provider == Provider::Knative
        || c.target_kind == "Service"
            && c.target.is_some_and(|t| t.group() == "serving.knative.dev")
}
