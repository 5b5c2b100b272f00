//! The canary state machine: one analysis tick, as a pure function.
//!
//! [`decide`] follows the order of Flagger's tick (reference §2.3, from initialization on) and
//! returns either the next thing it needs to observe or the decision: the cluster actions in
//! order, the status they lead to, and the notices. The controller has already reconciled the
//! generated objects (primary workload, Services, routing objects) before it calls `decide`,
//! writes the status only once every action succeeded, then emits the notices.
//!
//! Every phase also says what it requires of the target's scale, re-checked on every tick and,
//! through [`maintain`], on every reconcile between ticks: scaled up while a run uses it, at
//! zero at rest once the primary serves. A scale-down that failed, or a target scaled by hand,
//! is put right without waiting for a new revision.
//!
//! Where Flagger's behaviour is a bug or dead code, the choice made here is written next to the
//! code and in `docs/compatibility.md`.

use flagger_api::{CanaryPhase, CanaryStatus};
use k8s_openapi::jiff::Timestamp;

use crate::duration::go_duration_ms;
use crate::effects::{
    Action, Alert, Decision, Event, EventType, HookOutcome, MetricOutcome, Need, Notice,
    Observations, Readiness, Routes, RunOutcome, Scale, Step,
};
use crate::explain::{self, Outcome, Verdict};
use crate::hash;
use crate::metric::MetricCheck;
use crate::model::{
    BuiltinMetric, HookType, MetricSource, Provider, Severity, Steps, Strategy, ValidatedCanary,
};
use crate::status::StatusWriter;
use crate::steer::{NoDataPolicy, Request, Verb};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Iterations the kubernetes provider uses when the spec sets none (Flagger's forced value).
pub const KUBERNETES_DEFAULT_ITERATIONS: u32 = 10;

/// Decides one tick. Call again with the observation asked for in [`Step::Need`] until it
/// returns [`Step::Done`].
pub fn decide(
    canary: &ValidatedCanary,
    status: &CanaryStatus,
    obs: &Observations,
    now: Timestamp,
) -> Step {
    let mut tick = Tick::new(canary, status, obs, now);
    match tick.run() {
        Ok(()) => Step::Done(tick.finish()),
        Err(need) => Step::Need(need),
    }
}

/// Between ticks: the actions that restore what the current phase requires of the target's
/// scale (see [`Tick::hold_target_scale`]), and nothing else (no status, no notice).
pub fn maintain(
    canary: &ValidatedCanary,
    status: &CanaryStatus,
    obs: &Observations,
    now: Timestamp,
) -> Decision {
    let mut tick = Tick::new(canary, status, obs, now);
    if !canary.suspend {
        // Without the primary's readiness (the controller always gives it) nothing is scaled.
        let _ = tick.hold_target_scale();
    }
    Decision {
        actions: tick.actions,
        ..Default::default()
    }
}

/// The strategy the tick really runs: the kubernetes provider turns every strategy into
/// blue/green (10 iterations when none are set), as Flagger does at run time.
pub fn effective_strategy(canary: &ValidatedCanary) -> Strategy {
    let strategy = &canary.analysis.strategy;
    if canary.provider != Provider::Kubernetes {
        return strategy.clone();
    }
    let iterations = match strategy.iterations() {
        0 => KUBERNETES_DEFAULT_ITERATIONS,
        n => n,
    };
    Strategy::BlueGreen {
        iterations,
        mirror: false,
    }
}

/// Flagger's `nextStepWeight`: the increment after `current`.
pub fn next_step_weight(steps: &Steps, current: u32) -> u32 {
    match steps {
        Steps::Linear(step) => *step,
        Steps::Explicit(ladder) if ladder.is_empty() => 0,
        Steps::Explicit(ladder) => {
            let max_step = 100u32.saturating_sub(current);
            if max_step == 0 {
                return 1;
            }
            if current == 0 {
                return max_step.min(ladder[0]);
            }
            for pair in ladder.windows(2) {
                if current == pair[0] {
                    return max_step.min(pair[1].saturating_sub(current));
                }
            }
            max_step
        }
    }
}

/// Flagger's canary weight ladder for a strategy, from 0 up to the first weight at or above
/// `max_weight` (the weights of successive passing ticks, without mirroring).
pub fn weight_ladder(steps: &Steps, max_weight: u32) -> Vec<u32> {
    let mut weights = Vec::new();
    let mut canary = 0u32;
    while canary < max_weight {
        let step = next_step_weight(steps, canary);
        if step == 0 {
            break;
        }
        canary = (canary + step).min(100);
        weights.push(canary);
    }
    weights
}

type Flow = Result<(), Need>;

struct Tick<'a> {
    c: &'a ValidatedCanary,
    obs: &'a Observations,
    start: CanaryStatus,
    w: StatusWriter,
    actions: Vec<Action>,
    notices: Vec<Notice>,
    analysed: bool,
    canary_name: String,
    target_name: String,
    now: Timestamp,
    /// The last decision in one sentence, written with the status at the end of the tick.
    sentence: Option<(Outcome, String)>,
    /// Why the next rollback happens, when it is not the failed-checks threshold.
    rollback_reason: Option<String>,
    /// Metric checks that passed this tick.
    passed: usize,
    /// The request on the Canary is being carried out this tick.
    promote_requested: bool,
    retry_requested: bool,
}

impl<'a> Tick<'a> {
    fn new(
        c: &'a ValidatedCanary,
        status: &CanaryStatus,
        obs: &'a Observations,
        now: Timestamp,
    ) -> Self {
        Self {
            c,
            obs,
            start: status.clone(),
            w: StatusWriter::new(status, c.target.kind.kind(), now),
            actions: Vec::new(),
            notices: Vec::new(),
            analysed: false,
            canary_name: format!("{}.{}", c.name, c.namespace),
            target_name: format!("{}.{}", c.target.name, c.namespace),
            now,
            sentence: None,
            rollback_reason: None,
            passed: 0,
            promote_requested: false,
            retry_requested: false,
        }
    }

    fn finish(mut self) -> Decision {
        if let Some((outcome, sentence)) = self.sentence.take() {
            self.w.set_decision(outcome, sentence);
        }
        Decision {
            actions: self.actions,
            status: self.w.finish(),
            notices: self.notices,
            analysed: self.analysed,
        }
    }

