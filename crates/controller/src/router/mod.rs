//! The router seam: how a provider reads and writes traffic weights (reference §4.1).
//!
//! A [`Router`] has Flagger's four operations: [`Router::reconcile`] creates or corrects the
//! routing objects (every reconcile), [`Router::get_routes`] reads the weights in effect (the
//! source of truth the decision core asks for), [`Router::set_routes`] writes the weights the
//! core decided, with the session-affinity cookies decided for them, and [`Router::finalize`]
//! gives back what the router took over when the Canary goes (`revertOnDeletion`). Each returns
//! a typed [`RouterError`] whose [`Category`] says whether to retry (transient API error), fix
//! the Canary (invalid spec) or look for another writer (conflict). The steps hold a router as
//! an [`AnyRouter`], whose `reconcile` returns the routing objects put back after another field
//! manager changed them ([`Contested`]): the caller turns them into events and the
//! `FieldConflict` condition.
//!
//! One module per provider writes the objects the pure builders of
//! [`flagger_core::routing`] return (where the provider's builtin-check queries live too), by
//! server-side apply under the controller's field manager with a controller owner reference to
//! the Canary:
//!
//! * [`kubernetes`]: no routing object (blue/green through the apex Service, which the bootstrap
//!   step manages);
//! * [`istio`]: DestinationRules `<apex>-primary` / `<apex>-canary` and the VirtualService
//!   `<apex>`;
//! * [`smi`] (`linkerd`, `osm`, `smi:v1alpha1|2|3`): the TrafficSplit `<apex>`;
//! * [`nginx`]: the Ingress `<ingressRef.name>-canary`;
//! * [`gatewayapi`] (`gatewayapi:v1`, `gatewayapi:v1beta1`): the HTTPRoute `<apex>`;
//! * [`contour`]: the HTTPProxy `<apex>` (`-ingress-class` reaches it through [`Target`]);
//! * [`gloo`]: the Upstreams of the primary and canary Services and the RouteTable `<apex>`;
//! * [`traefik`]: the TraefikService `<apex>` (`traefik.io`, or `traefik.containo.us`);
//! * [`skipper`]: the Ingress `<ingressRef.name>-canary` (deleted by `finalize`);
//! * [`apisix`]: the ApisixRoute `<routeRef>-<apex>-canary`;
//! * [`kuma`]: the cluster-scoped TrafficRoute `<apex>`;
//! * [`appmesh`] (`appmesh`, `appmesh:v1beta2`): the virtual nodes, routers and services;
//! * [`knative`]: the Knative Service's traffic block and primary-revision annotation.
//!
//! The seam itself (the traits, [`Target`], [`RouterError`] and the helpers the providers
//! share) is [`seam`], which the provider modules use; this file is only the registry, so the
//! providers and the registry never reach into each other. [`registered`] is the registry, one
//! line per provider (beside its `pub mod` line);
//! [`for_provider`] reads it, and would refuse a provider with no router (the dereference step
//! turns that into `Valid=False`): every provider of the CRD's enum has one.
//!
//! `reconcile` keeps the weights in effect: it reads the routes of an existing object first and
//! re-applies the builder's object with them (Flagger resets to 100/0 on drift; keeping them
//! means a spec edit mid-analysis does not send all traffic back to the primary until the next
//! step). An object already as desired is not written.
//!
//! ## Why a trait object
//!
//! A provider implements [`Router`] with plain `async fn`s (their futures are `Send` by the
//! trait's signature). Every `Router` is an [`AnyRouter`] by a blanket implementation that
//! boxes the futures ([`futures::future::BoxFuture`]) and collects what `reconcile` put back,
//! once for all providers; `AnyRouter` is object-safe, so routers are unit values behind
//! `&'static dyn AnyRouter`. The registry is a plain `match` from [`Provider`] to a router, the
//! steps hold the router as a copyable reference without generics spreading through them, and
//! a new provider adds a module and a registry line, not a variant and a match arm in every
//! operation. A provider with versions (SMI, Gateway API, App Mesh) reads its version from the
//! Canary's provider. One allocation per call is nothing next to the API request it makes.
//!
//! ## Adding a router
//!
//! A new router is its pure builder, observer and descriptor in
//! `flagger_core::routing::<provider>` (one line in the `providers!` list of
//! `flagger_core::routing::registry`, and its `Provider` variant in `flagger_core::provider`),
//! a module here (one line in [`registered`]), and its data
//! plane in localkube; `docs/providers.md` lists the files. An ingress router whose weights
//! live in one object (Contour, Gloo, Traefik, APISIX) describes that object as a
//! [`seam::Weighted`] (where it is, the core's builder and reader) and forwards its three
//! calls to it. Three shapes already fit the seam: a cluster-scoped object with no owner
//! reference ([`kuma`]: `ensure` with adoption off), several objects with the weights in one
//! ([`appmesh`], [`gloo`]: the version from the provider, as for SMI), and no routing object
//! of its own ([`knative`]: the Knative Service's traffic block; the target kind and the
//! missing primary are the bootstrap's concern).
//!
//! A separate service-mesh cluster (`-kubeconfig-service-mesh`) is not supported yet:
//! [`Target`] has one client, and a different value is reported at startup. Supporting it
//! would give [`Target`] a second client, with owner references set only when both clients
//! reach the same API server, as in Flagger.

