//! What a provider tells about itself ([`Descriptor`]): its spelling, observer, features,
//! routing objects and its own checks of a Canary's spec ([`SpecCheck`], read by
//! [`crate::validate`]); each provider's module defines its own, and `super::registry`'s `providers!` lists
//! them ([`super::registry::DESCRIPTORS`]).

use flagger_api::canary::{CanaryService, CanarySpec};

use super::observer::Observer;
use crate::generated::{Generated, Names};
use crate::provider::Provider;

/// Something a provider finds in a Canary's spec (a field it needs, a combination it cannot
/// route): where, what to do about it, and whether the Canary still runs (a warning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub message: String,
    pub warning: bool,
}

impl Finding {
    /// A problem that keeps the Canary from running.
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            path: path.into(),
            message: message.into(),
            warning: false,
        }
    }

    /// Something Flagger accepts but that surprises users.
    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            warning: true,
            ..Finding::error(path, message)
        }
    }
}

/// A provider's own checks of a Canary's spec, beside the common rules of
/// [`crate::validate`]; none by default.
pub type SpecCheck = fn(&CanarySpec) -> Vec<Finding>;

fn no_check(_: &CanarySpec) -> Vec<Finding> {
    Vec::new()
}

/// The checks of `spec.service`'s fields, when the spec has a service (its absence is the
/// common rules' error).
pub fn service_findings(
    spec: &CanarySpec,
    check: impl FnOnce(&CanaryService) -> Option<Finding>,
) -> Vec<Finding> {
    spec.service.as_ref().and_then(check).into_iter().collect()
}

/// What the core knows about one provider, told by the provider's own module.
pub struct Descriptor {
    /// The provider this describes.
    pub provider: Provider,
    /// Its `spec.provider` spelling (the CRD's enum value).
    pub name: &'static str,
    /// Whether the controller's `-mesh-provider` flag also takes this spelling with a suffix
    /// (`smi:v1alpha3:linkerd`, `gloo-edge`), as Flagger's does.
    pub flag_prefix: bool,
    /// The builtin checks' queries.
    pub observer: &'static dyn Observer,
    /// The router applies `analysis.match` (A/B testing).
    pub ab: bool,
    /// The router implements `analysis.mirror`.
    pub mirroring: bool,
    /// The router writes session-affinity routes (`analysis.sessionAffinity`).
    pub session_affinity: bool,
    /// The routing objects the router generates for a canary (reference §4.2).
    pub routing_objects: fn(&Names<'_>) -> Vec<Generated>,
    /// The fields of the spec the router needs (`ingressRef`, `routeRef`, `gatewayRefs`,
    /// `meshName`...), checked by validation.
    pub check: SpecCheck,
}

impl Descriptor {
    /// A provider with none of the optional features.
    pub const fn new(
        provider: Provider,
        name: &'static str,
        observer: &'static dyn Observer,
        routing_objects: fn(&Names<'_>) -> Vec<Generated>,
    ) -> Descriptor {
        Descriptor {
            provider,
            name,
            flag_prefix: false,
            observer,
            ab: false,
            mirroring: false,
            session_affinity: false,
            routing_objects,
            check: no_check,
        }
    }

    /// With its own checks of the spec.
    pub const fn checks(mut self, check: SpecCheck) -> Self {
        self.check = check;
        self
    }

    /// With A/B testing.
    pub const fn ab(mut self) -> Self {
        self.ab = true;
        self
    }

    /// With mirroring and session affinity (Istio, Gateway API).
    pub const fn mirroring_and_affinity(mut self) -> Self {
        self.mirroring = true;
        self.session_affinity = true;
        self
    }

    /// The `-mesh-provider` flag takes this spelling with a suffix.
    pub const fn flag_prefix(mut self) -> Self {
        self.flag_prefix = true;
        self
    }
}
