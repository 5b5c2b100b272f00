//! What one tick observed, what it still needs to know, and what it decided: the data that
//! crosses the boundary between the pure core and the controller.
//!
//! The controller calls [`crate::decide::decide`] with what it has observed. When the decision
//! depends on something not yet observed (a hook's answer, a metric value, a readiness check),
//! `decide` returns [`Step::Need`]; the controller obtains exactly that, adds it to the
//! [`Observations`] and calls `decide` again. A pure function of its inputs, `decide` walks the
//! same path each time and goes one step further, so the order of hooks and queries is decided
//! here and nowhere else. The final [`Step::Done`] carries the [`Decision`]: the cluster
//! [`Action`]s in the order they must be carried out, the status to write, and the [`Notice`]s.
//!
//! The status a decision reaches depends on its actions: the controller writes it only once
//! every action has succeeded (a failed scale-up leaves the canary where it was, to be retried),
//! and only then emits the notices, so a retried decision does not tell its story twice.

use std::collections::BTreeMap;

use flagger_api::{CanaryPhase, CanaryStatus};

pub use crate::metric::MetricOutcome;
use crate::model::{HookType, Severity};

/// Readiness of a workload, with Flagger's retriable/non-retriable distinction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not ready yet; wait (no failed check is counted).
    Waiting(String),
    /// Will not become ready (e.g. progress deadline exceeded): roll back.
    Failed(String),
}

/// Traffic weights as the router reports or sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routes {
    pub primary: u32,
    pub canary: u32,
    pub mirrored: bool,
}

impl Routes {
    /// All traffic to the primary, no mirroring.
    pub const PRIMARY: Routes = Routes {
        primary: 100,
        canary: 0,
        mirrored: false,
    };
    /// All traffic to the canary.
    pub const CANARY: Routes = Routes {
        primary: 0,
        canary: 100,
        mirrored: false,
    };

    /// Weights with mirroring off.
    pub fn weights(primary: u32, canary: u32) -> Routes {
        Routes {
            primary,
            canary,
            mirrored: false,
        }
    }
}

/// The target as observed this tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetRevision {
    /// Hash of the target's spec (see [`crate::hash`]).
    pub hash: String,
    /// `configmap/<name>` / `secret/<name>` → checksum of every tracked config.
    pub tracked_configs: BTreeMap<String, String>,
}

/// Outcome of one webhook call: `Ok` for a success status, `Err` with the reason otherwise.
/// For gates, `Ok` means approved; for rollback hooks, `Ok` means "roll back now".
pub type HookOutcome = Result<(), String>;

/// Whether the target workload has pods: a Deployment's `spec.replicas` above zero, a
/// DaemonSet without the scale-to-zero node selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Zero,
    Up,
}

/// Everything a tick observed. Fields that are `None` (or missing from the maps) have not been
/// observed yet; `decide` asks for them when it needs them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observations {
    pub target: TargetRevision,
    /// The target's scale, as read with the target (`None`: not observed; the phase's scale
    /// invariants are then not checked).
    pub target_scale: Option<Scale>,
    pub primary_ready: Option<Readiness>,
    pub canary_ready: Option<Readiness>,
    /// Result of the router's get-routes (not needed for the kubernetes provider).
    pub routes: Option<Result<Routes, String>>,
    /// Availability of the metric providers, checked once at initialization.
    pub metric_providers: Option<Result<(), String>>,
    /// Outcomes of hooks, by type and position among the hooks of that type.
    pub hooks: BTreeMap<(HookType, usize), HookOutcome>,
    /// Metric checks as they ran (provider, rendered query, outcome), by position in
    /// `analysis.metrics`.
    pub metrics: BTreeMap<usize, crate::metric::MetricCheck>,
    /// The request on the Canary's `flagger.app/action` annotation (see [`crate::steer`]).
    pub action: Option<crate::steer::Request>,
    /// Fresh values for session-affinity cookies (Flagger: 10 random ASCII letters), used in
    /// order when a run's cookies are made.
    pub cookie_values: Vec<String>,
    /// The apex Service was left to another writer and routes to the target's pods: the target
    /// keeps serving instead of being scaled to zero.
    pub keep_target_serving: bool,
    /// The caps on concurrent rollouts (none by default).
    pub caps: crate::queue::Caps,
    /// The fleet as the cap sees it, answered on [`Need::Fleet`].
    pub fleet: Option<Vec<crate::queue::Member>>,
}

