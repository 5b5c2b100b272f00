//! Writers of the workloads a canary runs on, shared by the steps that need them (bootstrap
//! creates, execute promotes and scales, finalize and `flagger uninstall` bring the target
//! back): the `-primary` configs and workload, the primary HPA, and the target's scale. Every
//! write is idempotent and carries the controller's field manager.

use std::collections::BTreeMap;
use std::sync::Arc;

use flagger_api::Canary;
use flagger_api::labels::{SCALE_TO_ZERO_NODE_SELECTOR, TOOLKIT_MARKER};
use flagger_core::model::{AutoscalerKind, TargetKind, ValidatedCanary};
use flagger_core::workload::{self, PrimaryInputs};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Patch;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::keda;
use super::objects::{WriteError, apply, merge_params, owner_ref};
use super::observe::{Config, Observed, Target};
use crate::cache::{self, Caches};
use crate::context::Settings;
use crate::write::FIELD_MANAGER;

pub fn without_toolkit(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Serializes the writes of `-primary` config copies in this process: two canaries sharing a
/// config would otherwise both read its copy's owners and each write them without the other.
static SHARED_COPIES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes `<config>-primary` copies of the tracked configs (at creation and on promotion); the
/// copy of a config several canaries track is owned by all of them.
pub async fn write_primary_configs(
    client: &Client,
    settings: &Settings,
    canary: &Canary,
    observed: &Observed,
) -> Result<(), WriteError> {
    let ns = canary.namespace().unwrap_or_default();
    // Canaries sharing a config share its copy: its owner references are read and written in
    // one piece (see `shared_copy_owners`), one writer at a time in this process.
    let _one_writer = SHARED_COPIES.lock().await;
    for config in &observed.configs {
        let name = format!("{}-primary", config.name());
        let existing = match config {
            Config::ConfigMap(_) => Api::<ConfigMap>::namespaced(client.clone(), &ns)
                .get_opt(&name)
                .await
                .map(|o| o.map(|o| o.metadata)),
            Config::Secret(_) => Api::<Secret>::namespaced(client.clone(), &ns)
                .get_opt(&name)
                .await
                .map(|o| o.map(|o| o.metadata)),
        }
        .map_err(|e| {
            WriteError::api(
                format!("{} {name}.{ns} get query failed", config.kind().key()),
                &e,
            )
        })?;
        let owners = owner_ref(canary).map(|mine| {
            let existing = existing
                .and_then(|m| m.owner_references)
                .unwrap_or_default();
            workload::shared_copy_owners(&existing, mine)
        });
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
            owner_references: owners.clone(),
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
        result.map_err(|e| {
            WriteError::api(
                format!("creating {} {name}.{ns} failed", config.kind().key()),
                &e,
            )
        })?;
    }
    Ok(())
}

/// Writes the primary workload: the initial copy when `current` is `None`, the promoted one
/// otherwise. `flagger_id` goes into the `flagger-id` annotation of the pod template (a new
/// value rolls the primary's pods).
pub async fn write_primary(
    client: &Client,
    settings: &Settings,
    canary: &Canary,
    observed: &Observed,
    current: Option<&Target>,
    flagger_id: &str,
) -> Result<(), WriteError> {
    let ns = canary.namespace().unwrap_or_default();
    let tracked = observed.tracked();
    let inputs = PrimaryInputs {
        policy: &settings.labels,
        selector: (&observed.selector.0, &observed.selector.1),
        tracked: &tracked,
        flagger_id,
    };
    let has_autoscaler = canary.spec.autoscaler_ref.is_some();
    let result = match (&observed.target, current) {
        // A Knative Service is its own primary (its primary revision).
        (Target::KnativeService(_), _) => Ok(()),
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
    };
    result.map_err(|e| {
        WriteError::api(
            format!(
                "writing primary {}-primary.{ns} failed",
                canary.spec.target_ref.name
            ),
            &e,
        )
    })
}

/// Reads the primary workload (from the API server: promotion writes over it).
pub async fn read_primary(
    client: &Client,
    c: &ValidatedCanary,
    observed: &Observed,
) -> Result<Target, WriteError> {
    let ns = &c.namespace;
    match &observed.target {
        Target::KnativeService(s) => Ok(Target::KnativeService(s.clone())),
        Target::Deployment(_) => Api::<Deployment>::namespaced(client.clone(), ns)
            .get(&c.primary_workload())
            .await
            .map(|d| Target::Deployment(Arc::new(d))),
        Target::DaemonSet(_) => Api::<DaemonSet>::namespaced(client.clone(), ns)
            .get(&c.primary_workload())
            .await
            .map(|d| Target::DaemonSet(Arc::new(d))),
    }
    .map_err(|e| WriteError::api(format!("{}.{ns} get query error", c.primary_workload()), &e))
}

/// Creates or updates the primary HPA from the target's.
pub async fn write_primary_hpa(
    client: &Client,
    canary: &Canary,
    c: &ValidatedCanary,
) -> Result<(), WriteError> {
    let Some(a) = &c.autoscaler else {
        return Ok(());
    };
    let ns = &c.namespace;
    let api = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    let target = api.get(&a.name).await.map_err(|e| {
        WriteError::api(
            format!("HorizontalPodAutoscaler {}.{ns} get query error", a.name),
            &e,
        )
    })?;
    let spec = target.spec.clone().unwrap_or_default();
    let name = format!("{}-primary", a.name);
    let hpa = HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(without_toolkit(target.labels())),
            owner_references: owner_ref(canary).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(flagger_core::workload::primary_hpa_spec(
            &spec,
            a,
            &c.primary_workload(),
        )),
        status: None,
    };
    apply(client, ns, &name, &hpa)
        .await
        .map(|_| ())
        .map_err(|e| {
            WriteError::api(
                format!("writing HorizontalPodAutoscaler {name}.{ns} failed"),
                &e,
            )
        })
}

