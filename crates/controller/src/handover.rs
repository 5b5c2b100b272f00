//! `flagger uninstall`: hands the traffic of every Canary back to its target, in the order that
//! never leaves an apex Service without ready pods, then removes the Canaries. After it, the
//! controller and the CRDs can go (or be reinstalled, e.g. moving from manifests to Helm)
//! without an outage.
//!
//! Per Canary: suspend it (a running controller stops acting on it); resume the target's KEDA
//! ScaledObject; scale the target up to the primary's replicas and wait until every replica is
//! ready; give the apex Service back (a pre-existing one its own selector and ports, a
//! generated one pointed at the target and released from the Canary); wait until the Service
//! has ready endpoints; then delete the Canary, whose garbage collection removes the primary
//! and the `-primary`/`-canary` Services. It needs no running controller.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use flagger_api::Canary;
use flagger_api::labels::FINALIZER;
use flagger_core::generated;
use flagger_core::model::{AutoscalerKind, TargetKind, ValidatedCanary};
use flagger_core::services::ServiceRole;
use flagger_core::validate::{ValidationContext, validate};
use flagger_core::workload::LabelPolicy;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::canary::finalize::{hand_back, target_selector};
use crate::canary::workloads::bring_back_target;
use crate::owner::owned_by;

/// Field manager of the uninstall's writes.
pub const MANAGER: &str = "flagger-uninstall";

/// What to hand over.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only Canaries in this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// How long to wait for each target to become ready and each Service to get endpoints.
    pub timeout: Duration,
    /// The controller's `-selector-labels`.
    pub labels: LabelPolicy,
    /// Hand over but keep the Canaries (suspended), e.g. to delete them later.
    pub keep_canaries: bool,
}

