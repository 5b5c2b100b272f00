//! What the HTTP providers share: the window of the providers that query one (Flagger's
//! "error parsing metric interval"), Secret keys, and failure texts that say why a request went
//! wrong without its URL (which holds the encoded query and may hold credentials) and without
//! an answer's whole body (a proxy's page can be kilobytes).

use std::collections::BTreeMap;
use std::time::Duration;

use super::seam::{ProviderError, QueryError};

/// How long one query may take (Flagger's 5 s for every HTTP provider).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The metric's interval as a duration; Flagger's message when it is missing or not a Go
/// duration (the providers that query a window need one).
pub fn interval(interval: &str) -> Result<Duration, ProviderError> {
    flagger_core::duration::parse_go_duration(interval).map_err(|e| {
        ProviderError::invalid(if interval.is_empty() {
            "error parsing metric interval: the metric has no interval".to_string()
        } else {
            format!("error parsing metric interval: {interval:?}: {e}")
        })
    })
}

/// A Secret key as text: `Err(missing)` when the Secret or the key is absent (the credentials
/// a provider needs: [`super::seam::Category::Auth`]).
pub fn secret_key(
    secret: Option<&BTreeMap<String, Vec<u8>>>,
    key: &str,
    missing: impl FnOnce() -> String,
) -> Result<String, ProviderError> {
    secret
        .and_then(|s| s.get(key))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .ok_or_else(|| ProviderError::auth(missing()))
}

/// A provider address that must be an http(s) URL (`<type> address <address> is not a valid
/// URL`, as Flagger words it).
pub fn url_address(
    provider_type: &str,
    address: Option<&str>,
) -> Result<reqwest::Url, ProviderError> {
    let address = address.unwrap_or_default();
    reqwest::Url::parse(address)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| {
            ProviderError::invalid(format!(
                "{provider_type} address {address} is not a valid URL"
            ))
        })
}

/// The client for a provider: TLS verified unless `insecureSkipVerify`.
pub fn client(clients: &crate::webhook::Clients, insecure_skip_verify: bool) -> reqwest::Client {
    if insecure_skip_verify {
        clients.insecure.clone()
    } else {
        clients.verified.clone()
    }
}

/// Sends a request; the status and body, or why there is no answer (transient).
pub async fn send(
    request: reqwest::RequestBuilder,
    address: &str,
) -> Result<(reqwest::StatusCode, String), ProviderError> {
    let response = request
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| ProviderError::transient(request_failed(&e, address)))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| ProviderError::transient(format!("reading response failed: {}", cause(&e))))?;
    Ok((status, body))
}

/// [`send`] for a query: a failure is [`QueryError::Failed`].
pub async fn query(
    request: reqwest::RequestBuilder,
    address: &str,
) -> Result<(reqwest::StatusCode, String), QueryError> {
    Ok(send(request, address).await?)
}

/// Sends a request and keeps the body of a 200 answer; any other answer is the provider's
/// failure as `failure` words it (its own error text), categorized by the status.
pub async fn send_ok(
    request: reqwest::RequestBuilder,
    address: &str,
    failure: fn(reqwest::StatusCode, &str) -> String,
) -> Result<String, ProviderError> {
    let (status, body) = send(request, address).await?;
    if status == reqwest::StatusCode::OK {
        Ok(body)
    } else {
        Err(ProviderError::answered(status, failure(status, &body)))
    }
}

/// Why a request got no answer, naming the server by host and port only.
pub fn request_failed(e: &reqwest::Error, address: &str) -> String {
    let host = reqwest::Url::parse(address)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port_or_known_default() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "the server".into());
    if e.is_timeout() {
        return format!(
            "request failed: no answer from {host} within {}s",
            TIMEOUT.as_secs()
        );
    }
    if e.is_connect() {
        return format!("request failed: cannot connect to {host}: {}", cause(e));
    }
    format!("request failed: {host}: {}", cause(e))
}

