//! Step 3: make sure the objects a canary runs on exist: `-primary` configs and workload
//! (created once; promotion updates them), the `-canary`, `-primary` and apex Services
//! (reconciled every reconcile, as [`flagger_core::services::plan`] decides), the primary HPA
//! or KEDA ScaledObject (created once) and the routing objects (the router's). Fights found on
//! the way are reported ([`super::conflicts`]).

use flagger_api::{Canary, CanaryStatus};
use flagger_core::conflict::{self, ConflictReport};
use flagger_core::generated;
use flagger_core::keda::MetadataRule;
use flagger_core::model::{AutoscalerKind, ValidatedCanary};
use flagger_core::routing::StickyCookies;
use flagger_core::services::{self, ServiceObservation, ServiceRole, ServiceWrite};
use k8s_openapi::api::core::v1::Service;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource};

use super::conflicts;
use super::dereference::Dereferenced;
use super::keda;
use super::objects::{WriteError, apply_json, owned_by, owner_ref};
use super::observe::{Observed, Target};
use super::workloads;
use crate::cache;
use crate::context::Context;
use crate::error::{step_error, step_error_from};
use crate::write::FIELD_MANAGER;

step_error!(
    /// Step 3 failed: a generated object could not be read or written.
    BootstrapError
);
step_error_from!(WriteError => BootstrapError);
step_error_from!(super::knative::KnativeError => BootstrapError);

/// What bootstrap found that the decision needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bootstrapped {
    /// The apex Service is left to another writer and routes to the target's pods.
    pub keep_target_serving: bool,
}

/// Step 3: the generated objects exist and are as the canary wants them (reads come from the
/// caches; an unchanged object is not written), so another writer's change is seen and answered
/// at once rather than at the next tick. A suspended canary is left as it is.
pub async fn run(
    ctx: &Context,
    canary: &Canary,
    deref: &Dereferenced,
    observed: &Observed,
    status: &CanaryStatus,
    primary_ready: bool,
) -> Result<Bootstrapped, BootstrapError> {
    let c = &deref.canary;
    if c.suspend {
        return Ok(Bootstrapped::default());
    }
    ctx.fenced(canary)?;
    let mut found = Vec::new();
    ensure_primary(ctx, canary, c, observed, &mut found).await?;
    let mut keep_target_serving = false;
    for service in generated::services(&generated::Names::of(c, &canary.spec)) {
        if let generated::Role::Service(role) = service.role {
            keep_target_serving |=
                reconcile_service(ctx, canary, c, observed, role, primary_ready, &mut found)
                    .await?;
        }
    }
    ensure_autoscaler(ctx, canary, c, &mut found).await?;
    for report in &found {
        conflicts::report(ctx, canary, c, report).await;
    }

    let target = crate::router::Target {
        client: &ctx.client,
        objects: &ctx.objects,
        caches: &ctx.caches,
        canary,
        c,
        ingress_prefix: &ctx.settings.ingress_prefix,
        ingress_class: &ctx.settings.ingress_class,
    };
    // Objects put back are reported, whether or not the rest of the reconcile succeeded.
    let (contested, reconciled) = match deref
        .router
        .reconcile(&target, &StickyCookies::of(status))
        .await
    {
        Ok(contested) => (contested, Ok(())),
        Err(mut e) => (std::mem::take(&mut e.contested), Err(e)),
    };
    let key = ObjectRef::from_obj(canary);
    for object in contested {
        let report = ctx.with_fights(&key, |log| {
            conflict::routing_report(
                log,
                &object.kind,
                &object.name,
                object.contender,
                ctx.now(),
                ctx.settings.fights.window,
            )
        });
        conflicts::report(ctx, canary, c, &report).await;
    }
    reconciled.map_err(|e| BootstrapError::new(e.step_category(), e.message))?;
    Ok(Bootstrapped {
        keep_target_serving,
    })
}

/// Creates the primary configs and workload when missing; notes other writers' changes to it.
async fn ensure_primary(
    ctx: &Context,
    canary: &Canary,
    c: &ValidatedCanary,
    observed: &Observed,
    found: &mut Vec<ConflictReport>,
) -> Result<(), BootstrapError> {
    let (client, caches, settings) = (&ctx.client, &ctx.caches, &ctx.settings);
    // A Knative Service is its own primary: bootstrap names its primary revision.
    if let Target::KnativeService(service) = &observed.target {
        return Ok(super::knative::initialize(&ctx.objects, canary, c, service).await?);
    }
    let ns = &c.namespace;
    let primary_name = c.primary_workload();
    let (kind, managed) = match &observed.target {
        Target::KnativeService(_) => return Ok(()),
        Target::Deployment(_) => (
            "Deployment",
            cache::get(&caches.deployments, client, ns, &primary_name)
                .await
                .map(|o| o.map(|d| d.metadata.managed_fields.clone().unwrap_or_default())),
        ),
        Target::DaemonSet(_) => (
            "DaemonSet",
            cache::get(&caches.daemonsets, client, ns, &primary_name)
                .await
                .map(|o| o.map(|d| d.metadata.managed_fields.clone().unwrap_or_default())),
        ),
    };
    let managed = managed
        .map_err(|e| BootstrapError::api(format!("{primary_name}.{ns} get query error"), &e))?;
    match managed {
        None => {
            workloads::write_primary_configs(client, settings, canary, observed).await?;
            let flagger_id = flagger_core::workload::promotion_id(&observed.revision);
            workloads::write_primary(client, settings, canary, observed, None, &flagger_id).await?;
        }
        Some(managed) => found.extend(ctx.with_fights(&ObjectRef::from_obj(canary), |log| {
            conflict::noted_writes(log, kind, &primary_name, &managed, FIELD_MANAGER)
        })),
    }
    Ok(())
}

