//! The router seam: how a provider reads and writes traffic weights (reference §4.1).
//!
//! Only the `kubernetes` provider is built so far; it has no routing object (blue/green through
//! the apex Service, which the bootstrap step manages). Other providers are refused at
//! dereference with a clear condition, not silently ignored.

use flagger_core::effects::Routes;
use flagger_core::model::{Provider, ValidatedCanary};

/// A traffic router for one canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Router {
    /// The kubernetes provider: no routing object; traffic is switched by promoting the primary.
    Kubernetes,
}

impl Router {
    /// The router for a provider, or why there is none yet.
    pub fn for_provider(provider: Provider) -> Result<Router, String> {
        match provider {
            Provider::Kubernetes => Ok(Router::Kubernetes),
            other => Err(format!(
                "the {other} provider is not supported by flagger-rs yet; supported: kubernetes"
            )),
        }
    }

    /// Creates or corrects the routing objects.
    pub async fn reconcile(&self, _canary: &ValidatedCanary) -> Result<(), String> {
        match self {
            Router::Kubernetes => Ok(()),
        }
    }

    /// Writes weights.
    pub async fn set_routes(
        &self,
        _canary: &ValidatedCanary,
        _routes: Routes,
    ) -> Result<(), String> {
        match self {
            // The apex Service always selects the primary; nothing to write.
            Router::Kubernetes => Ok(()),
        }
    }

    /// Reads weights.
    pub async fn get_routes(&self, _canary: &ValidatedCanary) -> Result<Routes, String> {
        match self {
            // The decision core derives the kubernetes provider's virtual weights itself.
            Router::Kubernetes => Ok(Routes::PRIMARY),
        }
    }
}