/// The innermost reason of an error: what actually went wrong ("Connection refused", "invalid
/// peer certificate: UnknownIssuer"), not the layers that passed it on (whose text names the
/// URL).
pub fn cause(e: &reqwest::Error) -> String {
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(e);
    while let Some(source) = next {
        innermost = Some(source);
        next = source.source();
    }
    match innermost {
        Some(source) => source.to_string(),
        None if e.is_decode() => "the answer could not be decoded".into(),
        None if e.is_body() => "the answer could not be read".into(),
        None if e.is_redirect() => "too many redirects".into(),
        None if e.is_builder() => "invalid address or header".into(),
        None => "unknown error".into(),
    }
}

/// The first non-empty line of an answer, cut to 200 characters: enough to say what a
/// provider or a proxy answered. Redacted (`flagger_core::redact::text`): a proxy or a
/// provider may echo the request's URL or credential header back.
pub fn excerpt(body: &str) -> String {
    let line = body
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let line = flagger_core::redact::text(line);
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.into_owned(),
    }
}

/// `error response: Status <status>: <what the answer says>` for an answer that is not a
/// success; `reason` is the provider's own error text when its body has one.
pub fn error_response(status: reqwest::StatusCode, reason: Option<String>, body: &str) -> String {
    let reason = reason
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| excerpt(body));
    if reason.is_empty() {
        format!("error response: Status {status}")
    } else {
        format!("error response: Status {status}: {reason}")
    }
}

/// Collapses every run of whitespace to one space (Flagger does this to the Prometheus and
/// Graphite queries).
pub fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_go_durations_with_flaggers_message() {
        assert_eq!(interval("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(interval("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            interval(""),
            Err(ProviderError::invalid(
                "error parsing metric interval: the metric has no interval"
            ))
        );
        let e = interval("soon").unwrap_err().message;
        assert!(
            e.starts_with("error parsing metric interval: \"soon\": "),
            "{e}"
        );
    }

    #[test]
    fn addresses_must_be_http_urls() {
        assert!(url_address("graphite", Some("http://graphite:8080")).is_ok());
        assert_eq!(
            url_address("graphite", Some("graphite:8080"))
                .unwrap_err()
                .message,
            "graphite address graphite:8080 is not a valid URL"
        );
        assert_eq!(
            url_address("influxdb", None).unwrap_err().message,
            "influxdb address  is not a valid URL"
        );
    }

    #[test]
    fn error_answers_say_the_status_and_the_providers_words() {
        let s = reqwest::StatusCode::FORBIDDEN;
        assert_eq!(
            error_response(s, Some("Forbidden".into()), "{}"),
            "error response: Status 403 Forbidden: Forbidden"
        );
        assert_eq!(
            error_response(s, None, "\n  <html>denied</html>\n"),
            "error response: Status 403 Forbidden: <html>denied</html>"
        );
        assert_eq!(
            error_response(s, None, ""),
            "error response: Status 403 Forbidden"
        );
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).len(), 203);
        // An answer that echoes the request's credentials.
        let echoed = excerpt("invalid key for GET https://api.example.com/q?api_key=s3cr3t-k3y");
        assert!(!echoed.contains("s3cr3t-k3y"), "{echoed}");
        let echoed = excerpt("rejected DD-API-KEY: s3cr3t-k3y");
        assert!(!echoed.contains("s3cr3t-k3y"), "{echoed}");
    }

    #[test]
    fn secret_keys_are_read_as_text() {
        let data = BTreeMap::from([("k".to_string(), b"v".to_vec())]);
        assert_eq!(secret_key(Some(&data), "k", String::new), Ok("v".into()));
        assert_eq!(
            secret_key(Some(&data), "x", || "no x".into()),
            Err(ProviderError::auth("no x"))
        );
        assert_eq!(
            secret_key(None, "k", || "no k".into()),
            Err(ProviderError::auth("no k"))
        );
    }
}