    // === observations ===

    fn phase(&self) -> CanaryPhase {
        self.w.current().phase
    }

    fn primary_ready(&self) -> Result<Readiness, Need> {
        self.obs.primary_ready.clone().ok_or(Need::PrimaryReadiness)
    }

    fn canary_ready(&self) -> Result<Readiness, Need> {
        self.obs.canary_ready.clone().ok_or(Need::CanaryReadiness)
    }

    fn hook(
        &self,
        hook_type: HookType,
        index: usize,
        phase: CanaryPhase,
    ) -> Result<HookOutcome, Need> {
        self.obs
            .hooks
            .get(&(hook_type, index))
            .cloned()
            .ok_or(Need::Hook {
                hook_type,
                index,
                phase,
            })
    }

    fn metric(&self, index: usize) -> Result<MetricCheck, Need> {
        self.obs
            .metrics
            .get(&index)
            .cloned()
            .ok_or(Need::Metric { index })
    }

    /// Current routes; `Ok(None)` when the router failed (the event is already recorded).
    fn routes(&mut self) -> Result<Option<Routes>, Need> {
        if self.c.provider == Provider::Kubernetes {
            // The kubernetes provider has no router: traffic is "on the canary" once the first
            // blue/green iteration has run.
            let on_canary = self.start.iterations.unwrap_or(0) != 0;
            return Ok(Some(if on_canary {
                Routes::CANARY
            } else {
                Routes::PRIMARY
            }));
        }
        match self.obs.routes.clone().ok_or(Need::Routes)? {
            Ok(routes) => Ok(Some(routes)),
            Err(e) => {
                self.warn(e);
                Ok(None)
            }
        }
    }

    // === effects ===

    fn event(&mut self, event_type: EventType, message: String, phase: CanaryPhase) {
        self.notices.push(Notice::Event(Event {
            event_type,
            message,
            phase,
        }));
    }

    fn info(&mut self, message: String) {
        let phase = self.phase();
        self.event(EventType::Normal, message, phase);
    }

    fn warn(&mut self, message: String) {
        let phase = self.phase();
        self.event(EventType::Warning, message, phase);
    }

    fn alert(&mut self, severity: Severity, message: String, with_metadata: bool) {
        self.notices.push(Notice::Alert(Alert {
            severity,
            message,
            with_metadata,
        }));
    }

    fn act(&mut self, action: Action) {
        match action {
            // The apex Service routes to the target's pods (left to another writer): they stay.
            Action::PauseTargetScaler if self.obs.keep_target_serving => {}
            Action::ScaleTargetToZero if self.obs.keep_target_serving => {
                if self.obs.target_scale != Some(Scale::Up) {
                    self.actions.push(Action::ScaleTargetUp);
                }
            }
            Action::SetRoutes(routes) => self.set_routes(routes),
            action => self.actions.push(action),
        }
    }

    /// Routes, with the session-affinity cookies they carry kept in the status (reference §4.3).
    fn set_routes(&mut self, routes: Routes) {
        self.actions.push(Action::SetRoutes(routes));
        let Some(affinity) = self
            .c
            .analysis
            .session_affinity
            .as_ref()
            .filter(|_| crate::routing::sticky(self.c.provider))
        else {
            return;
        };
        let current = crate::routing::StickyCookies::of(self.w.current());
        let mut fresh = self.obs.cookie_values.iter();
        let mut made = 0usize;
        let seed = self.obs.target.hash.clone();
        let next = crate::routing::next_sticky_cookies(affinity, &current, routes.canary, || {
            made += 1;
            fresh
                .next()
                .cloned()
                .unwrap_or_else(|| fallback_cookie(&seed, made))
        });
        self.w.set_cookies(&next);
    }

    fn notice(&mut self, notice: Notice) {
        self.notices.push(notice);
    }

    fn scaler(&mut self, action: Action) {
        if self.c.autoscaler.is_some() {
            self.act(action);
        }
    }

    /// What the phase requires of the target's scale, restored when it does not hold (a
    /// scale-down that failed, or someone scaling the target by hand): up while a run uses it
    /// (`Progressing`, `WaitingPromotion`, `Promoting`), at zero at rest (`Initialized`,
    /// `Succeeded`, and `Failed` unless a failed promotion left the traffic on it), once the
    /// primary serves. Returns whether it acted.
    fn hold_target_scale(&mut self) -> Result<bool, Need> {
        use CanaryPhase::*;
        let Some(scale) = self.obs.target_scale else {
            return Ok(false);
        };
        let current = self.w.current();
        let wanted = match current.phase {
            // Left to another writer, the apex Service routes to the target's pods.
            _ if self.obs.keep_target_serving => Scale::Up,
            Progressing | WaitingPromotion | Promoting => Scale::Up,
            Initialized | Succeeded => Scale::Zero,
            Failed if current.canary_weight.unwrap_or(0) == 0 => Scale::Zero,
            _ => return Ok(false),
        };
        Ok(match (wanted, scale) {
            (Scale::Zero, Scale::Up) => {
                if !self.c.skip_analysis && self.primary_ready()? != Readiness::Ready {
                    return Ok(false);
                }
                self.scaler(Action::PauseTargetScaler);
                self.act(Action::ScaleTargetToZero);
                true
            }
            (Scale::Up, Scale::Zero) => {
                self.scaler(Action::ResumeTargetScaler);
                self.act(Action::ScaleTargetUp);
                true
            }
            _ => false,
        })
    }

    fn failed_checks(&self) -> i32 {
        self.w.current().failed_checks.unwrap_or(0)
    }

    fn add_failed_check(&mut self) {
        let n = self.failed_checks() + 1;
        self.w.set_failed_checks(n);
    }

    fn strategy(&self) -> Strategy {
        effective_strategy(self.c)
    }

    fn waiting_iterations(&self) -> i32 {
        // Flagger writes `iterations - 1` from the spec, which is -1 for the canary strategy and
        // for the kubernetes provider without iterations; we use the effective iterations and
        // never write a negative count.
        (self.strategy().iterations() as i32 - 1).max(0)
    }

