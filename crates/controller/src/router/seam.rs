//! The seam every router implements, and what the routers share: the [`Router`] trait and its
//! object-safe [`AnyRouter`] form, the [`Target`] a call works with, [`RouterError`] and its
//! [`Category`], the session cookies in the status, and the helpers that read, compare and
//! server-side apply routing objects (`Weighted`, `ensure`). The provider modules beside it
//! use it; the registry in [`crate::router`] picks one of them per provider. See
//! [`crate::router`] for the design.

use flagger_api::{Canary, CanaryStatus};
use flagger_core::effects::Routes;
use flagger_core::model::ValidatedCanary;
use flagger_core::routing::{RoutingError, StickyCookies};
use futures::future::BoxFuture;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};

pub(crate) use crate::watched::CachedApi;
use serde_json::Value;

use crate::owner::{owned_by, owner_ref};
use crate::write::FIELD_MANAGER;

/// A traffic router: what a provider module implements.
pub trait Router: Sync {
    /// Whether this router writes session-affinity routes (`analysis.sessionAffinity`).
    fn sticky(&self) -> bool {
        false
    }

    /// Creates or corrects the routing objects, keeping the weights in effect and the
    /// session-affinity `cookies` of the current run. Objects put back after another field
    /// manager changed them go into `contested` (`ensure` does it).
    fn reconcile(
        &self,
        t: &Target<'_>,
        cookies: &StickyCookies,
        contested: &mut Vec<Contested>,
    ) -> impl Future<Output = Result<(), RouterError>> + Send;

    /// Reads the weights in effect.
    fn get_routes(
        &self,
        t: &Target<'_>,
    ) -> impl Future<Output = Result<Routes, RouterError>> + Send;

    /// Writes weights, with the session-affinity cookies decided for them.
    fn set_routes(
        &self,
        t: &Target<'_>,
        routes: Routes,
        cookies: &StickyCookies,
    ) -> impl Future<Output = Result<(), RouterError>> + Send;

    /// Gives back what the router took over, on deletion with `revertOnDeletion`. `Ok(Some)`
    /// is a warning for an event (nothing could be given back). By default there is nothing to
    /// give back: the routing objects are the Canary's and go with it (garbage collection).
    fn finalize(
        &self,
        _t: &Target<'_>,
    ) -> impl Future<Output = Result<Option<String>, RouterError>> + Send {
        async { Ok(None) }
    }
}

/// A router as the steps hold it (`&'static dyn AnyRouter`, from
/// [`crate::router::for_provider`]): every [`Router`] is one, with its futures boxed and the
/// objects its `reconcile` put back returned (also with a failure, in
/// [`RouterError::contested`]).
pub trait AnyRouter: Sync {
    /// See [`Router::sticky`].
    fn sticky(&self) -> bool;

    /// See [`Router::reconcile`]: returns the objects put back after another field manager
    /// changed them.
    fn reconcile<'a>(
        &'a self,
        t: &'a Target<'a>,
        cookies: &'a StickyCookies,
    ) -> BoxFuture<'a, Result<Vec<Contested>, RouterError>>;

    /// See [`Router::get_routes`].
    fn get_routes<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<Routes, RouterError>>;

    /// See [`Router::set_routes`].
    fn set_routes<'a>(
        &'a self,
        t: &'a Target<'a>,
        routes: Routes,
        cookies: &'a StickyCookies,
    ) -> BoxFuture<'a, Result<(), RouterError>>;

    /// See [`Router::finalize`].
    fn finalize<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<Option<String>, RouterError>>;
}

impl<R: Router> AnyRouter for R {
    fn sticky(&self) -> bool {
        Router::sticky(self)
    }

    fn reconcile<'a>(
        &'a self,
        t: &'a Target<'a>,
        cookies: &'a StickyCookies,
    ) -> BoxFuture<'a, Result<Vec<Contested>, RouterError>> {
        Box::pin(async move {
            let mut contested = Vec::new();
            match Router::reconcile(self, t, cookies, &mut contested).await {
                Ok(()) => Ok(contested),
                Err(mut e) => {
                    e.contested = contested;
                    Err(e)
                }
            }
        })
    }

    fn get_routes<'a>(&'a self, t: &'a Target<'a>) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(Router::get_routes(self, t))
    }

    fn set_routes<'a>(
        &'a self,
        t: &'a Target<'a>,
        routes: Routes,
        cookies: &'a StickyCookies,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(Router::set_routes(self, t, routes, cookies))
    }

    fn finalize<'a>(
        &'a self,
        t: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<Option<String>, RouterError>> {
        Box::pin(Router::finalize(self, t))
    }
}

