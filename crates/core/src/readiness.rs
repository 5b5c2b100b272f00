//! Readiness of the primary and canary workloads from their observed status, with Flagger's
//! retriable (wait) and non-retriable (roll back) outcomes and its messages.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::effects::Readiness;

/// Which copy is being checked: the messages differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Canary,
}

/// Readiness of a Deployment.
///
/// `ready_threshold` is the percentage of updated replicas that must be available;
/// `progress_deadline_secs` is the Canary's `progressDeadlineSeconds`. With
/// [`Role::Primary`], a Deployment scaled to zero is reported as not ready (Flagger intends
/// this check but its comparison never fires).
pub fn deployment(
    deployment: &Deployment,
    role: Role,
    namespace: &str,
    canary_name: &str,
    ready_threshold: u32,
    progress_deadline_secs: i64,
    now: Timestamp,
) -> Readiness {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let wrap = |msg: String| match role {
        Role::Primary => format!("{name}.{namespace} not ready: {msg}"),
        Role::Canary => format!("canary deployment {name}.{namespace} not ready: {msg}"),
    };
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return Readiness::Waiting(wrap(
            "waiting for rollout to finish: observed deployment generation less than desired generation"
                .into(),
        ));
    }
    let conditions = status.conditions.unwrap_or_default();
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing");
    let mut retriable = true;
    if progressing.is_some()
        && let Some(available) = conditions.iter().find(|c| c.type_ == "Available")
        && available.status == "False"
        && available.reason.as_deref() == Some("MinimumReplicasUnavailable")
        && let Some(since) = &available.last_update_time
    {
        retriable = since.0 + SignedDuration::from_secs(progress_deadline_secs) >= now;
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let threshold_replicas = (updated as f64 * ready_threshold as f64 / 100.0) as i32;
    let waiting = |msg: String| {
        if retriable {
            Readiness::Waiting(wrap(msg))
        } else {
            Readiness::Failed(wrap(msg))
        }
    };
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas);
    if progressing.and_then(|p| p.reason.as_deref()) == Some("ProgressDeadlineExceeded") {
        return Readiness::Failed(wrap(format!(
            "deployment {name:?} exceeded its progress deadline"
        )));
    }
    if let Some(desired) = desired.filter(|d| updated < *d) {
        return waiting(format!(
            "waiting for rollout to finish: {updated} out of {desired} new replicas have been updated"
        ));
    }
    let replicas = status.replicas.unwrap_or(0);
    if replicas > updated {
        return waiting(format!(
            "waiting for rollout to finish: {} old replicas are pending termination",
            replicas - updated
        ));
    }
    let available = status.available_replicas.unwrap_or(0);
    if available < threshold_replicas {
        return waiting(format!(
            "waiting for rollout to finish: {available} of {threshold_replicas} (readyThreshold {ready_threshold}%) updated replicas are available"
        ));
    }
    if role == Role::Primary && desired == Some(0) {
        return Readiness::Waiting(format!(
            "halt {canary_name}.{namespace} advancement: primary deployment is scaled to zero"
        ));
    }
    Readiness::Ready
}

