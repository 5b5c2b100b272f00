//! The `-primary` copy of a target workload, built from the target as Flagger builds it: which
//! labels and annotations are copied, the selector, the pod spec with tracked ConfigMaps and
//! Secrets renamed to their `-primary` copies, and the anti-affinity rewrite. Pure functions of
//! the target (and, for promotion, the current primary); the controller applies the result.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::Value;

use flagger_api::labels::{FLAGGER_ID, SCALE_TO_ZERO_NODE_SELECTOR, TOOLKIT_MARKER};

/// How labels are chosen and copied (`-selector-labels`, `-include-label-prefix`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelPolicy {
    /// Ordered selector label keys; the first present in the target's selector wins.
    pub selector_labels: Vec<String>,
    /// Prefixes of labels/annotations copied on promotion; `*` matches everything.
    pub include_prefixes: Vec<String>,
}

impl Default for LabelPolicy {
    fn default() -> Self {
        Self {
            selector_labels: flagger_api::labels::DEFAULT_SELECTOR_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            include_prefixes: Vec::new(),
        }
    }
}

impl LabelPolicy {
    /// Whether a key is copied under `-include-label-prefix`.
    pub fn includes(&self, key: &str) -> bool {
        !key.contains(TOOLKIT_MARKER)
            && self
                .include_prefixes
                .iter()
                .any(|p| !p.is_empty() && (p == "*" || key.starts_with(p.as_str())))
    }

    /// The selector label of a workload: the first configured key present in its selector.
    pub fn selector_label(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
        selector: Option<&LabelSelector>,
    ) -> Result<(String, String), String> {
        let labels = selector.and_then(|s| s.match_labels.as_ref());
        self.selector_labels
            .iter()
            .find_map(|k| {
                labels
                    .and_then(|l| l.get(k))
                    .map(|v| (k.clone(), v.clone()))
            })
            .ok_or_else(|| {
                format!(
                    "{} {name}.{namespace} spec.selector.matchLabels must contain one of [{}]",
                    kind.to_lowercase(),
                    self.selector_labels.join(" ")
                )
            })
    }
}

/// A ConfigMap or Secret referenced by a pod spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    /// The key prefix used in `status.trackedConfigs`.
    pub fn key(&self) -> &'static str {
        match self {
            Self::ConfigMap => "configmap",
            Self::Secret => "secret",
        }
    }
}

/// One reference from a pod spec to a ConfigMap or Secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigRef {
    pub kind: ConfigKind,
    pub name: String,
    /// `optional: true` on the reference: a missing object is skipped, not an error.
    pub optional: bool,
}

/// Every ConfigMap and Secret a pod spec references: volumes (plain and projected), and `env`
/// and `envFrom` of containers and init containers. A name referenced both optionally and
/// required counts as required.
pub fn config_refs(spec: &PodSpec) -> Vec<ConfigRef> {
    let mut found: BTreeMap<(ConfigKind, String), bool> = BTreeMap::new();
    let mut add = |kind: ConfigKind, name: &str, optional: Option<bool>| {
        if name.is_empty() {
            return;
        }
        let optional = optional.unwrap_or(false);
        found
            .entry((kind, name.to_string()))
            .and_modify(|o| *o = *o && optional)
            .or_insert(optional);
    };
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            add(ConfigKind::ConfigMap, &cm.name, cm.optional);
        }
        if let Some(s) = &volume.secret {
            add(
                ConfigKind::Secret,
                s.secret_name.as_deref().unwrap_or_default(),
                s.optional,
            );
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    add(ConfigKind::ConfigMap, &cm.name, cm.optional);
                }
                if let Some(s) = &source.secret {
                    add(ConfigKind::Secret, &s.name, s.optional);
                }
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for env in c.env.iter().flatten() {
            if let Some(from) = &env.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    add(ConfigKind::ConfigMap, &r.name, r.optional);
                }
                if let Some(r) = &from.secret_key_ref {
                    add(ConfigKind::Secret, &r.name, r.optional);
                }
            }
        }
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                add(ConfigKind::ConfigMap, &r.name, r.optional);
            }
            if let Some(r) = &from.secret_ref {
                add(ConfigKind::Secret, &r.name, r.optional);
            }
        }
    }
    found
        .into_iter()
        .map(|((kind, name), optional)| ConfigRef {
            kind,
            name,
            optional,
        })
        .collect()
}

