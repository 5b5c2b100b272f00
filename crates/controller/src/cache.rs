//! The controller's read side: one reflector store per kind it reads, fed by the same watch
//! streams that trigger reconciles, so a tick reads memory instead of asking the API server.
//!
//! A store can lag behind a write the controller itself just made (the watch event has not
//! arrived yet). Reads therefore fall back to the API server when the store does not hold the
//! object, which covers "just created"; a stale copy of an object that does exist is corrected by
//! the watch event that follows the write, which triggers the canary again.

use std::fmt::Debug;
use std::sync::Arc;

use flagger_api::{AlertProvider, MetricTemplate};
use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::packed::Packed;

/// The stores, one per kind; each object kept as its JSON text ([`Packed`]) and read back
/// through [`get`] and [`require`].
#[derive(Clone)]
pub struct Caches {
    pub deployments: Store<Packed<Deployment>>,
    pub daemonsets: Store<Packed<DaemonSet>>,
    pub configmaps: Store<Packed<ConfigMap>>,
    pub secrets: Store<Packed<Secret>>,
    pub services: Store<Packed<Service>>,
    pub hpas: Store<Packed<HorizontalPodAutoscaler>>,
    pub metric_templates: Store<Packed<MetricTemplate>>,
    pub alert_providers: Store<Packed<AlertProvider>>,
}

/// A kind the caches hold: read from the API, packed as text and read back.
pub trait Cacheable:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Cacheable for K where
    K: Resource<DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// A watch stream that keeps a store up to date; polled by the controller (as a trigger) or by
/// a background task.
pub type Feed<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// The feeds that fill [`Caches`].
pub struct Feeds {
    pub deployments: Feed<Packed<Deployment>>,
    pub daemonsets: Feed<Packed<DaemonSet>>,
    pub configmaps: Feed<Packed<ConfigMap>>,
    pub secrets: Feed<Packed<Secret>>,
    pub services: Feed<Packed<Service>>,
    pub hpas: Feed<Packed<HorizontalPodAutoscaler>>,
    pub metric_templates: Feed<Packed<MetricTemplate>>,
    pub alert_providers: Feed<Packed<AlertProvider>>,
}

/// Whether a kind's cached copies keep `metadata.managedFields` (needed where the controller
/// looks at who else writes an object, and then compacted; dropped elsewhere to save memory).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fields {
    Keep,
    /// Kept on the objects the controller generates (owned by a Canary, or named
    /// `<name>-primary`: the primary workloads and HPAs, whose writers the fight detector
    /// reads), dropped on the others (the targets: nothing reads who writes them).
    Generated,
    Drop,
}

/// Whether `meta` is of an object the controller generates (see [`Fields::Generated`]).
fn generated(meta: &kube::api::ObjectMeta) -> bool {
    meta.name
        .as_deref()
        .is_some_and(|n| n.ends_with("-primary"))
        || meta
            .owner_references
            .iter()
            .flatten()
            .any(crate::owner::is_canary_controller)
}

/// Trims a cached copy's `managedFields` as `fields` says.
fn trim_fields(meta: &mut kube::api::ObjectMeta, fields: Fields) {
    let keep = match fields {
        Fields::Keep => true,
        Fields::Generated => generated(meta),
        Fields::Drop => false,
    };
    if !keep {
        meta.managed_fields = None;
        return;
    }
    // Kept for conflict detection, in the form it needs: our own entry only as a marker (what
    // we own is what we write), status writers not at all.
    if let Some(entries) = meta.managed_fields.as_mut() {
        entries.retain(|e| e.subresource.as_deref() != Some("status"));
        for e in entries.iter_mut() {
            if e.manager.as_deref() == Some(crate::write::FIELD_MANAGER) {
                e.fields_v1 = None;
            }
        }
    }
}

fn feed<K>(api: Api<K>, fields: Fields) -> (Store<Packed<K>>, Feed<Packed<K>>)
where
    K: Cacheable,
{
    feed_trimmed(api, fields, |_| {})
}

/// [`feed`], with `trim` dropping more of each cached copy.
fn feed_trimmed<K>(
    api: Api<K>,
    fields: Fields,
    trim: fn(&mut K),
) -> (Store<Packed<K>>, Feed<Packed<K>>)
where
    K: Cacheable,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(move |o: &mut K| {
            trim(o);
            trim_fields(o.meta_mut(), fields);
        });
    let stream = crate::packed::events(events)
        .reflect(writer)
        .touched_objects();
    (store, Box::pin(stream))
}

