//! The rules of `flagger lint`: pure functions from the objects of a GitOps repository to
//! findings. No I/O and no clock: [`super::load`] reads the files, this module judges them.
//!
//! Every rule starts from a Canary and asks which objects its controller will generate or
//! rewrite (reference §3 and §4): a manifest in the repository for one of those objects makes
//! the GitOps tool and the controller overwrite each other, on every sync interval.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;

use flagger_api::labels::{CONFIG_TRACKING, FLUX_RECONCILE_DISABLED};

/// Flux kustomize-controller's apply policy annotation (`Override`, `Merge`, `IfNotPresent`,
/// `Ignore`).
const FLUX_SSA: &str = "kustomize.toolkit.fluxcd.io/ssa";
use flagger_core::model::Provider;
use flagger_core::validate::{ValidationContext, diagnose};

/// Where an object was read from: the file and the line of its `kind:` (or of the document
/// start when there is no top-level `kind:` line).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    pub path: String,
    pub line: usize,
}

/// One Kubernetes object of the repository.
#[derive(Clone, Debug)]
pub struct Object {
    pub source: Source,
    pub value: Value,
}

impl Object {
    pub fn new(path: &str, line: usize, value: Value) -> Self {
        Self {
            source: Source {
                path: path.to_string(),
                line,
            },
            value,
        }
    }

    fn str_at(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }

    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion").unwrap_or("")
    }

    /// API group: what comes before the `/` of `apiVersion`; empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or("")
    }

    /// `metadata.namespace`, when the manifest sets one.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at("/metadata/namespace").filter(|n| !n.is_empty())
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    }

    /// `Kind/name`, as findings name objects.
    pub fn display(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// How the manifest keeps Flux's kustomize-controller from applying it over the live
    /// object, if it does: `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent` (create once) or
    /// `Ignore` (never apply), or `kustomize.toolkit.fluxcd.io/reconcile: disabled`.
    fn flux_hands_off(&self) -> Option<String> {
        if let Some(v) = self
            .annotation(FLUX_SSA)
            .filter(|v| v.eq_ignore_ascii_case("IfNotPresent") || v.eq_ignore_ascii_case("Ignore"))
        {
            return Some(format!("{FLUX_SSA}: {v}"));
        }
        let (key, value) = FLUX_RECONCILE_DISABLED;
        self.annotation(key)
            .filter(|v| v.eq_ignore_ascii_case(value))
            .map(|v| format!("{key}: {v}"))
    }
}

/// Two objects can be the same object when their namespaces agree. A manifest without a
/// namespace gets one at apply time (the Kustomization's `targetNamespace`, the Application's
/// destination), so it is taken to agree with any namespace.
fn same_namespace(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

/// Which rule found something; each has a stable id and one help text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A Service the controller generates (apex, `-primary`, `-canary`).
    GeneratedService,
    /// The `-primary` Deployment or DaemonSet.
    GeneratedWorkload,
    /// A `-primary` ConfigMap or Secret (config tracking).
    GeneratedConfig,
    /// The `-primary` HPA or ScaledObject, or one scaling the primary workload.
    GeneratedAutoscaler,
    /// A routing object the Canary's provider generates.
    GeneratedRoute,
    /// `spec.replicas` on the target Deployment.
    TargetReplicas,
    /// A Service that selects the target's (canary's) pods.
    SelectsCanaryPods,
    /// The Canary itself fails `flagger validate`'s checks.
    InvalidCanary,
}

