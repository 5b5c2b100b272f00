//! Who is asking, and what they may do.
//!
//! A request is authenticated by a Kubernetes bearer token (the `Authorization: Bearer` header,
//! or the HttpOnly cookie the login page sets), validated with a `TokenReview`; or, when
//! `--auth-proxy-headers` is on, by the user and group headers of a front proxy whose address is
//! trusted; or, with `--anonymous` on a loopback address only, not at all. Each request is then
//! authorized with a `SubjectAccessReview` for the user's identity (user, groups, extra). Both
//! answers are cached briefly, per token digest and per identity, in bounded maps, so a page load
//! is one review of each kind and not a storm.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

/// The cookie that keeps the pasted token.
pub const COOKIE: &str = "flagger_dashboard_token";
/// How long a TokenReview answer is kept.
const TOKEN_TTL: Duration = Duration::from_secs(30);
/// How long a SubjectAccessReview answer is kept.
const SAR_TTL: Duration = Duration::from_secs(10);
/// The most answers each cache keeps.
const CACHE_MAX: usize = 10_000;

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    /// How they authenticated.
    pub via: Via,
    /// What the CSRF token is bound to: the token's digest, or the proxy's identity.
    session: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Token,
    Proxy,
    Anonymous,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Proxy => "proxy",
            Via::Anonymous => "anonymous",
        }
    }
}

impl Identity {
    /// The identity of `--anonymous` (it acts with the dashboard's own permissions).
    pub fn anonymous() -> Identity {
        Identity {
            user: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
            via: Via::Anonymous,
            session: "anonymous".into(),
        }
    }

    fn cache_key(&self) -> String {
        let mut groups = self.groups.clone();
        groups.sort();
        format!("{}\u{0}{}\u{0}{}", self.user, self.uid, groups.join(","))
    }
}

/// Why a request is not authenticated (the text is shown to the user).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: log in with a Kubernetes token")]
    Missing,
    #[error("the token was not accepted by the API server{0}")]
    Rejected(String),
    #[error("proxy headers came from {0}, which is not a trusted proxy")]
    UntrustedProxy(IpAddr),
    #[error("the API server could not review the token: {0}")]
    Review(String),
}

/// An address or a network (`10.0.0.0/8`, `::1`).
#[derive(Clone, Debug)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or a network (10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// How requests are authenticated.
#[derive(Clone, Debug, Default)]
pub struct AuthOptions {
    pub anonymous: bool,
    pub proxy_headers: bool,
    pub user_header: String,
    pub groups_header: String,
    pub trusted_proxies: Vec<Cidr>,
}

type Cache<V> = Mutex<HashMap<String, (V, Instant)>>;

/// The authenticator and authorizer, with their caches.
pub struct Auth {
    client: Client,
    options: AuthOptions,
    key: ring::hmac::Key,
    tokens: Cache<Identity>,
    reviews: Cache<bool>,
}

fn cache_get<V: Clone>(cache: &Cache<V>, key: &str, ttl: Duration) -> Option<V> {
    let map = cache.lock().ok()?;
    map.get(key)
        .filter(|(_, at)| at.elapsed() < ttl)
        .map(|(v, _)| v.clone())
}

fn cache_put<V>(cache: &Cache<V>, key: String, value: V, ttl: Duration) {
    let Ok(mut map) = cache.lock() else { return };
    if map.len() >= CACHE_MAX {
        map.retain(|_, (_, at)| at.elapsed() < ttl);
        if map.len() >= CACHE_MAX {
            map.clear();
        }
    }
    map.insert(key, (value, Instant::now()));
}