/// Scales the target to zero (Deployment: replicas 0; DaemonSet: the scale-to-zero node
/// selector).
pub async fn scale_to_zero(client: &Client, c: &ValidatedCanary) -> Result<(), WriteError> {
    let ns = &c.namespace;
    let failed = |e: kube::Error| {
        WriteError::api(
            format!(
                "scaling down canary {} {}.{ns} failed",
                c.target.kind.kind(),
                c.target.name
            ),
            &e,
        )
    };
    match c.target.kind {
        // Knative scales its revisions itself.
        TargetKind::KnativeService => {}
        TargetKind::DaemonSet => {
            let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: "true"}}}}});
            Api::<DaemonSet>::namespaced(client.clone(), ns)
                .patch(
                    &c.target.name,
                    &merge_params(FIELD_MANAGER),
                    &Patch::Merge(patch),
                )
                .await
                .map_err(failed)?;
        }
        _ => {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(
                    &c.target.name,
                    &merge_params(FIELD_MANAGER),
                    &Patch::Merge(json!({"spec": {"replicas": 0}})),
                )
                .await
                .map_err(failed)?;
        }
    }
    Ok(())
}

/// Scales the target up from zero (Deployment: Flagger's replica count; DaemonSet: the
/// scale-to-zero node selector removed).
pub async fn scale_up(
    client: &Client,
    caches: &Caches,
    c: &ValidatedCanary,
    observed: &Observed,
) -> Result<(), WriteError> {
    let ns = &c.namespace;
    let failed = |e: kube::Error| {
        WriteError::api(
            format!(
                "scaling up {} {}.{ns} failed",
                c.target.kind.kind().to_lowercase(),
                c.target.name
            ),
            &e,
        )
    };
    match &observed.target {
        // Knative scales its revisions itself.
        Target::KnativeService(_) => {}
        Target::Deployment(target) => {
            let replicas = replicas_from_zero(client, caches, c, target).await?;
            Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(
                    &c.target.name,
                    &merge_params(FIELD_MANAGER),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await
                .map_err(failed)?;
        }
        Target::DaemonSet(_) => {
            let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: null}}}}});
            Api::<DaemonSet>::namespaced(client.clone(), ns)
                .patch(
                    &c.target.name,
                    &merge_params(FIELD_MANAGER),
                    &Patch::Merge(patch),
                )
                .await
                .map_err(failed)?;
        }
    }
    Ok(())
}