/// Something `decide` must know before it can go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    PrimaryReadiness,
    CanaryReadiness,
    Routes,
    MetricProviders,
    /// Call the `index`-th hook of this type; `phase` goes in the payload.
    Hook {
        hook_type: HookType,
        index: usize,
        phase: CanaryPhase,
    },
    /// Query the `index`-th metric of `analysis.metrics`.
    Metric {
        index: usize,
    },
    /// Every canary's phase and place in line (a new revision is about to start a run under a
    /// cap on concurrent rollouts).
    Fleet,
}

/// Kubernetes event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// An event on the Canary (reason `Synced`, component `flagger`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    pub message: String,
    /// Phase reported to event webhooks (Flagger reports the upcoming phase for some events).
    pub phase: CanaryPhase,
}

/// An alert to the canary's alert routes (or the global notifier).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub severity: Severity,
    pub message: String,
    /// Attach target, threshold, deadline and routing fields.
    pub with_metadata: bool,
}

/// Counters of finished runs (`flagger_canary_successes_total` / `_failures_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded { skipped: bool },
    Failed,
}

/// A change to the cluster the decision depends on. Idempotent: carrying one out again
/// (a retry after a later action or the status write failed) changes nothing more.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Write these weights to the router.
    SetRoutes(Routes),
    /// Scale the target to zero (Deployment replicas 0, DaemonSet node selector).
    ScaleTargetToZero,
    /// Scale the target up from zero.
    ScaleTargetUp,
    /// Pause the target's autoscaler (KEDA); a no-op for HPAs.
    PauseTargetScaler,
    /// Resume the target's autoscaler (KEDA); a no-op for HPAs.
    ResumeTargetScaler,
    /// Update the primary HPA/ScaledObject from the target's.
    ReconcilePrimaryScaler,
    /// Copy the target's template spec and tracked configs to the primary.
    Promote,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::SetRoutes(r) => write!(
                f,
                "route {}% to the primary and {}% to the canary{}",
                r.primary,
                r.canary,
                if r.mirrored { " (mirrored)" } else { "" }
            ),
            Action::ScaleTargetToZero => f.write_str("scale the target to zero"),
            Action::ScaleTargetUp => f.write_str("scale the target up"),
            Action::PauseTargetScaler => f.write_str("pause the target's autoscaler"),
            Action::ResumeTargetScaler => f.write_str("resume the target's autoscaler"),
            Action::ReconcilePrimaryScaler => f.write_str("update the primary's autoscaler"),
            Action::Promote => f.write_str("promote the target to the primary"),
        }
    }
}

/// Telling about a decision: emitted once its actions succeeded and its status is written.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    Event(Event),
    Alert(Alert),
    CountRun(RunOutcome),
    /// Call every post-rollout hook in order (stop at the first failure), reporting `phase`;
    /// each result becomes an event.
    RunPostRolloutHooks {
        phase: CanaryPhase,
    },
    /// The request on the `flagger.app/action` annotation is done: remove it (and its id), if
    /// it still reads `raw` (a newer request is left alone).
    ClearAction {
        raw: String,
    },
    /// Count a metric check by verdict and export its value next to its range
    /// (`flagger_canary_checks_total`, `flagger_canary_check_value`, `_threshold`).
    Check(flagger_api::CheckStatus),
}

/// The outcome of a tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Cluster actions in the order they must be carried out; all must succeed before the
    /// status is written.
    pub actions: Vec<Action>,
    /// The status to write once the actions succeeded, when it changes.
    pub status: Option<CanaryStatus>,
    /// Events, alerts, counters and post-rollout hooks, in order, after the status.
    pub notices: Vec<Notice>,
    /// The tick reached the analysis step (observe `flagger_canary_duration_seconds`).
    pub analysed: bool,
}

impl Decision {
    /// The events of the decision, in order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.notices.iter().filter_map(|n| match n {
            Notice::Event(ev) => Some(ev),
            _ => None,
        })
    }

    /// The routes this decision sets last, if any.
    pub fn routes(&self) -> Option<Routes> {
        self.actions.iter().rev().find_map(|a| match a {
            Action::SetRoutes(r) => Some(*r),
            _ => None,
        })
    }
}

/// What `decide` returns.
#[derive(Clone, Debug, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one Step per decide call; boxing the Decision buys nothing"
)]
pub enum Step {
    Need(Need),
    Done(Decision),
}
