//! Step 3: make sure the objects a canary runs on exist: `-primary` configs and workload
//! (created once; promotion updates them), the `-canary`, `-primary` and apex Services
//! (reconciled every tick) and the primary HPA or KEDA ScaledObject (created once).

use std::collections::BTreeMap;

use flagger_api::labels::{ORIGINAL_SERVICE, TOOLKIT_MARKER};
use flagger_api::{Canary, CanaryStatus};
use flagger_core::keda::MetadataRule;
use flagger_core::model::{AutoscalerKind, ValidatedCanary};
use flagger_core::services::{self, ServiceRole};
use flagger_core::{conflict, converge};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::conflicts;
use super::dereference::Dereferenced;
use super::keda;
use super::objects::{WriteError, apply_json, owned_by, owner_ref};
use super::observe::{Observed, Target};
use super::workloads;
use crate::FIELD_MANAGER;
use crate::cache;
use crate::context::Context;
use crate::error::{step_error, step_error_from};

step_error!(
    /// Step 3 failed: a generated object could not be read or written.
    BootstrapError
);
step_error_from!(WriteError => BootstrapError);

/// Step 3: the generated objects exist and are as the canary wants them (reads come from the
/// caches; an unchanged object is not written), so another writer's change is seen and answered
/// at once rather than at the next tick; fights found on the way are reported. A suspended
/// canary is left as it is.
pub async fn run(
    ctx: &Context,
    canary: &Canary,
    deref: &Dereferenced,
    observed: &Observed,
    status: &CanaryStatus,
    primary_ready: bool,
) -> Result<(), BootstrapError> {
    let c = &deref.canary;
    if c.suspend {
        return Ok(());
    }
    for report in ensure_objects(ctx, canary, c, observed, primary_ready).await? {
        conflicts::report(ctx, canary, c, observed, &report).await;
    }
    let contested = std::sync::Mutex::new(Vec::new());
    let target = crate::router::Target {
        client: &ctx.client,
        canary,
        c,
        cookies: crate::router::cookies_of(Some(status)),
        ingress_prefix: &ctx.settings.ingress_prefix,
        contested: Some(&contested),
    };
    let reconciled = deref.router.reconcile(&target).await;
    for found in contested.into_inner().unwrap_or_default() {
        let report = conflicts::routing_object(ctx, canary, found);
        conflicts::report(ctx, canary, c, observed, &report).await;
    }
    reconciled.map_err(BootstrapError::provider)
}

/// Creates the primary configs and workload when missing, and reconciles the Services.
async fn ensure_objects(
    ctx: &Context,
    canary: &Canary,
    c: &ValidatedCanary,
    observed: &Observed,
    primary_ready: bool,
) -> Result<Vec<ConflictReport>, BootstrapError> {
    let (client, caches, settings) = (&ctx.client, &ctx.caches, &ctx.settings);
    let ns = &c.namespace;
    let primary_name = c.primary_workload();
    let (kind, managed) = match &observed.target {
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
    let mut conflicts = Vec::new();
    match managed {
        None => {
            workloads::write_primary_configs(client, settings, canary, observed).await?;
            let flagger_id = flagger_core::workload::promotion_id(&observed.revision);
            workloads::write_primary(client, settings, canary, observed, None, &flagger_id).await?;
        }
        Some(managed) => {
            conflicts.extend(foreign_writes(ctx, canary, kind, &primary_name, &managed))
        }
    }

    for role in [ServiceRole::Canary, ServiceRole::Primary, ServiceRole::Apex] {
        if let Some(report) =
            reconcile_service(ctx, canary, c, observed, role, primary_ready).await?
        {
            conflicts.push(report);
        }
    }

    if let Some(a) = &c.autoscaler
        && a.kind == AutoscalerKind::ScaledObject
    {
        if !keda::primary_exists(client, c).await? {
            keda::write_primary(client, settings, canary, c, MetadataRule::Create).await?;
        }
    } else if let Some(a) = &c.autoscaler {
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
            Some(hpa) => conflicts.extend(foreign_writes(
                ctx,
                canary,
                "HorizontalPodAutoscaler",
                &primary_hpa,
                hpa.metadata.managed_fields.as_deref().unwrap_or_default(),
            )),
        }
    }
    Ok(conflicts)
}

