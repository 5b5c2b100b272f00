//! The routers the weighted demo runs on (`flagger demo --provider NAME`), one row each: the
//! CRDs the router writes (schemas that keep every field, as the demo's data plane needs no
//! more), the user's own routing objects a tutorial of that router has you create (an
//! Ingress, a root HTTPProxy, a Gloo VirtualService...), what the Canary adds to its spec, and
//! the URL the load test sends its requests to: the `frontend` Service for a mesh, the host
//! `app.example.com` for an ingress gateway. `{ns}` in the objects, the spec and the URL is the
//! demo namespace. `kubernetes` has no row: it is blue/green only.

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::manifests::apply;

/// A CRD: group, kind, plural and served versions (the first one stored).
pub type Crd = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

/// The weighted demo on one router.
pub struct Weighted {
    pub provider: &'static str,
    pub crds: &'static [Crd],
    /// The user's routing objects, JSON.
    pub objects: &'static [&'static str],
    /// A JSON object merged into the Canary's spec.
    pub spec: &'static str,
    /// Where the load test sends its requests.
    pub url: &'static str,
}

const fn row(
    provider: &'static str,
    crds: &'static [Crd],
    objects: &'static [&'static str],
    spec: &'static str,
    url: &'static str,
) -> Weighted {
    Weighted {
        provider,
        crds,
        objects,
        spec,
        url,
    }
}

const MESH: &str = "http://frontend.{ns}:9898/";
const GATEWAY: &str = "http://app.example.com/";
const NONE: &str = "{}";

const ISTIO: &[Crd] = &[
    (
        "networking.istio.io",
        "VirtualService",
        "virtualservices",
        &["v1beta1", "v1"],
    ),
    (
        "networking.istio.io",
        "DestinationRule",
        "destinationrules",
        &["v1beta1", "v1"],
    ),
];
const SMI: &[Crd] = &[(
    "split.smi-spec.io",
    "TrafficSplit",
    "trafficsplits",
    &["v1alpha1", "v1alpha2", "v1alpha3"],
)];
const GATEWAY_API: &[Crd] = &[(
    "gateway.networking.k8s.io",
    "HTTPRoute",
    "httproutes",
    &["v1", "v1beta1"],
)];
const CONTOUR: &[Crd] = &[("projectcontour.io", "HTTPProxy", "httpproxies", &["v1"])];
const GLOO: &[Crd] = &[
    ("gloo.solo.io", "Upstream", "upstreams", &["v1"]),
    ("gateway.solo.io", "RouteTable", "routetables", &["v1"]),
    (
        "gateway.solo.io",
        "VirtualService",
        "virtualservices",
        &["v1"],
    ),
];
const TRAEFIK: &[Crd] = &[
    ("traefik.io", "IngressRoute", "ingressroutes", &["v1alpha1"]),
    (
        "traefik.io",
        "TraefikService",
        "traefikservices",
        &["v1alpha1"],
    ),
];
const APISIX: &[Crd] = &[("apisix.apache.org", "ApisixRoute", "apisixroutes", &["v2"])];

/// GAMMA: the HTTPRoute's parent is the `frontend` Service.
const GAMMA: &str =
    r#"{"service": {"gatewayRefs": [{"name": "frontend", "kind": "Service", "group": ""}]}}"#;
const INGRESS_REF: &str = r#"{"ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "frontend"}}"#;
const NGINX_INGRESS: &str = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "frontend", "namespace": "{ns}", "annotations": {"kubernetes.io/ingress.class": "nginx"}}, "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "frontend", "port": {"number": 9898}}}}]}}]}}"#;
const SKIPPER_INGRESS: &str = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "frontend", "namespace": "{ns}", "annotations": {"kubernetes.io/ingress.class": "skipper"}}, "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "frontend", "port": {"number": 9898}}}}]}}]}}"#;
const CONTOUR_ROOT: &str = r#"{"apiVersion": "projectcontour.io/v1", "kind": "HTTPProxy", "metadata": {"name": "frontend-ingress", "namespace": "{ns}"}, "spec": {"virtualhost": {"fqdn": "app.example.com"}, "includes": [{"name": "frontend", "namespace": "{ns}", "conditions": [{"prefix": "/"}]}]}}"#;
const GLOO_VS: &str = r#"{"apiVersion": "gateway.solo.io/v1", "kind": "VirtualService", "metadata": {"name": "frontend", "namespace": "{ns}"}, "spec": {"virtualHost": {"domains": ["app.example.com"], "routes": [{"matchers": [{"prefix": "/"}], "delegateAction": {"ref": {"name": "frontend", "namespace": "{ns}"}}}]}}}"#;
const TRAEFIK_ROUTE: &str = r#"{"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute", "metadata": {"name": "frontend", "namespace": "{ns}"}, "spec": {"entryPoints": ["web"], "routes": [{"match": "Host(`app.example.com`)", "kind": "Rule", "services": [{"name": "frontend", "kind": "TraefikService"}]}]}}"#;
const APISIX_ROUTE: &str = r#"{"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "metadata": {"name": "frontend", "namespace": "{ns}"}, "spec": {"http": [{"name": "rule1", "match": {"hosts": ["app.example.com"], "paths": ["/*"]}, "backends": [{"serviceName": "frontend", "servicePort": 9898}]}]}}"#;
const ROUTE_REF: &str = r#"{"routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "frontend"}}"#;

