//! Step 2: read the target and the configs it tracks; compute the revision the decision core
//! compares with the status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flagger_api::labels::{CONFIG_TRACKING, SCALE_TO_ZERO_NODE_SELECTOR};
use flagger_core::effects::{Scale, TargetRevision};
use flagger_core::hash;
use flagger_core::model::{TargetKind, ValidatedCanary};
use flagger_core::workload::{self, ConfigKind};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use kube::{Client, ResourceExt};

use super::knative::KnativeError;
use crate::cache::{self, Caches};
use crate::context::{ConfigIndex, Context, Settings};
use crate::error::{step_error, step_error_from};
use kube::runtime::reflector::ObjectRef;

step_error!(
    /// Step 2 failed: the target or a config it tracks could not be read, or cannot run.
    ObserveError
);
step_error_from!(KnativeError => ObserveError);

/// The target workload.
#[derive(Clone, Debug)]
pub enum Target {
    Deployment(Arc<Deployment>),
    DaemonSet(Arc<DaemonSet>),
    /// A Knative Service, as JSON.
    KnativeService(Arc<serde_json::Value>),
}

impl Target {
    /// Whether the target has ready pods (it can take traffic).
    pub fn serving(&self) -> bool {
        match self {
            Target::Deployment(d) => {
                d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) > 0
                    && d.status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0)
                        > 0
            }
            Target::DaemonSet(d) => d.status.as_ref().is_some_and(|s| s.number_ready > 0),
            Target::KnativeService(_) => true,
        }
    }

    /// Whether the target has pods: Deployment replicas above zero (unset is 1), a DaemonSet
    /// without the scale-to-zero node selector; `None` for a Knative Service, which Knative
    /// scales itself (nothing is scaled).
    pub fn scale(&self) -> Option<Scale> {
        let zero = match self {
            Target::KnativeService(_) => return None,
            Target::Deployment(d) => d.spec.as_ref().and_then(|s| s.replicas) == Some(0),
            Target::DaemonSet(d) => d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.node_selector.as_ref())
                .is_some_and(|n| n.contains_key(SCALE_TO_ZERO_NODE_SELECTOR)),
        };
        Some(if zero { Scale::Zero } else { Scale::Up })
    }

    /// The labels of the target's pod template.
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        match self {
            Target::Deployment(d) => d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
            Target::DaemonSet(d) => d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
            Target::KnativeService(_) => None,
        }
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
    }

    /// The pod spec of the target's template.
    pub fn pod_spec(&self) -> PodSpec {
        match self {
            Target::Deployment(d) => d.spec.as_ref().and_then(|s| s.template.spec.clone()),
            Target::DaemonSet(d) => d.spec.as_ref().and_then(|s| s.template.spec.clone()),
            Target::KnativeService(_) => None,
        }
        .unwrap_or_default()
    }
}

/// A tracked ConfigMap or Secret, as read.
#[derive(Clone, Debug)]
pub enum Config {
    ConfigMap(Arc<ConfigMap>),
    Secret(Arc<Secret>),
}

impl Config {
    pub fn kind(&self) -> ConfigKind {
        match self {
            Config::ConfigMap(_) => ConfigKind::ConfigMap,
            Config::Secret(_) => ConfigKind::Secret,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Config::ConfigMap(c) => c.name_any(),
            Config::Secret(s) => s.name_any(),
        }
    }

