//! Well-known names: finalizer, labels, annotations and condition type Flagger writes or reads.

/// Finalizer added when `revertOnDeletion` is true.
pub const FINALIZER: &str = "finalizer.flagger.app";
/// The only Canary condition type.
pub const CONDITION_PROMOTED: &str = "Promoted";
/// flagger-rs: condition with the last decision of the analysis in one sentence.
pub const CONDITION_ANALYSIS: &str = "Analysis";
/// flagger-rs: condition present while the canary is paused by `flagger.app/action: pause`.
pub const CONDITION_PAUSED: &str = "Paused";
/// flagger-rs: condition present while a new revision waits for a rollout slot (the cap on
/// concurrent rollouts); its `lastTransitionTime` is the canary's place in line.
pub const CONDITION_QUEUED: &str = "Queued";
/// flagger-rs: what a check without data does: `fail` (Flagger's behaviour, counted as a failed
/// check) or `hold` (neither advance nor count until data arrives or the progress deadline).
pub const NO_DATA_POLICY: &str = "flagger.app/no-data";
/// flagger-rs: a request to the controller (`promote`, `abort`, `pause`, `resume`, `retry`),
/// acted on at the watch event and removed when done (`pause` stays until `resume`).
pub const ACTION: &str = "flagger.app/action";
/// flagger-rs: a fresh value with every request, so the same request twice is two requests.
pub const ACTION_ID: &str = "flagger.app/action-id";
/// Primary pod-template annotation regenerated on every promotion.
pub const FLAGGER_ID: &str = "flagger-id";
/// DaemonSet node selector key that keeps the target off every node.
pub const SCALE_TO_ZERO_NODE_SELECTOR: &str = "flagger.app/scale-to-zero";
/// Opt-out annotation on ConfigMaps and Secrets.
pub const CONFIG_TRACKING: &str = "flagger.app/config-tracking";
/// Knative primary revision annotation.
pub const PRIMARY_REVISION: &str = "flagger.app/primary-revision";
/// Original spec of a VirtualService taken over by the Istio router.
pub const ORIGINAL_CONFIGURATION: &str = "flagger.kubernetes.io/original-configuration";
/// kubectl's client-side apply record.
/// flagger-rs: the selector and ports a pre-existing apex Service had when the controller took
/// it over, as JSON (`{"selector": {...}, "ports": [...]}`), given back when the Canary goes.
pub const ORIGINAL_SERVICE: &str = "flagger.app/original-service";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// KEDA pause annotation.
pub const KEDA_PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// Flux: do not reconcile this object.
pub const FLUX_RECONCILE_DISABLED: (&str, &str) =
    ("kustomize.toolkit.fluxcd.io/reconcile", "disabled");
/// Helm controller: do not correct drift of this object.
pub const HELM_DRIFT_DISABLED: (&str, &str) = ("helm.toolkit.fluxcd.io/driftDetection", "disabled");
/// Keys containing this string are never copied from the target.
pub const TOOLKIT_MARKER: &str = "toolkit.fluxcd.io";
/// Default `-selector-labels`.
pub const DEFAULT_SELECTOR_LABELS: &[&str] = &["app", "name", "app.kubernetes.io/name"];
/// Event reason of every Canary event.
pub const EVENT_REASON: &str = "Synced";
/// Field manager of every write the controller makes (server-side apply); Flagger's client-go
/// manager is named after its binary, `flagger`, too.
pub const FIELD_MANAGER: &str = "flagger";
/// Event source component.
pub const EVENT_COMPONENT: &str = "flagger";
