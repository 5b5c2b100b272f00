//! What the rules report: a level, the rule that found it, the object and its source line, and
//! the message; each rule has a stable id and one help text.

use crate::object::{Object, Source};

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

pub(crate) fn finding(level: Level, rule: Rule, o: &Object, message: String) -> Finding {
    Finding {
        level,
        rule,
        source: o.source.clone(),
        object: o.display(),
        namespace: o.namespace().map(str::to_string),
        message,
    }
}
