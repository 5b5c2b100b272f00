//! The reconcile pipeline of one canary: dereference → observe → bootstrap → decide → execute →
//! status, each step one call with its own error type (see [`crate::error`]), gathered here in
//! [`Error`]. See the crate documentation for the steps. The steps are the submodules; this
//! file composes them and none of them uses it.

pub mod bootstrap;
pub mod conflicts;
pub mod dereference;
pub mod execute;
pub mod finalize;
pub mod keda;
pub mod knative;
pub mod notices;
pub mod objects;
pub mod observe;
pub mod oracle;
pub mod requests;
pub mod status;
pub mod workloads;

use std::sync::Arc;
use std::time::Duration;

use flagger_api::{Canary, CanaryStatus};
use flagger_core::effects::{EventType, Observations, Readiness};
use flagger_core::hash;
use flagger_core::readiness::Role;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::error::Category;
use crate::metrics::ErrorLabels;
use bootstrap::BootstrapError;
use dereference::DereferenceError;
use execute::ExecuteError;
use finalize::FinalizeError;
use observe::ObserveError;
use oracle::DecideError;
use status::StatusError;

/// A failed reconcile, by step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dereference(#[from] DereferenceError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Finalize(#[from] FinalizeError),
}

impl Error {
    /// The step that failed (metric label, log field).
    pub fn step(&self) -> &'static str {
        match self {
            Error::Dereference(_) => "dereference",
            Error::Observe(_) => "observe",
            Error::Bootstrap(_) => "bootstrap",
            Error::Decide(_) => "decide",
            Error::Execute(_) => "execute",
            Error::Status(_) => "status",
            Error::Finalize(_) => "finalize",
        }
    }

    pub fn category(&self) -> Category {
        match self {
            Error::Dereference(e) => e.category(),
            Error::Observe(e) => e.category(),
            Error::Bootstrap(e) => e.category(),
            Error::Decide(e) => e.category(),
            Error::Execute(e) => e.category(),
            Error::Status(e) => e.category(),
            Error::Finalize(e) => e.category(),
        }
    }
}