    // === explanations and requests ===

    /// The last decision of this tick, in one sentence.
    fn explain(&mut self, outcome: Outcome, sentence: String) {
        self.sentence = Some((outcome, sentence));
    }

    /// Where the run stands: `20%` (canary strategy) or `iteration 3/10`.
    fn at(&self) -> String {
        let current = self.w.current();
        match self.strategy() {
            Strategy::Canary { .. } => format!("{}%", current.canary_weight.unwrap_or(0)),
            s => format!(
                "iteration {}/{}",
                current.iterations.unwrap_or(0),
                s.iterations()
            ),
        }
    }

    /// `(2 of 3 failed checks)`.
    fn failed_of(&self) -> String {
        format!(
            "({} of {} failed checks)",
            self.failed_checks(),
            self.c.analysis.threshold
        )
    }

    /// A check counted as failed: the failed-checks counter, the event, the sentence.
    fn check_failed(&mut self, event: String, why: String) {
        self.warn(event);
        self.add_failed_check();
        let sentence = format!("halted at {}: {why} {}", self.at(), self.failed_of());
        self.w.set_last_failure(why);
        self.explain(Outcome::Halted, sentence);
    }

    fn clear_request(&mut self) {
        if let Some(request) = &self.obs.action {
            self.notices.push(Notice::ClearAction {
                raw: request.raw.clone(),
            });
        }
    }

    /// Acts on a request made through the `flagger.app/action` annotation. Returns whether the
    /// tick stops here.
    fn request(&mut self, request: &Request) -> bool {
        use CanaryPhase::*;
        let phase = self.phase();
        let verb = match &request.verb {
            Ok(verb) => *verb,
            Err(why) => {
                self.warn(format!(
                    "Ignoring the {} annotation of {}: {why}",
                    flagger_api::labels::ACTION,
                    self.canary_name
                ));
                self.clear_request();
                return false;
            }
        };
        let running = matches!(phase, Progressing | Waiting | WaitingPromotion);
        // Any other request replaces a pause (the annotation holds one request at a time).
        if verb != Verb::Pause && self.w.paused() {
            self.w.set_paused(None);
            self.info(format!("Resumed {} by request", self.canary_name));
            let at = self.at();
            self.explain(Outcome::Started, format!("resumed at {at} by request"));
        }
        match verb {
            Verb::Pause => {
                if !self.w.paused() {
                    let at = self.at();
                    self.w.set_paused(Some(format!(
                        "paused at {at} by request: no advance and no check until resumed"
                    )));
                    self.info(format!(
                        "Paused {} at {at} by request: no advance and no check until resumed",
                        self.canary_name
                    ));
                    self.explain(Outcome::Paused, format!("paused at {at} by request"));
                }
                true
            }
            Verb::Resume => {
                self.clear_request();
                false
            }
            Verb::Abort if running => {
                self.warn(format!(
                    "Rolling back {}: abort requested",
                    self.canary_name
                ));
                self.rollback_reason = Some("abort requested".into());
                self.rollback();
                self.clear_request();
                true
            }
            Verb::Promote if matches!(phase, Progressing | WaitingPromotion) => {
                self.promote_requested = true;
                false
            }
            // A run is about to start (a new revision, an approval): promoted once it runs.
            Verb::Promote if phase == Waiting => false,
            Verb::Retry if phase == Failed => {
                self.retry_requested = true;
                false
            }
            Verb::Abort | Verb::Promote | Verb::Retry => {
                self.info(format!(
                    "Nothing to {verb} for {}: it is {}",
                    self.canary_name,
                    if phase == Unknown {
                        "new"
                    } else {
                        phase.as_str()
                    }
                ));
                self.clear_request();
                false
            }
        }
    }

    // === the tick ===