/// Readiness of a DaemonSet. Flagger measures the deadline from the Canary's
/// `status.lastTransitionTime`.
#[allow(
    clippy::too_many_arguments,
    reason = "the inputs of one readiness rule"
)]
pub fn daemonset(
    daemonset: &DaemonSet,
    role: Role,
    namespace: &str,
    ready_threshold: u32,
    progress_deadline_secs: i64,
    canary_last_transition: Option<Timestamp>,
    now: Timestamp,
) -> Readiness {
    let name = daemonset.metadata.name.as_deref().unwrap_or_default();
    let generation = daemonset.metadata.generation.unwrap_or(0);
    let status = daemonset.status.clone().unwrap_or_default();
    let outcome: Result<(), (bool, String)> = if generation
        <= status.observed_generation.unwrap_or(0)
    {
        let desired = status.desired_number_scheduled;
        let updated = status.updated_number_scheduled.unwrap_or(0);
        let available = status.number_available.unwrap_or(0);
        let new_pending = updated < desired;
        let threshold_pods = (desired as f64 * ready_threshold as f64 / 100.0) as i32;
        let unavailable = available < threshold_pods;
        if !new_pending && !unavailable {
            Ok(())
        } else {
            let from = canary_last_transition.unwrap_or(now);
            if from + SignedDuration::from_secs(progress_deadline_secs) < now {
                Err((
                    false,
                    format!("exceeded its progressDeadlineSeconds: {progress_deadline_secs}"),
                ))
            } else if new_pending {
                Err((
                    true,
                    format!(
                        "waiting for rollout to finish: {updated} out of {desired} new pods have been updated"
                    ),
                ))
            } else {
                Err((
                    true,
                    format!(
                        "waiting for rollout to finish: {available} of {desired} updated pods are available"
                    ),
                ))
            }
        }
    } else {
        Err((true, "waiting for rollout to finish: observed daemonset generation less then desired generation".into()))
    };
    match outcome {
        Ok(()) => Readiness::Ready,
        Err((retriable, msg)) => {
            let msg = match role {
                Role::Primary => format!("primary daemonset {name}.{namespace} not ready: {msg}"),
                Role::Canary => format!(
                    "canary damonset {name}.{namespace} not ready with retryable {retriable}: {msg}"
                ),
            };
            if retriable {
                Readiness::Waiting(msg)
            } else {
                Readiness::Failed(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("timestamp")
    }

    fn dep(v: serde_json::Value) -> Deployment {
        serde_json::from_value(v).expect("deployment")
    }

    #[test]
    fn ready_deployment() {
        let d = dep(json!({
            "metadata": {"name": "podinfo", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
        }));
        assert_eq!(
            deployment(&d, Role::Canary, "test", "podinfo", 100, 600, ts(0)),
            Readiness::Ready
        );
    }

    #[test]
    fn waiting_messages_match_flagger() {
        let d = dep(json!({
            "metadata": {"name": "podinfo", "generation": 2},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}
        }));
        assert_eq!(
            deployment(&d, Role::Canary, "test", "podinfo", 100, 600, ts(0)),
            Readiness::Waiting("canary deployment podinfo.test not ready: waiting for rollout to finish: 0 of 1 (readyThreshold 100%) updated replicas are available".into())
        );
        let d = dep(
            json!({"metadata": {"name": "podinfo-primary", "generation": 3}, "status": {"observedGeneration": 2}}),
        );
        assert_eq!(
            deployment(&d, Role::Primary, "test", "podinfo", 100, 600, ts(0)),
            Readiness::Waiting("podinfo-primary.test not ready: waiting for rollout to finish: observed deployment generation less than desired generation".into())
        );
    }

    #[test]
    fn stuck_rollout_is_not_retriable() {
        let d = dep(json!({
            "metadata": {"name": "podinfo", "generation": 1},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0,
              "conditions": [
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "lastUpdateTime": "2023-11-14T22:00:00Z"}
              ]}
        }));
        let later = ts(1_700_000_000 + 3600);
        assert!(matches!(
            deployment(&d, Role::Canary, "test", "podinfo", 100, 600, later),
            Readiness::Failed(_)
        ));
        let soon = ts(1_699_999_300);
        assert!(matches!(
            deployment(&d, Role::Canary, "test", "podinfo", 100, 600, soon),
            Readiness::Waiting(_)
        ));
        let d = dep(json!({
            "metadata": {"name": "podinfo", "generation": 1},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}
        }));
        assert_eq!(
            deployment(&d, Role::Canary, "test", "podinfo", 100, 600, ts(0)),
            Readiness::Failed("canary deployment podinfo.test not ready: deployment \"podinfo\" exceeded its progress deadline".into())
        );
    }

    #[test]
    fn primary_at_zero_replicas_is_not_ready() {
        let d = dep(json!({
            "metadata": {"name": "podinfo-primary", "generation": 1},
            "spec": {"replicas": 0, "selector": {}, "template": {}},
            "status": {"observedGeneration": 1}
        }));
        assert_eq!(
            deployment(&d, Role::Primary, "test", "podinfo", 100, 600, ts(0)),
            Readiness::Waiting(
                "halt podinfo.test advancement: primary deployment is scaled to zero".into()
            )
        );
        assert_eq!(
            deployment(&d, Role::Canary, "test", "podinfo", 100, 600, ts(0)),
            Readiness::Ready
        );
    }

    #[test]
    fn daemonset_readiness_and_deadline() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "podinfo-ds", "generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3,
              "numberAvailable": 1, "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 1}
        }))
        .expect("daemonset");
        assert_eq!(
            daemonset(&ds, Role::Canary, "test", 100, 600, Some(ts(0)), ts(10)),
            Readiness::Waiting("canary damonset podinfo-ds.test not ready with retryable true: waiting for rollout to finish: 1 of 3 updated pods are available".into())
        );
        assert!(matches!(
            daemonset(&ds, Role::Canary, "test", 100, 600, Some(ts(0)), ts(601)),
            Readiness::Failed(_)
        ));
        // With a 30% threshold, 1 of 3 available is enough.
        assert_eq!(
            daemonset(&ds, Role::Canary, "test", 30, 600, Some(ts(0)), ts(10)),
            Readiness::Ready
        );
    }
}