/// What a router call works with: the API client, the Canary as stored (owner references,
/// `ingressRef`), its validated form, and the router settings of the controller.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub client: &'a Client,
    /// The watch caches routing objects are read from.
    pub objects: &'a crate::watched::Objects,
    /// The watch caches of the typed kinds (the target workload).
    pub caches: &'a crate::cache::Caches,
    pub canary: &'a Canary,
    pub c: &'a ValidatedCanary,
    /// `-ingress-annotations-prefix` (nginx).
    pub ingress_prefix: &'a str,
    /// `-ingress-class` (contour), empty when not set.
    pub ingress_class: &'a str,
}

/// A routing object whose fields another field manager changed, found when putting it back.
#[derive(Clone, Debug)]
pub struct Contested {
    pub kind: String,
    pub name: String,
    pub contender: flagger_core::conflict::Contender,
}

/// What kind of failure a router call met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// The API server failed or was unreachable, or an object is not ready yet: retry.
    Transient,
    /// The Canary asks for something the provider cannot do, or names what does not exist.
    InvalidSpec,
    /// The API server refused a write because the object changed underneath.
    Conflict,
}

impl Category {
    /// A short, stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transient => "transient",
            Category::InvalidSpec => "invalid_spec",
            Category::Conflict => "conflict",
        }
    }
}

/// Why a router call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct RouterError {
    pub category: Category,
    /// A sentence for events and logs.
    pub message: String,
    /// Routing objects `reconcile` put back before it failed: reported as a success's are.
    pub contested: Vec<Contested>,
}

