//! Step 3: make sure the objects a canary runs on exist: `-primary` configs and workload
//! (created once; promotion updates them), the `-canary`, `-primary` and apex Services
//! (reconciled every tick) and the primary HPA or KEDA ScaledObject (created once).

use std::collections::BTreeMap;

use flagger_api::Canary;
use flagger_api::labels::{ORIGINAL_SERVICE, TOOLKIT_MARKER};
use flagger_core::keda::MetadataRule;
use flagger_core::model::{AutoscalerKind, ValidatedCanary};
use flagger_core::services::{self, ServiceRole};
use flagger_core::workload::{self, PrimaryInputs};
use flagger_core::{conflict, converge};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::keda;
use super::objects::{apply, apply_json, owned_by, owner_ref};
use super::observe::{Config, Observed, Target};
use crate::FIELD_MANAGER;
use crate::cache;
use crate::context::{Context, Settings};

/// Creates the primary configs and workload when missing, and reconciles the Services.
pub async fn bootstrap(
    ctx: &Context,
    canary: &Canary,
    c: &ValidatedCanary,
    observed: &Observed,
    primary_ready: bool,
) -> Result<Vec<ConflictReport>, String> {
    let (client, caches, settings) = (&ctx.client, &ctx.caches, &ctx.settings);
    if let Target::KnativeService(service) = &observed.target {
        super::knative::initialize(client, canary, c, service).await?;
        return Ok(Vec::new());
    }
    let ns = &c.namespace;
    let primary_name = c.primary_workload();
    let (kind, managed) = match &observed.target {
        Target::KnativeService(_) => return Ok(Vec::new()),
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
    let managed = managed.map_err(|e| format!("{primary_name}.{ns} get query error: {e}"))?;
    let mut conflicts = Vec::new();
    match managed {
        None => {
            write_primary_configs(client, settings, canary, observed).await?;
            write_primary(client, settings, canary, observed, None).await?;
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
                format!("HorizontalPodAutoscaler {primary_hpa}.{ns} get query error: {e}")
            })?;
        match hpa {
            None => write_primary_hpa(client, canary, c).await?,
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

fn without_toolkit(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Writes `<config>-primary` copies of the tracked configs (at creation and on promotion).
pub async fn write_primary_configs(
    client: &Client,
    settings: &Settings,
    canary: &Canary,
    observed: &Observed,
) -> Result<(), String> {
    let ns = canary.namespace().unwrap_or_default();
    for config in &observed.configs {
        let name = format!("{}-primary", config.name());
        let labels = |l: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            l.iter()
                .filter(|(k, _)| settings.labels.includes(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let meta = |source: &ObjectMeta| ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels(source.labels.as_ref().unwrap_or(&BTreeMap::new()))),
            owner_references: owner_ref(canary).map(|o| vec![o]),
            ..Default::default()
        };
        let result = match config {
            Config::ConfigMap(cm) => {
                let copy = ConfigMap {
                    metadata: meta(&cm.metadata),
                    data: cm.data.clone(),
                    binary_data: cm.binary_data.clone(),
                    immutable: None,
                };
                apply(client, &ns, &name, &copy).await.map(|_| ())
            }
            Config::Secret(s) => {
                let copy = Secret {
                    metadata: meta(&s.metadata),
                    data: s.data.clone(),
                    type_: s.type_.clone(),
                    immutable: None,
                    string_data: None,
                };
                apply(client, &ns, &name, &copy).await.map(|_| ())
            }
        };
        result.map_err(|e| format!("creating {} {name}.{ns} failed: {e}", config.kind().key()))?;
    }
    Ok(())
}

/// Writes the primary workload: the initial copy when `current` is `None`, the promoted one
/// otherwise.
pub async fn write_primary(
    client: &Client,
    settings: &Settings,
    canary: &Canary,
    observed: &Observed,
    current: Option<&Target>,
) -> Result<(), String> {
    let ns = canary.namespace().unwrap_or_default();
    let tracked = observed.tracked();
    let flagger_id = uuid::Uuid::new_v4().to_string();
    let inputs = PrimaryInputs {
        policy: &settings.labels,
        selector: (&observed.selector.0, &observed.selector.1),
        tracked: &tracked,
        flagger_id: &flagger_id,
    };
    let has_autoscaler = canary.spec.autoscaler_ref.is_some();
    let result = match (&observed.target, current) {
        (Target::Deployment(t), current) => {
            let mut d = match current {
                Some(Target::Deployment(p)) => {
                    workload::promote_deployment(t, p, &inputs, has_autoscaler)
                }
                _ => workload::primary_deployment(t, &inputs),
            };
            d.metadata.owner_references = owner_ref(canary).map(|o| vec![o]);
            d.metadata.resource_version = None;
            d.metadata.managed_fields = None;
            d.metadata.uid = None;
            d.metadata.creation_timestamp = None;
            d.metadata.generation = None;
            if current.is_some() && has_autoscaler {
                // The primary autoscaler owns the replica count.
                if let Some(spec) = d.spec.as_mut() {
                    spec.replicas = None;
                }
            }
            let name = d.metadata.name.clone().unwrap_or_default();
            apply(client, &ns, &name, &d).await.map(|_| ())
        }
        (Target::DaemonSet(t), current) => {
            let mut d = match current {
                Some(Target::DaemonSet(p)) => workload::promote_daemonset(t, p, &inputs),
                _ => workload::primary_daemonset(t, &inputs),
            };
            d.metadata.owner_references = owner_ref(canary).map(|o| vec![o]);
            d.metadata.resource_version = None;
            d.metadata.managed_fields = None;
            d.metadata.uid = None;
            d.metadata.creation_timestamp = None;
            d.metadata.generation = None;
            let name = d.metadata.name.clone().unwrap_or_default();
            apply(client, &ns, &name, &d).await.map(|_| ())
        }
        // A Knative Service is its own primary (its primary revision).
        (Target::KnativeService(_), _) => Ok(()),
    };
    result.map_err(|e| {
        format!(
            "writing primary {}-primary.{ns} failed: {e}",
            canary.spec.target_ref.name
        )
    })
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
) -> Result<Option<ConflictReport>, String> {
    let (client, caches) = (&ctx.client, &ctx.caches);
    let ns = &c.namespace;
    let name = role.name(c);
    let existing = cache::get(&caches.services, client, ns, &name)
        .await
        .map_err(|e| format!("service {name}.{ns} get query error: {e}"))?;
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
            serde_json::to_value(&desired).map_err(|e| e.to_string())?
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
        let live_json = serde_json::to_value(&**live).map_err(|e| e.to_string())?;
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
        .map_err(|e| format!("reconciling service {name}.{ns} failed: {e}"))
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

/// Creates or updates the primary HPA from the target's.
pub async fn write_primary_hpa(
    client: &Client,
    canary: &Canary,
    c: &ValidatedCanary,
) -> Result<(), String> {
    let Some(a) = &c.autoscaler else {
        return Ok(());
    };
    let ns = &c.namespace;
    let api = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    let target = api.get(&a.name).await.map_err(|e| {
        format!(
            "HorizontalPodAutoscaler {}.{ns} get query error: {e}",
            a.name
        )
    })?;
    let spec = target.spec.clone().unwrap_or_default();
    let mut scale_ref = spec.scale_target_ref.clone();
    scale_ref.name = c.primary_workload();
    let name = format!("{}-primary", a.name);
    let hpa = HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(without_toolkit(target.labels())),
            owner_references: owner_ref(canary).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(
            k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec {
                scale_target_ref: scale_ref,
                min_replicas: a.primary_min_replicas.or(spec.min_replicas),
                max_replicas: a.primary_max_replicas.unwrap_or(spec.max_replicas),
                metrics: spec.metrics.clone(),
                behavior: spec.behavior.clone(),
            },
        ),
        status: None,
    };
    apply(client, ns, &name, &hpa)
        .await
        .map(|_| ())
        .map_err(|e| format!("writing HorizontalPodAutoscaler {name}.{ns} failed: {e}"))
}