/// Reconciles one of the three Services. Services this canary created (or will create) are
/// applied whole; a Service someone else made (typically a pre-existing apex) only gets its
/// selector and ports taken over, plus the annotations that keep Flux and Helm off it.
async fn reconcile_service(
    ctx: &Context,
    canary: &Canary,
    c: &ValidatedCanary,
    observed: &Observed,
    role: ServiceRole,
    primary_ready: bool,
) -> Result<Option<ConflictReport>, BootstrapError> {
    let (client, caches) = (&ctx.client, &ctx.caches);
    let ns = &c.namespace;
    let name = role.name(c);
    let existing = cache::get(&caches.services, client, ns, &name)
        .await
        .map_err(|e| BootstrapError::api(format!("service {name}.{ns} get query error"), &e))?;
    let extra = services::discovered_ports(c, &observed.target.pod_spec());
    let mut desired = services::desired_service(
        c,
        role,
        (&observed.selector.0, &observed.selector.1),
        &extra,
    );
    let unmanaged = c.service.unmanaged_metadata.clone().unwrap_or_default();
    if let Some(labels) = desired.metadata.labels.as_mut() {
        for k in unmanaged.labels.iter().flatten() {
            labels.remove(k);
        }
    }
    if let Some(annotations) = desired.metadata.annotations.as_mut() {
        for k in unmanaged.annotations.iter().flatten() {
            annotations.remove(k);
        }
    }
    let document = match &existing {
        Some(svc) if !owned_by(svc.metadata.owner_references.as_ref(), canary) => {
            let spec = desired.spec.clone().unwrap_or_default();
            let mut annotations: BTreeMap<String, String> = desired
                .metadata
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| k.contains(TOOLKIT_MARKER))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            // What the Service was before the controller took it over, recorded once, so that
            // it can be given back exactly.
            let taken_over = svc
                .metadata
                .managed_fields
                .iter()
                .flatten()
                .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER));
            let original = svc
                .annotations()
                .get(ORIGINAL_SERVICE)
                .cloned()
                .or_else(|| {
                    (!taken_over).then(|| {
                        let live = svc.spec.clone().unwrap_or_default();
                        json!({"selector": live.selector, "ports": live.ports}).to_string()
                    })
                });
            if let Some(original) = original {
                annotations.insert(ORIGINAL_SERVICE.into(), original);
            }
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "annotations": annotations},
                "spec": {"selector": spec.selector, "ports": spec.ports},
            })
        }
        _ => {
            desired.metadata.owner_references = owner_ref(canary).map(|o| vec![o]);
            if let Some(current) = &existing
                && let Some(spec) = desired.spec.as_mut()
            {
                // Immutable or creation-only fields: keep what the Service has, so that the
                // apply neither changes them nor drops them from our managed fields.
                spec.cluster_ip = None;
                spec.traffic_distribution = current
                    .spec
                    .as_ref()
                    .and_then(|s| s.traffic_distribution.clone());
            }
            serde_json::to_value(&desired)
                .map_err(|e| BootstrapError::invalid(format!("service {name}.{ns}: {e}")))?
        }
    };
    let mut report = None;
    if existing.is_none() {
        // Created afresh: any fight over an earlier incarnation is over.
        ctx.with_fights(&ObjectRef::from_obj(canary), |log| {
            log.settle(&format!("Service/{name}"))
        });
    }
    if let Some(live) = &existing {
        let key = ObjectRef::from_obj(canary);
        let object = format!("Service/{name}");
        let live_json = serde_json::to_value(&**live)
            .map_err(|e| BootstrapError::invalid(format!("service {name}.{ns}: {e}")))?;
        if converge::holds(&live_json, &document) {
            // Reversions age out of their window on their own; a yield lasts until the object
            // is deleted (below) or the controller restarts.
            return Ok(None);
        }
        // Someone else changed fields we had written: a reversion, or the end of the fight.
        let managed = live.metadata.managed_fields.as_deref().unwrap_or_default();
        let ours_before = managed
            .iter()
            .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER));
        let contested = if ours_before {
            conflict::contenders(
                managed,
                FIELD_MANAGER,
                &conflict::differences(&live_json, &document),
            )
        } else {
            Vec::new()
        };
        let policy = ctx.settings.fights;
        let selects_target = selects(live, &observed.target_pod_labels());
        // Leaving the apex Service to a writer that points it at the target is only safe once
        // the target serves; until then it is put back (and the target scaled up).
        let hold_for_target =
            role == ServiceRole::Apex && selects_target && !observed.target.serving();
        let verdict = ctx.with_fights(&key, |log| match contested.first() {
            None => None,
            Some(_) if log.yielded_to(&object).is_some() => Some(None),
            Some(first) => Some(Some(log.observe(
                &object,
                &first.manager,
                ctx.now(),
                policy,
            ))),
        });
        match verdict {
            // Yielded earlier and still held by the other writer: leave it, unless traffic
            // would reach no ready pod.
            Some(None) if !hold_for_target => return Ok(None),
            Some(None) => {}
            Some(Some(verdict)) => {
                let yielded = matches!(verdict, conflict::Verdict::Yield { .. });
                report = Some(ConflictReport {
                    object,
                    kind: "Service".into(),
                    name: name.clone(),
                    apex: role == ServiceRole::Apex,
                    contender: contested[0].clone(),
                    verdict,
                    selects_target,
                });
                if yielded && !hold_for_target {
                    return Ok(report);
                }
            }
            None => {}
        }
    }
    // A Service that sends traffic to the target's pods (taken over, or handed back by an
    // uninstall) is switched to the primary only once the primary serves.
    if role == ServiceRole::Apex
        && existing
            .as_ref()
            .is_some_and(|live| selects(live, &observed.target_pod_labels()))
        && !primary_ready
    {
        tracing::info!(canary = %format!("{}.{ns}", c.name), "waiting for {}.{ns} to be ready before pointing Service {name} at it", c.primary_workload());
        return Ok(report);
    }
    apply_json::<Service>(client, ns, &name, &document)
        .await
        .map(|_| report)
        .map_err(|e| BootstrapError::api(format!("reconciling service {name}.{ns} failed"), &e))
}