impl Rule {
    #[cfg(test)]
    pub const ALL: [Rule; 8] = [
        Rule::GeneratedService,
        Rule::GeneratedWorkload,
        Rule::GeneratedConfig,
        Rule::GeneratedAutoscaler,
        Rule::GeneratedRoute,
        Rule::TargetReplicas,
        Rule::SelectsCanaryPods,
        Rule::InvalidCanary,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::GeneratedService => "generated-service",
            Rule::GeneratedWorkload => "generated-workload",
            Rule::GeneratedConfig => "generated-config",
            Rule::GeneratedAutoscaler => "generated-autoscaler",
            Rule::GeneratedRoute => "generated-route",
            Rule::TargetReplicas => "target-replicas",
            Rule::SelectsCanaryPods => "selects-canary-pods",
            Rule::InvalidCanary => "invalid-canary",
        }
    }

    /// What to do about it, printed once per rule after the findings (docs/gitops.md has the
    /// long form).
    pub fn help(self) -> &'static str {
        match self {
            Rule::GeneratedService => {
                "Flagger creates the apex, -primary and -canary Services of a Canary and keeps \
                 their selector and ports; a copy in the repository is re-applied by the GitOps \
                 tool on every sync, which puts back its own selector until the controller \
                 corrects it again (seed 000: 5-8% of requests got 503 every 5 minutes). Fix: \
                 delete the manifest (and its kustomization.yaml entry); set ports and metadata \
                 in the Canary's spec.service instead. If the apex Service must exist before the \
                 Canary (so traffic survives deleting the Canary, e.g. while Flagger is \
                 reinstalled): Flagger adopts a pre-existing apex Service, replaces its selector \
                 (<label>: <value>-primary) and ports, keeps its type, and sets no owner \
                 reference, so deleting the Canary leaves it in place (with \
                 spec.revertOnDeletion: true, Flagger first points it back at the target's pods \
                 and scales the target up); then have the GitOps tool create it once and never \
                 apply it again. Flux: annotate the manifest \
                 kustomize.toolkit.fluxcd.io/ssa: IfNotPresent (created when missing, never \
                 applied over) and kustomize.toolkit.fluxcd.io/prune: Disabled (not deleted when \
                 the manifest goes); Flagger itself marks the live Services it writes with \
                 kustomize.toolkit.fluxcd.io/reconcile: disabled and \
                 helm.toolkit.fluxcd.io/driftDetection: disabled. Argo CD: in the Application, \
                 ignoreDifferences for the Service (group \"\", kind Service, name <apex>, \
                 jsonPointers [/spec/selector, /spec/ports]) with the sync option \
                 RespectIgnoreDifferences=true; annotate generated objects that carry the \
                 Application's tracking label argocd.argoproj.io/compare-options: \
                 IgnoreExtraneous (for Services through spec.service.primary/canary \
                 annotations)."
            }
            Rule::GeneratedWorkload => {
                "Flagger creates <target>-primary from the target workload and rewrites it on \
                 every promotion; a manifest of it makes the GitOps tool roll the primary back \
                 to the repository's copy. Fix: delete the manifest; change the target workload \
                 instead and let the analysis promote it."
            }
            Rule::GeneratedConfig => {
                "With config tracking (the default), Flagger copies every ConfigMap and Secret \
                 the target's pods use to <name>-primary and updates the copy on promotion; a \
                 manifest of the copy overwrites the promoted configuration. Fix: delete the \
                 manifest, or annotate the source object flagger.app/config-tracking: disabled \
                 if the primary must keep using the same object."
            }
            Rule::GeneratedAutoscaler => {
                "Flagger creates <autoscaler>-primary (HPA or KEDA ScaledObject) scaling \
                 <target>-primary from the Canary's spec.autoscalerRef; another autoscaler of \
                 the primary fights it over the replica count. Fix: delete the manifest and \
                 point spec.autoscalerRef at an autoscaler of the target; set \
                 spec.autoscalerRef.primaryScalerReplicas for different primary limits."
            }
            Rule::GeneratedRoute => {
                "The Canary's provider owns this routing object (VirtualService, \
                 DestinationRule, TrafficSplit, canary Ingress, HTTPRoute, ...) and rewrites its \
                 weights at every analysis step; the GitOps tool resets them to the \
                 repository's values, sending traffic where the analysis did not decide. Fix: \
                 delete the manifest and express routing in the Canary's spec.service (hosts, \
                 gateways, gatewayRefs, match, headers). If it must stay in Git, stop the tool \
                 from applying it over the live object: Flux \
                 kustomize.toolkit.fluxcd.io/ssa: IfNotPresent; Argo CD ignoreDifferences for \
                 the weights (e.g. /spec/http of a VirtualService, /spec/backends of a \
                 TrafficSplit, /spec/rules of an HTTPRoute) with RespectIgnoreDifferences=true."
            }
            Rule::TargetReplicas => {
                "Flagger scales the target Deployment to zero after each promotion and back up \
                 for the next analysis; a GitOps tool that applies spec.replicas scales it up \
                 again on every sync, so the canary pods keep running (and receive traffic \
                 through any Service selecting them). Fix: remove spec.replicas from the \
                 manifest (the primary then starts with 1 replica), or scale with an HPA named \
                 in the Canary's spec.autoscalerRef. Argo CD: ignoreDifferences with group apps, \
                 kind Deployment, jsonPointers [/spec/replicas] and RespectIgnoreDifferences=true."
            }
            Rule::SelectsCanaryPods => {
                "The primary pods carry <label>: <value>-primary, the target's pods keep \
                 <label>: <value>; the target's pods are scaled to zero outside an analysis. A \
                 Service selecting the target's pods has no endpoints most of the time and, \
                 during an analysis, gets the new version without the traffic split. Fix: send \
                 clients to the apex Service Flagger generates, or select <label>: \
                 <value>-primary for the stable pods."
            }
            Rule::InvalidCanary => {
                "The Canary fails flagger-rs's validation; run `flagger validate FILE` for every \
                 problem with its field path and fix."
            }
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub rule: Rule,
    pub source: Source,
    /// `Kind/name` of the object in the repository.
    pub object: String,
    pub namespace: Option<String>,
    pub message: String,
}

