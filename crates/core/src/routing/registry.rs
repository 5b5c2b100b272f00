//! The providers, one line each: every provider describes itself in its own module with a
//! [`Descriptor`] (its `spec.provider` spelling, the observer of its builtin checks, the
//! features its router has, the routing objects it generates), and `providers!` lists them:
//! [`DESCRIPTORS`] and [`Provider::descriptor`] come from that one list.
//! Everything the core knows per provider is read from here: [`Provider::parse`] (the accepted
//! `spec.provider` strings), [`Provider::as_str`], [`Provider::parse_flag`], the features
//! validation checks ([`Provider::supports_ab`] and the others), the builtin checks' observer
//! ([`super::observer::for_provider`]) and the routing objects of [`crate::generated`].
//!
//! A new provider is a module with its builder, observer and `Descriptor`, declared in
//! `routing/mod.rs`, its variant of [`Provider`] (`crate::provider`, the identity only) and one
//! line in `providers!` here (the compiler refuses a variant without its line).

use std::fmt;

use super::descriptor::Descriptor;
use super::{
    apisix, appmesh, contour, gatewayapi, gloo, istio, knative, kubernetes, kuma, nginx, skipper,
    smi, traefik,
};
use crate::provider::Provider;

/// Declares the descriptors from one list: each line is a provider's identity (a variant of
/// [`Provider`]) and its module's [`Descriptor`]; the list makes [`DESCRIPTORS`] and
/// [`Provider::descriptor`] (an exhaustive match: a variant without its line does not compile).
macro_rules! providers {
    ($($variant:ident => $descriptor:path,)+) => {
        /// Every provider's descriptor, in the order of the list.
        pub static DESCRIPTORS: &[&Descriptor] = &[$(&$descriptor,)+];

        impl Provider {
            /// The provider's own description.
            pub fn descriptor(self) -> &'static Descriptor {
                match self {
                    $(Provider::$variant => &$descriptor,)+
                }
            }
        }
    };
}

providers! {
    Kubernetes => kubernetes::PROVIDER,
    Istio => istio::PROVIDER,
    Linkerd => smi::LINKERD_PROVIDER,
    Osm => smi::OSM_PROVIDER,
    SmiV1Alpha1 => smi::V1ALPHA1_PROVIDER,
    SmiV1Alpha2 => smi::V1ALPHA2_PROVIDER,
    SmiV1Alpha3 => smi::V1ALPHA3_PROVIDER,
    Nginx => nginx::PROVIDER,
    GatewayApiV1 => gatewayapi::V1_PROVIDER,
    GatewayApiV1Beta1 => gatewayapi::V1BETA1_PROVIDER,
    Contour => contour::PROVIDER,
    Gloo => gloo::PROVIDER,
    Traefik => traefik::PROVIDER,
    Skipper => skipper::PROVIDER,
    Apisix => apisix::PROVIDER,
    Kuma => kuma::PROVIDER,
    AppMesh => appmesh::V1BETA1_PROVIDER,
    AppMeshV1Beta2 => appmesh::V1BETA2_PROVIDER,
    Knative => knative::PROVIDER,
}

impl Provider {
    /// Parses a provider the way Flagger's CRD enum spells it (`spec.provider`): one of the
    /// [`DESCRIPTORS`]' names. Flagger's controller flag also accepts `smi:<version>:<mesh>`
    /// and any `gloo*`; see [`Provider::parse_flag`].
    pub fn parse(s: &str) -> Option<Provider> {
        DESCRIPTORS.iter().find(|d| d.name == s).map(|d| d.provider)
    }

    /// Parses the controller's `-mesh-provider` flag, which also takes a suffix after the
    /// spellings whose descriptor says so (`smi:v1alpha3:linkerd`, `appmesh:v1beta2:x`,
    /// `gatewayapi:v1:istio`, any `gloo*`): the longest such spelling the flag starts with.
    pub fn parse_flag(s: &str) -> Option<Provider> {
        Self::parse(s).or_else(|| {
            DESCRIPTORS
                .iter()
                .filter(|d| d.flag_prefix && s.starts_with(d.name))
                .max_by_key(|d| d.name.len())
                .map(|d| d.provider)
        })
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        self.descriptor().name
    }

    /// Providers whose router applies `analysis.match` (A/B testing).
    pub fn supports_ab(self) -> bool {
        self.descriptor().ab
    }

    /// Providers that implement `analysis.mirror`.
    pub fn supports_mirroring(self) -> bool {
        self.descriptor().mirroring
    }

    /// Providers that implement `analysis.sessionAffinity`.
    pub fn supports_session_affinity(self) -> bool {
        self.descriptor().session_affinity
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_described_once_and_the_crd_enum_is_the_list_of_names() {
        let mut names: Vec<&str> = super::DESCRIPTORS.iter().map(|d| d.name).collect();
        names.sort_unstable();
        let mut crd = flagger_api::canary::PROVIDERS.to_vec();
        crd.sort_unstable();
        assert_eq!(names, crd);
        for d in super::DESCRIPTORS {
            assert_eq!(Provider::parse(d.name), Some(d.provider), "{}", d.name);
            assert_eq!(d.provider.as_str(), d.name);
            assert!(std::ptr::eq(d.provider.descriptor(), *d), "{}", d.name);
        }
    }

    #[test]
    fn spec_provider_parsing_is_flaggers() {
        assert_eq!(Provider::parse("istio"), Some(Provider::Istio));
        assert_eq!(Provider::parse("smi:v1alpha2"), Some(Provider::SmiV1Alpha2));
        for refused in [
            "",
            "Istio",
            "gloo-edge",
            "smi:v1alpha3:linkerd",
            "supergloo",
        ] {
            assert_eq!(Provider::parse(refused), None, "{refused}");
        }
        for (flag, p) in [
            ("smi:v1alpha3:linkerd", "smi:v1alpha3"),
            ("smi:v1alpha1:osm", "smi:v1alpha1"),
            ("gatewayapi:v1beta1:istio", "gatewayapi:v1beta1"),
            ("gatewayapi:v1:contour", "gatewayapi:v1"),
            ("appmesh:v1beta2:global", "appmesh:v1beta2"),
            ("gloo-edge", "gloo"),
            ("kuma", "kuma"),
        ] {
            assert_eq!(
                Provider::parse_flag(flag).map(Provider::as_str),
                Some(p),
                "{flag}"
            );
        }
        for refused in ["istio:x", "appmesh:x", "kumax", "traefik2"] {
            assert_eq!(Provider::parse_flag(refused), None, "{refused}");
        }
    }

    #[test]
    fn features_per_provider() {
        let with = |f: fn(Provider) -> bool| {
            let mut v: Vec<&str> = super::DESCRIPTORS
                .iter()
                .filter(|d| f(d.provider))
                .map(|d| d.name)
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(
            with(Provider::supports_ab),
            vec![
                "appmesh",
                "appmesh:v1beta2",
                "contour",
                "gatewayapi:v1",
                "gatewayapi:v1beta1",
                "gloo",
                "istio",
                "nginx"
            ]
        );
        let sticky = vec!["gatewayapi:v1", "gatewayapi:v1beta1", "istio"];
        assert_eq!(with(Provider::supports_mirroring), sticky);
        assert_eq!(with(Provider::supports_session_affinity), sticky);
    }
}
