//! The routing objects each provider generates (reference §4.2).

use crate::canary::CanaryView;
use crate::finding::{Finding, Level, Rule, finding};
use crate::object::{Object, argo_ignores, same_namespace};

/// `(kind, group suffix, name)` of every routing object the provider generates (§4.2), from
/// the core's list of generated objects.
fn routing_objects(c: &CanaryView<'_>) -> Vec<(&'static str, &'static str, String)> {
    flagger_core::generated::routing_objects(&c.names())
        .into_iter()
        .map(|o| (o.kind, o.group, o.name))
        .collect()
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
