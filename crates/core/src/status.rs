//! Status transitions with Flagger's exact semantics: which fields each kind of write resets,
//! and the single `Promoted` condition.

use flagger_api::labels::{
    CONDITION_ANALYSIS, CONDITION_PAUSED, CONDITION_PROMOTED, CONDITION_QUEUED,
};
use flagger_api::{AnalysisStatus, CanaryCondition, CanaryPhase, CanaryStatus, CheckStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::effects::TargetRevision;

/// `status` and `message` of the `Promoted` condition for a phase (`kind` is the target kind).
pub fn condition_for(phase: CanaryPhase, kind: &str) -> (&'static str, String) {
    use CanaryPhase::*;
    match phase {
        Initialized => ("True", format!("{kind} initialization completed.")),
        Waiting | WaitingPromotion => ("Unknown", "Waiting for approval.".into()),
        Progressing => (
            "Unknown",
            "New revision detected, progressing canary analysis.".into(),
        ),
        Promoting => (
            "Unknown",
            "Canary analysis completed, starting primary rolling update.".into(),
        ),
        Finalising => (
            "Unknown",
            "Canary analysis completed, routing all traffic to primary.".into(),
        ),
        Succeeded => (
            "True",
            "Canary analysis completed successfully, promotion finished.".into(),
        ),
        Failed => (
            "False",
            format!("Canary analysis failed, {kind} scaled to zero."),
        ),
        Unknown | Initializing | Terminating | Terminated => (
            "Unknown",
            format!("New {kind} detected, starting initialization."),
        ),
    }
}

/// Builds the next status from the current one, the way Flagger's status writers do.
#[derive(Clone, Debug)]
pub struct StatusWriter {
    status: CanaryStatus,
    kind: String,
    now: Timestamp,
    written: bool,
}

impl StatusWriter {
    pub fn new(current: &CanaryStatus, kind: &str, now: Timestamp) -> Self {
        Self {
            status: current.clone(),
            kind: kind.to_string(),
            now,
            written: false,
        }
    }

    /// The status as it stands now.
    pub fn current(&self) -> &CanaryStatus {
        &self.status
    }

    /// The status to write, if any writer ran.
    pub fn finish(self) -> Option<CanaryStatus> {
        self.written.then_some(self.status)
    }

    fn touch(&mut self) {
        self.status.last_transition_time = Some(Time(self.now));
        self.written = true;
    }

    fn set_condition(&mut self, phase: CanaryPhase) {
        let (status, message) = condition_for(phase, &self.kind);
        let reason = phase.as_str().to_string();
        let now = Some(Time(self.now));
        let previous = self
            .status
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.r#type == CONDITION_PROMOTED));
        let condition = match previous {
            Some(prev) if prev.status == status && prev.reason == reason => return,
            Some(prev) if prev.status == status => CanaryCondition {
                r#type: CONDITION_PROMOTED.into(),
                status: status.into(),
                last_update_time: now,
                last_transition_time: prev.last_transition_time.clone(),
                reason,
                message: Some(message),
            },
            _ => CanaryCondition {
                r#type: CONDITION_PROMOTED.into(),
                status: status.into(),
                last_update_time: now.clone(),
                last_transition_time: now,
                reason,
                message: Some(message),
            },
        };
        // Our own conditions (the explanation, the pause, the place in line) stay next to
        // Flagger's single one.
        let ours = self
            .status
            .conditions
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                [CONDITION_ANALYSIS, CONDITION_PAUSED, CONDITION_QUEUED]
                    .contains(&c.r#type.as_str())
            });
        self.status.conditions = Some(std::iter::once(condition).chain(ours).collect());
    }

    /// Sets (or, with `None`, removes) one of our conditions; its transition time moves only
    /// when its status does. No status write of its own unless it changed.
    fn put_condition(&mut self, kind: &str, value: Option<(&str, &str, String)>) {
        let now = Some(Time(self.now));
        let mut conditions = self.status.conditions.take().unwrap_or_default();
        let at = conditions.iter().position(|c| c.r#type == kind);
        let before = at.map(|i| conditions[i].clone());
        match (at, value) {
            (Some(i), None) => {
                conditions.remove(i);
            }
            (None, None) => {}
            (at, Some((status, reason, message))) => {
                let same = before.as_ref().is_some_and(|b| {
                    b.status == status
                        && b.reason == reason
                        && b.message.as_deref() == Some(&message)
                });
                if !same {
                    let condition = CanaryCondition {
                        r#type: kind.into(),
                        status: status.into(),
                        last_update_time: now.clone(),
                        last_transition_time: match &before {
                            Some(b) if b.status == status => b.last_transition_time.clone(),
                            _ => now,
                        },
                        reason: reason.into(),
                        message: Some(message),
                    };
                    match at {
                        Some(i) => conditions[i] = condition,
                        None => conditions.push(condition),
                    }
                }
            }
        }
        let changed = conditions.iter().find(|c| c.r#type == kind) != before.as_ref();
        self.status.conditions = (!conditions.is_empty()).then_some(conditions);
        self.written |= changed;
    }

    /// The explanation of the current analysis, as it stands.
    pub fn analysis(&self) -> Option<&AnalysisStatus> {
        self.status.analysis.as_ref()
    }

    fn analysis_mut(&mut self) -> &mut AnalysisStatus {
        self.written = true;
        self.status.analysis.get_or_insert_with(Default::default)
    }

    /// Records a check that ran, replacing its previous entry.
    pub fn set_check(&mut self, check: CheckStatus) {
        let analysis = self.analysis_mut();
        match analysis.checks.iter_mut().find(|c| c.name == check.name) {
            Some(slot) => *slot = check,
            None => analysis.checks.push(check),
        }
    }

    /// Why the last failed check failed (the rollback that follows says it).
    pub fn set_last_failure(&mut self, why: String) {
        self.analysis_mut().last_failure = Some(why);
    }

    /// A new run: the checks and failures of the previous one are forgotten.
    pub fn reset_analysis(&mut self) {
        if let Some(a) = self.status.analysis.as_mut()
            && (!a.checks.is_empty() || a.last_failure.is_some())
        {
            a.checks.clear();
            a.last_failure = None;
            self.written = true;
        }
    }

    /// The last decision in one sentence: `status.analysis.lastDecision` and the `Analysis`
    /// condition (which survives on a cluster with Flagger's CRDs).
    pub fn set_decision(&mut self, outcome: crate::explain::Outcome, sentence: String) {
        if self.analysis().and_then(|a| a.last_decision.as_deref()) != Some(sentence.as_str()) {
            self.analysis_mut().last_decision = Some(sentence.clone());
        }
        self.put_condition(
            CONDITION_ANALYSIS,
            Some((outcome.status(), outcome.reason(), sentence)),
        );
    }

    /// Whether the `Paused` condition is present.
    pub fn paused(&self) -> bool {
        self.status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.r#type == CONDITION_PAUSED)
    }

    /// Sets or removes the `Paused` condition.
    pub fn set_paused(&mut self, message: Option<String>) {
        self.put_condition(CONDITION_PAUSED, message.map(|m| ("True", "Requested", m)));
    }

    /// Sets (with the place in line) or removes the `Queued` condition.
    pub fn set_queued(&mut self, message: Option<String>) {
        self.put_condition(
            CONDITION_QUEUED,
            message.map(|m| ("True", "ConcurrencyCap", m)),
        );
    }

    /// Flagger's `SyncStatus`: phase and counters as given, revision hashes refreshed from the
    /// target (`lastPromotedSpec` too when the phase is `Initialized`), tracked configs.
    pub fn sync(
        &mut self,
        phase: CanaryPhase,
        canary_weight: i32,
        failed_checks: i32,
        iterations: i32,
        target: &TargetRevision,
    ) {
        self.status.phase = phase;
        self.status.canary_weight = Some(canary_weight);
        self.status.failed_checks = Some(failed_checks);
        self.status.iterations = Some(iterations);
        self.status.last_applied_spec = Some(target.hash.clone());
        if phase == CanaryPhase::Initialized {
            self.status.last_promoted_spec = Some(target.hash.clone());
        }
        self.status.tracked_configs = Some(target.tracked_configs.clone());
        self.set_condition(phase);
        self.touch();
    }

    /// Flagger's `SetStatusPhase`. `waiting_iterations` is what `WaitingPromotion` writes into
    /// `status.iterations` (the configured iterations minus one).
    pub fn set_phase(&mut self, phase: CanaryPhase, waiting_iterations: i32) {
        use CanaryPhase::*;
        self.status.phase = phase;
        match phase {
            Progressing | Waiting | Promoting => {}
            WaitingPromotion => {
                self.status.canary_weight = Some(0);
                self.status.iterations = Some(waiting_iterations);
            }
            _ => {
                self.status.canary_weight = Some(0);
                self.status.iterations = Some(0);
            }
        }
        if matches!(phase, Initialized | Succeeded) {
            self.status.last_promoted_spec = self.status.last_applied_spec.clone();
        }
        self.set_condition(phase);
        self.touch();
    }

    pub fn set_weight(&mut self, weight: u32) {
        self.status.canary_weight = Some(weight as i32);
        self.touch();
    }

    pub fn set_iterations(&mut self, iterations: i32) {
        self.status.iterations = Some(iterations);
        self.touch();
    }

    pub fn set_failed_checks(&mut self, failed_checks: i32) {
        self.status.failed_checks = Some(failed_checks);
        self.touch();
    }

    /// Keeps the session-affinity cookies of the run (written with the routes that use them;
    /// no transition of its own).
    pub fn set_cookies(&mut self, cookies: &crate::routing::StickyCookies) {
        if crate::routing::StickyCookies::of(&self.status) != *cookies {
            cookies.write_to(&mut self.status);
            self.written = true;
        }
    }

    /// Replaces the revision hashes (adoption of a canary Flagger ran before).
    pub fn rebaseline(&mut self, applied: Option<String>, promoted: Option<String>) {
        self.status.last_applied_spec = applied;
        self.status.last_promoted_spec = promoted;
        self.touch();
    }

    /// Refreshes `lastAppliedSpec`/`trackedConfigs` without touching the phase (a failed canary
    /// tracks the target so that re-applying the failed revision does not start a run).
    pub fn refresh_revision(&mut self, target: &TargetRevision) {
        let same = self.status.last_applied_spec.as_deref() == Some(target.hash.as_str())
            && self.status.tracked_configs.as_ref() == Some(&target.tracked_configs);
        if !same {
            self.status.last_applied_spec = Some(target.hash.clone());
            self.status.tracked_configs = Some(target.tracked_configs.clone());
            self.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid timestamp")
    }

    #[test]
    fn condition_keeps_transition_time_when_only_reason_changes() {
        let mut w = StatusWriter::new(&CanaryStatus::default(), "Deployment", t(10));
        w.set_phase(CanaryPhase::Progressing, 0);
        let s1 = w.finish().expect("written");
        let c1 = s1.conditions.clone().expect("condition")[0].clone();
        assert_eq!(c1.status, "Unknown");
        assert_eq!(c1.reason, "Progressing");

        let mut w = StatusWriter::new(&s1, "Deployment", t(20));
        w.set_phase(CanaryPhase::Promoting, 0);
        let s2 = w.finish().expect("written");
        let c2 = s2.conditions.expect("condition")[0].clone();
        assert_eq!(c2.reason, "Promoting");
        assert_eq!(c2.last_transition_time, c1.last_transition_time);
        assert_eq!(c2.last_update_time, Some(Time(t(20))));

        let mut w = StatusWriter::new(&s1, "Deployment", t(30));
        w.set_phase(CanaryPhase::Failed, 0);
        let s3 = w.finish().expect("written");
        let c3 = s3.conditions.expect("condition")[0].clone();
        assert_eq!(c3.status, "False");
        assert_eq!(
            c3.message.as_deref(),
            Some("Canary analysis failed, Deployment scaled to zero.")
        );
        assert_eq!(c3.last_transition_time, Some(Time(t(30))));
    }

    #[test]
    fn set_phase_resets_counters_like_flagger() {
        let status = CanaryStatus {
            phase: CanaryPhase::Progressing,
            canary_weight: Some(40),
            iterations: Some(3),
            last_applied_spec: Some("rs1-a".into()),
            ..Default::default()
        };
        let mut w = StatusWriter::new(&status, "Deployment", t(1));
        w.set_phase(CanaryPhase::WaitingPromotion, 9);
        assert_eq!(w.current().canary_weight, Some(0));
        assert_eq!(w.current().iterations, Some(9));
        w.set_phase(CanaryPhase::Succeeded, 0);
        assert_eq!(w.current().iterations, Some(0));
        assert_eq!(w.current().last_promoted_spec.as_deref(), Some("rs1-a"));
    }

    #[test]
    fn nothing_written_without_a_writer() {
        let w = StatusWriter::new(&CanaryStatus::default(), "Deployment", t(1));
        assert!(w.finish().is_none());
    }
}