    fn run(&mut self) -> Flow {
        let c = self.c;
        if c.suspend {
            self.info("skipping canary run as object is suspended".into());
            return Ok(());
        }
        self.adopt_foreign_status();
        let phase = self.phase();
        if matches!(phase, CanaryPhase::Unknown | CanaryPhase::Initializing) {
            return self.initialize();
        }
        if matches!(phase, CanaryPhase::Terminating | CanaryPhase::Terminated) {
            // Deletion is the finalizer's business.
            return Ok(());
        }
        if let Some(request) = self.obs.action.clone()
            && self.request(&request)
        {
            return Ok(());
        }

        let current = self.w.current().clone();
        let changed = hash::spec_changed(
            &self.obs.target.hash,
            current.last_applied_spec.as_deref(),
            current.last_promoted_spec.as_deref(),
        ) || hash::configs_changed(
            &self.obs.target.tracked_configs,
            current.tracked_configs.as_ref(),
        );

        use CanaryPhase::*;
        let active = matches!(
            phase,
            Progressing | Waiting | WaitingPromotion | Promoting | Finalising
        );
        if !active && !changed && !self.retry_requested {
            // A failed canary tracks the target (going back to the promoted revision, then
            // re-applying the failed one, starts no run). Only when no run starts: a new
            // revision whose run cannot start on this tick (the primary not ready, the routes
            // not read) must still be new on the next one, not swallowed by this refresh.
            if phase == Failed {
                self.w.refresh_revision(&self.obs.target);
            }
            self.hold_target_scale()?;
            return Ok(());
        }

        if !c.skip_analysis {
            match self.primary_ready()? {
                Readiness::Ready => {}
                Readiness::Waiting(msg) => {
                    self.warn(msg);
                    return Ok(());
                }
                Readiness::Failed(msg) => {
                    self.warn(msg.clone());
                    if matches!(phase, Promoting | Finalising) {
                        self.failed_promotion(msg);
                    } else {
                        self.rollback_reason = Some(format!("primary not ready: {msg}"));
                        self.rollback();
                    }
                    return Ok(());
                }
            }
        }

        let Some(routes) = self.routes()? else {
            return Ok(());
        };

        if !matches!(
            phase,
            Progressing | WaitingPromotion | Promoting | Finalising
        ) {
            return self.start_revision();
        }

        if matches!(phase, Progressing | WaitingPromotion) && changed {
            self.info(format!(
                "New revision detected! Restarting analysis for {}",
                self.target_name
            ));
            self.act(Action::SetRoutes(Routes::PRIMARY));
            self.w.sync(Progressing, 0, 0, 0, &self.obs.target);
            self.w.reset_analysis();
            self.explain(
                Outcome::Started,
                "new revision detected: analysis restarted".into(),
            );
            return Ok(());
        }

        // A run needs the target's pods: scaled up again when they went (the analysis would
        // otherwise run against no pods, and promotion copy a target at zero).
        if self.hold_target_scale()? {
            return Ok(());
        }

        match self.canary_ready()? {
            Readiness::Ready => {}
            Readiness::Waiting(msg) => {
                self.warn(msg);
                return Ok(());
            }
            Readiness::Failed(msg) => {
                self.warn(msg.clone());
                self.rollback_reason = Some(format!("canary not ready: {msg}"));
                self.rollback();
                return Ok(());
            }
        }

        if c.skip_analysis {
            self.promote_without_analysis();
            return Ok(());
        }

        if matches!(phase, Progressing | Waiting | WaitingPromotion) && self.rollback_hooks()? {
            return Ok(());
        }

        match phase {
            Promoting => {
                self.scaler(Action::ReconcilePrimaryScaler);
                self.shift_to_primary(routes);
                return Ok(());
            }
            Finalising => {
                self.finalise();
                return Ok(());
            }
            _ => {}
        }

        if self.failed_checks() >= c.analysis.threshold as i32 {
            self.rollback();
            return Ok(());
        }

        if self.promote_requested {
            let at = self.at();
            self.info(format!(
                "Promotion of {} requested: skipping the remaining analysis",
                self.target_name
            ));
            self.promote();
            self.explain(
                Outcome::Promoting,
                format!("promoting at {at}: requested, remaining analysis skipped"),
            );
            self.clear_request();
            return Ok(());
        }

        self.analysed = true;
        if !self.analysis(routes)? {
            return Ok(());
        }

        let strategy = self.strategy();
        if c.provider == Provider::Kubernetes {
            if matches!(c.analysis.strategy, Strategy::AbTesting { .. }) {
                self.warn("A/B testing is not supported when using the kubernetes provider".into());
            }
            if c.analysis.strategy.iterations() < 1 {
                self.warn(
                    "Progressive traffic is not supported when using the kubernetes provider"
                        .into(),
                );
                self.warn(format!(
                    "Setting canaryAnalysis.iterations: {KUBERNETES_DEFAULT_ITERATIONS}"
                ));
            }
        }
        match strategy {
            Strategy::AbTesting { iterations, .. } => self.run_ab(iterations),
            Strategy::BlueGreen { iterations, mirror } => {
                self.run_blue_green(iterations, mirror, routes)
            }
            Strategy::Canary {
                steps,
                max_weight,
                mirror,
            } => self.run_canary(&steps, max_weight, mirror, routes),
        }
    }

    /// A status written by Flagger carries hashes we cannot reproduce: adopt it by re-baselining
    /// to the current target instead of treating every canary as changed.
    fn adopt_foreign_status(&mut self) {
        let current = self.w.current().clone();
        let Some(applied) = current.last_applied_spec.as_deref() else {
            return;
        };
        if !hash::is_foreign(applied) {
            return;
        }
        use CanaryPhase::*;
        let now = Some(self.obs.target.hash.clone());
        match current.phase {
            Unknown | Initializing | Terminating | Terminated => return,
            // At rest, the target is the promoted revision.
            Initialized | Succeeded => self.w.rebaseline(now.clone(), now),
            // Failed or mid-run: the target is the revision under analysis; the promoted one
            // stays unknown until the next promotion records ours.
            _ => self.w.rebaseline(now, current.last_promoted_spec.clone()),
        }
        self.info(format!(
            "Adopted {} from a previous controller: revision hashes re-baselined to the current target",
            self.canary_name
        ));
    }

    fn initialize(&mut self) -> Flow {
        let c = self.c;
        if self.start.conditions.is_none() {
            self.w.set_phase(CanaryPhase::Initializing, 0);
        }
        if !c.skip_analysis {
            match self
                .obs
                .metric_providers
                .clone()
                .ok_or(Need::MetricProviders)?
            {
                Ok(()) => self.info("all the metrics providers are available!".into()),
                Err(e) => self.warn(format!("Error checking metric providers: {e}")),
            }
            match self.primary_ready()? {
                Readiness::Ready => {}
                Readiness::Waiting(msg) => {
                    self.warn(msg);
                    return Ok(());
                }
                Readiness::Failed(msg) => {
                    self.warn(msg);
                    self.rollback();
                    return Ok(());
                }
            }
        }
        self.scaler(Action::PauseTargetScaler);
        self.act(Action::ScaleTargetToZero);
        self.w
            .sync(CanaryPhase::Initialized, 0, 0, 0, &self.obs.target);
        self.info(format!("Initialization done! {}", self.canary_name));
        self.alert(
            Severity::Info,
            format!(
                "New {} detected, initialization completed.",
                c.target.kind.kind()
            ),
            true,
        );
        Ok(())
    }