    /// Flagger's checksum of `data` (binary data, which Flagger ignores, is folded in when
    /// present, so a change to it starts a run too).
    pub fn checksum(&self) -> String {
        let mut entries: Vec<(String, String)> = Vec::new();
        match self {
            Config::ConfigMap(c) => {
                entries.extend(c.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
                for (k, v) in c.binary_data.iter().flatten() {
                    entries.push((format!("binaryData/{k}"), base64(&v.0)));
                }
            }
            Config::Secret(s) => {
                entries.extend(
                    s.data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), base64(&v.0))),
                );
            }
        }
        hash::config_checksum(entries.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// What a tick observed about the target.
#[derive(Clone, Debug)]
pub struct Observed {
    pub target: Target,
    /// Selector label key and the target's value.
    pub selector: (String, String),
    pub revision: TargetRevision,
    pub configs: Vec<Config>,
}

impl Observed {
    /// The labels of the target's pods.
    pub fn target_pod_labels(&self) -> BTreeMap<String, String> {
        self.target.pod_labels()
    }

    /// The tracked configs as (kind, name) pairs.
    pub fn tracked(&self) -> BTreeSet<(ConfigKind, String)> {
        self.configs.iter().map(|c| (c.kind(), c.name())).collect()
    }
}

/// Step 2: reads the target and its tracked configs, and indexes the configs so that a change
/// to one triggers the canary.
pub async fn run(ctx: &Context, c: &ValidatedCanary) -> Result<Observed, ObserveError> {
    let observed = observe(&ctx.client, &ctx.caches, &ctx.objects, &ctx.settings, c).await?;
    let ns = &c.namespace;
    ctx.configs.set(
        ObjectRef::new(&c.name).within(ns),
        observed
            .configs
            .iter()
            .map(|cfg| ConfigIndex::key(ns, cfg.kind().key(), &cfg.name())),
    );
    Ok(observed)
}

/// Reads the target and its tracked configs.
pub async fn observe(
    client: &Client,
    caches: &Caches,
    objects: &crate::watched::Objects,
    settings: &Settings,
    c: &ValidatedCanary,
) -> Result<Observed, ObserveError> {
    let ns = &c.namespace;
    let name = &c.target.name;
    let (target, selector, hash_input) = match c.target.kind {
        TargetKind::Deployment => {
            let d = cache::require(&caches.deployments, client, ns, name)
                .await
                .map_err(|e| {
                    ObserveError::api(format!("deployment {name}.{ns} get query error"), &e)
                })?;
            let sel = settings
                .labels
                .selector_label("Deployment", name, ns, d.spec.as_ref().map(|s| &s.selector))
                .map_err(ObserveError::invalid)?;
            let input = workload::deployment_hash_input(&d);
            (Target::Deployment(d), sel, input)
        }
        TargetKind::DaemonSet => {
            let d = cache::require(&caches.daemonsets, client, ns, name)
                .await
                .map_err(|e| {
                    ObserveError::api(format!("daemonset {name}.{ns} get query error"), &e)
                })?;
            let strategy = d
                .spec
                .as_ref()
                .and_then(|s| s.update_strategy.as_ref())
                .and_then(|s| s.type_.clone())
                .unwrap_or_default();
            if !strategy.is_empty() && strategy != "RollingUpdate" {
                return Err(ObserveError::invalid(format!(
                    "daemonset {name}.{ns} must have RollingUpdate strategy but have {strategy}"
                )));
            }
            let sel = settings
                .labels
                .selector_label("DaemonSet", name, ns, d.spec.as_ref().map(|s| &s.selector))
                .map_err(ObserveError::invalid)?;
            let input = workload::daemonset_hash_input(&d);
            (Target::DaemonSet(d), sel, input)
        }
        TargetKind::KnativeService => {
            // Knative keeps the revisions: no configs are tracked, no selector is used.
            let service = super::knative::get(objects, c).await?;
            let revision = super::knative::revision(c, &service)?;
            return Ok(Observed {
                target: Target::KnativeService(Arc::new(service)),
                selector: (String::new(), String::new()),
                revision,
                configs: Vec::new(),
            });
        }
        TargetKind::Service => {
            return Err(ObserveError::invalid(format!(
                "{} targets are not supported yet",
                c.target.kind.kind()
            )));
        }
    };

    let configs = if settings.config_tracking {
        tracked_configs(client, caches, ns, &target.pod_spec()).await?
    } else {
        Vec::new()
    };
    let tracked_configs: BTreeMap<String, String> = configs
        .iter()
        .map(|cfg| {
            (
                format!("{}/{}", cfg.kind().key(), cfg.name()),
                cfg.checksum(),
            )
        })
        .collect();
    Ok(Observed {
        target,
        selector,
        revision: TargetRevision {
            hash: hash::spec_hash(&hash_input),
            tracked_configs,
        },
        configs,
    })
}

/// Secrets Flagger tracks: opaque and the basic-auth, ssh-auth and TLS types.
fn tracked_secret_type(t: Option<&str>) -> bool {
    matches!(
        t.unwrap_or("Opaque"),
        "Opaque" | "kubernetes.io/basic-auth" | "kubernetes.io/ssh-auth" | "kubernetes.io/tls"
    )
}

fn opted_out(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(CONFIG_TRACKING)
        .is_some_and(|v| v.starts_with("disable"))
}

async fn tracked_configs(
    client: &Client,
    caches: &Caches,
    ns: &str,
    pod: &PodSpec,
) -> Result<Vec<Config>, ObserveError> {
    let mut out = Vec::new();
    for r in workload::config_refs(pod) {
        match r.kind {
            ConfigKind::ConfigMap => {
                match cache::get(&caches.configmaps, client, ns, &r.name).await {
                    Ok(Some(cm)) if !opted_out(cm.annotations()) => out.push(Config::ConfigMap(cm)),
                    Ok(Some(_)) => {}
                    Ok(None) if r.optional => {}
                    Ok(None) => {
                        return Err(ObserveError::transient(format!(
                            "configmap {}.{ns} get query error: not found",
                            r.name
                        )));
                    }
                    Err(e) => {
                        return Err(ObserveError::api(
                            format!("configmap {}.{ns} get query error", r.name),
                            &e,
                        ));
                    }
                }
            }
            ConfigKind::Secret => match cache::get(&caches.secrets, client, ns, &r.name).await {
                Ok(Some(s))
                    if !opted_out(s.annotations()) && tracked_secret_type(s.type_.as_deref()) =>
                {
                    out.push(Config::Secret(s))
                }
                Ok(Some(_)) => {}
                Ok(None) if r.optional => {}
                Ok(None) => {
                    return Err(ObserveError::transient(format!(
                        "secret {}.{ns} get query error: not found",
                        r.name
                    )));
                }
                Err(e) => {
                    return Err(ObserveError::api(
                        format!("secret {}.{ns} get query error", r.name),
                        &e,
                    ));
                }
            },
        }
    }
    Ok(out)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn secret_types_tracked_like_flagger() {
        assert!(tracked_secret_type(None));
        assert!(tracked_secret_type(Some("kubernetes.io/tls")));
        assert!(!tracked_secret_type(Some("kubernetes.io/dockerconfigjson")));
    }
}