/// New writes by other managers to the spec of an object the controller generated and writes
/// only at set moments (the primary workload and autoscaler, rewritten at promotion): noted,
/// once per write.
fn foreign_writes(
    ctx: &Context,
    canary: &Canary,
    kind: &str,
    name: &str,
    managed: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry],
) -> Vec<ConflictReport> {
    let key = ObjectRef::from_obj(canary);
    let object = format!("{kind}/{name}");
    conflict::foreign_spec_writers(managed, FIELD_MANAGER, 5)
        .into_iter()
        .filter(|w| {
            ctx.with_fights(&key, |log| {
                log.new_write(&object, &w.contender.manager, &w.time)
            })
        })
        .map(|w| ConflictReport {
            object: object.clone(),
            kind: kind.into(),
            name: name.into(),
            apex: false,
            contender: w.contender,
            verdict: conflict::Verdict::Noted,
            selects_target: false,
        })
        .collect()
}

/// Whether a Service's selector selects pods with `labels`.
fn selects(svc: &Service, labels: &BTreeMap<String, String>) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Another writer's change to a generated object, and what the controller did about it.
#[derive(Clone, Debug)]
pub struct ConflictReport {
    /// `Service/app`
    pub object: String,
    pub kind: String,
    pub name: String,
    /// The object is the apex Service (the one clients use).
    pub apex: bool,
    pub contender: conflict::Contender,
    pub verdict: conflict::Verdict,
    /// The object, as the other writer left it, routes to the target's pods.
    pub selects_target: bool,
}