    /// A new revision (or a canary waiting for approval): confirm-rollout gates, then scale up.
    fn start_revision(&mut self) -> Flow {
        let phase = self.phase();
        let hooks: Vec<_> = self
            .c
            .analysis
            .hooks(HookType::ConfirmRollout)
            .cloned()
            .collect();
        for (i, hook) in hooks.iter().enumerate() {
            match self.hook(HookType::ConfirmRollout, i, phase)? {
                Ok(()) => self.info(format!("Confirm-rollout check {} passed", hook.name)),
                Err(_) => {
                    self.explain(
                        Outcome::Waiting,
                        format!("waiting for approval to start ({})", hook.name),
                    );
                    if phase != CanaryPhase::Waiting {
                        self.w.set_phase(CanaryPhase::Waiting, 0);
                        self.warn(format!(
                            "Halt {} advancement waiting for approval {}",
                            self.canary_name, hook.name
                        ));
                        if !hook.mute_alert {
                            self.alert(
                                Severity::Warn,
                                "Canary is waiting for approval.".into(),
                                false,
                            );
                        }
                    }
                    return Ok(());
                }
            }
        }
        // The cap on concurrent rollouts: wait in line for a slot (approval comes first).
        if self.obs.caps.any() {
            let Some(fleet) = self.obs.fleet.as_deref() else {
                return Err(Need::Fleet);
            };
            let admission = crate::queue::admit(
                &self.obs.caps,
                fleet,
                &self.c.namespace,
                &self.c.name,
                self.now,
            );
            if let crate::queue::Admission::Queued(place) = admission {
                let message = place.message();
                self.explain(Outcome::Waiting, message.clone());
                self.w.set_queued(Some(message.clone()));
                if phase != CanaryPhase::Waiting {
                    self.w.set_phase(CanaryPhase::Waiting, 0);
                    self.warn(format!("Halt {} advancement: {message}", self.canary_name));
                }
                return Ok(());
            }
            self.w.set_queued(None);
        }
        self.event(
            EventType::Normal,
            format!("New revision detected! Scaling up {}", self.target_name),
            CanaryPhase::Progressing,
        );
        self.alert(
            Severity::Info,
            "New revision detected, progressing canary analysis.".into(),
            true,
        );
        self.scaler(Action::ResumeTargetScaler);
        self.act(Action::ScaleTargetUp);
        self.w
            .sync(CanaryPhase::Progressing, 0, 0, 0, &self.obs.target);
        self.w.reset_analysis();
        if self.retry_requested {
            self.info(format!(
                "Retrying {}: the analysis of the failed revision starts again",
                self.target_name
            ));
            self.clear_request();
        }
        self.explain(
            Outcome::Started,
            if self.retry_requested {
                "retry requested: analysis of the failed revision starting".into()
            } else {
                "new revision detected: analysis starting".into()
            },
        );
        Ok(())
    }

    /// Rollback hooks: the first that answers with success rolls the canary back.
    fn rollback_hooks(&mut self) -> Result<bool, Need> {
        let phase = self.phase();
        let hooks: Vec<_> = self.c.analysis.hooks(HookType::Rollback).cloned().collect();
        for (i, hook) in hooks.iter().enumerate() {
            match self.hook(HookType::Rollback, i, phase)? {
                Ok(()) => {
                    self.rollback_reason =
                        Some(format!("rollback webhook {} asked for it", hook.name));
                    self.warn(format!("Rollback check {} passed", hook.name));
                    self.warn(format!(
                        "Rolling back {} manual webhook invoked",
                        self.canary_name
                    ));
                    self.alert(
                        Severity::Warn,
                        "Rolling back manual webhook invoked".into(),
                        false,
                    );
                    self.rollback();
                    return Ok(true);
                }
                Err(_) => self.info(format!(
                    "Rollback hook {} not signaling a rollback",
                    hook.name
                )),
            }
        }
        Ok(false)
    }

