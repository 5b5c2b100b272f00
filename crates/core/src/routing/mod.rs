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
//! one line each in [`registry`]'s `providers!`, which maps each [`Provider`] (the identity,
//! [`crate::provider`]) to its descriptor and makes [`DESCRIPTORS`]: [`registry`] reads
//! `spec.provider` and everything else per provider from that list. A new provider is one
//! module here (builder, reader, observer, descriptor), its `pub mod` line, its variant of
//! [`Provider`] and its line in `providers!` (`docs/providers.md`).
//!
//! Session-affinity cookies are random in Flagger and live in the Canary status; here the
//! caller passes them in ([`StickyCookies`]), and [`next_sticky_cookies`] computes the status
//! transition with the randomness injected ([`cookies`]).
//!
//! Layering inside: this file only declares the modules and re-exports; [`common`] and
//! [`cookies`] are what the provider modules share, [`descriptor`] and [`observer`] what they
//! describe themselves with, and [`registry`] lists them all (nothing reaches back up).
//!
//! [`Routes`]: crate::effects::Routes
//! [`Routes::PRIMARY`]: crate::effects::Routes::PRIMARY
//! [`ValidatedCanary`]: crate::model::ValidatedCanary

pub mod apisix;
pub mod appmesh;
pub mod common;
pub mod contour;
pub mod cookies;
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

pub use crate::provider::Provider;
pub use common::{RoutingError, apex_metadata};
pub use cookies::{
    StickyCookies, cookie_regex, expire_cookie, next_sticky_cookies, set_cookie, sticky,
};
pub use registry::DESCRIPTORS;