/// Points every reference to a tracked config at its `-primary` copy; other references are
/// left alone.
pub fn rename_config_refs(spec: &mut PodSpec, tracked: &BTreeSet<(ConfigKind, String)>) {
    let is = |kind: ConfigKind, name: &str| tracked.contains(&(kind, name.to_string()));
    let primary = |name: &mut String| name.push_str("-primary");
    for volume in spec.volumes.iter_mut().flatten() {
        if let Some(cm) = volume.config_map.as_mut()
            && is(ConfigKind::ConfigMap, &cm.name)
        {
            primary(&mut cm.name);
        }
        if let Some(s) = volume.secret.as_mut()
            && let Some(name) = s.secret_name.as_mut()
            && is(ConfigKind::Secret, name)
        {
            primary(name);
        }
        if let Some(projected) = volume.projected.as_mut() {
            for source in projected.sources.iter_mut().flatten() {
                if let Some(cm) = source.config_map.as_mut()
                    && is(ConfigKind::ConfigMap, &cm.name)
                {
                    primary(&mut cm.name);
                }
                if let Some(s) = source.secret.as_mut()
                    && is(ConfigKind::Secret, &s.name)
                {
                    primary(&mut s.name);
                }
            }
        }
    }
    let init = spec.init_containers.iter_mut().flatten();
    for c in spec.containers.iter_mut().chain(init) {
        for env in c.env.iter_mut().flatten() {
            if let Some(from) = env.value_from.as_mut() {
                if let Some(r) = from.config_map_key_ref.as_mut()
                    && is(ConfigKind::ConfigMap, &r.name)
                {
                    primary(&mut r.name);
                }
                if let Some(r) = from.secret_key_ref.as_mut()
                    && is(ConfigKind::Secret, &r.name)
                {
                    primary(&mut r.name);
                }
            }
        }
        for from in c.env_from.iter_mut().flatten() {
            if let Some(r) = from.config_map_ref.as_mut()
                && is(ConfigKind::ConfigMap, &r.name)
            {
                primary(&mut r.name);
            }
            if let Some(r) = from.secret_ref.as_mut()
                && is(ConfigKind::Secret, &r.name)
            {
                primary(&mut r.name);
            }
        }
    }
}

/// Points anti-affinity and topology-spread selectors that select the target (values equal to
/// the target *name* under a selector-label key, as Flagger matches them) at the primary.
pub fn rewrite_affinity(spec: &mut PodSpec, selector_labels: &[String], target_name: &str) {
    let rewrite = |selector: &mut LabelSelector| {
        for expr in selector.match_expressions.iter_mut().flatten() {
            if selector_labels.contains(&expr.key)
                && let Some(v) = expr
                    .values
                    .iter_mut()
                    .flatten()
                    .find(|v| v.as_str() == target_name)
            {
                v.push_str("-primary");
            }
        }
        for (k, v) in selector.match_labels.iter_mut().flatten() {
            if selector_labels.contains(k) && v == target_name {
                v.push_str("-primary");
            }
        }
    };
    for tsc in spec.topology_spread_constraints.iter_mut().flatten() {
        if let Some(sel) = tsc.label_selector.as_mut() {
            rewrite(sel);
        }
    }
    if let Some(anti) = spec
        .affinity
        .as_mut()
        .and_then(|a| a.pod_anti_affinity.as_mut())
    {
        for w in anti
            .preferred_during_scheduling_ignored_during_execution
            .iter_mut()
            .flatten()
        {
            if let Some(sel) = w.pod_affinity_term.label_selector.as_mut() {
                rewrite(sel);
            }
        }
        for term in anti
            .required_during_scheduling_ignored_during_execution
            .iter_mut()
            .flatten()
        {
            if let Some(sel) = term.label_selector.as_mut() {
                rewrite(sel);
            }
        }
    }
}