    /// Pre-rollout hooks on the first analysis tick, rollout hooks and metrics on the others.
    /// Returns whether the checks passed; a failure has been counted.
    fn analysis(&mut self, routes: Routes) -> Result<bool, Need> {
        let mirror = match &self.c.analysis.strategy {
            Strategy::Canary { mirror, .. } | Strategy::BlueGreen { mirror, .. } => *mirror,
            Strategy::AbTesting { .. } => false,
        };
        let first = routes.canary == 0
            && self.start.iterations.unwrap_or(0) == 0
            && !(mirror && routes.mirrored);
        if first {
            self.info(format!("Starting canary analysis for {}", self.target_name));
            let hooks: Vec<_> = self
                .c
                .analysis
                .hooks(HookType::PreRollout)
                .cloned()
                .collect();
            for (i, hook) in hooks.iter().enumerate() {
                match self.hook(HookType::PreRollout, i, CanaryPhase::Progressing)? {
                    Ok(()) => self.info(format!("Pre-rollout check {} passed", hook.name)),
                    Err(e) => {
                        self.check_failed(
                            format!(
                                "Halt {} advancement pre-rollout check {} failed {e}",
                                self.canary_name, hook.name
                            ),
                            format!("pre-rollout check {} failed: {e}", hook.name),
                        );
                        return Ok(false);
                    }
                }
            }
            return Ok(true);
        }

        let hooks: Vec<_> = self.c.analysis.hooks(HookType::Rollout).cloned().collect();
        for (i, hook) in hooks.iter().enumerate() {
            if let Err(e) = self.hook(HookType::Rollout, i, CanaryPhase::Progressing)? {
                self.check_failed(
                    format!(
                        "Halt {} advancement external check {} failed {e}",
                        self.canary_name, hook.name
                    ),
                    format!("external check {} failed: {e}", hook.name),
                );
                return Ok(false);
            }
        }

        // Builtin checks and inline queries first, then templates, each in declaration order.
        let metrics = &self.c.analysis.metrics;
        let order = metrics
            .iter()
            .enumerate()
            .filter(|(_, m)| !matches!(m.source, MetricSource::Template { .. }))
            .chain(
                metrics
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| matches!(m.source, MetricSource::Template { .. })),
            )
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        for index in order {
            let check = self.metric(index)?;
            if !self.judge_check(index, &check) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Records one metric check (status, metric notice) and counts it; returns whether the
    /// analysis goes on. A check without data under the `hold` policy holds the run (no failed
    /// check, no advance) until data arrives or the progress deadline has passed.
    fn judge_check(&mut self, index: usize, check: &MetricCheck) -> bool {
        let metric = &self.c.analysis.metrics[index];
        let verdict = explain::verdict(metric, &check.outcome);
        let previous = self
            .w
            .analysis()
            .and_then(|a| a.checks.iter().find(|c| c.name == metric.name))
            .cloned();
        let now = Time(self.now);
        let hold = verdict == Verdict::InsufficientData && self.c.no_data == NoDataPolicy::Hold;
        let deadline = self.c.progress_deadline;
        let held_too_long = hold
            && previous
                .as_ref()
                .and_then(|p| p.insufficient_since.as_ref())
                .is_some_and(|since| {
                    self.now.as_second() - since.0.as_second() >= deadline.as_secs() as i64
                });
        let counted = verdict != Verdict::Pass && (!hold || held_too_long);
        let status = explain::check_status(metric, check, previous.as_ref(), counted, now);
        let why = status.reason.clone().unwrap_or_default();
        // Counted and exported as metrics: no time in it (a notice does not depend on the clock).
        self.notices.push(Notice::Check(flagger_api::CheckStatus {
            time: None,
            insufficient_since: None,
            ..status.clone()
        }));
        self.w.set_check(status);
        if verdict == Verdict::Pass {
            if let MetricOutcome::Compared(compared) = &check.outcome {
                // The judge's figures in words, as each comparison check reports them.
                let message = compared
                    .check(&self.canary_name, &metric.name, metric.range)
                    .message;
                self.info(message);
            }
            self.passed += 1;
            return true;
        }
        let name = metric.name.clone();
        let deadline_text = go_duration_ms(deadline.as_millis() as f64);
        if hold && !held_too_long {
            self.warn(format!(
                "Halt {} advancement: insufficient data for metric {name}, holding (no-data policy hold): no failed check counted until data arrives or the progress deadline ({deadline_text}) passes",
                self.canary_name
            ));
            let at = self.at();
            self.explain(
                Outcome::InsufficientData,
                format!(
                    "held at {at}: {why}; no failed check counted (no-data policy hold, until data arrives or {deadline_text} pass)"
                ),
            );
            return false;
        }
        let event = if let MetricOutcome::Compared(compared) = &check.outcome
            && !hold
        {
            compared
                .check(&self.canary_name, &name, metric.range)
                .message
        } else if hold {
            format!(
                "Halt {} advancement: insufficient data for metric {name} for longer than the progress deadline ({deadline_text}): counted as a failed check",
                self.canary_name
            )
        } else {
            self.metric_failure(index, &check.outcome)
                .unwrap_or_else(|| why.clone())
        };
        self.check_failed(event, why);
        false
    }

    /// The event text when a metric check fails, `None` when it passes.
    fn metric_failure(&self, index: usize, outcome: &MetricOutcome) -> Option<String> {
        let metric = &self.c.analysis.metrics[index];
        let cn = &self.canary_name;
        let name = &metric.name;
        let range = metric.range;
        match (&metric.source, outcome) {
            (_, MetricOutcome::Unusable(message)) => Some(message.clone()),
            // Judged by `analysis` before this is asked.
            (_, MetricOutcome::Compared(_)) => None,
            (MetricSource::Builtin(kind), MetricOutcome::Value(v)) => {
                let (v, min, max) = (*v, range.min, range.max);
                match kind {
                    BuiltinMetric::RequestSuccessRate => {
                        if let Some(min) = min.filter(|m| v < *m) {
                            return Some(format!(
                                "Halt {cn} advancement success rate {v:.2}% < {min}%"
                            ));
                        }
                        if let Some(max) = max.filter(|m| v > *m) {
                            return Some(format!(
                                "Halt {cn} advancement success rate {v:.2}% > {max}%"
                            ));
                        }
                    }
                    BuiltinMetric::RequestDuration => {
                        let v = v.trunc();
                        if let Some(min) = min.filter(|m| v < *m) {
                            return Some(format!(
                                "Halt {cn} advancement request duration {} < {}",
                                go_duration_ms(v),
                                go_duration_ms(min)
                            ));
                        }
                        if let Some(max) = max.filter(|m| v > *m) {
                            return Some(format!(
                                "Halt {cn} advancement request duration {} > {}",
                                go_duration_ms(v),
                                go_duration_ms(max)
                            ));
                        }
                    }
                }
                None
            }
            (MetricSource::Builtin(kind), MetricOutcome::NoValues(e)) => {
                let provider = self.c.provider.as_str();
                Some(match kind {
                    BuiltinMetric::RequestSuccessRate => format!(
                        "Halt advancement no values found for {provider} metric {name} probably {} is not receiving traffic: {e}",
                        self.target_name
                    ),
                    BuiltinMetric::RequestDuration => format!(
                        "Halt advancement no values found for {provider} metric {name} probably {} is not receiving traffic",
                        self.target_name
                    ),
                })
            }
            (MetricSource::Builtin(_), MetricOutcome::Error(e)) => {
                Some(format!("Prometheus query failed: {e}"))
            }
            (MetricSource::Query(_), MetricOutcome::NoValues(_)) => Some(format!(
                "Halt advancement no values found for metric: {name}"
            )),
            (MetricSource::Query(_), MetricOutcome::Error(e)) => {
                Some(format!("Prometheus query failed for {name}: {e}"))
            }
            (MetricSource::Template { .. }, MetricOutcome::NoValues(e)) => Some(format!(
                "Halt advancement no values found for custom metric: {name}: {e}"
            )),
            (MetricSource::Template { .. }, MetricOutcome::Error(e)) => {
                Some(format!("Metric query failed for {name}: {e}"))
            }
            (MetricSource::Query(_) | MetricSource::Template { .. }, MetricOutcome::Value(v)) => {
                let v = *v;
                if let Some(min) = range.min.filter(|m| v < *m) {
                    return Some(format!("Halt {cn} advancement {name} {v:.2} < {min}"));
                }
                if let Some(max) = range.max.filter(|m| v > *m) {
                    return Some(format!("Halt {cn} advancement {name} {v:.2} > {max}"));
                }
                None
            }
        }
    }

    /// Confirm-promotion gates. Returns whether promotion may go ahead.
    fn confirm_promotion(&mut self) -> Result<bool, Need> {
        let hooks: Vec<_> = self
            .c
            .analysis
            .hooks(HookType::ConfirmPromotion)
            .cloned()
            .collect();
        for (i, hook) in hooks.iter().enumerate() {
            match self.hook(HookType::ConfirmPromotion, i, CanaryPhase::Progressing)? {
                Ok(()) => self.info(format!("Confirm-promotion check {} passed", hook.name)),
                Err(_) => {
                    let at = self.at();
                    self.explain(
                        Outcome::Waiting,
                        format!(
                            "waiting at {at} for promotion approval ({}); checks passed",
                            hook.name
                        ),
                    );
                    let waiting = self.waiting_iterations();
                    if self.phase() != CanaryPhase::WaitingPromotion {
                        self.w.set_phase(CanaryPhase::WaitingPromotion, waiting);
                        self.warn(format!(
                            "Halt {} advancement waiting for promotion approval {}",
                            self.canary_name, hook.name
                        ));
                        if !hook.mute_alert {
                            self.alert(
                                Severity::Warn,
                                "Canary promotion is waiting for approval.".into(),
                                false,
                            );
                        }
                    } else {
                        self.w.set_iterations(waiting);
                    }
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn promote(&mut self) {
        self.info(format!(
            "Copying {} template spec to {}.{}",
            self.target_name,
            self.c.primary_workload(),
            self.c.namespace
        ));
        let at = self.at();
        self.explain(
            Outcome::Promoting,
            format!("promoting at {at}: {}", self.passed_text()),
        );
        self.act(Action::Promote);
        self.w.set_phase(CanaryPhase::Promoting, 0);
    }

    /// What passed this tick, in words.
    fn passed_text(&self) -> String {
        match (self.passed, self.c.analysis.metrics.len()) {
            (_, 0) => "no metric to check".into(),
            (p, n) if p == n => format!("{n} of {n} metric checks passed"),
            // The first tick runs the pre-rollout hooks only.
            _ => "pre-rollout checks passed".into(),
        }
    }

    fn run_canary(&mut self, steps: &Steps, max_weight: u32, mirror: bool, routes: Routes) -> Flow {
        let step = next_step_weight(steps, routes.canary);
        if step == 0 {
            return Ok(());
        }
        let gated = !routes.mirrored
            && !matches!(
                self.phase(),
                CanaryPhase::Promoting | CanaryPhase::WaitingPromotion | CanaryPhase::Finalising
            );
        if gated {
            let hooks: Vec<_> = self
                .c
                .analysis
                .hooks(HookType::ConfirmTrafficIncrease)
                .cloned()
                .collect();
            for (i, hook) in hooks.iter().enumerate() {
                match self.hook(
                    HookType::ConfirmTrafficIncrease,
                    i,
                    CanaryPhase::Progressing,
                )? {
                    Ok(()) => self.info(format!(
                        "Confirm-traffic-increase check {} passed",
                        hook.name
                    )),
                    Err(_) => {
                        self.warn(format!(
                            "Halt {} advancement waiting for traffic increase approval {}",
                            self.canary_name, hook.name
                        ));
                        let at = self.at();
                        self.explain(
                            Outcome::Waiting,
                            format!(
                                "waiting at {at} for traffic increase approval ({})",
                                hook.name
                            ),
                        );
                        if !hook.mute_alert {
                            self.alert(
                                Severity::Warn,
                                "Canary traffic increase is waiting for approval.".into(),
                                false,
                            );
                        }
                        return Ok(());
                    }
                }
            }
        }

        if routes.canary < max_weight {
            let next = if mirror && routes.canary == 0 {
                if !routes.mirrored {
                    Routes {
                        primary: 100,
                        canary: 0,
                        mirrored: true,
                    }
                } else {
                    Routes::weights(100u32.saturating_sub(step), step.min(100))
                }
            } else {
                Routes::weights(
                    routes.primary.saturating_sub(step),
                    (routes.canary + step).min(100),
                )
            };
            self.act(Action::SetRoutes(next));
            self.w.set_weight(next.canary);
            self.explain(
                Outcome::Advanced,
                format!("advanced to {}%: {}", next.canary, self.passed_text()),
            );
            self.info(format!(
                "Advance {} canary weight {}",
                self.canary_name, next.canary
            ));
            return Ok(());
        }

        if self.confirm_promotion()? {
            self.promote();
        }
        Ok(())
    }

    fn run_ab(&mut self, iterations: u32) -> Flow {
        let done = self.w.current().iterations.unwrap_or(0);
        if iterations as i32 > done {
            self.act(Action::SetRoutes(Routes::CANARY));
            self.w.set_iterations(done + 1);
            self.explain(
                Outcome::Advanced,
                format!(
                    "advanced to iteration {}/{iterations}: {}",
                    done + 1,
                    self.passed_text()
                ),
            );
            self.info(format!(
                "Advance {} canary iteration {}/{}",
                self.canary_name,
                done + 1,
                iterations
            ));
            return Ok(());
        }
        if self.confirm_promotion()? && iterations as i32 == done {
            self.promote();
        }
        Ok(())
    }

    fn run_blue_green(&mut self, iterations: u32, mirror: bool, routes: Routes) -> Flow {
        let kubernetes = self.c.provider == Provider::Kubernetes;
        let done = self.w.current().iterations.unwrap_or(0);
        let iterations = iterations as i32;
        if iterations > done {
            if !kubernetes && mirror && !routes.mirrored {
                self.act(Action::SetRoutes(Routes {
                    primary: 100,
                    canary: 0,
                    mirrored: true,
                }));
            }
            self.w.set_iterations(done + 1);
            self.explain(
                Outcome::Advanced,
                format!(
                    "advanced to iteration {}/{iterations}: {}",
                    done + 1,
                    self.passed_text()
                ),
            );
            self.info(format!(
                "Advance {} canary iteration {}/{}",
                self.canary_name,
                done + 1,
                iterations
            ));
            return Ok(());
        }
        if !self.confirm_promotion()? {
            return Ok(());
        }
        if iterations == done {
            if !kubernetes {
                self.info(if mirror {
                    "Stop traffic mirroring and route all traffic to canary".into()
                } else {
                    "Routing all traffic to canary".into()
                });
                self.act(Action::SetRoutes(Routes::CANARY));
            }
            self.w.set_iterations(done + 1);
            return Ok(());
        }
        self.promote();
        Ok(())
    }

    /// Promoting: move traffic back to the (now updated) primary.
    fn shift_to_primary(&mut self, routes: Routes) {
        if self.c.provider == Provider::Kubernetes {
            self.w.set_phase(CanaryPhase::Finalising, 0);
            return;
        }
        let step = self.c.analysis.step_weight_promotion;
        // Flagger makes no progress when stepWeightPromotion is set and the canary weight is
        // already 0 (blue/green, A/B); we finish the promotion instead.
        if step == 0 || routes.canary == 0 {
            self.info("Routing all traffic to primary".into());
            self.act(Action::SetRoutes(Routes::PRIMARY));
            self.w.set_phase(CanaryPhase::Finalising, 0);
            return;
        }
        let primary = (routes.primary + step).min(100);
        let canary = routes.canary.saturating_sub(step);
        self.act(Action::SetRoutes(Routes::weights(primary, canary)));
        self.info(format!(
            "Advance {} primary weight {primary}",
            self.canary_name
        ));
        if primary == 100 {
            self.w.set_phase(CanaryPhase::Finalising, 0);
        } else {
            self.w.set_weight(canary);
        }
    }

    fn finalise(&mut self) {
        self.explain(
            Outcome::Promoted,
            format!(
                "promoted: analysis completed, {} scaled to zero",
                self.target_name
            ),
        );
        self.scaler(Action::PauseTargetScaler);
        self.act(Action::ScaleTargetToZero);
        self.w.set_phase(CanaryPhase::Succeeded, 0);
        self.notice(Notice::CountRun(RunOutcome::Succeeded { skipped: false }));
        self.notice(Notice::RunPostRolloutHooks {
            phase: CanaryPhase::Succeeded,
        });
        self.event(
            EventType::Normal,
            format!("Promotion completed! Scaling down {}", self.target_name),
            CanaryPhase::Succeeded,
        );
        self.alert(
            Severity::Info,
            "Canary analysis completed successfully, promotion finished.".into(),
            false,
        );
    }

    fn promote_without_analysis(&mut self) {
        self.explain(
            Outcome::Promoted,
            "promoted without analysis (skipAnalysis)".into(),
        );
        self.act(Action::SetRoutes(Routes::PRIMARY));
        self.info(format!(
            "Copying {} template spec to {}.{}",
            self.target_name,
            self.c.primary_workload(),
            self.c.namespace
        ));
        self.act(Action::Promote);
        self.scaler(Action::ReconcilePrimaryScaler);
        self.scaler(Action::PauseTargetScaler);
        self.act(Action::ScaleTargetToZero);
        self.w.set_phase(CanaryPhase::Succeeded, 0);
        self.notice(Notice::CountRun(RunOutcome::Succeeded { skipped: true }));
        self.notice(Notice::RunPostRolloutHooks {
            phase: CanaryPhase::Succeeded,
        });
        self.event(
            EventType::Normal,
            format!(
                "Promotion completed! Canary analysis was skipped for {}",
                self.target_name
            ),
            CanaryPhase::Succeeded,
        );
        self.alert(
            Severity::Info,
            "Canary analysis was skipped, promotion finished.".into(),
            false,
        );
    }

    fn rollback(&mut self) {
        let failed = self.failed_checks();
        let at = self.at();
        let sentence = match self.rollback_reason.take() {
            Some(reason) => format!("rolled back at {at}: {reason}"),
            None => {
                let last = self
                    .w
                    .analysis()
                    .and_then(|a| a.last_failure.clone())
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default();
                format!(
                    "rolled back at {at} after {failed} of {} failed checks{last}",
                    self.c.analysis.threshold
                )
            }
        };
        self.explain(Outcome::RolledBack, sentence);
        if failed >= self.c.analysis.threshold as i32 {
            self.warn(format!(
                "Rolling back {} failed checks threshold reached {failed}",
                self.canary_name
            ));
            self.alert(
                Severity::Error,
                format!("Failed checks threshold reached {failed}"),
                false,
            );
        }
        self.act(Action::SetRoutes(Routes::PRIMARY));
        self.event(
            EventType::Warning,
            format!("Canary failed! Scaling down {}", self.canary_name),
            CanaryPhase::Failed,
        );
        self.scaler(Action::PauseTargetScaler);
        self.act(Action::ScaleTargetToZero);
        self.w.sync(CanaryPhase::Failed, 0, 0, 0, &self.obs.target);
        self.notice(Notice::CountRun(RunOutcome::Failed));
        self.notice(Notice::RunPostRolloutHooks {
            phase: CanaryPhase::Failed,
        });
    }

    /// The primary did not become ready while promoting: keep users on the canary, the only
    /// healthy copy, and do not scale it down.
    fn failed_promotion(&mut self, reason: String) {
        self.explain(
            Outcome::Halted,
            format!("promotion failed, traffic kept on the canary: primary not ready: {reason}"),
        );
        self.event(
            EventType::Warning,
            format!(
                "Promotion of {} failed, primary not ready: {reason}",
                self.target_name
            ),
            CanaryPhase::Failed,
        );
        self.alert(
            Severity::Error,
            format!("Promotion failed, primary not ready: {reason}"),
            false,
        );
        self.act(Action::SetRoutes(Routes::CANARY));
        self.w
            .sync(CanaryPhase::Failed, 100, 0, 0, &self.obs.target);
        self.notice(Notice::CountRun(RunOutcome::Failed));
        self.notice(Notice::RunPostRolloutHooks {
            phase: CanaryPhase::Failed,
        });
    }
}

/// A cookie value when the controller gave none: ten letters derived from the revision (the
/// controller gives random ones, as Flagger's).
fn fallback_cookie(seed: &str, n: usize) -> String {
    let hash = crate::hash::spec_hash(&serde_json::json!({"cookie": seed, "n": n}));
    hash.bytes()
        .rev()
        .take(10)
        .map(|b| char::from(b'a' + b % 26))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_steps_follow_the_ladder() {
        let steps = Steps::Explicit(vec![10, 20, 30, 40, 50, 60]);
        assert_eq!(weight_ladder(&steps, 60), vec![10, 20, 30, 40, 50, 60]);
        assert_eq!(next_step_weight(&steps, 0), 10);
        assert_eq!(next_step_weight(&steps, 20), 10);
        assert_eq!(next_step_weight(&steps, 100), 1);
        assert_eq!(next_step_weight(&Steps::Explicit(vec![1, 2, 60]), 2), 58);
    }

    #[test]
    fn max_weight_is_a_threshold_not_a_cap() {
        assert_eq!(weight_ladder(&Steps::Linear(20), 50), vec![20, 40, 60]);
        assert_eq!(weight_ladder(&Steps::Linear(5), 50).len(), 10);
    }
}
