//! The routing objects each provider generates (reference §4.2).

use flagger_core::model::Provider;

use crate::canary::CanaryView;
use crate::finding::{Finding, Level, Rule, finding};
use crate::object::{Object, argo_ignores, same_namespace};

/// `(kind, group suffix, name)` of every routing object the provider generates (§4.2).
fn routing_objects(c: &CanaryView<'_>) -> Vec<(&'static str, &'static str, String)> {
    let apex = &c.apex;
    let primary = format!("{apex}-primary");
    let canary = format!("{apex}-canary");
    match c.provider {
        Provider::Kubernetes | Provider::Knative => vec![],
        Provider::Istio => vec![
            ("VirtualService", "istio.io", apex.clone()),
            ("DestinationRule", "istio.io", primary),
            ("DestinationRule", "istio.io", canary),
        ],
        Provider::Linkerd | Provider::Osm | Provider::Smi(_) => {
            vec![("TrafficSplit", "smi-spec.io", apex.clone())]
        }
        Provider::AppMesh => {
            let mut objects = vec![
                ("VirtualNode", "appmesh.k8s.aws", apex.clone()),
                ("VirtualNode", "appmesh.k8s.aws", primary),
                ("VirtualNode", "appmesh.k8s.aws", canary.clone()),
            ];
            // v1beta1 names its VirtualServices after the mesh host, `<name>.<namespace>`.
            if let Some(ns) = c.namespace {
                objects.push(("VirtualService", "appmesh.k8s.aws", format!("{apex}.{ns}")));
                objects.push((
                    "VirtualService",
                    "appmesh.k8s.aws",
                    format!("{canary}.{ns}"),
                ));
            }
            objects
        }
        Provider::AppMeshV1Beta2 => vec![
            ("VirtualNode", "appmesh.k8s.aws", primary),
            ("VirtualNode", "appmesh.k8s.aws", canary.clone()),
            ("VirtualRouter", "appmesh.k8s.aws", apex.clone()),
            ("VirtualRouter", "appmesh.k8s.aws", canary.clone()),
            ("VirtualService", "appmesh.k8s.aws", apex.clone()),
            ("VirtualService", "appmesh.k8s.aws", canary),
        ],
        Provider::Contour => vec![("HTTPProxy", "projectcontour.io", apex.clone())],
        Provider::Gloo => vec![("RouteTable", "solo.io", apex.clone())],
        Provider::Traefik => vec![("TraefikService", "", apex.clone())],
        Provider::Kuma => vec![("TrafficRoute", "kuma.io", apex.clone())],
        Provider::GatewayApiV1 | Provider::GatewayApiV1Beta1 => {
            vec![("HTTPRoute", "gateway.networking.k8s.io", apex.clone())]
        }
        Provider::Nginx | Provider::Skipper => match &c.ingress_ref {
            Some(i) => vec![("Ingress", "", format!("{i}-canary"))],
            None => vec![],
        },
        Provider::Apisix => match &c.route_ref {
            Some(r) => vec![(
                "ApisixRoute",
                "apisix.apache.org",
                format!("{r}-{apex}-canary"),
            )],
            None => vec![],
        },
    }
}

pub(super) fn generated_routes(c: &CanaryView<'_>, objects: &[Object], out: &mut Vec<Finding>) {
    for (kind, group, name) in routing_objects(c) {
        for o in objects.iter().filter(|o| {
            o.kind() == kind
                && o.name() == name
                // Traefik moved groups (traefik.containo.us, traefik.io) and Ingress may be
                // networking.k8s.io or extensions: the kind and name are enough there.
                && (group.is_empty() || o.group().ends_with(group))
                // Kuma's TrafficRoute is cluster-scoped.
                && (kind == "TrafficRoute" || same_namespace(o.namespace(), c.namespace))
        }) {
            let mut message = format!(
                "collides with the {kind} the {} provider generates for Canary {} and rewrites \
                 at every analysis step; the GitOps tool would reset the traffic weights on \
                 every sync. Remove it from the repository and configure routing in the \
                 Canary's spec.service",
                c.provider,
                c.display()
            );
            // The field each router writes the weights into.
            let weights = match kind {
                "VirtualService" if group == "istio.io" => "/spec/http",
                "TrafficSplit" => "/spec/backends",
                "HTTPRoute" => "/spec/rules",
                "Ingress" => "/metadata/annotations",
                _ => "/spec",
            };
            let level = if let Some(annotation) = o.flux_hands_off() {
                message.push_str(&format!(
                    " (it is marked {annotation}, so Flux's kustomize-controller does not apply \
                     it over the live object)"
                ));
                Level::Warning
            } else if argo_ignores(objects, o, &[weights]) {
                message.push_str(&format!(
                    " (an Argo CD Application ignores its {weights} with \
                     RespectIgnoreDifferences=true)"
                ));
                Level::Warning
            } else {
                Level::Error
            };
            out.push(finding(level, Rule::GeneratedRoute, o, message));
        }
    }
}
