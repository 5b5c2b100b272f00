//! The routing objects each traffic provider writes (reference §4), as pure builders.
//!
//! Each provider module turns a [`ValidatedCanary`] and the desired [`Routes`] into the
//! object(s) Flagger's router for that provider would write, and reads the weights back from
//! such an object (the router's `GetRoutes`). Nothing here talks to a cluster: the controller
//! fetches what is needed (the user's Ingress, the current VirtualService) and applies what
//! these functions return.
//!
//! One builder serves both router calls: with [`Routes::PRIMARY`] it gives the object
//! `Reconcile` creates (initial weights), with other routes the object after `SetRoutes`. Drift
//! is corrected by the controller re-applying the builder's object with the weights read back
//! (Flagger rewrites the whole spec with 100/0 when non-weight fields differ, reference §4.1);
//! the Istio takeover annotations and Finalize are the controller router's.
//!
//! Each provider module also holds the provider's builtin checks (reference §5.1): an
//! [`observer::Observer`] with the PromQL of `request-success-rate` and `request-duration`.
//! [`kubernetes`] has no routing object, only the HTTP observer `kubernetes` and
//! `gatewayapi:*` share. And each describes its provider with a [`descriptor::Descriptor`]
//! (spelling, observer, features, generated routing objects, the spec fields it needs), listed
//! one line each in `providers!`, which makes both [`Provider`] (the identity) and
//! [`DESCRIPTORS`]: [`registry`] reads `spec.provider` and everything else per provider from
//! that list. A new provider is one module here (builder, reader, observer, descriptor), its
//! `pub mod` line and its line in `providers!` (`docs/providers.md`).
//!
//! Session-affinity cookies are random in Flagger and live in the Canary status; here the
//! caller passes them in ([`StickyCookies`]), and [`next_sticky_cookies`] computes the status
//! transition with the randomness injected.
//!
//! [`Routes`]: crate::effects::Routes
//! [`Routes::PRIMARY`]: crate::effects::Routes::PRIMARY

pub mod apisix;
pub mod appmesh;
pub mod contour;
pub mod descriptor;
pub mod gatewayapi;
pub mod gloo;
pub mod istio;
pub mod knative;
pub mod kubernetes;
pub mod kuma;
pub mod nginx;
pub mod observer;
pub mod registry;
pub mod skipper;
pub mod smi;
pub mod traefik;

use std::collections::BTreeMap;

use flagger_api::labels::{FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED};

use crate::model::{SessionAffinity, ValidatedCanary};
use descriptor::Descriptor;