pub mod apisix;
pub mod appmesh;
pub mod contour;
pub mod gatewayapi;
pub mod gloo;
pub mod istio;
pub mod knative;
pub mod kubernetes;
pub mod kuma;
pub mod nginx;
pub mod seam;
pub mod skipper;
pub mod smi;
pub mod traefik;

use flagger_core::model::Provider;

pub use seam::{
    AnyRouter, Category, Contested, Router, RouterError, Target, cookies_of, random_letters,
    set_cookies,
};

/// The router of a provider: one line per provider (see `docs/providers.md`).
fn registered(provider: Provider) -> Option<&'static dyn AnyRouter> {
    Some(match provider {
        Provider::Kubernetes => &kubernetes::Kubernetes,
        Provider::Istio => &istio::Istio,
        Provider::Linkerd
        | Provider::Osm
        | Provider::SmiV1Alpha1
        | Provider::SmiV1Alpha2
        | Provider::SmiV1Alpha3 => &smi::Smi,
        Provider::Nginx => &nginx::Nginx,
        Provider::GatewayApiV1 | Provider::GatewayApiV1Beta1 => &gatewayapi::GatewayApi,
        Provider::Contour => &contour::Contour,
        Provider::Gloo => &gloo::Gloo,
        Provider::Traefik => &traefik::Traefik,
        Provider::Skipper => &skipper::Skipper,
        Provider::Apisix => &apisix::Apisix,
        Provider::Kuma => &kuma::Kuma,
        Provider::AppMesh | Provider::AppMeshV1Beta2 => &appmesh::AppMesh,
        Provider::Knative => &knative::Knative,
    })
}

/// The router of a provider, or why there is none yet.
pub fn for_provider(provider: Provider) -> Result<&'static dyn AnyRouter, RouterError> {
    registered(provider).ok_or_else(|| {
        RouterError::invalid_spec(format!(
            "the {provider} provider is not supported by flagger-rs yet; supported: {}",
            supported().join(", ")
        ))
    })
}

/// The providers with a router, for messages.
pub fn supported() -> Vec<&'static str> {
    flagger_api::canary::PROVIDERS
        .iter()
        .copied()
        .filter(|p| Provider::parse(p).and_then(registered).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_serves_every_provider_of_the_crd() {
        for p in [
            "kubernetes",
            "istio",
            "linkerd",
            "osm",
            "smi:v1alpha1",
            "smi:v1alpha2",
            "smi:v1alpha3",
            "nginx",
            "gatewayapi:v1",
            "gatewayapi:v1beta1",
            "contour",
            "gloo",
            "traefik",
            "skipper",
            "apisix",
            "kuma",
            "appmesh",
            "appmesh:v1beta2",
            "knative",
        ] {
            let provider = Provider::parse(p).expect(p);
            assert!(for_provider(provider).is_ok(), "{p}");
        }
        let sticky = |p: &str| for_provider(Provider::parse(p).expect(p)).map(|r| r.sticky());
        for p in ["istio", "gatewayapi:v1", "gatewayapi:v1beta1"] {
            assert_eq!(sticky(p).ok(), Some(true), "{p}");
        }
        for p in [
            "kubernetes",
            "linkerd",
            "osm",
            "smi:v1alpha3",
            "nginx",
            "contour",
            "gloo",
            "traefik",
            "skipper",
            "apisix",
            "kuma",
            "knative",
        ] {
            assert_eq!(sticky(p).ok(), Some(false), "{p}");
        }
        // Every provider of the CRD's enum has a router now.
        assert_eq!(supported(), flagger_api::canary::PROVIDERS.to_vec());
    }
}