/// Result of a reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reconciles one canary, timing it (`flagger_reconcile_duration_seconds`); a failure is
/// reported (event, condition) here and counted by [`error_policy`].
pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Action> {
    // With `-shards`, another replica acts on the canaries of shards this one does not hold;
    // taking a shard over wakes its canaries.
    if !ctx.acts_on(&ObjectRef::from_obj(&*canary)) {
        return Ok(Action::await_change());
    }
    let started = tokio::time::Instant::now();
    let key = ObjectRef::from_obj(&*canary);
    let due = ctx.due(&key);
    let canary = refreshed(&ctx, canary).await;
    let result = reconcile_canary(&canary, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    // A scheduled tick ran (its due time moved on): how late it began.
    if let Some(due) = due
        && started >= due
        && ctx.due(&key) != Some(due)
    {
        ctx.metrics
            .tick_lateness
            .observe((started - due).as_secs_f64());
    }
    match &result {
        Ok(_) => ctx.succeeded(&key),
        Err(e) => report(&ctx, &canary, e).await,
    }
    result
}

async fn reconcile_canary(canary: &Canary, ctx: &Context) -> Result<Action> {
    let key = ObjectRef::from_obj(canary);
    if canary.metadata.deletion_timestamp.is_some() {
        ctx.forget(&key);
        if ctx.settings.caps.any() {
            ctx.wake_queued();
        }
        return Ok(finalize::finalize(ctx, canary).await?);
    }
    if let Some(wait) = finalize::ensure_finalizer(ctx, canary).await? {
        return Ok(wait);
    }

    let deref = dereference::run(ctx, canary).await?;
    let c = &deref.canary;
    let status = status::clear_invalid(ctx, canary, status::current(ctx, canary)).await?;
    let observed = observe::run(ctx, c).await?;
    // Primary readiness is read once per reconcile: bootstrap (whether a Service that routes
    // to the target may be switched to the primary) and decide (whether the target may be
    // scaled to zero) must agree on it.
    let primary_ready = oracle::readiness_of(ctx, c, &observed, &status, Role::Primary).await;
    let bootstrapped = bootstrap::run(
        ctx,
        canary,
        &deref,
        &observed,
        &status,
        primary_ready == Readiness::Ready,
    )
    .await?;

    let oracle = oracle::Oracle {
        ctx,
        canary,
        c,
        observed: &observed,
        router: deref.router,
        status: &status,
    };
    let obs = Observations {
        target: observed.revision.clone(),
        target_scale: observed.target.scale(),
        primary_ready: Some(primary_ready),
        keep_target_serving: bootstrapped.keep_target_serving,
        action: requests::observe(canary),
        cookie_values: vec![
            crate::router::random_letters(),
            crate::router::random_letters(),
        ],
        ..Default::default()
    };

    // Ticks run once per interval; a new revision or config starts one at once. Between
    // ticks, only what the phase requires of the target's scale is restored.
    let until_due = ctx.until_due(&key);
    // A request on the Canary (`flagger.app/action`) is acted on at its watch event.
    if !until_due.is_zero()
        && !revision_changed(&status, &observed.revision)
        && !requests::pending(canary, &status)
    {
        let decision = flagger_core::decide::maintain(c, &status, &obs, ctx.now());
        for action in &decision.actions {
            tracing::info!(canary = %id(canary), phase = status.phase.as_str(), "restoring what the phase requires: {action}");
        }
        execute::run(&oracle, &decision.actions).await?;
        status::write_conditions(ctx, canary, &status).await?;
        return Ok(Action::requeue(until_due));
    }

    // Under a cap on concurrent rollouts, a canary that may start a run takes its slot (or its
    // place in line) and records it before another may look at the fleet.
    let caps = flagger_core::queue::Caps {
        shard: ctx.shard_of(&key),
        ..ctx.settings.caps
    };
    let admission = if caps.any()
        && !flagger_core::queue::running(status.phase)
        && (revision_changed(&status, &observed.revision)
            || status.phase == flagger_api::CanaryPhase::Waiting
            || requests::pending(canary, &status))
    {
        Some(ctx.admission.lock().await)
    } else {
        None
    };
    let obs = Observations { caps, ..obs };

    let started = tokio::time::Instant::now();
    let decision = oracle::decide(&oracle, obs, ctx.now()).await?;
    // The actions write what the decided status says (the routes' cookies); events report it,
    // as Flagger's do.
    let next = decision.status.clone().unwrap_or_else(|| status.clone());
    let decided = oracle::Oracle {
        status: &next,
        ..oracle
    };
    execute::run(&decided, &decision.actions).await?;
    status::record(ctx, canary, &status, &decision).await?;
    drop(admission);
    // A run ended: a slot is free for the canaries in line.
    if caps.any()
        && flagger_core::queue::running(status.phase)
        && !flagger_core::queue::running(next.phase)
    {
        ctx.wake_queued();
    }
    // The tick is done: the next is due one interval after it started. (A failed step above
    // leaves it due, to be retried with the backoff.)
    ctx.ticked(key, c.analysis.interval.saturating_sub(started.elapsed()));
    notices::emit(&decided, &decision.notices).await;

    let ns = &c.namespace;
    ctx.metrics.set_phase(&c.target.name, ns, next.phase);
    if decision.analysed {
        ctx.metrics
            .duration
            .get_or_create(&crate::metrics::CanaryLabels {
                name: c.target.name.clone(),
                namespace: ns.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(Action::requeue(c.analysis.interval))
}

/// The canary as the API server has it, when a write of ours was refused as stale (the watch
/// cache may not show the newer version yet); else the cached one.
async fn refreshed(ctx: &Context, canary: Arc<Canary>) -> Arc<Canary> {
    let key = ObjectRef::from_obj(&*canary);
    if !ctx.take_refresh(&key) {
        return canary;
    }
    let api: kube::Api<Canary> =
        kube::Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    match api.get_opt(&canary.name_any()).await {
        Ok(Some(fresh)) => Arc::new(fresh),
        Ok(None) => canary,
        Err(e) => {
            tracing::debug!(canary = %id(&canary), "reading the canary again failed: {}", crate::error::api_text(&e));
            ctx.stale(&key);
            canary
        }
    }
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

/// Tells about a failed reconcile: an invalid spec by its `Valid` condition (and one event per
/// distinct message); a failed read or write by a Warning event saying what failed and why.
async fn report(ctx: &Context, canary: &Canary, error: &Error) {
    match error {
        Error::Dereference(e) => {
            if let Err(s) = status::report_invalid(ctx, canary, &e.message).await {
                tracing::warn!(canary = %id(canary), error = %s, "reporting the invalid spec failed");
            }
        }
        Error::Observe(_) | Error::Bootstrap(_) | Error::Execute(_) => {
            ctx.recorder
                .record(canary, EventType::Warning, &error.to_string(), ctx.now())
                .await;
        }
        // Logged by the error policy.
        Error::Decide(_) | Error::Status(_) | Error::Finalize(_) => {}
    }
}

/// Error policy: count the error (by step and category), log it, and try again: at once after
/// a conflict (with the object read again), after the interval for a spec that cannot run,
/// else with a backoff per canary capped at its interval.
pub fn error_policy(canary: Arc<Canary>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            step: error.step().into(),
            category: error.category().as_str().into(),
        })
        .inc();
    tracing::warn!(
        canary = %id(&canary),
        step = error.step(),
        category = error.category().as_str(),
        "reconcile failed: {error}"
    );
    let key = ObjectRef::from_obj(&*canary);
    let cap = interval_of(&canary, &ctx);
    let failures = ctx.failed(&key);
    Action::requeue(match error.category() {
        Category::InvalidSpec if matches!(error, Error::Dereference(_)) => cap,
        Category::Conflict => Duration::from_millis(100),
        _ => crate::error::backoff(failures, cap),
    })
}

/// The canary's analysis interval as written (for the retry cap), at least the shortest
/// interval the controller allows; a minute when it cannot be read.
fn interval_of(canary: &Canary, ctx: &Context) -> Duration {
    canary
        .spec
        .analysis
        .as_ref()
        .and_then(|a| a.interval.as_deref())
        .and_then(|i| flagger_core::duration::parse_go_duration(i).ok())
        .unwrap_or(Duration::from_secs(60))
        .max(ctx.settings.validation.min_interval)
}

/// `name.namespace`, for log lines.
fn id(canary: &Canary) -> String {
    format!(
        "{}.{}",
        canary.name_any(),
        canary.namespace().unwrap_or_default()
    )
}