fn without_toolkit(map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn filtered(
    map: Option<&BTreeMap<String, String>>,
    policy: &LabelPolicy,
) -> BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| policy.includes(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What the primary copy needs besides the target.
#[derive(Clone, Debug)]
pub struct PrimaryInputs<'a> {
    pub policy: &'a LabelPolicy,
    /// Selector label key and the target's value for it.
    pub selector: (&'a str, &'a str),
    /// Tracked configs that have `-primary` copies.
    pub tracked: &'a BTreeSet<(ConfigKind, String)>,
    /// A fresh UUID for the `flagger-id` annotation (forces a rolling update on promotion).
    pub flagger_id: &'a str,
}

/// The primary pod template: labels with the selector forced to `<value>-primary`, a fresh
/// `flagger-id`, config references renamed and (for Deployments) affinity rewritten.
fn primary_template(
    template: &PodTemplateSpec,
    inputs: &PrimaryInputs<'_>,
    target_name: &str,
    rewrite: bool,
) -> PodTemplateSpec {
    let (label, value) = inputs.selector;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = without_toolkit(meta.labels.as_ref());
    labels.insert(label.to_string(), format!("{value}-primary"));
    let mut annotations = without_toolkit(meta.annotations.as_ref());
    annotations.insert(FLAGGER_ID.to_string(), inputs.flagger_id.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    rename_config_refs(&mut spec, inputs.tracked);
    if rewrite {
        rewrite_affinity(&mut spec, &inputs.policy.selector_labels, target_name);
    }
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

fn primary_selector(inputs: &PrimaryInputs<'_>) -> LabelSelector {
    let (label, value) = inputs.selector;
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            label.to_string(),
            format!("{value}-primary"),
        )])),
        ..Default::default()
    }
}

/// A new `<target>-primary` Deployment (created when missing). Metadata: labels filtered by
/// `-include-label-prefix` plus the selector label, every annotation but toolkit ones.
pub fn primary_deployment(target: &Deployment, inputs: &PrimaryInputs<'_>) -> Deployment {
    let name = target.metadata.name.clone().unwrap_or_default();
    let spec = target.spec.clone().unwrap_or_default();
    let (label, value) = inputs.selector;
    let mut labels = filtered(target.metadata.labels.as_ref(), inputs.policy);
    labels.insert(label.to_string(), format!("{value}-primary"));
    Deployment {
        metadata: ObjectMeta {
            name: Some(format!("{name}-primary")),
            namespace: target.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(without_toolkit(target.metadata.annotations.as_ref())),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            progress_deadline_seconds: spec.progress_deadline_seconds,
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            strategy: spec.strategy.clone(),
            replicas: Some(spec.replicas.filter(|r| *r > 0).unwrap_or(1)),
            selector: primary_selector(inputs),
            template: primary_template(&spec.template, inputs, &name, true),
            paused: None,
        }),
        status: None,
    }
}

/// The `flagger-id` of the primary's pod template for a revision: Flagger writes a fresh UUID
/// at each promotion to roll the primary's pods (config changes included); derived from the
/// revision instead, a promotion carried out again (after a failed step) rolls nothing twice,
/// and a new revision or config still rolls the pods.
pub fn promotion_id(revision: &crate::effects::TargetRevision) -> String {
    crate::hash::spec_hash(&serde_json::json!({
        "revision": revision.hash,
        "configs": revision.tracked_configs,
    }))
}

/// Flagger's scale-from-zero replica count (reference §3.5): the target's own count when it has
/// one; else the autoscaler's minimum (HPA `minReplicas`, KEDA's count), at least 1; else the
/// primary's, at least 1.
pub fn replicas_from_zero(own: Option<i32>, autoscaler: Option<i32>, primary: Option<i32>) -> i32 {
    if let Some(r) = own.filter(|r| *r > 0) {
        return r;
    }
    match autoscaler {
        Some(min) => min.max(1),
        None => primary.filter(|r| *r > 0).unwrap_or(1),
    }
}

/// The owner references of a `-primary` ConfigMap or Secret copy written by the canary that
/// `mine` names, given those the copy has now (`existing`).
///
/// A tracked config may be shared by several canaries (every Deployment of a namespace mounting
/// one ConfigMap); they share its `-primary` copy, whose name only depends on the config's.
/// Flagger replaces the copy's owner references with the writer's controller reference, so the
/// copy flips from canary to canary and deleting the last writer garbage-collects a copy the
/// other canaries' primaries still mount. Here the writer takes the controller reference, as in
/// Flagger, and every other owner is kept as a plain owner (`controller: false`): the garbage
/// collector removes the copy only once all the canaries that wrote it are gone. The order is
/// stable (existing owners first, in place), so a writer that already holds the controller
/// reference changes nothing.
pub fn shared_copy_owners(
    existing: &[OwnerReference],
    mine: OwnerReference,
) -> Vec<OwnerReference> {
    let mut owners: Vec<OwnerReference> = existing
        .iter()
        .filter(|o| o.uid != mine.uid)
        .map(|o| OwnerReference {
            controller: o.controller.map(|_| false),
            ..o.clone()
        })
        .collect();
    match existing.iter().position(|o| o.uid == mine.uid) {
        Some(i) => owners.insert(i.min(owners.len()), mine),
        None => owners.push(mine),
    }
    owners
}

