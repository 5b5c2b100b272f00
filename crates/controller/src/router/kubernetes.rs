//! The `kubernetes` provider (reference §4.2): no routing object. Traffic is switched by
//! promoting the primary behind the apex Service, which the bootstrap step manages; the decision
//! core derives this provider's virtual weights itself (100/0 before the first blue/green
//! iteration, 0/100 after).

use flagger_core::effects::Routes;
use flagger_core::routing::StickyCookies;
use futures::future::BoxFuture;

use super::{Contested, Router, RouterError, Target};

/// The router of the `kubernetes` provider.
pub struct Kubernetes;

impl Router for Kubernetes {
    fn reconcile<'a>(
        &'a self,
        _t: &'a Target<'a>,
        _cookies: &'a StickyCookies,
    ) -> BoxFuture<'a, Result<Vec<Contested>, RouterError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn get_routes<'a>(&'a self, _t: &'a Target<'a>) -> BoxFuture<'a, Result<Routes, RouterError>> {
        Box::pin(async { Ok(Routes::PRIMARY) })
    }

    /// The apex Service always selects the primary; nothing to write.
    fn set_routes<'a>(
        &'a self,
        _t: &'a Target<'a>,
        _routes: Routes,
        _cookies: &'a StickyCookies,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async { Ok(()) })
    }
}