/// Controller settings the rules depend on.
#[derive(Clone, Debug)]
pub struct Context {
    /// Provider of Canaries without `spec.provider` (`-mesh-provider`).
    pub default_provider: Provider,
    /// `-selector-labels`, in order.
    pub selector_labels: Vec<String>,
    pub validation: ValidationContext,
}

impl Default for Context {
    fn default() -> Self {
        Self {
            default_provider: Provider::Istio,
            selector_labels: flagger_api::labels::DEFAULT_SELECTOR_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            validation: ValidationContext::default(),
        }
    }
}

/// Flagger's Helm values found in the repository (a `HelmRelease` of the `flagger` chart):
/// `meshProvider` and `selectorLabels`, which change what the controller generates.
pub fn helm_settings(objects: &[Object]) -> (Option<String>, Option<String>) {
    for o in objects {
        if o.kind() != "HelmRelease" || o.group() != "helm.toolkit.fluxcd.io" {
            continue;
        }
        let chart = o
            .str_at("/spec/chart/spec/chart")
            .or_else(|| o.str_at("/spec/chartRef/name"))
            .unwrap_or("");
        if chart != "flagger" {
            continue;
        }
        let get = |k: &str| {
            o.value
                .pointer(&format!("/spec/values/{k}"))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        return (get("meshProvider"), get("selectorLabels"));
    }
    (None, None)
}

// === the Canary as the rules see it ===

/// What the rules need from one Canary.
struct CanaryView<'a> {
    object: &'a Object,
    namespace: Option<&'a str>,
    provider: Provider,
    target_kind: String,
    target_name: String,
    apex: String,
    ingress_ref: Option<String>,
    route_ref: Option<String>,
    autoscaler: Option<(String, String)>,
    /// The target workload's manifest, when it is in the repository.
    target: Option<&'a Object>,
    /// `(label, value)` of the target's selector (§3.2), when the target is known.
    selector: Option<(String, String)>,
}