/// Hands over every Canary; reports each step through `say`. Returns how many were handed
/// over; fails (after trying every Canary) when one could not be.
pub async fn uninstall(
    client: &Client,
    opts: &Options,
    say: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<usize> {
    let api: Api<Canary> = match &opts.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let canaries = api
        .list(&ListParams::default())
        .await
        .context("listing Canaries")?;
    let mut done = 0;
    let mut failed = Vec::new();
    for canary in &canaries.items {
        let id = format!(
            "{}/{}",
            canary.namespace().unwrap_or_default(),
            canary.name_any()
        );
        match hand_over(client, opts, canary, &mut |m| say(format!("{id}: {m}"))).await {
            Ok(()) => done += 1,
            Err(e) => {
                say(format!("{id}: FAILED: {}", crate::error::text(e.as_ref())));
                failed.push(id);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} Canaries were not handed over: {}",
            failed.len(),
            canaries.items.len(),
            failed.join(", ")
        );
    }
    Ok(done)
}

async fn hand_over(
    client: &Client,
    opts: &Options,
    canary: &Canary,
    say: &mut (dyn FnMut(String) + Send),
) -> anyhow::Result<()> {
    let ns = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns);
    let c = validate(canary, &ValidationContext::default())
        .map_err(|problems| {
            anyhow!(
                "invalid spec, nothing changed: {}",
                problems
                    .iter()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?
        .canary;
    let merge = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };

    canaries
        .patch(
            &name,
            &merge,
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .context("suspending the Canary")?;
    say("suspended".into());

    if !bring_back_target(client, &c, MANAGER).await? {
        bail!(
            "{} {} not found: there is no target to hand traffic back to",
            c.target.kind.kind(),
            c.target.name
        );
    }
    if c.autoscaler
        .as_ref()
        .is_some_and(|a| a.kind == AutoscalerKind::ScaledObject)
    {
        say("target ScaledObject resumed".into());
    }
    let ready = wait(opts.timeout, || target_ready(client, &c))
        .await
        .with_context(|| {
            format!(
                "{} {} did not become ready",
                c.target.kind.kind(),
                c.target.name
            )
        })?;
    say(format!(
        "{} {} scaled up and ready ({ready})",
        c.target.kind.kind(),
        c.target.name
    ));

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    match services.get_opt(&c.apex).await? {
        Some(apex) => {
            let generated = owned_by(apex.metadata.owner_references.as_ref(), canary);
            let selector = target_selector(client, &opts.labels, &c, &ns).await?;
            let restored = hand_back(&apex, generated, selector);
            let shown = restored
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let params = PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            };
            services
                .replace(&c.apex, &params, &restored)
                .await
                .context("handing the apex Service back")?;
            say(format!(
                "Service {} {} (selector {shown})",
                c.apex,
                if generated {
                    "kept and released from the Canary"
                } else {
                    "given back its own selector and ports"
                }
            ));
            let endpoints = wait(opts.timeout, || ready_endpoints(client, &ns, &c.apex))
                .await
                .with_context(|| format!("Service {} has no ready endpoints", c.apex))?;
            say(format!(
                "Service {} has {endpoints} ready endpoints",
                c.apex
            ));
        }
        None => say(format!("no Service {} to hand back", c.apex)),
    }

    if opts.keep_canaries {
        say("kept (suspended); delete it when ready".into());
        return Ok(());
    }
    let finalizers: Vec<String> = canary
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    canaries
        .patch(
            &name,
            &merge,
            &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .context("removing the finalizer")?;
    canaries
        .delete(&name, &DeleteParams::background())
        .await
        .context("deleting the Canary")?;
    let uid = canary.uid();
    wait(opts.timeout, || async {
        // A running controller may put its finalizer back and finalize it itself. A Canary of
        // the same name with another uid is a new one (a GitOps tool still applying it): this
        // one is gone.
        Ok(canaries
            .get_opt(&name)
            .await?
            .is_none_or(|now| uid.is_some() && now.uid() != uid)
            .then(|| "gone".to_string()))
    })
    .await
    .context("the Canary was not deleted")?;
    // What garbage collection removes with it: every generated object but the apex Service
    // (kept, handed back above) and routing objects another writer made.
    let gone: Vec<String> = generated::objects(&generated::Names::of(&c, &canary.spec))
        .into_iter()
        .filter(|o| o.role != generated::Role::Service(ServiceRole::Apex))
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    say(format!("Canary deleted ({} go with it)", gone.join(", ")));
    Ok(())
}

/// `Some("2/2")` once every replica of the target's current generation is ready.
async fn target_ready(client: &Client, c: &ValidatedCanary) -> anyhow::Result<Option<String>> {
    let ns = &c.namespace;
    Ok(match c.target.kind {
        TargetKind::Deployment => {
            let d = Api::<Deployment>::namespaced(client.clone(), ns)
                .get(&c.target.name)
                .await?;
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let s = d.status.clone().unwrap_or_default();
            let current = s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
            let ready = s.ready_replicas.unwrap_or(0);
            (current && want > 0 && ready >= want && s.updated_replicas.unwrap_or(0) >= want)
                .then(|| format!("{ready}/{want}"))
        }
        TargetKind::DaemonSet => {
            let d = Api::<DaemonSet>::namespaced(client.clone(), ns)
                .get(&c.target.name)
                .await?;
            let s = d.status.clone().unwrap_or_default();
            let current = s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
            (current && s.number_ready > 0 && s.number_ready >= s.desired_number_scheduled)
                .then(|| format!("{}/{}", s.number_ready, s.desired_number_scheduled))
        }
        _ => Some("n/a".into()),
    })
}

async fn ready_endpoints(client: &Client, ns: &str, name: &str) -> anyhow::Result<Option<String>> {
    let ep = Api::<Endpoints>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?;
    let n: usize = ep
        .iter()
        .flat_map(|e| e.subsets.iter().flatten())
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    Ok((n > 0).then(|| n.to_string()))
}

/// Polls `check` every 200 ms until it gives a value or `timeout` passes.
async fn wait<F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<String>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "not yet".to_string(),
            Err(e) => crate::error::text(e.as_ref()),
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {}s ({last})", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
