//! The objects the controller generates for a canary (reference §3 and §4.2), as one list:
//! bootstrap creates them, finalize and `flagger uninstall` say what goes with the Canary, and
//! `flagger lint` finds GitOps manifests that would fight over them.
//!
//! Worked out from names alone ([`Names`]), so that a manifest that does not validate can still
//! be linted; [`Names::of`] takes them from a validated canary.

use flagger_api::CanarySpec;

use crate::model::{Provider, ValidatedCanary};
use crate::services::ServiceRole;

/// What a generated object is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `<target>-primary`, the copy of the target workload.
    PrimaryWorkload,
    /// One of the apex, `-primary` and `-canary` Services.
    Service(ServiceRole),
    /// `<autoscaler>-primary`, the primary's HPA or ScaledObject.
    PrimaryAutoscaler,
    /// A routing object of the provider.
    Route,
}

/// One generated object: kind, API group (`""` for the core group; a suffix where a kind moved
/// between groups), name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    pub kind: &'static str,
    pub group: &'static str,
    pub name: String,
    pub role: Role,
}

/// What the list is worked out from.
#[derive(Clone, Debug)]
pub struct Names<'a> {
    pub provider: Provider,
    /// The Canary's namespace (AppMesh v1beta1 names objects after the mesh host).
    pub namespace: Option<&'a str>,
    /// `Deployment`, `DaemonSet`, `Service`.
    pub target_kind: &'a str,
    pub target_name: &'a str,
    /// `spec.service.name`, else the target's name.
    pub apex: &'a str,
    pub ingress_ref: Option<&'a str>,
    pub route_ref: Option<&'a str>,
    /// `spec.autoscalerRef`: kind and name.
    pub autoscaler: Option<(&'a str, &'a str)>,
}

impl<'a> Names<'a> {
    /// The names of a validated canary (`spec` is its wire form, for the references the
    /// validated form does not keep).
    pub fn of(c: &'a ValidatedCanary, spec: &'a CanarySpec) -> Names<'a> {
        Names {
            provider: c.provider,
            namespace: Some(c.namespace.as_str()),
            target_kind: c.target.kind.kind(),
            target_name: &c.target.name,
            apex: &c.apex,
            ingress_ref: spec.ingress_ref.as_ref().map(|r| r.name.as_str()),
            route_ref: spec.route_ref.as_ref().map(|r| r.name.as_str()),
            autoscaler: spec
                .autoscaler_ref
                .as_ref()
                .map(|r| (r.kind.as_str(), r.name.as_str())),
        }
    }

    fn is_workload(&self) -> bool {
        matches!(self.target_kind, "Deployment" | "DaemonSet")
    }

    fn knative(&self) -> bool {
        self.provider == Provider::Knative
    }
}

/// Every object generated for the canary (configs aside: their `-primary` copies follow the
/// target's pod spec, see [`crate::workload::config_refs`]).
pub fn objects(n: &Names<'_>) -> Vec<Generated> {
    let mut out = Vec::new();
    if n.knative() {
        return routing_objects(n);
    }
    if n.is_workload() {
        out.push(Generated {
            kind: if n.target_kind == "DaemonSet" {
                "DaemonSet"
            } else {
                "Deployment"
            },
            group: "apps",
            name: format!("{}-primary", n.target_name),
            role: Role::PrimaryWorkload,
        });
    }
    out.extend(services(n));
    if n.is_workload()
        && let Some((kind, name)) = n.autoscaler
    {
        let (kind, group) = match kind {
            "ScaledObject" => ("ScaledObject", "keda.sh"),
            _ => ("HorizontalPodAutoscaler", "autoscaling"),
        };
        out.push(Generated {
            kind,
            group,
            name: format!("{name}-primary"),
            role: Role::PrimaryAutoscaler,
        });
    }
    out.extend(routing_objects(n));
    out
}

/// The Services: apex, `-primary` and `-canary` for a workload target; `-primary` and
/// `-canary` copies of a Service target; none for Knative.
pub fn services(n: &Names<'_>) -> Vec<Generated> {
    if n.knative() {
        return Vec::new();
    }
    let service = |name: String, role| Generated {
        kind: "Service",
        group: "",
        name,
        role: Role::Service(role),
    };
    if n.is_workload() {
        vec![
            service(format!("{}-canary", n.apex), ServiceRole::Canary),
            service(format!("{}-primary", n.apex), ServiceRole::Primary),
            service(n.apex.to_string(), ServiceRole::Apex),
        ]
    } else if n.target_kind == "Service" {
        vec![
            service(format!("{}-canary", n.target_name), ServiceRole::Canary),
            service(format!("{}-primary", n.target_name), ServiceRole::Primary),
        ]
    } else {
        Vec::new()
    }
}

/// The provider's routing objects (reference §4.2), as its descriptor lists them.
pub fn routing_objects(n: &Names<'_>) -> Vec<Generated> {
    (n.provider.descriptor().routing_objects)(n)
}

/// A routing object named `name`.
pub fn route(kind: &'static str, group: &'static str, name: String) -> Generated {
    Generated {
        kind,
        group,
        name,
        role: Role::Route,
    }
}

/// No routing object (kubernetes, knative).
pub fn no_routes(_: &Names<'_>) -> Vec<Generated> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(
        provider: Provider,
        autoscaler: Option<(&'static str, &'static str)>,
    ) -> Names<'static> {
        Names {
            provider,
            namespace: Some("test"),
            target_kind: "Deployment",
            target_name: "podinfo",
            apex: "web",
            ingress_ref: Some("public"),
            route_ref: None,
            autoscaler,
        }
    }

    fn listed(objects: &[Generated]) -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect()
    }

    #[test]
    fn a_workload_canary_gets_its_primary_services_autoscaler_and_routes() {
        let all = objects(&names(
            Provider::Istio,
            Some(("HorizontalPodAutoscaler", "podinfo")),
        ));
        assert_eq!(
            listed(&all),
            vec![
                "Deployment/podinfo-primary",
                "Service/web-canary",
                "Service/web-primary",
                "Service/web",
                "HorizontalPodAutoscaler/podinfo-primary",
                "VirtualService/web",
                "DestinationRule/web-primary",
                "DestinationRule/web-canary",
            ]
        );
        let nginx = objects(&names(Provider::Nginx, Some(("ScaledObject", "so"))));
        assert!(listed(&nginx).contains(&"ScaledObject/so-primary".to_string()));
        assert!(listed(&nginx).contains(&"Ingress/public-canary".to_string()));
    }

    #[test]
    fn knative_generates_routes_only() {
        let mut n = names(Provider::Knative, None);
        n.target_kind = "Service";
        assert!(objects(&n).is_empty());
    }
}