impl RouterError {
    fn new(category: Category, message: String) -> Self {
        Self {
            category,
            message,
            contested: Vec::new(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(Category::Transient, message.into())
    }

    pub fn invalid_spec(message: impl Into<String>) -> Self {
        Self::new(Category::InvalidSpec, message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Category::Conflict, message.into())
    }

    /// An API request that failed: `what` says which (`VirtualService podinfo.test apply
    /// failed`), the API server's own message why.
    pub fn api(what: impl std::fmt::Display, e: &kube::Error) -> Self {
        let category = match e {
            kube::Error::Api(s) if s.code == 409 => Category::Conflict,
            // Refused as invalid, or a kind the cluster does not serve (the provider's CRDs
            // are not installed).
            kube::Error::Api(s) if matches!(s.code, 400 | 404 | 422) => Category::InvalidSpec,
            _ => Category::Transient,
        };
        Self::new(category, format!("{what}: {}", crate::error::api_text(e)))
    }

    /// The category of this failure as a reconcile step reports it: the router's own
    /// categories, provider failures when transient.
    pub fn step_category(&self) -> crate::error::Category {
        match self.category {
            Category::Conflict => crate::error::Category::Conflict,
            Category::InvalidSpec => crate::error::Category::InvalidSpec,
            Category::Transient => crate::error::Category::Provider,
        }
    }

    /// A routing object that cannot be built or read back.
    pub fn routing(e: RoutingError) -> Self {
        let category = match e {
            RoutingError::Unsupported(_) | RoutingError::Missing(_) => Category::InvalidSpec,
            RoutingError::NoRoutes(_) | RoutingError::NotReady(_) | RoutingError::Decode(_) => {
                Category::Transient
            }
        };
        Self::new(category, e.to_string())
    }
}

/// The session-affinity cookies kept in a Canary status.
pub fn cookies_of(status: Option<&CanaryStatus>) -> StickyCookies {
    let nonempty = |c: &Option<String>| c.clone().filter(|c| !c.is_empty());
    StickyCookies {
        canary: status.and_then(|s| nonempty(&s.session_affinity_cookie)),
        primary: status.and_then(|s| nonempty(&s.primary_session_affinity_cookie)),
        previous: status.and_then(|s| nonempty(&s.previous_session_affinity_cookie)),
    }
}

/// Writes cookies into a status (an absent cookie clears its field).
pub fn set_cookies(status: &mut CanaryStatus, cookies: &StickyCookies) {
    status.session_affinity_cookie = cookies.canary.clone();
    status.primary_session_affinity_cookie = cookies.primary.clone();
    status.previous_session_affinity_cookie = cookies.previous.clone();
}

/// A fresh cookie value: 10 random ASCII letters, as Flagger's.
pub fn random_letters() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uuid::Uuid::new_v4().as_bytes()[..10]
        .iter()
        .map(|b| char::from(LETTERS[usize::from(*b) % LETTERS.len()]))
        .collect()
}

// === helpers shared by the providers ===

/// A namespaced API for a custom kind, read through the watch caches.
pub(crate) fn dynamic_api(
    t: &Target<'_>,
    namespace: &str,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> CachedApi {
    t.objects.namespaced(
        t.client,
        namespace,
        CachedApi::resource(api_version, kind, plural),
    )
}

/// Reads an object as JSON, `None` when it does not exist.
pub(crate) async fn get_json(api: &CachedApi, name: &str) -> Result<Option<Value>, RouterError> {
    let obj = api
        .get_cached(name)
        .await
        .map_err(|e| RouterError::api(format!("{} {name} query error", kind_of(api)), &e))?;
    obj.map(|o| to_json(&*o, name)).transpose()
}

/// Reads the routing object `<apex>` that holds the weights; its absence is transient (the
/// next `reconcile` creates it).
pub(crate) async fn get_weights_object(
    api: &CachedApi,
    t: &Target<'_>,
    kind: &str,
) -> Result<Value, RouterError> {
    get_json(api, &t.c.apex).await?.ok_or_else(|| {
        RouterError::transient(format!("{kind} {}.{} not found", t.c.apex, t.c.namespace))
    })
}

/// An object as JSON.
pub(crate) fn to_json(object: &impl serde::Serialize, name: &str) -> Result<Value, RouterError> {
    serde_json::to_value(object).map_err(|e| RouterError::transient(format!("{name}: {e}")))
}

fn kind_of(api: &Api<DynamicObject>) -> String {
    api.resource_url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Other field managers owning fields of `existing` that differ from `desired`, that wrote at
/// or after the controller's last write (a first takeover is not a fight).
fn contenders(existing: &Value, desired: &Value) -> Vec<flagger_core::conflict::Contender> {
    let managed: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry> =
        serde_json::from_value(existing["metadata"]["managedFields"].clone()).unwrap_or_default();
    if !managed
        .iter()
        .any(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
    {
        return Vec::new();
    }
    let diff = flagger_core::conflict::differences(
        existing,
        &serde_json::json!({"spec": desired["spec"]}),
    );
    flagger_core::conflict::contenders_since_ours(&managed, FIELD_MANAGER, &diff)
}

/// Whether an object read as JSON is controlled by this Canary.
pub(crate) fn is_owned(existing: &Value, canary: &Canary) -> bool {
    let refs: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>> =
        serde_json::from_value(existing["metadata"]["ownerReferences"].clone()).ok();
    owned_by(refs.as_ref(), canary)
}

/// Whether `want` (labels or annotations) is contained in `have`.
fn subset(want: &Value, have: &Value) -> bool {
    match want.as_object() {
        None => true,
        Some(w) => w.iter().all(|(k, v)| have.get(k) == Some(v)),
    }
}

/// Whether the existing object already has the desired spec, labels and annotations (and
/// the owner reference when the desired object carries one).
pub(crate) fn up_to_date(desired: &Value, existing: &Value) -> bool {
    desired["spec"] == existing["spec"]
        && subset(
            &desired["metadata"]["labels"],
            &existing["metadata"]["labels"],
        )
        && subset(
            &desired["metadata"]["annotations"],
            &existing["metadata"]["annotations"],
        )
        && (desired["metadata"]["ownerReferences"].is_null()
            || desired["metadata"]["ownerReferences"] == existing["metadata"]["ownerReferences"])
}

/// Writes the one routing object `name` that `build` makes for a pair of weights: `routes`, or
/// when `None` the weights `read` finds on the object as it is (100/0 when it is missing or
/// unreadable), so that a reconcile corrects the object and keeps its weights.
pub(crate) async fn write_weighted(
    api: &CachedApi,
    t: &Target<'_>,
    name: &str,
    routes: Option<Routes>,
    read: impl Fn(&Value) -> Result<Routes, RoutingError>,
    build: impl Fn(Routes) -> Result<Value, RoutingError>,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    let existing = get_json(api, name).await?;
    let routes = routes.unwrap_or_else(|| {
        existing
            .as_ref()
            .and_then(|o| read(o).ok())
            .unwrap_or(Routes::PRIMARY)
    });
    let desired = build(routes).map_err(RouterError::routing)?;
    ensure(api, t, desired, existing.as_ref(), contested).await
}

/// Flagger's ingress routers refuse to write 0/0.
pub(crate) fn no_valid_weights(
    t: &Target<'_>,
    kind: &str,
    routes: Routes,
) -> Result<(), RouterError> {
    if routes.primary == 0 && routes.canary == 0 {
        return Err(RouterError::invalid_spec(format!(
            "{kind} {}.{} update failed: no valid weights",
            t.c.apex, t.c.namespace
        )));
    }
    Ok(())
}

/// The one weighted object of an ingress router (Contour's HTTPProxy, Gloo's RouteTable,
/// Traefik's TraefikService, APISIX's canary route): where it is, how the core builds it with
/// routes and reads its weights back; the router's calls are the same on each.
pub(crate) struct Weighted<'a> {
    pub api: CachedApi,
    /// Its kind, for messages.
    pub kind: &'static str,
    pub name: String,
    /// The core's reader of its weights.
    pub read: fn(&ValidatedCanary, &Value) -> Result<Routes, RoutingError>,
    /// The core's builder of the whole object with these routes.
    pub build: Box<dyn Fn(Routes) -> Result<Value, RoutingError> + Send + Sync + 'a>,
}

impl<'a> Weighted<'a> {
    /// The object `<apex>` of `kind` (`plural`) in `api_version`, in the Canary's namespace.
    pub fn at_apex(
        t: &Target<'_>,
        (api_version, kind, plural): (&str, &'static str, &str),
        read: fn(&ValidatedCanary, &Value) -> Result<Routes, RoutingError>,
        build: impl Fn(Routes) -> Result<Value, RoutingError> + Send + Sync + 'a,
    ) -> Self {
        Weighted {
            api: dynamic_api(t, &t.c.namespace, api_version, kind, plural),
            kind,
            name: t.c.apex.clone(),
            read,
            build: Box::new(build),
        }
    }

    /// Creates or corrects the object, keeping its weights.
    pub async fn reconcile(
        &self,
        t: &Target<'_>,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        self.write(t, None, contested).await
    }

    /// Reads the weights back (a missing object is transient: reconcile creates it).
    pub async fn get_routes(&self, t: &Target<'_>) -> Result<Routes, RouterError> {
        let object = get_json(&self.api, &self.name).await?.ok_or_else(|| {
            RouterError::transient(format!(
                "{} {}.{} not found",
                self.kind, self.name, t.c.namespace
            ))
        })?;
        (self.read)(t.c, &object).map_err(RouterError::routing)
    }

    /// Rewrites the object with these weights.
    pub async fn set_routes(&self, t: &Target<'_>, routes: Routes) -> Result<(), RouterError> {
        no_valid_weights(t, self.kind, routes)?;
        self.write(t, Some(routes), &mut Vec::new()).await
    }

    async fn write(
        &self,
        t: &Target<'_>,
        routes: Option<Routes>,
        contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        write_weighted(
            &self.api,
            t,
            &self.name,
            routes,
            |o| (self.read)(t.c, o),
            &self.build,
            contested,
        )
        .await
    }
}

/// Server-side applies `desired` (a whole object as JSON) unless `existing` already matches,
/// with the Canary as controller owner when the object is new or already the Canary's. Fields
/// another field manager changed are put back and added to `contested`.
pub(crate) async fn ensure(
    api: &CachedApi,
    t: &Target<'_>,
    desired: Value,
    existing: Option<&Value>,
    contested: &mut Vec<Contested>,
) -> Result<(), RouterError> {
    ensure_with(api, t, desired, existing, contested, true).await
}

/// [`ensure`], with `adopt` false for an object the Canary cannot own (a cluster-scoped one):
/// no owner reference is set.
pub(crate) async fn ensure_with(
    api: &CachedApi,
    t: &Target<'_>,
    mut desired: Value,
    existing: Option<&Value>,
    contested: &mut Vec<Contested>,
    adopt: bool,
) -> Result<(), RouterError> {
    let name = desired["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Drop empty metadata maps and any status: neither is ours to apply.
    if let Some(meta) = desired["metadata"].as_object_mut() {
        meta.retain(|_, v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()));
    }
    if let Some(obj) = desired.as_object_mut() {
        obj.remove("status");
    }
    let adopt = adopt && existing.is_none_or(|e| is_owned(e, t.canary));
    if adopt && let Some(owner) = owner_ref(t.canary) {
        desired["metadata"]["ownerReferences"] = to_json(&vec![owner], &name)?;
    }
    if existing.is_some_and(|e| up_to_date(&desired, e)) {
        return Ok(());
    }
    let fights: Vec<Contested> = existing
        .map(|existing| contenders(existing, &desired))
        .unwrap_or_default()
        .into_iter()
        .map(|contender| Contested {
            kind: desired["kind"].as_str().unwrap_or_default().to_string(),
            name: name.clone(),
            contender,
        })
        .collect();
    let written = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(|e| {
            RouterError::api(
                format!("{} {name}.{} apply failed", kind_of(api), t.c.namespace),
                &e,
            )
        })?;
    api.wrote(written);
    contested.extend(fights);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_failures_are_categorised_and_read_as_the_api_servers_message() {
        let status = |code: u16, reason: &str, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                reason: reason.into(),
                message: message.into(),
                ..Default::default()
            }))
        };
        let e = RouterError::api(
            "VirtualService podinfo.test apply failed",
            &status(409, "Conflict", "the object has been modified"),
        );
        assert_eq!(e.category, Category::Conflict);
        assert_eq!(
            e.to_string(),
            "VirtualService podinfo.test apply failed: the object has been modified"
        );
        let e = RouterError::api("x", &status(422, "Invalid", "spec.http: Invalid value"));
        assert_eq!(e.category, Category::InvalidSpec);
        let e = RouterError::api("x", &status(503, "ServiceUnavailable", ""));
        assert_eq!(e.category, Category::Transient);
        assert_eq!(e.to_string(), "x: 503 ServiceUnavailable");
        assert_eq!(
            RouterError::routing(RoutingError::NotReady("parent not ready".into())).category,
            Category::Transient
        );
        assert_eq!(
            RouterError::routing(RoutingError::Missing("no gatewayRefs".into())).category,
            Category::InvalidSpec
        );
    }

