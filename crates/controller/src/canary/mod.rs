//! The reconcile pipeline of one canary: dereference → observe → bootstrap → decide → apply →
//! status. See the crate documentation for the steps.

pub mod apply;
pub mod bootstrap;
pub mod conflicts;
pub mod dereference;
pub mod finalize;
pub mod keda;
pub mod knative;
pub mod objects;
pub mod observe;
pub mod oracle;

use std::sync::Arc;
use std::time::Duration;

use flagger_api::labels::FINALIZER;
use flagger_api::{Canary, CanaryCondition, CanaryStatus};
use flagger_core::effects::{Event, EventType, Observations, Step};
use flagger_core::hash;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::FIELD_MANAGER;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::ErrorLabels;

/// Condition type written when the spec cannot run (next to Flagger's `Promoted`).
pub const CONDITION_VALID: &str = "Valid";

/// How long to wait before retrying after an API error.
const RETRY: Duration = Duration::from_secs(5);

/// Reconciles one canary, timing it (`flagger_reconcile_duration_seconds`).
pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Action> {
    let started = tokio::time::Instant::now();
    let result = reconcile_canary(canary, ctx.clone()).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_canary(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Action> {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let key = ObjectRef::from_obj(&*canary);
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &ns);

    // Deletion and the revert-on-deletion finalizer.
    let has_finalizer = canary.finalizers().iter().any(|f| f == FINALIZER);
    if canary.metadata.deletion_timestamp.is_some() {
        ctx.forget(&key);
        if has_finalizer {
            return finalize::finalize(&ctx, &canary).await;
        }
        return Ok(Action::await_change());
    }
    let revert = canary.spec.revert_on_deletion.unwrap_or(false) || ctx.settings.safe_deletion;
    if revert != has_finalizer {
        set_finalizer(&api, &canary, revert).await?;
        // Go on with the object the patch produced (its watch event triggers the canary
        // again): a status computed from this older copy would be taken for stale.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }

    // 1. dereference
    let deref = match dereference::dereference(&canary, &ctx.settings) {
        Ok(d) => d,
        Err(problems) => {
            report_invalid(&ctx, &api, &canary, &problems).await?;
            return Ok(Action::await_change());
        }
    };
    let c = &deref.canary;
    let interval = c.analysis.interval;
    // Templates are not watched: look again every interval.
    if let Err(problems) = dereference::template_providers(&ctx.lookups, c).await {
        report_invalid(&ctx, &api, &canary, &problems).await?;
        return Ok(Action::requeue(interval));
    }
    let mut status = ctx.current_status(&key, &canary);
    if status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.r#type == CONDITION_VALID)
    {
        status = clear_invalid(&api, &canary, &status).await?;
    }

    // 2. observe
    let observed = match observe::observe(&ctx.client, &ctx.caches, &ctx.settings, c).await {
        Ok(o) => o,
        Err(message) => {
            warn(&ctx, &canary, &message).await;
            return Ok(Action::requeue(interval));
        }
    };
    ctx.configs.set(
        key.clone(),
        observed
            .configs
            .iter()
            .map(|cfg| crate::context::ConfigIndex::key(&ns, cfg.kind().key(), &cfg.name())),
    );

    // 3. bootstrap: generated objects are checked on every event (reads come from the
    // caches; an unchanged object is not written), so another writer's change is seen and
    // answered at once rather than at the next tick.
    // Primary readiness is read once per reconcile: bootstrap (whether a Service that routes
    // to the target may be switched to the primary) and decide (whether the target may be
    // scaled to zero) must agree on it.
    let primary_ready = oracle::readiness_of(
        &ctx,
        c,
        &observed,
        &status,
        flagger_core::readiness::Role::Primary,
    )
    .await;
    if !c.suspend {
        let serving = matches!(primary_ready, flagger_core::effects::Readiness::Ready);
        match bootstrap::bootstrap(&ctx, &canary, c, &observed, serving).await {
            Ok(conflicts) => {
                for report in &conflicts {
                    conflicts::report(&ctx, &canary, c, &observed, report).await;
                }
            }
            Err(message) => {
                warn(&ctx, &canary, &message).await;
                return Ok(Action::requeue(interval));
            }
        }
        let target = crate::router::Target {
            client: &ctx.client,
            canary: &canary,
            c,
            ingress_prefix: &ctx.settings.ingress_prefix,
        };
        let cookies = crate::router::cookies_of(Some(&status));
        let (contested, reconciled) = match deref.router.reconcile(&target, &cookies).await {
            Ok(contested) => (contested, Ok(())),
            Err(mut e) => (std::mem::take(&mut e.contested), Err(e)),
        };
        for found in contested {
            let report = conflicts::routing_object(&ctx, &canary, found);
            conflicts::report(&ctx, &canary, c, &observed, &report).await;
        }
        if let Err(e) = reconciled {
            warn(&ctx, &canary, &e.message).await;
            return Ok(Action::requeue(interval));
        }
    }

    // Ticks run once per interval; a new revision or config starts one at once.
    let until_due = ctx.until_due(&key);
    if !until_due.is_zero() && !revision_changed(&status, &observed.revision) {
        if let Some(updated) = conflicts::with_condition(&ctx, &key, &status) {
            write_and_remember(&ctx, &api, &key, &canary, updated).await?;
        }
        return Ok(Action::requeue(until_due));
    }
    ctx.ticked(key.clone(), interval);
    for w in &deref.warnings {
        tracing::debug!(canary = %format!("{name}.{ns}"), "{w}");
    }

    // 4. decide
    let started = tokio::time::Instant::now();
    let now = ctx.now();
    let oracle = oracle::Oracle {
        ctx: &ctx,
        canary: &canary,
        c,
        observed: &observed,
        router: deref.router,
        status: &status,
        cookies: Default::default(),
    };
    let mut obs = Observations {
        target: observed.revision.clone(),
        primary_ready: Some(primary_ready),
        ..Default::default()
    };
    let decision = loop {
        match flagger_core::decide(c, &status, &obs, now) {
            Step::Done(d) => break d,
            Step::Need(need) => oracle.answer(&need, &mut obs).await,
        }
    };

    // 5. apply (events report the status being written, as Flagger's do)
    let next_status = decision.status.clone().unwrap_or_else(|| status.clone());
    let oracle = oracle::Oracle {
        status: &next_status,
        ..oracle
    };
    apply::apply(&oracle, &decision).await;

    // 6. status
    let to_write = match &decision.status {
        Some(new_status) => Some(
            conflicts::with_condition(&ctx, &key, new_status).unwrap_or_else(|| new_status.clone()),
        ),
        None => conflicts::with_condition(&ctx, &key, &status),
    };
    // Session-affinity cookies the router wrote go into the status with the decision.
    let cookies = oracle.cookies.lock().ok().and_then(|mut c| c.take());
    let to_write = match cookies {
        Some(cookies)
            if cookies
                != crate::router::cookies_of(Some(to_write.as_ref().unwrap_or(&next_status))) =>
        {
            let mut s = to_write.unwrap_or_else(|| next_status.clone());
            crate::router::set_cookies(&mut s, &cookies);
            Some(s)
        }
        _ => to_write,
    };
    if let Some(new_status) = to_write {
        write_and_remember(&ctx, &api, &key, &canary, new_status).await?;
    }
    ctx.metrics
        .set_phase(&c.target.name, &ns, next_status.phase);
    if decision.analysed {
        ctx.metrics
            .duration
            .get_or_create(&crate::metrics::CanaryLabels {
                name: c.target.name.clone(),
                namespace: ns.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(Action::requeue(interval))
}

/// Whether the target or its configs differ from what the status last recorded.
fn revision_changed(
    status: &CanaryStatus,
    revision: &flagger_core::effects::TargetRevision,
) -> bool {
    hash::spec_changed(
        &revision.hash,
        status.last_applied_spec.as_deref(),
        status.last_promoted_spec.as_deref(),
    ) || hash::configs_changed(&revision.tracked_configs, status.tracked_configs.as_ref())
}

/// Error policy: count the error, log it, retry soon.
pub fn error_policy(canary: Arc<Canary>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            category: error.category().into(),
        })
        .inc();
    tracing::warn!(canary = %format!("{}.{}", canary.name_any(), canary.namespace().unwrap_or_default()), error = %error, "reconcile failed");
    Action::requeue(RETRY)
}

async fn warn(ctx: &Context, canary: &Canary, message: &str) {
    ctx.recorder
        .record(canary, EventType::Warning, message, ctx.now())
        .await;
}

/// Writes the status through the status subresource (server-side apply).
pub async fn write_status(api: &Api<Canary>, canary: &Canary, status: &CanaryStatus) -> Result<()> {
    let patch = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "status": status,
    });
    api.patch_status(
        &canary.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Writes the status and remembers it until the watch cache has caught up with the write.
async fn write_and_remember(
    ctx: &Context,
    api: &Api<Canary>,
    key: &ObjectRef<Canary>,
    canary: &Canary,
    status: CanaryStatus,
) -> Result<()> {
    let patch = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "status": status,
    });
    let written = api
        .patch_status(
            &canary.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    ctx.wrote_status(
        key.clone(),
        written.resource_version().unwrap_or_default(),
        status,
    );
    Ok(())
}

async fn set_finalizer(api: &Api<Canary>, canary: &Canary, present: bool) -> Result<()> {
    let mut finalizers: Vec<String> = canary.finalizers().to_vec();
    finalizers.retain(|f| f != FINALIZER);
    if present {
        finalizers.push(FINALIZER.into());
    } else {
        tracing::info!(canary = %format!("{}.{}", canary.name_any(), canary.namespace().unwrap_or_default()), "opting out, deleting finalizers");
    }
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": canary.resource_version()}});
    api.patch(
        &canary.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// An invalid spec: a `Valid=False` condition (after `Promoted`), a Warning event, a log line.
async fn report_invalid(
    ctx: &Context,
    api: &Api<Canary>,
    canary: &Canary,
    problems: &[String],
) -> Result<()> {
    let message = format!("invalid canary spec: {}", problems.join("; "));
    let mut status = canary.status.clone().unwrap_or_default();
    let already = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.r#type == CONDITION_VALID && c.message.as_deref() == Some(message.as_str()));
    if already {
        return Ok(());
    }
    tracing::warn!(canary = %format!("{}.{}", canary.name_any(), canary.namespace().unwrap_or_default()), "{message}");
    ctx.recorder
        .record(canary, EventType::Warning, &message, ctx.now())
        .await;
    let now = Some(Time(ctx.now()));
    let mut conditions = without_valid(&mut status);
    conditions.push(CanaryCondition {
        r#type: CONDITION_VALID.into(),
        status: "False".into(),
        last_update_time: now.clone(),
        last_transition_time: now,
        reason: "InvalidSpec".into(),
        message: Some(message),
    });
    status.conditions = Some(conditions);
    write_status(api, canary, &status).await
}

/// Takes the status's conditions, all but `Valid`.
fn without_valid(status: &mut CanaryStatus) -> Vec<CanaryCondition> {
    status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.r#type != CONDITION_VALID)
        .collect()
}

async fn clear_invalid(
    api: &Api<Canary>,
    canary: &Canary,
    status: &CanaryStatus,
) -> Result<CanaryStatus> {
    let mut status = status.clone();
    let kept = without_valid(&mut status);
    status.conditions = if kept.is_empty() { None } else { Some(kept) };
    write_status(api, canary, &status).await?;
    Ok(status)
}

/// Records an event through the canary's recorder (used by the finalizer).
pub async fn event(ctx: &Context, canary: &Canary, event: &Event) {
    ctx.recorder
        .record(canary, event.event_type, &event.message, ctx.now())
        .await;
}