/// Every router the weighted demo runs on: one line each.
pub const ROUTERS: &[Weighted] = &[
    row("istio", ISTIO, &[], NONE, MESH),
    row("linkerd", SMI, &[], NONE, MESH),
    row("osm", SMI, &[], NONE, MESH),
    row("smi:v1alpha1", SMI, &[], NONE, MESH),
    row("smi:v1alpha2", SMI, &[], NONE, MESH),
    row("smi:v1alpha3", SMI, &[], NONE, MESH),
    row("gatewayapi:v1", GATEWAY_API, &[], GAMMA, MESH),
    row("gatewayapi:v1beta1", GATEWAY_API, &[], GAMMA, MESH),
    row("nginx", &[], &[NGINX_INGRESS], INGRESS_REF, GATEWAY),
    row("contour", CONTOUR, &[CONTOUR_ROOT], NONE, GATEWAY),
    row("gloo", GLOO, &[GLOO_VS], NONE, GATEWAY),
    row("traefik", TRAEFIK, &[TRAEFIK_ROUTE], NONE, GATEWAY),
    row("skipper", &[], &[SKIPPER_INGRESS], INGRESS_REF, GATEWAY),
    row("apisix", APISIX, &[APISIX_ROUTE], ROUTE_REF, GATEWAY),
];

/// The row of a provider.
pub fn find(provider: &str) -> Option<&'static Weighted> {
    ROUTERS.iter().find(|r| r.provider == provider)
}

/// The providers with a row, for messages.
pub fn names() -> Vec<&'static str> {
    ROUTERS.iter().map(|r| r.provider).collect()
}

impl Weighted {
    /// The load test's URL in namespace `ns`.
    pub fn url(&self, ns: &str) -> String {
        self.url.replace("{ns}", ns)
    }

    /// What the Canary adds to its spec.
    pub fn spec(&self) -> anyhow::Result<Value> {
        serde_json::from_str(self.spec)
            .with_context(|| format!("the demo's {} spec", self.provider))
    }

    /// Installs the CRDs, then the user's routing objects in `ns`.
    pub async fn install(&self, client: &Client, ns: &str) -> anyhow::Result<()> {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        for (group, kind, plural, versions) in self.crds {
            let name = format!("{plural}.{group}");
            let versions: Vec<Value> = versions
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    json!({"name": v, "served": true, "storage": i == 0, "schema": {"openAPIV3Schema":
                        {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
                })
                .collect();
            let crd: CustomResourceDefinition = serde_json::from_value(json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": {
                    "group": group, "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(),
                              "listKind": format!("{kind}List")},
                    "versions": versions
                }
            }))?;
            api.patch(&name, &apply(), &Patch::Apply(&crd))
                .await
                .with_context(|| format!("installing CRD {name}"))?;
        }
        for text in self.objects {
            let obj: Value = serde_json::from_str(&text.replace("{ns}", ns))
                .with_context(|| format!("the demo's {} objects", self.provider))?;
            let (api_version, kind) = (
                obj["apiVersion"].as_str().unwrap_or_default(),
                obj["kind"].as_str().unwrap_or_default(),
            );
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, &plural(kind));
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar)
                .patch(name, &apply(), &Patch::Apply(&obj))
                .await
                .with_context(|| format!("creating the {kind} {name}"))?;
        }
        Ok(())
    }
}

/// The resource name of a kind (`HTTPProxy` → `httpproxies`, `Ingress` → `ingresses`).
fn plural(kind: &str) -> String {
    let k = kind.to_lowercase();
    if let Some(stem) = k.strip_suffix('y') {
        format!("{stem}ies")
    } else if k.ends_with('s') {
        format!("{k}es")
    } else {
        format!("{k}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_router_but_kubernetes_has_a_row_that_parses() {
        for p in flagger_api::canary::PROVIDERS {
            let registered = flagger_core::model::Provider::parse(p)
                .and_then(|p| flagger_controller::router::for_provider(p).ok())
                .is_some();
            if *p == "kubernetes" || !registered {
                continue;
            }
            let row = find(p).unwrap_or_else(|| panic!("no demo row for {p}"));
            assert!(row.spec().is_ok(), "{p}");
            for o in row.objects {
                let v: Value = serde_json::from_str(&o.replace("{ns}", "test")).expect(p);
                assert!(v["kind"].is_string(), "{p}");
            }
        }
        assert!(find("kubernetes").is_none());
        assert_eq!(plural("HTTPProxy"), "httpproxies");
        assert_eq!(plural("Ingress"), "ingresses");
        assert_eq!(plural("ApisixRoute"), "apisixroutes");
    }
}
