//! What a provider tells about itself ([`Descriptor`]); each provider's module defines its own,
//! and [`super::DESCRIPTORS`] lists them.

use super::observer::Observer;
use crate::generated::{Generated, Names};
use crate::model::Provider;

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
        }
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