    /// A router whose reconcile puts one object back, then fails on the next.
    struct FailsAfterAFight;

    impl Router for FailsAfterAFight {
        async fn reconcile(
            &self,
            _t: &Target<'_>,
            _cookies: &StickyCookies,
            contested: &mut Vec<Contested>,
        ) -> Result<(), RouterError> {
            contested.push(Contested {
                kind: "DestinationRule".into(),
                name: "podinfo-primary".into(),
                contender: flagger_core::conflict::Contender {
                    manager: "kubectl-edit".into(),
                    operation: "Update".into(),
                    fields: vec!["spec.host".into()],
                },
            });
            Err(RouterError::transient(
                "VirtualService podinfo.test apply failed: etcdserver: request timed out",
            ))
        }

        async fn get_routes(&self, _t: &Target<'_>) -> Result<Routes, RouterError> {
            Ok(Routes::PRIMARY)
        }

        async fn set_routes(
            &self,
            _t: &Target<'_>,
            _routes: Routes,
            _cookies: &StickyCookies,
        ) -> Result<(), RouterError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_reconcile_still_reports_the_fights_it_answered() {
        // A client for a server that is never called.
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("uri"));
        let client = Client::try_from(config).expect("client");
        let canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m", "threshold": 1, "maxWeight": 50, "stepWeight": 10}
            }
        }))
        .expect("canary");
        let c = flagger_core::validate::validate(&canary, &Default::default())
            .expect("valid")
            .canary;
        let objects = crate::watched::Objects::new(client.clone(), None);
        let (caches, _feeds) = crate::cache::build(&client, None);
        let t = Target {
            client: &client,
            objects: &objects,
            caches: &caches,
            canary: &canary,
            c: &c,
            ingress_prefix: "",
            ingress_class: "",
        };
        let router: &dyn AnyRouter = &FailsAfterAFight;
        let failed = router
            .reconcile(&t, &StickyCookies::default())
            .await
            .expect_err("failed");
        assert_eq!(failed.category, Category::Transient);
        assert_eq!(failed.contested.len(), 1);
        assert_eq!(failed.contested[0].name, "podinfo-primary");
        assert_eq!(
            router.get_routes(&t).await.expect("routes"),
            Routes::PRIMARY
        );
        // Nothing to give back by default.
        assert_eq!(router.finalize(&t).await.expect("finalized"), None);
    }

    #[test]
    fn cookies_are_ten_letters_and_round_trip_through_the_status() {
        let v = random_letters();
        assert_eq!(v.len(), 10);
        assert!(v.chars().all(|c| c.is_ascii_alphabetic()), "{v}");
        let cookies = StickyCookies {
            canary: Some(format!("flagger-cookie={v}")),
            primary: None,
            previous: Some("flagger-cookie=old".into()),
        };
        let mut status = CanaryStatus::default();
        set_cookies(&mut status, &cookies);
        assert_eq!(cookies_of(Some(&status)), cookies);
    }

    #[test]
    fn up_to_date_ignores_foreign_metadata_but_not_the_spec() {
        let desired = serde_json::json!({
            "metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"w": 1},
        });
        let existing = serde_json::json!({
            "metadata": {"name": "a", "labels": {"x": "1", "other": "2"}, "annotations": {"k": "v"}},
            "spec": {"w": 1},
        });
        assert!(up_to_date(&desired, &existing));
        let moved = serde_json::json!({"metadata": existing["metadata"], "spec": {"w": 2}});
        assert!(!up_to_date(&desired, &moved));
    }
}
