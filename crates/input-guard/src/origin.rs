//! Refusing requests that a web page makes a browser send to a local HTTP server.
//!
//! A page on any site can make the browser `POST` a `text/plain` body to
//! `http://127.0.0.1:6443/...` (a "simple" request: no CORS preflight), and with DNS
//! rebinding (its own name re-resolved to 127.0.0.1) it can even read the answers. Kubernetes
//! clients (kubectl, client-go, kube-rs) and HTTP tools (curl, Flagger's webhooks) send no
//! `Origin` and name the server they mean in `Host`, so two checks stop the browser and leave
//! them alone:
//!
//! - **Origin**: a request that carries `Origin` (browsers send it on every cross-origin
//!   request and on every non-`GET`) must come from the server's own origin, and one that says
//!   `Sec-Fetch-Site: cross-site` or `same-site` (another site, or another port of the same
//!   host) is refused;
//! - **Host** (for servers reached by loopback addresses): the `Host` must be a loopback name
//!   or address, or the address the server was configured with; a rebinding page sends its own
//!   name.

use std::net::{IpAddr, SocketAddr};

/// Which `Host` values a server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    /// Names and addresses accepted besides loopback ones (lower case, no port).
    pub names: Vec<String>,
    /// Any IP address literal is accepted (the server listens on all addresses).
    pub any_ip: bool,
}

impl HostPolicy {
    /// `localhost` and loopback addresses only.
    pub fn loopback() -> Self {
        Self {
            names: Vec::new(),
            any_ip: false,
        }
    }

    /// For a server listening on `addr`: loopback names and addresses, `addr`'s address, any
    /// address literal when `addr` is unspecified (`0.0.0.0`, `::`), and `extra` names.
    pub fn for_listener(addr: SocketAddr, extra: &[String]) -> Self {
        let mut names: Vec<String> = extra.iter().map(|n| normalize(n)).collect();
        names.push(normalize(&addr.ip().to_string()));
        Self {
            names,
            any_ip: addr.ip().is_unspecified(),
        }
    }

    /// Whether a `Host` header value (with or without a port) is accepted.
    pub fn allows(&self, host: &str) -> bool {
        let name = normalize(strip_port(host));
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = name.parse::<IpAddr>()
            && (ip.is_loopback() || self.any_ip)
        {
            return true;
        }
        self.names.contains(&name)
    }
}

/// Whether a listen address only takes connections from this machine.
pub fn is_loopback_listener(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

fn normalize(name: &str) -> String {
    name.trim()
        .trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// `host:port` → `host`; `[::1]:80` → `[::1]`; a bare IPv6 address stays as it is.
fn strip_port(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `scheme://authority` of an `Origin` value, the default port dropped; `None` for `null` or
/// anything that is not an origin.
fn origin_authority(origin: &str) -> Option<String> {
    let origin = origin.trim();
    let (scheme, rest) = origin.split_once("://")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    Some(
        authority
            .strip_suffix(default)
            .filter(|_| !default.is_empty())
            .map(str::to_string)
            .unwrap_or(authority),
    )
}

fn host_authority(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    h.strip_suffix(":80").map(str::to_string).unwrap_or(h)
}

/// Why a request was refused; the text says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "Host {0:?} is not an address of this server (a page using DNS rebinding sends its own \
         name); use 127.0.0.1 or localhost"
    )]
    Host(String),
    #[error(
        "cross-site request refused: Origin {0:?} is not this server's (clients such as \
         kubectl and curl send no Origin)"
    )]
    Origin(String),
    #[error("cross-site request refused: Sec-Fetch-Site is {0:?}")]
    FetchSite(String),
}

/// The headers of a request that matter here.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeaders<'a> {
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
}

