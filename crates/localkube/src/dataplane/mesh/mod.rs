//! Mesh routing: a [`Router`] that reads Istio VirtualServices, Gateway API HTTPRoutes and SMI
//! TrafficSplits from the store and routes as the mesh would.
//!
//! Which mesh is "installed" is decided per Service, by the objects that exist: a request to a
//! Service is routed by the oldest VirtualService (any served version of
//! `networking.istio.io`) whose `hosts` name the Service and whose `gateways` are empty or list
//! `mesh`; failing that, by the HTTPRoutes (`gateway.networking.k8s.io`) with a `parentRef` to
//! the Service (GAMMA); failing that, by the oldest TrafficSplit (`split.smi-spec.io`) whose
//! `spec.service` is the Service; failing all three, by kube-proxy (the Service itself).
//!
//! A request for a host that is not a cluster name (`app.example.com`) goes through the
//! "gateway": HTTPRoutes with a Gateway parent whose `hostnames` match the host, then
//! VirtualServices bound to a gateway other than `mesh` whose `hosts` match it, then the NGINX
//! ingress: Ingresses with a rule for the host and their canary annotations
//! ([`nginx`]), then the other ingress gateways, each for the hosts its own objects name:
//! Contour's root HTTPProxies ([`contour`]), Gloo's VirtualServices ([`gloo`]), Traefik's
//! IngressRoutes ([`traefik`]), Skipper's Ingresses of class `skipper` ([`skipper`]) and
//! APISIX's ApisixRoutes ([`apisix`]). Without any of these it is forwarded outside the
//! cluster as before.
//!
//! The mesh routes once, as a client sidecar does: the chosen backend Service is not routed
//! again. Weighted choices and mirror percentages draw from a seeded generator
//! ([`MeshRouter::seeded`]) so tests are deterministic.
//!
//! Each mesh is a module implementing [`Mesh`] (its routing) and
//! [`Telemetry`](super::telemetry::Telemetry) (its series, rendered from the requests
//! [`super::metrics`] records). A new mesh is a module and a line in [`registry`], which
//! also lists the series families ([`telemetry`]).
//!
//! The objects are read as JSON from the store and parsed here into the fields honoured; this
//! crate depends on no mesh or Flagger crate.

pub mod apisix;
pub mod appmesh;
pub mod common;
pub mod contour;
pub mod envoy;
pub mod gateway;
pub mod gatewayapi;
pub mod gloo;
pub mod ingress;
pub mod istio;
pub mod knative;
pub mod kuma;
pub mod linkerd;
pub mod nginx;
pub mod osm;
pub mod skipper;
pub mod smi;
pub mod traefik;

use std::sync::Arc;

use super::router::{RequestInfo, RouteDecision, Router, ServicePort};
use super::telemetry::Telemetry;
use crate::Api;
pub use common::{Mesh, Tools, View};

/// What the meshes are configured with.
#[derive(Debug, Clone)]
struct Settings {
    /// The prefix of the NGINX ingress annotations (`nginx.ingress.kubernetes.io`).
    nginx_prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            nginx_prefix: nginx::DEFAULT_PREFIX.to_string(),
        }
    }
}

/// One line of the [`registry`]: a mesh and where it claims requests (its rank among the
/// meshes that route requests to Services and among those that route gateway hosts, lower
/// first; `None`: never), and the series family it writes on `/metrics`, if it has its own.
/// A family several meshes share (Envoy's) or one apart from its mesh's routing (Linkerd's
/// and OSM's, the SMI mesh's) is a line of its own with no mesh.
struct Entry {
    mesh: Option<Arc<dyn Mesh>>,
    service: Option<u8>,
    host: Option<u8>,
    telemetry: Option<Box<dyn Telemetry>>,
}

impl Entry {
    fn mesh(mesh: impl Mesh + 'static, service: Option<u8>, host: Option<u8>) -> Entry {
        Entry {
            mesh: Some(Arc::new(mesh)),
            service,
            host,
            telemetry: None,
        }
    }

    fn series(telemetry: impl Telemetry + 'static) -> Entry {
        Entry {
            mesh: None,
            service: None,
            host: None,
            telemetry: Some(Box::new(telemetry)),
        }
    }

    fn with_series(mut self, telemetry: impl Telemetry + 'static) -> Entry {
        self.telemetry = Some(Box::new(telemetry));
        self
    }
}