/// Declares the providers from one list: each line is a provider's identity (a variant of
/// [`Provider`]) and its module's [`Descriptor`]; the list makes the enum and [`DESCRIPTORS`],
/// so a new provider is one line here (beside its `pub mod` line).
macro_rules! providers {
    ($($(#[$doc:meta])* $variant:ident => $descriptor:path,)+) => {
        /// Traffic provider (router) of a canary: its identity. What it is (spelling, features,
        /// observer, routing objects, the fields it needs) is told by its module's descriptor
        /// ([`Provider::descriptor`]); the variants and [`DESCRIPTORS`] come from one list.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Provider {
            $($(#[$doc])* $variant,)+
        }

        /// Every provider's descriptor, in the order of the list.
        pub static DESCRIPTORS: &[&Descriptor] = &[$(&$descriptor,)+];
    };
}

providers! {
    Kubernetes => kubernetes::PROVIDER,
    Istio => istio::PROVIDER,
    /// SMI v1alpha1 TrafficSplit targeting Linkerd.
    Linkerd => smi::LINKERD_PROVIDER,
    /// SMI v1alpha2 TrafficSplit targeting OSM.
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

/// Why a routing object cannot be built or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The canary asks for something this provider cannot express.
    #[error("{0}")]
    Unsupported(String),
    /// The canary lacks something this provider needs.
    #[error("{0}")]
    Missing(String),
    /// The object read back does not carry the canary's routes.
    #[error("{0}")]
    NoRoutes(String),
    /// The object read back is not ready to be trusted (Gateway API parent status).
    #[error("{0}")]
    NotReady(String),
    /// The object read back could not be decoded.
    #[error("{0}")]
    Decode(String),
}

/// Session-affinity cookies of the current run, as kept in the Canary status
/// (`sessionAffinityCookie`, `primarySessionAffinityCookie`, `previousSessionAffinityCookie`).
/// Each is `<name>=<value>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StickyCookies {
    pub canary: Option<String>,
    pub primary: Option<String>,
    pub previous: Option<String>,
}

impl StickyCookies {
    /// The cookies kept in a status.
    pub fn of(status: &flagger_api::CanaryStatus) -> StickyCookies {
        let nonempty = |c: &Option<String>| c.clone().filter(|c| !c.is_empty());
        StickyCookies {
            canary: nonempty(&status.session_affinity_cookie),
            primary: nonempty(&status.primary_session_affinity_cookie),
            previous: nonempty(&status.previous_session_affinity_cookie),
        }
    }

    /// Writes the cookies into a status (an absent cookie clears its field).
    pub fn write_to(&self, status: &mut flagger_api::CanaryStatus) {
        status.session_affinity_cookie = self.canary.clone();
        status.primary_session_affinity_cookie = self.primary.clone();
        status.previous_session_affinity_cookie = self.previous.clone();
    }
}

/// Whether a provider's routes carry session affinity (`analysis.sessionAffinity`): Istio and
/// the Gateway API.
pub fn sticky(provider: crate::model::Provider) -> bool {
    provider.supports_session_affinity()
}

/// The cookies after `SetRoutes` with this canary weight (reference §4.3): with weight > 0 the
/// canary cookie (and the primary cookie, when `primaryCookieName` is set) is generated once
/// per run with `fresh` (Flagger: 10 random ASCII letters); with weight 0 the current canary
/// cookie becomes the previous one and is cleared.
pub fn next_sticky_cookies(
    affinity: &SessionAffinity,
    current: &StickyCookies,
    canary_weight: u32,
    mut fresh: impl FnMut() -> String,
) -> StickyCookies {
    let mut next = current.clone();
    if canary_weight > 0 {
        if next.canary.as_deref().unwrap_or_default().is_empty() {
            next.canary = Some(format!("{}={}", affinity.cookie_name, fresh()));
        }
        if let Some(primary) = &affinity.primary_cookie_name
            && next.primary.as_deref().unwrap_or_default().is_empty()
        {
            next.primary = Some(format!("{primary}={}", fresh()));
        }
    } else if let Some(cookie) = next.canary.take().filter(|c| !c.is_empty()) {
        next.previous = Some(cookie);
    }
    next
}

/// The `Set-Cookie` value for a cookie `<name>=<value>` (reference §1.8): `Max-Age` first, then
/// the optional attributes in Flagger's order.
pub fn set_cookie(affinity: &SessionAffinity, cookie: &str, max_age: i64) -> String {
    let mut s = format!("{cookie}; Max-Age={max_age}");
    if let Some(d) = affinity.domain.as_deref().filter(|d| !d.is_empty()) {
        s.push_str(&format!("; Domain={d}"));
    }
    if affinity.http_only {
        s.push_str("; HttpOnly");
    }
    if affinity.partitioned {
        s.push_str("; Partitioned");
    }
    if let Some(p) = affinity.path.as_deref().filter(|p| !p.is_empty()) {
        s.push_str(&format!("; Path={p}"));
    }
    if let Some(ss) = affinity.same_site.as_deref().filter(|s| !s.is_empty()) {
        s.push_str(&format!("; SameSite={ss}"));
    }
    if affinity.secure {
        s.push_str("; Secure");
    }
    s
}

/// The `Set-Cookie` value that expires a previous run's cookie.
pub fn expire_cookie(cookie: &str) -> String {
    format!("{cookie}; Max-Age=-1")
}

/// The regex matching a `Cookie` header that carries `<name>=<value>`.
pub fn cookie_regex(cookie: &str) -> String {
    let (name, value) = cookie.split_once('=').unwrap_or((cookie, ""));
    format!(".*{name}.*{value}.*")
}

/// Labels and annotations of apex-metadata routing objects (VirtualService, HTTPRoute):
/// `service.apex` metadata plus the Flux toolkit annotations (reference §3.12).
pub fn apex_metadata(
    canary: &ValidatedCanary,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let apex = canary.service.apex.as_ref();
    let labels = apex.and_then(|m| m.labels.clone()).unwrap_or_default();
    let mut annotations = apex.and_then(|m| m.annotations.clone()).unwrap_or_default();
    for (k, v) in [FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED] {
        annotations.insert(k.to_string(), v.to_string());
    }
    (labels, annotations)
}

/// Both weights 0 in an object read back: Flagger treats this as "no routes".
fn check_weights(
    primary: u32,
    canary: u32,
    message: impl FnOnce() -> String,
) -> Result<(), RoutingError> {
    if primary == 0 && canary == 0 {
        Err(RoutingError::NoRoutes(message()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity() -> SessionAffinity {
        SessionAffinity {
            cookie_name: "flagger-cookie".into(),
            primary_cookie_name: Some("flagger-primary".into()),
            max_age: 86400,
            domain: None,
            http_only: false,
            partitioned: false,
            path: None,
            same_site: None,
            secure: false,
        }
    }

    #[test]
    fn cookie_string_has_max_age_then_attributes_in_flaggers_order() {
        let a = SessionAffinity {
            domain: Some("example.com".into()),
            http_only: true,
            partitioned: true,
            path: Some("/".into()),
            same_site: Some("Strict".into()),
            secure: true,
            ..affinity()
        };
        assert_eq!(
            set_cookie(&a, "c=abc", 60),
            "c=abc; Max-Age=60; Domain=example.com; HttpOnly; Partitioned; Path=/; SameSite=Strict; Secure"
        );
        assert_eq!(
            set_cookie(&affinity(), "c=abc", 86400),
            "c=abc; Max-Age=86400"
        );
        assert_eq!(expire_cookie("c=abc"), "c=abc; Max-Age=-1");
        assert_eq!(cookie_regex("c=abc"), ".*c.*abc.*");
    }

    #[test]
    fn cookies_are_generated_once_per_run_and_retired_at_weight_zero() {
        let mut n = 0;
        let mut fresh = || {
            n += 1;
            format!("v{n}")
        };
        let c1 = next_sticky_cookies(&affinity(), &StickyCookies::default(), 10, &mut fresh);
        assert_eq!(c1.canary.as_deref(), Some("flagger-cookie=v1"));
        assert_eq!(c1.primary.as_deref(), Some("flagger-primary=v2"));
        let c2 = next_sticky_cookies(&affinity(), &c1, 20, &mut fresh);
        assert_eq!(c2, c1);
        let c3 = next_sticky_cookies(&affinity(), &c2, 0, &mut fresh);
        assert_eq!(c3.canary, None);
        assert_eq!(c3.previous.as_deref(), Some("flagger-cookie=v1"));
        // Weight 0 again: nothing to retire, the previous cookie stays.
        assert_eq!(next_sticky_cookies(&affinity(), &c3, 0, &mut fresh), c3);
    }
}
