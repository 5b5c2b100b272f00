//! The validated domain view of a Canary: what the decision core and the controller act on.
//!
//! A [`ValidatedCanary`] is produced only by [`crate::validate::validate`]; every value in it
//! has been checked and defaulted the way Flagger defaults it, so later steps never re-parse
//! strings or guess defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use flagger_api::{AbMatch, CanaryService};

/// Traffic provider (router) of a canary: its identity ([`crate::provider`]); each is described
/// by its module in [`crate::routing`].
pub use crate::provider::Provider;

/// SMI TrafficSplit API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmiVersion {
    V1Alpha1,
    V1Alpha2,
    V1Alpha3,
}

// Parsing, spelling and features of each provider come from its descriptor:
// `crate::routing::registry`.

/// Kind of the target workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Deployment,
    DaemonSet,
    /// A plain Kubernetes Service target.
    Service,
    /// A Knative Service (`serving.knative.dev/v1`).
    KnativeService,
}

impl TargetKind {
    /// The Kubernetes kind as written in `targetRef.kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::DaemonSet => "DaemonSet",
            Self::Service | Self::KnativeService => "Service",
        }
    }

    /// Whether the target is a workload the controller scales (Deployment or DaemonSet).
    pub fn is_workload(self) -> bool {
        matches!(self, Self::Deployment | Self::DaemonSet)
    }
}

/// The target workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub api_version: String,
    pub name: String,
}

/// Kind of autoscaler of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoscalerKind {
    HorizontalPodAutoscaler,
    ScaledObject,
}

/// The target's autoscaler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Autoscaler {
    pub kind: AutoscalerKind,
    pub api_version: String,
    pub name: String,
    pub primary_scaler_queries: BTreeMap<String, String>,
    pub primary_min_replicas: Option<i32>,
    pub primary_max_replicas: Option<i32>,
}

/// How the analysis moves traffic: Flagger's "deployment strategy".
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Progressive weights.
    Canary {
        steps: Steps,
        /// Canary weight at which promotion starts (a threshold, not a cap).
        max_weight: u32,
        /// Mirror traffic before the first weight step.
        mirror: bool,
    },
    /// Header/cookie matched traffic to the canary for a number of iterations.
    AbTesting {
        iterations: u32,
        matches: Vec<AbMatch>,
    },
    /// All analysis on the canary without user traffic, then a full switch.
    BlueGreen { iterations: u32, mirror: bool },
}

impl Strategy {
    /// Flagger's label for the strategy (`canary`, `ab-testing`, `blue-green`), used in metric
    /// labels and webhook payloads.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Canary { .. } => "canary",
            Self::AbTesting { .. } => "ab-testing",
            Self::BlueGreen { .. } => "blue-green",
        }
    }

    /// Configured iterations (0 for the canary strategy).
    pub fn iterations(&self) -> u32 {
        match self {
            Self::Canary { .. } => 0,
            Self::AbTesting { iterations, .. } | Self::BlueGreen { iterations, .. } => *iterations,
        }
    }
}

/// The weight ladder of the canary strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Steps {
    /// A fixed increment per tick.
    Linear(u32),
    /// An explicit, strictly increasing ladder ending at or below 100.
    Explicit(Vec<u32>),
}

/// The two builtin checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuiltinMetric {
    RequestSuccessRate,
    RequestDuration,
}

impl BuiltinMetric {
    /// The metric name in `analysis.metrics[].name`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RequestSuccessRate => "request-success-rate",
            Self::RequestDuration => "request-duration",
        }
    }
}

/// Where a metric value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricSource {
    /// A builtin check run against the provider's telemetry.
    Builtin(BuiltinMetric),
    /// An inline PromQL query (deprecated in Flagger, still supported).
    Query(String),
    /// A MetricTemplate.
    Template {
        name: String,
        namespace: String,
        variables: BTreeMap<String, String>,
    },
}

/// The accepted range of a metric value, inclusive at both ends.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Range {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Range {
    /// Whether a value lies within the range.
    pub fn contains(&self, value: f64) -> bool {
        self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }
}

/// One metric check.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    pub source: MetricSource,
    /// The query window; `None` for templates without one (Flagger leaves it empty).
    pub interval: Option<Duration>,
    /// The accepted range, after Flagger's threshold rules.
    pub range: Range,
}

/// Type of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookType {
    ConfirmRollout,
    PreRollout,
    Rollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PostRollout,
    Rollback,
    Event,
}