/// Secret types no decision reads the data of: neither config tracking (which follows Flagger's
/// tracked types) nor a MetricTemplate's or AlertProvider's credentials are kept in them. Helm
/// keeps every release of every chart in one (often hundreds of KiB each), a cluster has a
/// token Secret per ServiceAccount: their cached copies keep only their metadata.
const UNREAD_SECRET_TYPES: &[&str] = &[
    "helm.sh/release.v1",
    "kubernetes.io/service-account-token",
    "kubernetes.io/dockercfg",
    "kubernetes.io/dockerconfigjson",
    "bootstrap.kubernetes.io/token",
];

fn trim_secret(s: &mut Secret) {
    if s.type_
        .as_deref()
        .is_some_and(|t| UNREAD_SECRET_TYPES.contains(&t))
    {
        s.data = None;
        s.string_data = None;
    }
}

/// Drops from a cached Canary what no decision reads: `managedFields` (nobody reads who wrote
/// a Canary; a status write sends none, and the API server takes only the status from it) and
/// `kubectl apply`'s copy of the whole object in its last-applied annotation (a second copy of
/// the spec, often larger than the rest of the metadata).
pub fn trim_canary(c: &mut flagger_api::Canary) {
    c.metadata.managed_fields = None;
    if let Some(a) = c.metadata.annotations.as_mut() {
        a.remove(flagger_api::labels::LAST_APPLIED);
    }
}

/// Builds the stores and the watch streams that fill them, scoped like the controller.
pub fn build(client: &Client, namespace: Option<&str>) -> (Caches, Feeds) {
    let (deployments, deployments_feed) = feed(scoped(client, namespace), Fields::Generated);
    let (daemonsets, daemonsets_feed) = feed(scoped(client, namespace), Fields::Generated);
    let (configmaps, configmaps_feed) = feed(scoped(client, namespace), Fields::Drop);
    let (secrets, secrets_feed) =
        feed_trimmed(scoped(client, namespace), Fields::Drop, trim_secret);
    let (services, services_feed) = feed(scoped(client, namespace), Fields::Keep);
    let (hpas, hpas_feed) = feed(scoped(client, namespace), Fields::Generated);
    // Templates and providers may live in other namespaces than the canaries that use them.
    let (metric_templates, mt_feed) = feed(Api::all(client.clone()), Fields::Drop);
    let (alert_providers, ap_feed) = feed(Api::all(client.clone()), Fields::Drop);
    (
        Caches {
            deployments,
            daemonsets,
            configmaps,
            secrets,
            services,
            hpas,
            metric_templates,
            alert_providers,
        },
        Feeds {
            deployments: deployments_feed,
            daemonsets: daemonsets_feed,
            configmaps: configmaps_feed,
            secrets: secrets_feed,
            services: services_feed,
            hpas: hpas_feed,
            metric_templates: mt_feed,
            alert_providers: ap_feed,
        },
    )
}

impl Caches {
    /// Waits until every store has listed once.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        wait_ready(&self.deployments).await?;
        wait_ready(&self.daemonsets).await?;
        wait_ready(&self.configmaps).await?;
        wait_ready(&self.secrets).await?;
        wait_ready(&self.services).await?;
        wait_ready(&self.hpas).await?;
        wait_ready(&self.metric_templates).await?;
        wait_ready(&self.alert_providers).await
    }
}

/// Waits until `store` has listed once. Its readiness signal wakes only its last waiter
/// (kube-runtime's DelayedInit keeps one waker) and the controller may wait on it too, so the
/// wait is renewed every 100 ms until it resolves.
pub async fn wait_ready<K>(store: &Store<K>) -> Result<(), reflector::store::WriterDropped>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    loop {
        let wait = store.wait_until_ready();
        if let Ok(r) = tokio::time::timeout(std::time::Duration::from_millis(100), wait).await {
            return r;
        }
    }
}