impl CanaryView<'_> {
    /// What the core's list of generated objects is worked out from.
    fn names(&self) -> flagger_core::generated::Names<'_> {
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

    fn display(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{ns}/{}", self.object.name()),
            None => self.object.name().to_string(),
        }
    }

    fn is_workload(&self) -> bool {
        matches!(self.target_kind.as_str(), "Deployment" | "DaemonSet")
    }

    /// Primary pods' selector, as text for messages.
    fn primary_selector(&self) -> String {
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

/// Runs every rule over the objects. Findings are sorted by file and line, duplicates (an
/// object read twice) dropped.
pub fn lint(objects: &[Object], ctx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut canaries = Vec::new();
    for o in objects {
        if o.kind() != "Canary" || o.group() != flagger_api::GROUP {
            continue;
        }
        match serde_json::from_value::<flagger_api::Canary>(o.value.clone()) {
            Ok(canary) => {
                // Briefly: one line per Canary; `flagger validate` lists every problem.
                let errors = diagnose(&canary, &ctx.validation).errors;
                if let Some(first) = errors.first() {
                    let more = match errors.len() {
                        1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    };
                    out.push(finding(
                        Level::Error,
                        Rule::InvalidCanary,
                        o,
                        format!(
                            "fails validation: {}: {}{more}; `flagger validate {}` lists every \
                             problem",
                            first.path, first.message, o.source.path
                        ),
                    ));
                }
                canaries.push(view(o, &canary, objects, ctx));
            }
            Err(e) => out.push(finding(
                Level::Error,
                Rule::InvalidCanary,
                o,
                format!("cannot be read as a Canary: {e}"),
            )),
        }
    }
    for c in &canaries {
        generated_services(c, objects, &mut out);
        generated_workload(c, objects, &mut out);
        generated_configs(c, objects, &mut out);
        generated_autoscalers(c, objects, &mut out);
        generated_routes(c, objects, &mut out);
        target_replicas(c, objects, &mut out);
        selects_canary_pods(c, objects, &mut out);
    }
    out.sort_by(|a, b| {
        let key = |f: &Finding| {
            (
                f.source.clone(),
                f.level,
                f.rule,
                f.object.clone(),
                f.namespace.clone(),
                f.message.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    out.dedup();
    out
}

fn finding(level: Level, rule: Rule, o: &Object, message: String) -> Finding {
    Finding {
        level,
        rule,
        source: o.source.clone(),
        object: o.display(),
        namespace: o.namespace().map(str::to_string),
        message,
    }
}

fn view<'a>(
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
fn named<'a>(
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

fn knative(c: &CanaryView<'_>) -> bool {
    c.provider == Provider::Knative
        || c.target_kind == "Service"
            && c.target.is_some_and(|t| t.group() == "serving.knative.dev")
}

// === rules ===

fn generated_services(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
    if knative(c) {
        return;
    }
    use flagger_core::services::ServiceRole;
    // The core's list of generated Services, apex first.
    let mut names: Vec<(String, &str)> = flagger_core::generated::services(&c.names())
        .into_iter()
        .filter_map(|o| match o.role {
            flagger_core::generated::Role::Service(ServiceRole::Apex) => Some((o.name, "apex")),
            flagger_core::generated::Role::Service(ServiceRole::Primary) => {
                Some((o.name, "primary"))
            }
            flagger_core::generated::Role::Service(ServiceRole::Canary) => Some((o.name, "canary")),
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

/// Whether an Argo CD Application in the repository ignores every one of `pointers` on the
/// object and keeps syncs from writing them (`RespectIgnoreDifferences=true`), or trusts
/// Flagger's field manager (`managedFieldsManagers: [flagger]`, flagger-rs's
/// [`flagger_controller::FIELD_MANAGER`]; Flagger's client-go manager is named after its binary,
/// `flagger`, too).
fn argo_ignores(objects: &[Object], o: &Object, pointers: &[&str]) -> bool {
    objects
        .iter()
        .filter(|a| a.kind() == "Application" && a.group() == "argoproj.io")
        .filter(|a| {
            a.value
                .pointer("/spec/syncPolicy/syncOptions")
                .and_then(Value::as_array)
                .is_some_and(|opts| {
                    opts.iter()
                        .any(|v| v.as_str() == Some("RespectIgnoreDifferences=true"))
                })
        })
        .flat_map(|a| {
            a.value
                .pointer("/spec/ignoreDifferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .any(|rule| {
            let field = |k: &str| rule.get(k).and_then(Value::as_str);
            let list = |k: &str| -> Vec<String> {
                rule.get(k)
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let matches = field("kind") == Some(o.kind())
                && field("group").unwrap_or("") == o.group()
                && field("name").is_none_or(|n| n == o.name())
                && same_namespace(field("namespace"), o.namespace());
            let json = list("jsonPointers");
            let jq = list("jqPathExpressions");
            let covered = |p: &str| {
                json.iter()
                    .any(|j| p == j || p.starts_with(&format!("{j}/")))
                    || jq.iter().any(|q| p.replace('/', ".") == *q)
            };
            matches
                && (list("managedFieldsManagers")
                    .iter()
                    .any(|m| m == flagger_controller::FIELD_MANAGER)
                    || pointers.iter().all(|p| covered(p)))
        })
}

fn generated_workload(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
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

fn generated_configs(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
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

fn generated_autoscalers(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
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

/// `(kind, group suffix, name)` of every routing object the provider generates (§4.2), from
/// the core's list of generated objects.
fn routing_objects(c: &CanaryView<'_>) -> Vec<(&'static str, &'static str, String)> {
    flagger_core::generated::routing_objects(&c.names())
        .into_iter()
        .map(|o| (o.kind, o.group, o.name))
        .collect()
}

fn generated_routes(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
    for (kind, group, name) in routing_objects(c) {
        for o in objects.iter().filter(|o| {
            o.kind() == kind
                && o.name() == name
                // Traefik moved groups (traefik.containo.us, traefik.io) and Ingress may be
                // networking.k8s.io or extensions: the kind and name are enough there.
                && (group.is_empty() || o.group().ends_with(group))
                // Kuma's TrafficRoute is cluster-scoped.
                && (kind == "TrafficRoute" || same_namespace(o.namespace(), c.namespace))
        }) {
            let mut message = format!(
                "collides with the {kind} the {} provider generates for Canary {} and rewrites \
                 at every analysis step; the GitOps tool would reset the traffic weights on \
                 every sync. Remove it from the repository and configure routing in the \
                 Canary's spec.service",
                c.provider,
                c.display()
            );
            // The field each router writes the weights into.
            let weights = match kind {
                "VirtualService" if group == "istio.io" => "/spec/http",
                "TrafficSplit" => "/spec/backends",
                "HTTPRoute" => "/spec/rules",
                "Ingress" => "/metadata/annotations",
                _ => "/spec",
            };
            let level = if let Some(annotation) = o.flux_hands_off() {
                message.push_str(&format!(
                    " (it is marked {annotation}, so Flux's kustomize-controller does not apply \
                     it over the live object)"
                ));
                Level::Warning
            } else if argo_ignores(objects, o, &[weights]) {
                message.push_str(&format!(
                    " (an Argo CD Application ignores its {weights} with \
                     RespectIgnoreDifferences=true)"
                ));
                Level::Warning
            } else {
                Level::Error
            };
            out.push(finding(level, Rule::GeneratedRoute, o, message));
        }
    }
}

fn target_replicas(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
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

fn selects_canary_pods(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Objects from one multi-document YAML text, one "file" per document, line = index.
    fn objects(yaml: &str) -> Vec<Object> {
        yaml.split("\n---\n")
            .enumerate()
            .map(|(i, doc)| {
                let value: Value = serde_yaml::from_str(doc).expect("test YAML");
                Object::new(&format!("f{i}.yaml"), 1, value)
            })
            .collect()
    }

    const CANARY: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: app, namespace: prod}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: app}
  service: {port: 80}
  analysis: {interval: 1m, threshold: 2, iterations: 5}";

    const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: prod}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app, team: web}}
    spec:
      containers:
      - name: app
        image: app:1
        envFrom: [{configMapRef: {name: app-config}}]";

    fn run(extra: &str) -> Vec<Finding> {
        let yaml = format!("{CANARY}\n---\n{DEPLOYMENT}\n---\n{extra}");
        lint(&objects(&yaml), &Context::default())
    }

    fn rules(findings: &[Finding]) -> Vec<(Level, Rule, String)> {
        findings
            .iter()
            .map(|f| (f.level, f.rule, f.object.clone()))
            .collect()
    }

    #[test]
    fn the_canary_and_its_target_alone_are_clean() {
        let yaml = format!("{CANARY}\n---\n{DEPLOYMENT}");
        assert_eq!(lint(&objects(&yaml), &Context::default()), vec![]);
    }

    #[test]
    fn apex_service_in_the_repository_is_an_error_that_explains_the_503s() {
        let f = run(
            "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {selector: {app: app}, ports: [{port: 80}]}",
        );
        assert_eq!(
            rules(&f),
            vec![(Level::Error, Rule::GeneratedService, "Service/app".into())]
        );
        let m = &f[0].message;
        assert!(m.contains("apex Service"), "{m}");
        assert!(m.contains("{app: app-primary}"), "{m}");
        assert!(m.contains("with {app: app}"), "{m}");
        assert!(m.contains("503"), "{m}");
    }

    #[test]
    fn primary_and_canary_services_are_errors_and_other_namespaces_are_not() {
        let f = run("apiVersion: v1\nkind: Service\nmetadata: {name: app-primary}\nspec: {selector: {app: app-primary}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: app-canary, namespace: prod}\nspec: {selector: {app: app}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: other}\nspec: {selector: {app: app}}");
        assert_eq!(
            rules(&f),
            vec![
                (
                    Level::Error,
                    Rule::GeneratedService,
                    "Service/app-primary".into()
                ),
                (
                    Level::Error,
                    Rule::GeneratedService,
                    "Service/app-canary".into()
                ),
            ]
        );
    }

    #[test]
    fn service_name_sets_the_apex() {
        let yaml = format!(
            "{}\n---\n{DEPLOYMENT}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{selector: {{app: app-primary}}}}",
            CANARY.replace("service: {port: 80}", "service: {port: 80, name: web}")
        );
        let f = lint(&objects(&yaml), &Context::default());
        assert_eq!(
            rules(&f),
            vec![(Level::Error, Rule::GeneratedService, "Service/web".into())]
        );
    }

    #[test]
    fn flux_reconcile_disabled_turns_the_service_collision_into_a_warning() {
        let f = run(
            "apiVersion: v1\nkind: Service\nmetadata: {name: app, annotations: {kustomize.toolkit.fluxcd.io/reconcile: disabled}}\nspec: {selector: {app: app}}",
        );
        assert_eq!(
            rules(&f),
            vec![(Level::Warning, Rule::GeneratedService, "Service/app".into())]
        );
    }

    const ARGO_APP: &str = "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: app, namespace: argocd}
spec:
  ignoreDifferences:
  - {group: '', kind: Service, name: app, jsonPointers: [/spec/selector, /spec/ports]}
  - {group: apps, kind: Deployment, jqPathExpressions: [.spec.replicas]}
  syncPolicy: {syncOptions: [RespectIgnoreDifferences=true]}";

    #[test]
    fn argo_cd_ignore_differences_with_respect_turns_the_collision_into_a_warning() {
        let service =
            "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {selector: {app: app}}";
        let yaml = format!(
            "{CANARY}\n---\n{}\n---\n{service}\n---\n{ARGO_APP}",
            DEPLOYMENT.replace("spec:\n  selector", "spec:\n  replicas: 3\n  selector")
        );
        let f = lint(&objects(&yaml), &Context::default());
        assert_eq!(
            rules(&f),
            vec![(Level::Warning, Rule::GeneratedService, "Service/app".into())]
        );
        assert!(
            f[0].message.contains("RespectIgnoreDifferences"),
            "{}",
            f[0].message
        );
        // Without RespectIgnoreDifferences a sync still writes the fields back.
        let yaml = yaml.replace(
            "syncOptions: [RespectIgnoreDifferences=true]",
            "syncOptions: []",
        );
        assert_eq!(
            rules(&lint(&objects(&yaml), &Context::default())),
            vec![
                (
                    Level::Warning,
                    Rule::TargetReplicas,
                    "Deployment/app".into()
                ),
                (Level::Error, Rule::GeneratedService, "Service/app".into()),
            ]
        );
    }

    #[test]
    fn argo_cd_trusting_flaggers_field_manager_covers_every_field() {
        let app = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec:\n  ignoreDifferences: [{kind: Service, managedFieldsManagers: [flagger]}]\n  syncPolicy: {syncOptions: [RespectIgnoreDifferences=true]}";
        let f = run(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: app}}\nspec: {{selector: {{app: app}}}}\n---\n{app}"
        ));
        assert_eq!(
            rules(&f),
            vec![(Level::Warning, Rule::GeneratedService, "Service/app".into())]
        );
    }

    #[test]
    fn a_service_with_flaggers_own_selector_still_collides() {
        let f = run(
            "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {selector: {app: app-primary}}",
        );
        assert_eq!(
            rules(&f),
            vec![(Level::Error, Rule::GeneratedService, "Service/app".into())]
        );
        assert!(
            f[0].message.contains("as this manifest does"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn service_targets_collide_on_their_primary_and_canary_copies() {
        let yaml = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: api}
spec:
  provider: gatewayapi:v1
  targetRef: {apiVersion: v1, kind: Service, name: api}
  service: {port: 80, gatewayRefs: [{name: gw}]}
  analysis: {interval: 1m, threshold: 2, stepWeight: 10, maxWeight: 50}
---
apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {selector: {app: api}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: api-canary}\nspec: {selector: {app: api}}";
        let f = lint(&objects(yaml), &Context::default());
        assert_eq!(
            rules(&f),
            vec![(
                Level::Error,
                Rule::GeneratedService,
                "Service/api-canary".into()
            )]
        );
        assert!(
            f[0].message.contains("copy of Service/api"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn flux_create_once_policy_turns_collisions_into_warnings() {
        let f = run(
            "apiVersion: v1\nkind: Service\nmetadata: {name: app, annotations: {kustomize.toolkit.fluxcd.io/ssa: IfNotPresent, kustomize.toolkit.fluxcd.io/prune: Disabled}}\nspec: {selector: {app: app}}",
        );
        assert_eq!(
            rules(&f),
            vec![(Level::Warning, Rule::GeneratedService, "Service/app".into())]
        );
        assert!(
            f[0].message
                .contains("kustomize.toolkit.fluxcd.io/ssa: IfNotPresent"),
            "{}",
            f[0].message
        );
        // `Merge` still applies the manifest's fields: the selector keeps flipping.
        let f = run(
            "apiVersion: v1\nkind: Service\nmetadata: {name: app, annotations: {kustomize.toolkit.fluxcd.io/ssa: Merge}}\nspec: {selector: {app: app}}",
        );
        assert_eq!(
            rules(&f),
            vec![(Level::Error, Rule::GeneratedService, "Service/app".into())]
        );
        let vs = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: app, annotations: {kustomize.toolkit.fluxcd.io/ssa: Ignore}}\nspec: {}";
        assert_eq!(
            rules(&with_provider("istio", "", vs)),
            vec![(
                Level::Warning,
                Rule::GeneratedRoute,
                "VirtualService/app".into()
            )]
        );
    }

    #[test]
    fn primary_workload_in_the_repository_is_an_error() {
        let f =
            run("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-primary}\nspec: {}");
        assert_eq!(
            rules(&f),
            vec![(
                Level::Error,
                Rule::GeneratedWorkload,
                "Deployment/app-primary".into()
            )]
        );
    }

    #[test]
    fn primary_copy_of_a_tracked_configmap_is_an_error_unless_tracking_is_off() {
        let f =
            run("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config-primary}\ndata: {}");
        assert_eq!(
            rules(&f),
            vec![(
                Level::Error,
                Rule::GeneratedConfig,
                "ConfigMap/app-config-primary".into()
            )]
        );
        let f = run("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config-primary}\ndata: {}
---
apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config, annotations: {flagger.app/config-tracking: disabled}}\ndata: {}");
        assert_eq!(f, vec![]);
    }

    #[test]
    fn autoscalers_of_the_primary_are_errors() {
        let f = run("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: app-primary-hpa}\nspec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: app-primary}, maxReplicas: 4}
---
apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: app-so}\nspec: {scaleTargetRef: {name: app-primary}}
---
apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: app}\nspec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: app}, maxReplicas: 4}");
        assert_eq!(
            rules(&f),
            vec![
                (
                    Level::Error,
                    Rule::GeneratedAutoscaler,
                    "HorizontalPodAutoscaler/app-primary-hpa".into()
                ),
                (
                    Level::Error,
                    Rule::GeneratedAutoscaler,
                    "ScaledObject/app-so".into()
                ),
            ]
        );
    }

    #[test]
    fn the_generated_hpa_name_collides_too() {
        let yaml = format!(
            "{}\n---\n{DEPLOYMENT}\n---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: web-primary}}\nspec: {{scaleTargetRef: {{name: other}}}}",
            CANARY.replace(
                "service:",
                "autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: web}\n  service:"
            )
        );
        let f = lint(&objects(&yaml), &Context::default());
        assert_eq!(
            rules(&f),
            vec![(
                Level::Error,
                Rule::GeneratedAutoscaler,
                "HorizontalPodAutoscaler/web-primary".into()
            )]
        );
    }

    #[test]
    fn replicas_on_the_target_is_a_warning() {
        let yaml = format!(
            "{CANARY}\n---\n{}",
            DEPLOYMENT.replace("spec:\n  selector", "spec:\n  replicas: 3\n  selector")
        );
        let f = lint(&objects(&yaml), &Context::default());
        assert_eq!(
            rules(&f),
            vec![(
                Level::Warning,
                Rule::TargetReplicas,
                "Deployment/app".into()
            )]
        );
        assert!(f[0].message.contains("replicas: 3"), "{}", f[0].message);
    }

    fn with_provider(provider: &str, extra_spec: &str, objects_yaml: &str) -> Vec<Finding> {
        let yaml = format!(
            "{}\n---\n{DEPLOYMENT}\n---\n{objects_yaml}",
            CANARY.replace(
                "provider: kubernetes",
                &format!("provider: {provider}\n  {extra_spec}")
            )
        );
        lint(&objects(&yaml), &Context::default())
    }

    #[test]
    fn routing_objects_of_the_provider_are_errors() {
        let istio = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: app}\nspec: {}
---
apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: app-canary}\nspec: {}";
        assert_eq!(
            rules(&with_provider("istio", "", istio)),
            vec![
                (
                    Level::Error,
                    Rule::GeneratedRoute,
                    "VirtualService/app".into()
                ),
                (
                    Level::Error,
                    Rule::GeneratedRoute,
                    "DestinationRule/app-canary".into()
                ),
            ]
        );
        // The same objects are not generated by the kubernetes provider.
        assert_eq!(with_provider("kubernetes", "", istio), vec![]);

        let split = "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: app}\nspec: {}";
        for p in ["linkerd", "osm", "smi:v1alpha3"] {
            assert_eq!(
                rules(&with_provider(p, "", split)),
                vec![(
                    Level::Error,
                    Rule::GeneratedRoute,
                    "TrafficSplit/app".into()
                )],
                "{p}"
            );
        }

        let ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web-canary}\nspec: {}
---
apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec: {}";
        assert_eq!(
            rules(&with_provider(
                "nginx",
                "ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: web}",
                ingress
            )),
            vec![(
                Level::Error,
                Rule::GeneratedRoute,
                "Ingress/web-canary".into()
            )]
        );

        let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: app}\nspec: {}";
        let yaml = format!(
            "{}\n---\n{DEPLOYMENT}\n---\n{route}",
            CANARY
                .replace("provider: kubernetes", "provider: gatewayapi:v1")
                .replace("{port: 80}", "{port: 80, gatewayRefs: [{name: gw}]}")
        );
        assert_eq!(
            rules(&lint(&objects(&yaml), &Context::default())),
            vec![(Level::Error, Rule::GeneratedRoute, "HTTPRoute/app".into())]
        );
    }

    #[test]
    fn default_provider_applies_when_the_canary_has_none() {
        let yaml = format!(
            "{}\n---\n{DEPLOYMENT}\n---\napiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: {{name: app}}\nspec: {{}}",
            CANARY.replace("  provider: kubernetes\n", "")
        );
        let objs = objects(&yaml);
        assert_eq!(lint(&objs, &Context::default()), vec![]);
        let ctx = Context {
            default_provider: Provider::Linkerd,
            ..Context::default()
        };
        assert_eq!(
            rules(&lint(&objs, &ctx)),
            vec![(
                Level::Error,
                Rule::GeneratedRoute,
                "TrafficSplit/app".into()
            )]
        );
    }

    #[test]
    fn services_selecting_the_target_pods_are_warnings() {
        let f = run(
            "apiVersion: v1\nkind: Service\nmetadata: {name: app-tmp}\nspec: {selector: {app: app}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: team}\nspec: {selector: {team: web}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: stable}\nspec: {selector: {app: app-primary}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: unrelated}\nspec: {selector: {app: other}}",
        );
        assert_eq!(
            rules(&f),
            vec![
                (
                    Level::Warning,
                    Rule::SelectsCanaryPods,
                    "Service/app-tmp".into()
                ),
                (
                    Level::Warning,
                    Rule::SelectsCanaryPods,
                    "Service/team".into()
                ),
            ]
        );
        assert!(f[0].message.contains("scales to zero"), "{}", f[0].message);
        assert!(f[1].message.contains("both"), "{}", f[1].message);
    }

    #[test]
    fn invalid_canaries_are_reported_briefly() {
        let yaml = CANARY.replace("iterations: 5", "iterations: 5, stepWeight: 10");
        let f = lint(&objects(&yaml), &Context::default());
        assert_eq!(
            rules(&f),
            vec![(Level::Error, Rule::InvalidCanary, "Canary/app".into())]
        );
        assert!(
            f[0].message.starts_with("fails validation: spec.analysis"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].message.contains("flagger validate f0.yaml"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn helm_values_of_the_flagger_chart_are_read() {
        let o = objects(
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: flagger}\nspec:\n  chart: {spec: {chart: flagger}}\n  values: {meshProvider: nginx, selectorLabels: 'app.kubernetes.io/name'}",
        );
        assert_eq!(
            helm_settings(&o),
            (Some("nginx".into()), Some("app.kubernetes.io/name".into()))
        );
    }
}
