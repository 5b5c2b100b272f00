//! Session-affinity cookies (reference §4.3): random in Flagger and kept in the Canary status;
//! here the caller passes them in ([`StickyCookies`]), and [`next_sticky_cookies`] computes the
//! status transition with the randomness injected. The `Set-Cookie` and `Cookie`-matching
//! strings the Istio and Gateway API routes carry are made here too.

use crate::model::{Provider, SessionAffinity};

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
pub fn sticky(provider: Provider) -> bool {
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
