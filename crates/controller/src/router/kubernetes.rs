//! The `kubernetes` provider (reference §4.2): no routing object. Traffic is switched by
//! promoting the primary behind the apex Service, which the bootstrap step manages; the decision
//! core derives this provider's virtual weights itself (100/0 before the first blue/green
//! iteration, 0/100 after).

use flagger_core::effects::Routes;
use flagger_core::routing::StickyCookies;

use super::seam::{Contested, Router, RouterError, Target};

/// The router of the `kubernetes` provider.
pub struct Kubernetes;

impl Router for Kubernetes {
    async fn reconcile(
        &self,
        _t: &Target<'_>,
        _cookies: &StickyCookies,
        _contested: &mut Vec<Contested>,
    ) -> Result<(), RouterError> {
        Ok(())
    }

    async fn get_routes(&self, _t: &Target<'_>) -> Result<Routes, RouterError> {
        Ok(Routes::PRIMARY)
    }

    /// The apex Service always selects the primary; nothing to write.
    async fn set_routes(
        &self,
        _t: &Target<'_>,
        _routes: Routes,
        _cookies: &StickyCookies,
    ) -> Result<(), RouterError> {
        Ok(())
    }
}
