//! Step 5: carry out the decision's cluster actions, in order, stopping at the first that
//! fails: the status the decision reached is written only when all of them succeeded (step 6),
//! so a failed action leaves the canary where it was, to be retried with the per-canary
//! backoff. Every action is idempotent.

use flagger_core::effects::Action;
use flagger_core::keda::MetadataRule;
use flagger_core::model::{AutoscalerKind, ValidatedCanary};

use super::keda;
use super::objects::WriteError;
use super::oracle::Oracle;
use super::workloads;
use crate::error::{step_error, step_error_from};
use crate::write::FIELD_MANAGER;

step_error!(
    /// Step 5 failed: an action of the decision could not be carried out.
    ExecuteError
);
step_error_from!(WriteError => ExecuteError);

/// Carries out the actions in order; the first failure stops the rest and is returned.
/// `oracle.status` is the status the decision reached.
pub async fn run(oracle: &Oracle<'_>, actions: &[Action]) -> Result<(), ExecuteError> {
    if !actions.is_empty() {
        oracle.ctx.fenced(oracle.canary)?;
    }
    for action in actions {
        act(oracle, action).await?;
    }
    Ok(())
}

async fn act(o: &Oracle<'_>, action: &Action) -> Result<(), ExecuteError> {
    let c = o.c;
    let ctx = o.ctx;
    let ns = &c.namespace;
    match action {
        // The router writes the session-affinity cookies of the status the decision reached.
        Action::SetRoutes(routes) => {
            let cookies = flagger_core::routing::StickyCookies::of(o.status);
            o.router
                .set_routes(&o.route_target(), *routes, &cookies)
                .await
                .map_err(|e| ExecuteError::new(e.step_category(), e.message))?;
            ctx.metrics
                .set_weights(&c.target.name, ns, routes.primary, routes.canary);
            Ok(())
        }
        Action::ScaleTargetToZero => Ok(workloads::scale_to_zero(&ctx.client, c).await?),
        Action::ScaleTargetUp => {
            Ok(workloads::scale_up(&ctx.client, &ctx.caches, c, o.observed).await?)
        }
        // HPAs need no pausing: a Deployment at zero replicas is not scaled by its HPA. A
        // ScaledObject would scale it back up, so KEDA's pause annotation holds it at zero.
        Action::PauseTargetScaler | Action::ResumeTargetScaler => {
            if is_keda(c) {
                keda::set_paused(
                    &ctx.client,
                    c,
                    *action == Action::PauseTargetScaler,
                    FIELD_MANAGER,
                )
                .await?;
            }
            Ok(())
        }
        Action::ReconcilePrimaryScaler => {
            if is_keda(c) {
                keda::write_primary(
                    &ctx.objects,
                    &ctx.settings,
                    o.canary,
                    c,
                    MetadataRule::Update,
                )
                .await?;
            } else {
                workloads::write_primary_hpa(&ctx.client, o.canary, c).await?;
            }
            Ok(())
        }
        Action::Promote => Ok(promote(o).await?),
    }
}

fn is_keda(c: &ValidatedCanary) -> bool {
    c.autoscaler
        .as_ref()
        .is_some_and(|a| a.kind == AutoscalerKind::ScaledObject)
}

/// Copies the target's template and tracked configs to the primary.
async fn promote(o: &Oracle<'_>) -> Result<(), WriteError> {
    let client = &o.ctx.client;
    // A Knative Service's promotion names its latest created revision the primary.
    if let super::observe::Target::KnativeService(_) = &o.observed.target {
        return Ok(super::knative::promote(&o.ctx.objects, o.c).await?);
    }
    let current = workloads::read_primary(client, o.c, o.observed).await?;
    workloads::write_primary_configs(client, &o.ctx.settings, o.canary, o.observed).await?;
    // The same revision always gets the same id: a promotion tried again does not roll the
    // primary's pods a second time.
    let flagger_id = flagger_core::workload::promotion_id(&o.observed.revision);
    workloads::write_primary(
        client,
        &o.ctx.settings,
        o.canary,
        o.observed,
        Some(&current),
        &flagger_id,
    )
    .await
}
