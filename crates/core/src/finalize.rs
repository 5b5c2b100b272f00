//! Deleting a canary whose finalizer hands traffic back (`revertOnDeletion`, `-safe-deletion`):
//! what to do next, from what was observed. Finalization never holds a Canary (or the namespace
//! it is in) forever: with nothing to hand back it lets go at once, and a hand-back that cannot
//! finish is given up after a bound, saying why.

use std::time::Duration;

use crate::effects::Readiness;

/// What finalization has observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub namespace: String,
    /// The namespace is being deleted: everything in it goes.
    pub namespace_terminating: bool,
    /// Why the spec cannot be handed back, when it does not validate.
    pub invalid: Option<String>,
    /// `kind name.namespace` of the target.
    pub target: String,
    /// The target's readiness after it was scaled up; `None`: the target does not exist.
    pub target_ready: Option<Readiness>,
    /// Time since the deletion was asked for.
    pub waited: Duration,
    /// How long to wait for the target before giving up (the progress deadline).
    pub bound: Duration,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The target serves: hand the apex Service and the routes back, then release.
    HandBack,
    /// Wait for the target; the condition says why.
    Wait(String),
    /// Release the finalizer without handing anything back; the event says why (`warning`:
    /// traffic may not reach the target).
    Release { reason: String, warning: bool },
}

/// Condition type written while finalization waits for the target.
pub const CONDITION_FINALIZED: &str = "Finalized";

/// Decides the next step of finalization.
pub fn next(seen: &Seen) -> Next {
    if seen.namespace_terminating {
        return Next::Release {
            reason: format!(
                "namespace {} is being deleted: nothing to hand traffic back to",
                seen.namespace
            ),
            warning: false,
        };
    }
    if let Some(problems) = &seen.invalid {
        return Next::Release {
            reason: format!("nothing handed back, the spec cannot run: {problems}"),
            warning: true,
        };
    }
    let reason = match &seen.target_ready {
        None => {
            return Next::Release {
                reason: format!("{} not found: nothing to hand traffic back to", seen.target),
                warning: true,
            };
        }
        Some(Readiness::Ready) => return Next::HandBack,
        Some(Readiness::Waiting(r) | Readiness::Failed(r)) => r,
    };
    if seen.waited >= seen.bound {
        return Next::Release {
            reason: format!(
                "gave up handing traffic back to {} after {}: {reason}",
                seen.target,
                crate::duration::format_go(seen.waited)
            ),
            warning: true,
        };
    }
    Next::Wait(format!(
        "waiting for {} to serve before handing traffic back (gives up after {}): {reason}",
        seen.target,
        crate::duration::format_go(seen.bound)
    ))
}

/// `status` with the `Finalized=False` condition saying what finalization waits for, or `None`
/// when it already says so.
pub fn with_waiting_condition(
    status: &flagger_api::CanaryStatus,
    reason: &str,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<flagger_api::CanaryStatus> {
    let current = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.r#type == CONDITION_FINALIZED);
    if current.is_some_and(|c| c.message.as_deref() == Some(reason)) {
        return None;
    }
    let mut updated = status.clone();
    let mut conditions: Vec<flagger_api::CanaryCondition> = updated
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.r#type != CONDITION_FINALIZED)
        .collect();
    let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
    conditions.push(flagger_api::CanaryCondition {
        r#type: CONDITION_FINALIZED.into(),
        status: "False".into(),
        last_update_time: Some(time.clone()),
        last_transition_time: Some(
            current
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(time),
        ),
        reason: "WaitingForTarget".into(),
        message: Some(reason.to_string()),
    });
    updated.conditions = Some(conditions);
    Some(updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(target_ready: Option<Readiness>, waited: u64) -> Seen {
        Seen {
            namespace: "demo".into(),
            namespace_terminating: false,
            invalid: None,
            target: "deployment podinfo.demo".into(),
            target_ready,
            waited: Duration::from_secs(waited),
            bound: Duration::from_secs(60),
        }
    }

    #[test]
    fn nothing_to_hand_back_releases_at_once() {
        let mut s = seen(Some(Readiness::Waiting("0 of 2".into())), 0);
        s.namespace_terminating = true;
        assert!(matches!(next(&s), Next::Release { warning: false, .. }));
        assert_eq!(
            next(&seen(None, 0)),
            Next::Release {
                reason: "deployment podinfo.demo not found: nothing to hand traffic back to".into(),
                warning: true
            }
        );
        let mut invalid = seen(Some(Readiness::Ready), 0);
        invalid.invalid = Some("spec.targetRef: missing".into());
        assert!(matches!(
            next(&invalid),
            Next::Release { warning: true, .. }
        ));
    }

    #[test]
    fn a_target_that_does_not_serve_is_waited_for_then_given_up() {
        assert_eq!(next(&seen(Some(Readiness::Ready), 5)), Next::HandBack);
        let Next::Wait(why) = next(&seen(Some(Readiness::Waiting("0 of 2 ready".into())), 5))
        else {
            panic!("waits");
        };
        assert!(
            why.contains("0 of 2 ready") && why.contains("1m0s"),
            "{why}"
        );
        let Next::Release { reason, warning } =
            next(&seen(Some(Readiness::Failed("deadline".into())), 61))
        else {
            panic!("gives up");
        };
        assert!(
            warning && reason.starts_with("gave up handing traffic back"),
            "{reason}"
        );
    }
}
