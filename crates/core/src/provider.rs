//! The identity of a traffic provider (router): [`Provider`], one variant per `spec.provider`
//! spelling of Flagger's CRD.
//!
//! Only the identity lives here, below the model that names it and the routing modules that
//! describe it: what each provider is (spelling, features, observer, routing objects, the spec
//! fields it needs) is told by its module in [`crate::routing`] with a
//! [`Descriptor`](crate::routing::descriptor::Descriptor), and [`crate::routing::registry`]
//! maps each variant to it (`Provider::descriptor`, `Provider::parse`, `Provider::as_str`).

/// Traffic provider (router) of a canary: its identity. What it is (spelling, features,
/// observer, routing objects, the fields it needs) is told by its module's descriptor
/// (`Provider::descriptor`, in [`crate::routing::registry`], whose list has one line per
/// variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    Kubernetes,
    Istio,
    /// SMI v1alpha1 TrafficSplit targeting Linkerd.
    Linkerd,
    /// SMI v1alpha2 TrafficSplit targeting OSM.
    Osm,
    SmiV1Alpha1,
    SmiV1Alpha2,
    SmiV1Alpha3,
    Nginx,
    GatewayApiV1,
    GatewayApiV1Beta1,
    Contour,
    Gloo,
    Traefik,
    Skipper,
    Apisix,
    Kuma,
    AppMesh,
    AppMeshV1Beta2,
    Knative,
}
