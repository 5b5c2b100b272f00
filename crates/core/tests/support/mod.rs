//! A scripted world for driving the decision core tick by tick: it answers every `Need` from
//! scripts (hooks, metrics, readiness), carries out the actions on a tiny model of the cluster
//! (router weights, target scale, primary revision), writes the status, and records the
//! notices (events, alerts, runs) and phases.

#![allow(dead_code)]

pub mod golden;

use std::collections::BTreeMap;

use flagger_api::{Canary, CanaryPhase, CanaryStatus};
use flagger_core::decide;
use flagger_core::effects::{
    Action, Alert, Decision, Event, EventType, HookOutcome, MetricOutcome, Need, Notice,
    Observations, Readiness, Routes, RunOutcome, Scale, Step, TargetRevision,
};
use flagger_core::model::{HookType, ValidatedCanary};
use flagger_core::validate::{ValidationContext, validate};
use k8s_openapi::jiff::Timestamp;

/// Parses and validates a Canary manifest, panicking with the problems if it is invalid.
pub fn canary(yaml: &str) -> ValidatedCanary {
    match try_canary(yaml) {
        Ok(c) => c,
        Err(problems) => panic!("canary is invalid: {problems}"),
    }
}

/// Parses and validates a Canary manifest.
pub fn try_canary(yaml: &str) -> Result<ValidatedCanary, String> {
    let wire: Canary = serde_yaml::from_str(yaml).expect("canary YAML parses");
    let ctx = ValidationContext {
        min_interval: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    validate(&wire, &ctx)
        .map(|v| v.canary)
        .map_err(|problems| format!("{problems:#?}"))
}

type HookScript = Box<dyn FnMut(HookType, &str, usize) -> HookOutcome>;
type MetricScript = Box<dyn FnMut(&str, usize) -> MetricOutcome>;
type ReadyScript = Box<dyn FnMut(usize) -> Readiness>;

/// The simulated world around one canary.
pub struct World {
    pub canary: ValidatedCanary,
    pub status: CanaryStatus,
    pub now: Timestamp,
    pub target: TargetRevision,
    pub routes: Routes,
    pub target_replicas_up: bool,
    pub primary_revision: String,
    pub events: Vec<Event>,
    pub alerts: Vec<Alert>,
    pub runs: Vec<RunOutcome>,
    pub post_rollout_phases: Vec<CanaryPhase>,
    /// Phase after every tick.
    pub phases: Vec<CanaryPhase>,
    /// Routes after every tick.
    pub weights: Vec<Routes>,
    /// Every need answered, per tick.
    pub needs: Vec<Vec<Need>>,
    pub tick_no: usize,
    pub hooks: HookScript,
    pub metrics: MetricScript,
    pub primary_ready: ReadyScript,
    pub canary_ready: ReadyScript,
    pub routes_error: Option<String>,
    /// The `flagger.app/action` annotation as the controller would observe it (removed when the
    /// decision asks for it).
    pub action: Option<String>,
    /// Requests the decisions asked to remove.
    pub cleared: Vec<String>,
    /// Metric checks recorded by the decisions, in order.
    pub checks: Vec<flagger_api::CheckStatus>,
}

impl World {
    /// A world at rest with the given canary, revision `v1`, all checks passing.
    pub fn new(canary: ValidatedCanary) -> Self {
        Self {
            canary,
            status: CanaryStatus::default(),
            now: Timestamp::from_second(1_700_000_000).expect("timestamp"),
            target: revision("v1"),
            routes: Routes::PRIMARY,
            target_replicas_up: true,
            primary_revision: String::new(),
            events: Vec::new(),
            alerts: Vec::new(),
            runs: Vec::new(),
            post_rollout_phases: Vec::new(),
            phases: Vec::new(),
            weights: Vec::new(),
            needs: Vec::new(),
            tick_no: 0,
            hooks: Box::new(|_, _, _| Ok(())),
            metrics: Box::new(|name, _| match name {
                "request-success-rate" => MetricOutcome::Value(100.0),
                _ => MetricOutcome::Value(0.0),
            }),
            primary_ready: Box::new(|_| Readiness::Ready),
            canary_ready: Box::new(|_| Readiness::Ready),
            routes_error: None,
            action: None,
            cleared: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Sets the `flagger.app/action` annotation.
    pub fn request(&mut self, verb: &str) {
        self.action = Some(verb.to_string());
    }

    /// The `Analysis` condition's message.
    pub fn sentence(&self) -> Option<String> {
        self.condition("Analysis").and_then(|c| c.message)
    }

    /// A condition of the status, by type.
    pub fn condition(&self, kind: &str) -> Option<flagger_api::CanaryCondition> {
        self.status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.r#type == kind)
            .cloned()
    }

    pub fn with_hooks(
        mut self,
        f: impl FnMut(HookType, &str, usize) -> HookOutcome + 'static,
    ) -> Self {
        self.hooks = Box::new(f);
        self
    }

    pub fn with_metrics(mut self, f: impl FnMut(&str, usize) -> MetricOutcome + 'static) -> Self {
        self.metrics = Box::new(f);
        self
    }

    /// Runs one tick: answers needs until the core decides, then applies the decision.
    pub fn tick(&mut self) -> Decision {
        self.tick_no += 1;
        let mut obs = Observations {
            target: self.target.clone(),
            target_scale: Some(if self.target_replicas_up {
                Scale::Up
            } else {
                Scale::Zero
            }),
            action: self.action.as_ref().and_then(|a| {
                flagger_core::steer::request(&BTreeMap::from([(
                    flagger_api::labels::ACTION.to_string(),
                    a.clone(),
                )]))
            }),
            ..Default::default()
        };
        let mut needs = Vec::new();
        let decision = loop {
            assert!(needs.len() < 200, "decide keeps asking: {needs:?}");
            match decide(&self.canary, &self.status, &obs, self.now) {
                Step::Done(d) => break d,
                Step::Need(need) => {
                    self.answer(&need, &mut obs);
                    needs.push(need);
                }
            }
        };
        self.apply(&decision);
        self.needs.push(needs);
        self.phases.push(self.status.phase);
        self.weights.push(self.routes);
        self.now = Timestamp::from_second(
            self.now.as_second() + self.canary.analysis.interval.as_secs() as i64,
        )
        .expect("timestamp");
        decision
    }

    fn answer(&mut self, need: &Need, obs: &mut Observations) {
        let t = self.tick_no;
        match need {
            Need::PrimaryReadiness => obs.primary_ready = Some((self.primary_ready)(t)),
            Need::CanaryReadiness => obs.canary_ready = Some((self.canary_ready)(t)),
            Need::Routes => {
                obs.routes = Some(match &self.routes_error {
                    Some(e) => Err(e.clone()),
                    None => Ok(self.routes),
                })
            }
            Need::MetricProviders => obs.metric_providers = Some(Ok(())),
            Need::Hook {
                hook_type, index, ..
            } => {
                let name = self
                    .canary
                    .analysis
                    .hooks(*hook_type)
                    .nth(*index)
                    .map(|h| h.name.clone())
                    .expect("hook exists");
                let outcome = (self.hooks)(*hook_type, &name, t);
                obs.hooks.insert((*hook_type, *index), outcome);
            }
            Need::Metric { index } => {
                let name = self.canary.analysis.metrics[*index].name.clone();
                let outcome = (self.metrics)(&name, t);
                obs.metrics
                    .insert(*index, flagger_core::metric::MetricCheck::outcome(outcome));
            }
        }
    }

    fn apply(&mut self, d: &Decision) {
        for action in &d.actions {
            match action {
                Action::SetRoutes(r) => self.routes = *r,
                Action::ScaleTargetToZero => self.target_replicas_up = false,
                Action::ScaleTargetUp => self.target_replicas_up = true,
                Action::Promote => self.primary_revision = self.target.hash.clone(),
                Action::PauseTargetScaler
                | Action::ResumeTargetScaler
                | Action::ReconcilePrimaryScaler => {}
            }
        }
        if let Some(status) = &d.status {
            self.status = status.clone();
        }
        for notice in &d.notices {
            match notice {
                Notice::Event(e) => self.events.push(e.clone()),
                Notice::Alert(a) => self.alerts.push(a.clone()),
                Notice::CountRun(r) => self.runs.push(*r),
                Notice::RunPostRolloutHooks { phase } => self.post_rollout_phases.push(*phase),
                Notice::ClearAction { raw } => {
                    if self.action.as_deref() == Some(raw.as_str()) {
                        self.action = None;
                    }
                    self.cleared.push(raw.clone());
                }
                Notice::Check(check) => self.checks.push(check.clone()),
            }
        }
    }

    /// Ticks until the phase is one of `phases` (after at least one tick), at most `max` ticks.
    pub fn run_until(&mut self, phases: &[CanaryPhase], max: usize) -> usize {
        for n in 1..=max {
            self.tick();
            if phases.contains(&self.status.phase) {
                return n;
            }
        }
        panic!(
            "phase {:?} not reached in {max} ticks; phases: {:?}; events: {:#?}",
            phases,
            self.phases,
            self.event_messages()
        );
    }

    /// Initializes the canary (ticks until Initialized).
    pub fn initialize(&mut self) {
        self.run_until(&[CanaryPhase::Initialized], 3);
        self.primary_revision = self.target.hash.clone();
    }

    /// Rolls out a new revision of the target.
    pub fn set_revision(&mut self, name: &str) {
        self.target = revision(name);
    }

    pub fn event_messages(&self) -> Vec<String> {
        self.events.iter().map(|e| e.message.clone()).collect()
    }

    pub fn warnings(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e.event_type == EventType::Warning)
            .map(|e| e.message.clone())
            .collect()
    }

    pub fn clear_log(&mut self) {
        self.events.clear();
        self.alerts.clear();
        self.phases.clear();
        self.weights.clear();
        self.needs.clear();
    }
}

/// A target revision whose hash is derived from a name.
pub fn revision(name: &str) -> TargetRevision {
    TargetRevision {
        hash: flagger_core::hash::spec_hash(&serde_json::json!({ "image": name })),
        tracked_configs: BTreeMap::new(),
    }
}