/// Creates the primary HPA or ScaledObject when missing; notes other writers' changes to the
/// primary HPA.
async fn ensure_autoscaler(
    ctx: &Context,
    canary: &Canary,
    c: &ValidatedCanary,
    found: &mut Vec<ConflictReport>,
) -> Result<(), BootstrapError> {
    let (client, caches, settings) = (&ctx.client, &ctx.caches, &ctx.settings);
    let ns = &c.namespace;
    match &c.autoscaler {
        Some(a) if a.kind == AutoscalerKind::ScaledObject => {
            let exists = keda::primary_exists(&ctx.objects, c).await?;
            if !exists {
                keda::write_primary(&ctx.objects, settings, canary, c, MetadataRule::Create)
                    .await?;
            }
        }
        Some(a) => {
            let primary_hpa = format!("{}-primary", a.name);
            let hpa = cache::get(&caches.hpas, client, ns, &primary_hpa)
                .await
                .map_err(|e| {
                    BootstrapError::api(
                        format!("HorizontalPodAutoscaler {primary_hpa}.{ns} get query error"),
                        &e,
                    )
                })?;
            match hpa {
                None => workloads::write_primary_hpa(client, canary, c).await?,
                Some(hpa) => {
                    if settings.autoscaler_sync_immediate
                        && let Some(target) = cache::get(&caches.hpas, client, ns, &a.name)
                            .await
                            .map_err(|e| {
                                BootstrapError::api(
                                    format!(
                                        "HorizontalPodAutoscaler {}.{ns} get query error",
                                        a.name
                                    ),
                                    &e,
                                )
                            })?
                        && flagger_core::workload::primary_hpa_drifted(
                            &target.spec.clone().unwrap_or_default(),
                            a,
                            &c.primary_workload(),
                            hpa.spec.as_ref(),
                        )
                    {
                        tracing::info!(
                            canary = %format!("{}.{ns}", c.name),
                            "HorizontalPodAutoscaler {}.{ns} changed: updating {primary_hpa}.{ns} now",
                            a.name
                        );
                        workloads::write_primary_hpa(client, canary, c).await?;
                    }
                    let managed = hpa.metadata.managed_fields.clone().unwrap_or_default();
                    found.extend(ctx.with_fights(&ObjectRef::from_obj(canary), |log| {
                        conflict::noted_writes(
                            log,
                            "HorizontalPodAutoscaler",
                            &primary_hpa,
                            &managed,
                            FIELD_MANAGER,
                        )
                    }));
                }
            }
        }
        None => {}
    }
    Ok(())
}

/// Reconciles one of the three Services as the core plans it. Returns whether the target must
/// keep serving (the Service is left to another writer and routes to its pods).
async fn reconcile_service(
    ctx: &Context,
    canary: &Canary,
    c: &ValidatedCanary,
    observed: &Observed,
    role: ServiceRole,
    primary_ready: bool,
    found: &mut Vec<ConflictReport>,
) -> Result<bool, BootstrapError> {
    let (client, caches) = (&ctx.client, &ctx.caches);
    let ns = &c.namespace;
    let name = role.name(c);
    let live = cache::get(&caches.services, client, ns, &name)
        .await
        .map_err(|e| BootstrapError::api(format!("service {name}.{ns} get query error"), &e))?;
    let extra = services::discovered_ports(c, &observed.target.pod_spec());
    let desired = services::desired_service(
        c,
        role,
        (&observed.selector.0, &observed.selector.1),
        &extra,
    );
    let owner = owner_ref(canary);
    let pod_labels = observed.target_pod_labels();
    let seen = ServiceObservation {
        role,
        desired: &desired,
        live: live.as_deref(),
        unmanaged: c.service.unmanaged_metadata.as_ref(),
        owned: live
            .as_ref()
            .is_some_and(|l| owned_by(l.meta().owner_references.as_ref(), canary)),
        owner: owner.as_ref(),
        manager: FIELD_MANAGER,
        target_pod_labels: &pod_labels,
        target_serving: observed.target.serving(),
        primary_ready,
        now: ctx.now(),
        policy: ctx.settings.fights,
    };
    let plan = ctx.with_fights(&ObjectRef::from_obj(canary), |log| {
        services::plan(&seen, log)
    });
    found.extend(plan.conflict);
    if plan.waiting_for_primary {
        tracing::info!(canary = %format!("{}.{ns}", c.name), "waiting for {}.{ns} to be ready before pointing Service {name} at it", c.primary_workload());
    }
    let failed =
        |e: kube::Error| BootstrapError::api(format!("reconciling service {name}.{ns} failed"), &e);
    match plan.write {
        None => {}
        Some(ServiceWrite::Apply(document)) => {
            apply_json::<Service>(client, ns, &name, &document)
                .await
                .map_err(failed)?;
        }
        Some(ServiceWrite::Replace(service)) => {
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            Api::<Service>::namespaced(client.clone(), ns)
                .replace(&name, &params, &service)
                .await
                .map_err(failed)?;
        }
    }
    Ok(plan.keep_target_serving)
}