fn digest(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl Auth {
    pub fn new(client: Client, options: AuthOptions) -> anyhow::Result<Auth> {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| anyhow::anyhow!("cannot draw the dashboard's random key"))?;
        Ok(Auth {
            client,
            options,
            key,
            tokens: Mutex::new(HashMap::new()),
            reviews: Mutex::new(HashMap::new()),
        })
    }

    /// The CSRF token of the identity's session: an HMAC of what authenticated it, under the
    /// server's random key (another session, or another server, has another token).
    pub fn csrf(&self, id: &Identity) -> String {
        let tag = ring::hmac::sign(&self.key, id.session.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `token` is the CSRF token of the identity's session (compared in constant time).
    pub fn csrf_ok(&self, id: &Identity, token: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        ring::hmac::verify(&self.key, id.session.as_bytes(), &tag).is_ok()
    }

    /// The request's identity: anonymous mode, then the proxy's headers, then a bearer token
    /// (header, then cookie).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Result<Identity, AuthError> {
        if self.options.anonymous {
            return Ok(Identity::anonymous());
        }
        if self.options.proxy_headers
            && let Some(user) = headers
                .get(self.options.user_header.as_str())
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        {
            if !self
                .options
                .trusted_proxies
                .iter()
                .any(|c| c.contains(peer))
            {
                return Err(AuthError::UntrustedProxy(peer));
            }
            let groups: Vec<String> = headers
                .get_all(self.options.groups_header.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect();
            let session = format!("proxy\u{0}{user}\u{0}{}", groups.join(","));
            return Ok(Identity {
                user: user.to_string(),
                uid: String::new(),
                groups,
                extra: BTreeMap::new(),
                via: Via::Proxy,
                session,
            });
        }
        let token = bearer(headers)
            .or_else(|| cookie(headers, COOKIE))
            .ok_or(AuthError::Missing)?;
        self.review_token(&token).await
    }

    /// A TokenReview of `token` (cached by the token's digest).
    pub async fn review_token(&self, token: &str) -> Result<Identity, AuthError> {
        let key = digest(token);
        if let Some(id) = cache_get(&self.tokens, &key, TOKEN_TTL) {
            return Ok(id);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Review(flagger_controller::error::api_text(&e)))?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        if status.authenticated != Some(true) || user.username.as_deref().unwrap_or("").is_empty() {
            return Err(AuthError::Rejected(
                status.error.map(|e| format!(": {e}")).unwrap_or_default(),
            ));
        }
        let id = Identity {
            user: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
            via: Via::Token,
            session: format!("token\u{0}{key}"),
        };
        cache_put(&self.tokens, key, id.clone(), TOKEN_TTL);
        Ok(id)
    }

    /// May the identity do `verb` on canaries in `namespace` (`""`: in every namespace)?
    /// Anonymous mode acts with the dashboard's own permissions, so it asks nobody.
    pub async fn allowed(
        &self,
        id: &Identity,
        namespace: &str,
        verb: &str,
    ) -> anyhow::Result<bool> {
        if id.via == Via::Anonymous {
            return Ok(true);
        }
        let key = format!("{}\u{0}{namespace}\u{0}{verb}", id.cache_key());
        if let Some(allowed) = cache_get(&self.reviews, &key, SAR_TTL) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(id.user.clone()),
                uid: (!id.uid.is_empty()).then(|| id.uid.clone()),
                groups: Some(id.groups.clone()),
                extra: (!id.extra.is_empty()).then(|| id.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                    verb: Some(verb.to_string()),
                    group: Some("flagger.app".into()),
                    resource: Some("canaries".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "the API server could not review access: {}",
                    flagger_controller::error::api_text(&e)
                )
            })?;
        let allowed = answer.status.map(|s| s.allowed).unwrap_or(false);
        cache_put(&self.reviews, key, allowed, SAR_TTL);
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().expect("parses");
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("ip")));
        let one: Cidr = "127.0.0.1".parse().expect("parses");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let all: Cidr = "0.0.0.0/0".parse().expect("parses");
        assert!(all.contains("192.168.1.1".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy".parse::<Cidr>().is_err());
    }

    #[test]
    fn cookies_and_bearers_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            "a=1; flagger_dashboard_token=tok; b=2".parse().expect("hv"),
        );
        h.insert("authorization", "Bearer  xyz".parse().expect("hv"));
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("tok"));
        assert_eq!(bearer(&h).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache: Cache<bool> = Mutex::new(HashMap::new());
        for i in 0..CACHE_MAX + 10 {
            cache_put(&cache, i.to_string(), true, SAR_TTL);
        }
        assert!(cache.lock().expect("lock").len() <= CACHE_MAX);
        assert_eq!(
            cache_get(&cache, &(CACHE_MAX + 9).to_string(), SAR_TTL),
            Some(true)
        );
    }
}