/// Reads `namespace/name` from `store`, or from the API server when the store does not hold it
/// (not created yet, or created by this controller so recently that its watch event is still in
/// flight). `Ok(None)`: the object does not exist.
pub async fn get<K>(
    store: &Store<Packed<K>>,
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<K>>, kube::Error>
where
    K: Cacheable + Resource<Scope = NamespaceResourceScope>,
{
    if let Some(o) = cached(store, namespace, name) {
        return Ok(Some(o));
    }
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map(|o| o.map(Arc::new))
}

/// Like [`get`], but a missing object is an error (kube's 404).
pub async fn require<K>(
    store: &Store<Packed<K>>,
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Arc<K>, kube::Error>
where
    K: Cacheable + Resource<Scope = NamespaceResourceScope>,
{
    if let Some(o) = cached(store, namespace, name) {
        return Ok(o);
    }
    Api::<K>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map(Arc::new)
}

/// `namespace/name` read back from `store`; `None` when the store does not hold it, or holds
/// text that does not read back as `K` (then the API server is asked, and the error logged).
fn cached<K>(store: &Store<Packed<K>>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Cacheable,
{
    let packed = store.get(&ObjectRef::new(name).within(namespace))?;
    packed.read(&K::kind(&())).map(Arc::new)
}

/// Drives a feed nobody else polls, so its store stays current (until the task is aborted).
pub fn drive<K: Send + 'static>(feed: Feed<K>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(feed.for_each(|_| std::future::ready(())))
}

/// An API handle limited to `namespace` when the controller watches a single one.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, owner: Option<&str>) -> kube::api::ObjectMeta {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
            FieldsV1, ManagedFieldsEntry, OwnerReference,
        };
        let entry = |manager: &str, subresource: Option<&str>| ManagedFieldsEntry {
            manager: Some(manager.into()),
            subresource: subresource.map(String::from),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {}}))),
            ..Default::default()
        };
        kube::api::ObjectMeta {
            name: Some(name.into()),
            owner_references: owner.map(|kind| {
                vec![OwnerReference {
                    api_version: "flagger.app/v1beta1".into(),
                    kind: kind.into(),
                    name: "podinfo".into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            managed_fields: Some(vec![
                entry(crate::write::FIELD_MANAGER, None),
                entry("kubectl-edit", None),
                entry("kube-controller-manager", Some("status")),
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn managed_fields_are_kept_on_generated_objects_only() {
        // A target: nothing reads who writes it.
        let mut target = meta("podinfo", None);
        trim_fields(&mut target, Fields::Generated);
        assert_eq!(target.managed_fields, None);
        // A primary (by name, or owned by a Canary): the fight detector's form.
        for mut m in [meta("podinfo-primary", None), meta("other", Some("Canary"))] {
            trim_fields(&mut m, Fields::Generated);
            let kept = m.managed_fields.unwrap_or_default();
            let managers: Vec<_> = kept.iter().filter_map(|e| e.manager.clone()).collect();
            assert_eq!(managers, [crate::write::FIELD_MANAGER, "kubectl-edit"]);
            assert!(kept[0].fields_v1.is_none(), "our own entry is a marker");
            assert!(
                kept[1].fields_v1.is_some(),
                "another writer's fields are kept"
            );
        }
        // Owned by something else than a Canary, not named as a primary: dropped.
        let mut other = meta("other", Some("ReplicaSet"));
        trim_fields(&mut other, Fields::Generated);
        assert_eq!(other.managed_fields, None);
        // Services keep theirs whoever owns them (an adopted apex Service has no owner).
        let mut apex = meta("podinfo", None);
        trim_fields(&mut apex, Fields::Keep);
        assert_eq!(apex.managed_fields.map(|m| m.len()), Some(2));
    }

    #[test]
    fn a_cached_canary_keeps_the_annotations_decisions_read() {
        let mut c: flagger_api::Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "annotations": {
                flagger_api::labels::LAST_APPLIED: "{\"spec\":{}}",
                "kuma.io/mesh": "default"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80}, "analysis": {"interval": "1m"}}
        }))
        .unwrap();
        trim_canary(&mut c);
        assert!(c.metadata.managed_fields.is_none());
        let kept: Vec<_> = c.metadata.annotations.unwrap().into_keys().collect();
        assert_eq!(kept, ["kuma.io/mesh"]);
    }

    #[test]
    fn secrets_nothing_reads_are_cached_without_their_data() {
        let secret = |type_: &str| Secret {
            type_: Some(type_.into()),
            data: Some([("k".to_string(), k8s_openapi::ByteString(b"v".to_vec()))].into()),
            ..Default::default()
        };
        let mut helm = secret("helm.sh/release.v1");
        trim_secret(&mut helm);
        assert!(helm.data.is_none());
        // Tracked types, and the credentials of providers, keep their data.
        for t in ["Opaque", "kubernetes.io/basic-auth", "kubernetes.io/tls"] {
            let mut s = secret(t);
            trim_secret(&mut s);
            assert!(s.data.is_some(), "{t}");
        }
    }
}