/// The meshes the data plane plays and the series they write, one module and one line each
/// (series in the order they are written on `/metrics`).
fn registry(s: &Settings) -> Vec<Entry> {
    vec![
        Entry::mesh(istio::Istio, Some(1), Some(2)).with_series(istio::Istio),
        Entry::series(linkerd::Linkerd),
        Entry::series(envoy::Envoy),
        Entry::series(osm::Osm),
        Entry::mesh(gatewayapi::GatewayApi, Some(2), Some(1)),
        Entry::mesh(smi::Smi, Some(3), None),
        Entry::mesh(kuma::Kuma, Some(4), None),
        Entry::mesh(appmesh::AppMesh, Some(5), None),
        Entry::mesh(knative::Knative, Some(6), None),
        Entry::mesh(nginx::Nginx::new(&s.nginx_prefix), None, Some(3))
            .with_series(nginx::Nginx::default()),
        Entry::mesh(contour::Contour, None, Some(4)),
        Entry::mesh(gloo::Gloo, None, Some(5)),
        Entry::mesh(traefik::Traefik, None, Some(6)).with_series(traefik::Traefik),
        Entry::mesh(skipper::Skipper, None, Some(7)).with_series(skipper::Skipper),
        Entry::mesh(apisix::Apisix, None, Some(8)).with_series(apisix::Apisix),
    ]
}

/// The meshes' series, from the [`registry`], in the order they are written on `/metrics`.
pub fn telemetry() -> Vec<Box<dyn Telemetry>> {
    registry(&Settings::default())
        .into_iter()
        .filter_map(|e| e.telemetry)
        .collect()
}

/// The meshes that have a `rank`, lowest first.
fn ordered(entries: &[Entry], rank: fn(&Entry) -> Option<u8>) -> Vec<Arc<dyn Mesh>> {
    let mut ranked: Vec<(u8, &Arc<dyn Mesh>)> = entries
        .iter()
        .filter_map(|e| Some((rank(e)?, e.mesh.as_ref()?)))
        .collect();
    ranked.sort_by_key(|(r, _)| *r);
    ranked.into_iter().map(|(_, m)| m.clone()).collect()
}

/// Routes by the mesh objects in the store (see the module docs); kube-proxy when there are
/// none.
#[derive(Debug)]
pub struct MeshRouter {
    tools: Tools,
    /// Who routes a request addressed to a Service, in order: the first that claims it.
    service: Vec<Arc<dyn Mesh>>,
    /// Who routes a request for a gateway host, in order.
    host: Vec<Arc<dyn Mesh>>,
}

impl Default for MeshRouter {
    fn default() -> Self {
        Self::seeded(uuid::Uuid::new_v4().as_u128() as u64)
    }
}

impl MeshRouter {
    /// A router whose weighted choices follow from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self::with(Tools::seeded(seed), &Settings::default())
    }

    fn with(tools: Tools, settings: &Settings) -> Self {
        let entries = registry(settings);
        Self {
            tools,
            service: ordered(&entries, |e| e.service),
            host: ordered(&entries, |e| e.host),
        }
    }

    /// The same router reading the NGINX ingress annotations under `prefix` instead of
    /// `nginx.ingress.kubernetes.io` (ingress-nginx's `--annotations-prefix`, Flagger's
    /// `-ingress-annotations-prefix`).
    pub fn with_nginx_annotations_prefix(self, prefix: &str) -> Self {
        let settings = Settings {
            nginx_prefix: prefix.trim_end_matches('/').to_string(),
        };
        Self::with(self.tools, &settings)
    }
}

impl Router for MeshRouter {
    fn route(&self, api: &Api, to: &ServicePort, request: &RequestInfo<'_>) -> RouteDecision {
        let view = View::new(request, to.port);
        self.service
            .iter()
            .find_map(|m| m.route_service(api, &self.tools, to, &view))
            .unwrap_or_else(|| RouteDecision::to(to.clone()))
    }

    fn route_host(
        &self,
        api: &Api,
        host: &str,
        port: u16,
        request: &RequestInfo<'_>,
    ) -> Option<RouteDecision> {
        if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        let view = View::new(request, port);
        self.host
            .iter()
            .find_map(|m| m.route_host(api, &self.tools, host, &view))
    }
}