/// The primary HPA's spec from the target HPA's: the same metrics and behaviour, scaling the
/// primary workload, within the Canary's `primaryScalerReplicas` bounds when it sets them.
pub fn primary_hpa_spec(
    target: &HorizontalPodAutoscalerSpec,
    autoscaler: &crate::model::Autoscaler,
    primary_workload: &str,
) -> HorizontalPodAutoscalerSpec {
    let mut scale_ref = target.scale_target_ref.clone();
    scale_ref.name = primary_workload.to_string();
    HorizontalPodAutoscalerSpec {
        scale_target_ref: scale_ref,
        min_replicas: autoscaler.primary_min_replicas.or(target.min_replicas),
        max_replicas: autoscaler
            .primary_max_replicas
            .unwrap_or(target.max_replicas),
        metrics: target.metrics.clone(),
        behavior: target.behavior.clone(),
    }
}

/// Whether the primary HPA no longer follows its target's (`-autoscaler-sync=immediate`: the
/// change is carried over at once instead of at the next promotion).
pub fn primary_hpa_drifted(
    target: &HorizontalPodAutoscalerSpec,
    autoscaler: &crate::model::Autoscaler,
    primary_workload: &str,
    primary: Option<&HorizontalPodAutoscalerSpec>,
) -> bool {
    primary != Some(&primary_hpa_spec(target, autoscaler, primary_workload))
}

/// The primary Deployment after promotion: template spec, strategy fields, replicas (unless an
/// autoscaler owns them) and metadata copied from the target; the selector never changes. A
/// target at zero replicas (its pods were scaled down while the promotion was decided) leaves
/// the primary's count as it is: a primary is never promoted to zero replicas.
pub fn promote_deployment(
    target: &Deployment,
    primary: &Deployment,
    inputs: &PrimaryInputs<'_>,
    has_autoscaler: bool,
) -> Deployment {
    let name = target.metadata.name.clone().unwrap_or_default();
    let tspec = target.spec.clone().unwrap_or_default();
    let mut out = primary.clone();
    let (label, value) = inputs.selector;
    let mut labels = filtered(target.metadata.labels.as_ref(), inputs.policy);
    labels.insert(label.to_string(), format!("{value}-primary"));
    out.metadata.labels = Some(labels);
    out.metadata.annotations = Some(filtered(
        target.metadata.annotations.as_ref(),
        inputs.policy,
    ));
    let spec = out.spec.get_or_insert_with(Default::default);
    spec.progress_deadline_seconds = tspec.progress_deadline_seconds;
    spec.min_ready_seconds = tspec.min_ready_seconds;
    spec.revision_history_limit = tspec.revision_history_limit;
    spec.strategy = tspec.strategy.clone();
    if !has_autoscaler && let Some(replicas) = tspec.replicas.filter(|r| *r > 0) {
        spec.replicas = Some(replicas);
    }
    spec.template = primary_template(&tspec.template, inputs, &name, true);
    out.status = None;
    out
}

/// A DaemonSet pod spec without the scale-to-zero node selector.
fn without_scale_to_zero(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(ns) = t.spec.as_mut().and_then(|s| s.node_selector.as_mut()) {
        ns.remove(SCALE_TO_ZERO_NODE_SELECTOR);
    }
    t
}

/// A new `<target>-primary` DaemonSet (no replicas, no affinity rewrite).
pub fn primary_daemonset(target: &DaemonSet, inputs: &PrimaryInputs<'_>) -> DaemonSet {
    let name = target.metadata.name.clone().unwrap_or_default();
    let spec = target.spec.clone().unwrap_or_default();
    let (label, value) = inputs.selector;
    let mut labels = filtered(target.metadata.labels.as_ref(), inputs.policy);
    labels.insert(label.to_string(), format!("{value}-primary"));
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-primary")),
            namespace: target.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(without_toolkit(target.metadata.annotations.as_ref())),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            update_strategy: spec.update_strategy.clone(),
            selector: primary_selector(inputs),
            template: primary_template(
                &without_scale_to_zero(&spec.template),
                inputs,
                &name,
                false,
            ),
        }),
        status: None,
    }
}

