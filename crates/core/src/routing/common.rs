//! What the provider builders share: the error of building or reading a routing object, the
//! metadata of apex routing objects, the "no routes" check of weights read back.

use std::collections::BTreeMap;

use flagger_api::labels::{FLUX_RECONCILE_DISABLED, HELM_DRIFT_DISABLED};

use crate::model::ValidatedCanary;

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
pub(super) fn check_weights(
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