/// Refuses a browser's cross-site request, and a `Host` that `hosts` does not accept (no
/// `Host` check when `hosts` is `None`: a server reached by names it cannot know, such as a
/// Kubernetes Service).
pub fn check(req: RequestHeaders<'_>, hosts: Option<&HostPolicy>) -> Result<(), Refusal> {
    if let (Some(policy), Some(host)) = (hosts, req.host)
        && !policy.allows(host)
    {
        return Err(Refusal::Host(host.to_string()));
    }
    if let Some(site) = req.sec_fetch_site {
        let site = site.trim().to_ascii_lowercase();
        if site == "cross-site" || site == "same-site" {
            return Err(Refusal::FetchSite(site));
        }
    }
    if let Some(origin) = req.origin {
        let same = match (origin_authority(origin), req.host) {
            (Some(o), Some(h)) => o == host_authority(h),
            _ => false,
        };
        if !same {
            return Err(Refusal::Origin(origin.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        host: Option<&'a str>,
        origin: Option<&'a str>,
        site: Option<&'a str>,
    ) -> RequestHeaders<'a> {
        RequestHeaders {
            host,
            origin,
            sec_fetch_site: site,
        }
    }

    #[test]
    fn kube_clients_and_curl_pass() {
        let hosts = HostPolicy::for_listener("127.0.0.1:6443".parse().expect("addr"), &[]);
        for host in [
            "127.0.0.1:6443",
            "localhost:6443",
            "[::1]:6443",
            "127.0.0.2",
            "LOCALHOST.",
        ] {
            assert_eq!(
                check(req(Some(host), None, None), Some(&hosts)),
                Ok(()),
                "{host}"
            );
        }
        // No Host at all (HTTP/1.0): not a browser.
        assert_eq!(check(req(None, None, None), Some(&hosts)), Ok(()));
        // The page's own origin (e.g. a browser opening /version).
        assert_eq!(
            check(
                req(
                    Some("127.0.0.1:6443"),
                    Some("http://127.0.0.1:6443"),
                    Some("same-origin")
                ),
                Some(&hosts)
            ),
            Ok(())
        );
        assert_eq!(
            check(
                req(Some("localhost"), Some("http://localhost:80"), Some("none")),
                Some(&hosts)
            ),
            Ok(())
        );
    }

    #[test]
    fn browsers_on_other_sites_are_refused() {
        let hosts = HostPolicy::loopback();
        assert_eq!(
            check(
                req(Some("127.0.0.1:6443"), Some("https://evil.example"), None),
                Some(&hosts)
            ),
            Err(Refusal::Origin("https://evil.example".into()))
        );
        assert_eq!(
            check(
                req(Some("127.0.0.1:6443"), Some("null"), None),
                Some(&hosts)
            ),
            Err(Refusal::Origin("null".into()))
        );
        // Another port of the same host is another origin.
        assert!(
            check(
                req(Some("127.0.0.1:6443"), Some("http://127.0.0.1:8000"), None),
                None
            )
            .is_err()
        );
        assert_eq!(
            check(
                req(Some("127.0.0.1:6443"), None, Some("cross-site")),
                Some(&hosts)
            ),
            Err(Refusal::FetchSite("cross-site".into()))
        );
        assert!(check(req(Some("127.0.0.1:6443"), None, Some("same-site")), None).is_err());
        // DNS rebinding: the page's name in Host, its own origin in Origin.
        assert_eq!(
            check(
                req(
                    Some("rebind.evil.example:6443"),
                    Some("http://rebind.evil.example:6443"),
                    None
                ),
                Some(&hosts)
            ),
            Err(Refusal::Host("rebind.evil.example:6443".into()))
        );
        // Without a Host policy (a Service name), same-origin requests still pass.
        assert_eq!(
            check(
                req(
                    Some("flagger-loadtester.test"),
                    Some("http://flagger-loadtester.test"),
                    None
                ),
                None
            ),
            Ok(())
        );
    }

    #[test]
    fn listeners_on_other_addresses() {
        let on_ip = HostPolicy::for_listener("192.168.1.5:6443".parse().expect("addr"), &[]);
        assert!(on_ip.allows("192.168.1.5:6443"));
        assert!(on_ip.allows("127.0.0.1"));
        assert!(!on_ip.allows("10.0.0.1:6443"));
        assert!(!on_ip.allows("devbox:6443"));
        let on_all = HostPolicy::for_listener(
            "0.0.0.0:6443".parse().expect("addr"),
            &["devbox".to_string()],
        );
        assert!(on_all.allows("10.0.0.1:6443"));
        assert!(on_all.allows("0.0.0.0:6443"));
        assert!(on_all.allows("DevBox:6443"));
        assert!(!on_all.allows("evil.example"));
        assert!(is_loopback_listener(&"127.0.0.1:1".parse().expect("addr")));
        assert!(!is_loopback_listener(&"0.0.0.0:1".parse().expect("addr")));
    }
}