/// The primary DaemonSet after promotion.
pub fn promote_daemonset(
    target: &DaemonSet,
    primary: &DaemonSet,
    inputs: &PrimaryInputs<'_>,
) -> DaemonSet {
    let name = target.metadata.name.clone().unwrap_or_default();
    let tspec = target.spec.clone().unwrap_or_default();
    let mut out = primary.clone();
    let (label, value) = inputs.selector;
    let mut labels = filtered(target.metadata.labels.as_ref(), inputs.policy);
    labels.insert(label.to_string(), format!("{value}-primary"));
    out.metadata.labels = Some(labels);
    out.metadata.annotations = Some(filtered(
        target.metadata.annotations.as_ref(),
        inputs.policy,
    ));
    let spec = out.spec.get_or_insert_with(Default::default);
    spec.min_ready_seconds = tspec.min_ready_seconds;
    spec.revision_history_limit = tspec.revision_history_limit;
    spec.update_strategy = tspec.update_strategy.clone();
    spec.template = primary_template(
        &without_scale_to_zero(&tspec.template),
        inputs,
        &name,
        false,
    );
    out.status = None;
    out
}

/// What the revision hash of a Deployment target covers: its pod template.
pub fn deployment_hash_input(target: &Deployment) -> Value {
    let template = target
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    serde_json::to_value(template).unwrap_or(Value::Null)
}