impl HookType {
    /// Parses the wire type; empty means `rollout`.
    pub fn parse(s: &str) -> Option<HookType> {
        Some(match s {
            "" | "rollout" => Self::Rollout,
            "confirm-rollout" => Self::ConfirmRollout,
            "pre-rollout" => Self::PreRollout,
            "confirm-traffic-increase" => Self::ConfirmTrafficIncrease,
            "confirm-promotion" => Self::ConfirmPromotion,
            "post-rollout" => Self::PostRollout,
            "rollback" => Self::Rollback,
            "event" => Self::Event,
            _ => return None,
        })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfirmRollout => "confirm-rollout",
            Self::PreRollout => "pre-rollout",
            Self::Rollout => "rollout",
            Self::ConfirmTrafficIncrease => "confirm-traffic-increase",
            Self::ConfirmPromotion => "confirm-promotion",
            Self::PostRollout => "post-rollout",
            Self::Rollback => "rollback",
            Self::Event => "event",
        }
    }

    /// Gate hooks answer "may we go on?"; a rejection holds the canary rather than failing it.
    pub fn is_gate(self) -> bool {
        matches!(
            self,
            Self::ConfirmRollout | Self::ConfirmTrafficIncrease | Self::ConfirmPromotion
        )
    }
}

/// One webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    pub hook_type: HookType,
    pub url: String,
    pub timeout: Duration,
    pub retries: u32,
    pub mute_alert: bool,
    pub disable_tls: bool,
    pub metadata: BTreeMap<String, String>,
}

/// Alert severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warn,
    Error,
}

impl Severity {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// One alert route. `severity: None` is Flagger's empty severity; validation maps it to info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRoute {
    pub name: String,
    pub severity: Option<Severity>,
    pub provider_name: String,
    pub provider_namespace: String,
}

/// Session affinity settings with Flagger's defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAffinity {
    pub cookie_name: String,
    pub primary_cookie_name: Option<String>,
    pub max_age: i64,
    pub domain: Option<String>,
    pub http_only: bool,
    pub partitioned: bool,
    pub path: Option<String>,
    pub same_site: Option<String>,
    pub secure: bool,
}

/// The analysis, with every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// Tick period (Flagger: 60s when unset, raised to the controller's floor).
    pub interval: Duration,
    /// Failed checks that trigger a rollback (at least 1).
    pub threshold: u32,
    pub strategy: Strategy,
    /// Primary weight increment per tick while promoting (0: switch at once).
    pub step_weight_promotion: u32,
    /// Mirrored percentage (Istio `mirrorPercentage`; 0 means all).
    pub mirror_weight: u32,
    pub primary_ready_threshold: u32,
    pub canary_ready_threshold: u32,
    pub metrics: Vec<Metric>,
    pub webhooks: Vec<Webhook>,
    pub alerts: Vec<AlertRoute>,
    pub session_affinity: Option<SessionAffinity>,
}

impl Analysis {
    /// The hooks of one type, in declaration order.
    pub fn hooks(&self, hook_type: HookType) -> impl Iterator<Item = &Webhook> {
        self.webhooks
            .iter()
            .filter(move |h| h.hook_type == hook_type)
    }
}

/// A Canary after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedCanary {
    pub name: String,
    pub namespace: String,
    pub provider: Provider,
    pub target: Target,
    /// Apex Service name: `service.name` or the target name.
    pub apex: String,
    /// The wire service block, for routers (ports, matches, policies, metadata).
    pub service: CanaryService,
    pub autoscaler: Option<Autoscaler>,
    /// The analysis as written. The strategy is the one the spec asks for; the kubernetes
    /// provider's forced blue/green is applied by the decision core, as Flagger does at run time.
    pub analysis: Analysis,
    /// True when `skipAnalysis` is set or `analysis` is absent.
    pub skip_analysis: bool,
    pub progress_deadline: Duration,
    pub revert_on_deletion: bool,
    pub suspend: bool,
    pub metrics_server: Option<String>,
    /// flagger-rs: what a check without data does (`flagger.app/no-data`, else the
    /// controller's `--no-data-policy`).
    pub no_data: crate::steer::NoDataPolicy,
}

impl ValidatedCanary {
    /// `<apex>-primary`.
    pub fn primary_service(&self) -> String {
        format!("{}-primary", self.apex)
    }

    /// `<apex>-canary`.
    pub fn canary_service(&self) -> String {
        format!("{}-canary", self.apex)
    }

    /// `<target>-primary`: the primary workload takes the target's name, not the apex's.
    pub fn primary_workload(&self) -> String {
        format!("{}-primary", self.target.name)
    }
}