/// Flagger's scale-from-zero replica count (§3.5), from what the autoscaler or the primary has.
async fn replicas_from_zero(
    client: &Client,
    caches: &Caches,
    c: &ValidatedCanary,
    target: &Deployment,
) -> Result<i32, WriteError> {
    let own = target.spec.as_ref().and_then(|s| s.replicas);
    let ns = &c.namespace;
    let autoscaler = match &c.autoscaler {
        Some(a) if a.kind == AutoscalerKind::ScaledObject => {
            let so = keda::get(client, ns, &a.name).await.unwrap_or_else(|e| {
                tracing::warn!(canary = %format!("{}.{ns}", c.name), "{e}");
                None
            });
            Some(flagger_core::keda::replicas_from_zero(so.as_ref()))
        }
        Some(a) => {
            let hpa = cache::get(&caches.hpas, client, ns, &a.name)
                .await
                .map_err(|e| {
                    WriteError::api(
                        format!("HorizontalPodAutoscaler {}.{ns} get query error", a.name),
                        &e,
                    )
                })?;
            Some(
                hpa.and_then(|h| h.spec.clone())
                    .and_then(|s| s.min_replicas)
                    .unwrap_or(1),
            )
        }
        None => None,
    };
    let primary = match autoscaler {
        Some(_) => None,
        None => cache::get(&caches.deployments, client, ns, &c.primary_workload())
            .await
            .map_err(|e| {
                WriteError::api(format!("{}.{ns} get query error", c.primary_workload()), &e)
            })?
            .and_then(|p| p.spec.clone())
            .and_then(|s| s.replicas),
    };
    Ok(workload::replicas_from_zero(own, autoscaler, primary))
}

/// Brings the target back from zero, for good (deletion, uninstall): its KEDA ScaledObject
/// resumed; a Deployment scaled to the primary's replicas (at least its own, at least 1); a
/// DaemonSet's scale-to-zero node selector removed. `manager` is the writer's field manager.
/// `Ok(false)`: the target no longer exists, there is nothing to bring back.
pub async fn bring_back_target(
    client: &Client,
    c: &ValidatedCanary,
    manager: &str,
) -> Result<bool, WriteError> {
    let ns = &c.namespace;
    let params = merge_params(manager);
    if c.autoscaler
        .as_ref()
        .is_some_and(|a| a.kind == AutoscalerKind::ScaledObject)
    {
        keda::set_paused(client, c, false, manager).await?;
    }
    let failed = |e: kube::Error| {
        WriteError::api(
            format!(
                "scaling up {} {}.{ns} failed",
                c.target.kind.kind().to_lowercase(),
                c.target.name
            ),
            &e,
        )
    };
    match c.target.kind {
        TargetKind::Deployment => {
            let api = Api::<Deployment>::namespaced(client.clone(), ns);
            let replicas_of =
                |d: Option<Deployment>| d.and_then(|d| d.spec).and_then(|s| s.replicas);
            let Some(current) = api.get_opt(&c.target.name).await.map_err(failed)? else {
                return Ok(false);
            };
            let primary = replicas_of(api.get_opt(&c.primary_workload()).await.map_err(failed)?);
            let current = replicas_of(Some(current));
            let replicas = primary.unwrap_or(1).max(current.unwrap_or(0)).max(1);
            api.patch(
                &c.target.name,
                &params,
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .map_err(failed)?;
        }
        TargetKind::DaemonSet => {
            let api = Api::<DaemonSet>::namespaced(client.clone(), ns);
            if api.get_opt(&c.target.name).await.map_err(failed)?.is_none() {
                return Ok(false);
            }
            let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {SCALE_TO_ZERO_NODE_SELECTOR: null}}}}});
            api.patch(&c.target.name, &params, &Patch::Merge(patch))
                .await
                .map_err(failed)?;
        }
        // Knative scales its revisions itself.
        TargetKind::KnativeService => {}
        other => {
            return Err(WriteError::invalid(format!(
                "{} targets have nothing to scale",
                other.kind()
            )));
        }
    }
    Ok(true)
}