/// What the revision hash of a DaemonSet target covers: its pod template without the
/// scale-to-zero node selector (an absent node selector and an empty one hash alike).
pub fn daemonset_hash_input(target: &DaemonSet) -> Value {
    let mut template = target
        .spec
        .as_ref()
        .map(|s| without_scale_to_zero(&s.template))
        .unwrap_or_default();
    if let Some(spec) = template.spec.as_mut()
        && spec.node_selector.as_ref().is_some_and(|n| n.is_empty())
    {
        spec.node_selector = None;
    }
    serde_json::to_value(template).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::{OwnerReference, shared_copy_owners};

    fn owner(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "flagger.app/v1beta1".into(),
            kind: "Canary".into(),
            name: format!("canary-{uid}"),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn a_shared_config_copy_keeps_every_canary_as_owner_and_one_controller() {
        // First writer: the only owner, as controller.
        let first = shared_copy_owners(&[], owner("a", true));
        assert_eq!(first, vec![owner("a", true)]);
        // A second canary sharing the config takes the controller reference; the first stays.
        let second = shared_copy_owners(&first, owner("b", true));
        assert_eq!(second, vec![owner("a", false), owner("b", true)]);
        // The first writes again (promotion): back to it, in place, nothing lost.
        let again = shared_copy_owners(&second, owner("a", true));
        assert_eq!(again, vec![owner("a", true), owner("b", false)]);
        // Writing what the copy already has changes nothing.
        assert_eq!(shared_copy_owners(&again, owner("a", true)), again);
        assert_eq!(
            again.iter().filter(|o| o.controller == Some(true)).count(),
            1
        );
    }

    #[test]
    fn the_primary_hpa_follows_the_target_within_the_canary_bounds() {
        use crate::model::{Autoscaler, AutoscalerKind};
        use k8s_openapi::api::autoscaling::v2::CrossVersionObjectReference;
        let target = super::HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: "app".into(),
            },
            min_replicas: Some(2),
            max_replicas: 4,
            ..Default::default()
        };
        let mut a = Autoscaler {
            kind: AutoscalerKind::HorizontalPodAutoscaler,
            api_version: "autoscaling/v2".into(),
            name: "app".into(),
            primary_scaler_queries: Default::default(),
            primary_min_replicas: None,
            primary_max_replicas: None,
        };
        let primary = super::primary_hpa_spec(&target, &a, "app-primary");
        assert_eq!(primary.scale_target_ref.name, "app-primary");
        assert_eq!((primary.min_replicas, primary.max_replicas), (Some(2), 4));
        assert!(!super::primary_hpa_drifted(
            &target,
            &a,
            "app-primary",
            Some(&primary)
        ));
        let raised = super::HorizontalPodAutoscalerSpec {
            max_replicas: 6,
            ..target.clone()
        };
        assert!(super::primary_hpa_drifted(
            &raised,
            &a,
            "app-primary",
            Some(&primary)
        ));
        assert!(super::primary_hpa_drifted(&target, &a, "app-primary", None));
        a.primary_max_replicas = Some(3);
        assert_eq!(
            super::primary_hpa_spec(&raised, &a, "app-primary").max_replicas,
            3
        );
    }

    use super::*;
    use serde_json::json;

    fn target() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "podinfo", "namespace": "test",
                "labels": {"app": "podinfo", "app.kubernetes.io/part-of": "demo", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {"team": "a", "kustomize.toolkit.fluxcd.io/checksum": "x"}},
            "spec": {
                "replicas": 0,
                "progressDeadlineSeconds": 60,
                "selector": {"matchLabels": {"app": "podinfo"}},
                "template": {
                    "metadata": {"labels": {"app": "podinfo"}, "annotations": {"flagger-id": "old", "prometheus.io/scrape": "true"}},
                    "spec": {
                        "containers": [{"name": "podinfod", "image": "podinfo:1",
                            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
                                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "untracked", "key": "b", "optional": true}}}],
                            "envFrom": [{"secretRef": {"name": "creds"}}]}],
                        "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "init-cfg", "optional": true}}]}],
                        "volumes": [{"name": "v", "configMap": {"name": "cfg"}},
                                    {"name": "p", "projected": {"sources": [{"secret": {"name": "creds"}}]}}],
                        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchExpressions": [
                                {"key": "app", "operator": "In", "values": ["podinfo"]}]}}]}}
                    }
                }
            }
        }))
        .expect("deployment")
    }

    #[test]
    fn finds_every_config_reference() {
        let t = target();
        let refs = config_refs(
            t.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("spec"),
        );
        let names: Vec<_> = refs
            .iter()
            .map(|r| (r.kind.key(), r.name.as_str(), r.optional))
            .collect();
        assert_eq!(
            names,
            vec![
                ("configmap", "cfg", false),
                ("configmap", "init-cfg", true),
                ("secret", "creds", false),
                ("secret", "untracked", true),
            ]
        );
    }

    #[test]
    fn primary_deployment_follows_flaggers_copy_rules() {
        let policy = LabelPolicy {
            include_prefixes: vec!["app.kubernetes.io".into()],
            ..Default::default()
        };
        let t = target();
        let sel = policy
            .selector_label(
                "Deployment",
                "podinfo",
                "test",
                t.spec.as_ref().map(|s| &s.selector),
            )
            .expect("selector label");
        assert_eq!(sel, ("app".to_string(), "podinfo".to_string()));
        let tracked = BTreeSet::from([
            (ConfigKind::ConfigMap, "cfg".to_string()),
            (ConfigKind::Secret, "creds".to_string()),
        ]);
        let inputs = PrimaryInputs {
            policy: &policy,
            selector: ("app", "podinfo"),
            tracked: &tracked,
            flagger_id: "uuid-1",
        };
        let p = primary_deployment(&t, &inputs);
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["metadata"]["name"], "podinfo-primary");
        assert_eq!(
            v["metadata"]["labels"],
            json!({"app": "podinfo-primary", "app.kubernetes.io/part-of": "demo"})
        );
        assert_eq!(v["metadata"]["annotations"], json!({"team": "a"}));
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["spec"]["progressDeadlineSeconds"], 60);
        assert_eq!(
            v["spec"]["selector"],
            json!({"matchLabels": {"app": "podinfo-primary"}})
        );
        let tpl = &v["spec"]["template"];
        assert_eq!(tpl["metadata"]["labels"], json!({"app": "podinfo-primary"}));
        assert_eq!(
            tpl["metadata"]["annotations"],
            json!({"flagger-id": "uuid-1", "prometheus.io/scrape": "true"})
        );
        let c = &tpl["spec"]["containers"][0];
        assert_eq!(
            c["env"][0]["valueFrom"]["configMapKeyRef"]["name"],
            "cfg-primary"
        );
        assert_eq!(
            c["env"][1]["valueFrom"]["secretKeyRef"]["name"],
            "untracked"
        );
        assert_eq!(c["envFrom"][0]["secretRef"]["name"], "creds-primary");
        assert_eq!(
            tpl["spec"]["initContainers"][0]["envFrom"][0]["configMapRef"]["name"],
            "init-cfg"
        );
        assert_eq!(
            tpl["spec"]["volumes"][0]["configMap"]["name"],
            "cfg-primary"
        );
        assert_eq!(
            tpl["spec"]["volumes"][1]["projected"]["sources"][0]["secret"]["name"],
            "creds-primary"
        );
        assert_eq!(
            tpl["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
                [0]["labelSelector"]["matchExpressions"][0]["values"],
            json!(["podinfo-primary"])
        );
    }

    #[test]
    fn promotion_filters_metadata_and_keeps_replicas_under_an_autoscaler() {
        let policy = LabelPolicy::default();
        let tracked = BTreeSet::new();
        let inputs = PrimaryInputs {
            policy: &policy,
            selector: ("app", "podinfo"),
            tracked: &tracked,
            flagger_id: "uuid-2",
        };
        let mut t = target();
        let primary = primary_deployment(&t, &inputs);
        if let Some(s) = t.spec.as_mut() {
            s.replicas = Some(3);
        }
        let promoted = promote_deployment(&t, &primary, &inputs, true);
        let v = serde_json::to_value(&promoted).expect("json");
        assert_eq!(
            v["spec"]["replicas"], 1,
            "an autoscaler owns the primary's replicas"
        );
        assert_eq!(
            v["metadata"]["labels"],
            json!({"app": "podinfo-primary"}),
            "empty prefix list copies nothing"
        );
        assert_eq!(v["metadata"]["annotations"], json!({}));
        let promoted = promote_deployment(&t, &primary, &inputs, false);
        assert_eq!(promoted.spec.and_then(|s| s.replicas), Some(3));
    }

    #[test]
    fn a_primary_is_never_promoted_to_zero_replicas() {
        let policy = LabelPolicy::default();
        let tracked = BTreeSet::new();
        let inputs = PrimaryInputs {
            policy: &policy,
            selector: ("app", "podinfo"),
            tracked: &tracked,
            flagger_id: "uuid-3",
        };
        let mut t = target();
        if let Some(s) = t.spec.as_mut() {
            s.replicas = Some(4);
        }
        let primary = primary_deployment(&t, &inputs);
        if let Some(s) = t.spec.as_mut() {
            s.replicas = Some(0);
        }
        let promoted = promote_deployment(&t, &primary, &inputs, false);
        assert_eq!(promoted.spec.and_then(|s| s.replicas), Some(4));
    }

    #[test]
    fn promotion_ids_follow_the_revision_and_its_configs() {
        let r = |hash: &str, cfg: &str| crate::effects::TargetRevision {
            hash: hash.into(),
            tracked_configs: [("configmap/c".to_string(), cfg.to_string())].into(),
        };
        assert_eq!(promotion_id(&r("a", "1")), promotion_id(&r("a", "1")));
        assert_ne!(promotion_id(&r("a", "1")), promotion_id(&r("b", "1")));
        assert_ne!(promotion_id(&r("a", "1")), promotion_id(&r("a", "2")));
    }

    #[test]
    fn scale_from_zero_takes_the_target_then_the_autoscaler_then_the_primary() {
        assert_eq!(replicas_from_zero(Some(3), Some(5), Some(7)), 3);
        assert_eq!(replicas_from_zero(Some(0), Some(5), Some(7)), 5);
        assert_eq!(replicas_from_zero(None, Some(0), Some(7)), 1);
        assert_eq!(replicas_from_zero(Some(0), None, Some(7)), 7);
        assert_eq!(replicas_from_zero(Some(0), None, Some(0)), 1);
        assert_eq!(replicas_from_zero(None, None, None), 1);
    }

    #[test]
    fn missing_selector_label_names_the_keys() {
        let policy = LabelPolicy::default();
        let err = policy
            .selector_label("Deployment", "web", "prod", None)
            .expect_err("no label");
        assert_eq!(
            err,
            "deployment web.prod spec.selector.matchLabels must contain one of [app name app.kubernetes.io/name]"
        );
    }

    #[test]
    fn daemonset_hash_ignores_the_scale_to_zero_selector() {
        let ds = |ns: serde_json::Value| -> DaemonSet {
            serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"selector": {}, "template": {"spec": {"containers": [], "nodeSelector": ns}}}})).expect("ds")
        };
        let a = daemonset_hash_input(&ds(json!({SCALE_TO_ZERO_NODE_SELECTOR: "true"})));
        let b = daemonset_hash_input(&ds(json!({})));
        assert_eq!(crate::hash::spec_hash(&a), crate::hash::spec_hash(&b));
    }
}
