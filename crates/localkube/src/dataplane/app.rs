//! What a simulated pod answers: podinfo's API (`/`, `/healthz`, `/readyz`, `POST /token`,
//! `/status/{code}`, `/delay/{seconds}`, `/version`, `/headers`), with the version taken from
//! the image tag, and faults from the pod's annotations.
//!
//! Faults apply to every route but the health probes: [`LATENCY`] delays each answer
//! (fixed, or uniform in a range), and [`ERROR_RATIO`] fails that fraction of requests
//! with [`ERROR_CODE`]. Failures are spread evenly (error diffusion per pod: with a ratio
//! of 0.1, exactly one request in ten fails), so a test or a canary analysis sees the configured
//! ratio without sampling noise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::util;
use crate::util::parse_duration;

/// Pod-template annotation: the fraction (0..=1) of application requests that fail.
pub const ERROR_RATIO: &str = "localkube.dev/error-ratio";
/// Pod-template annotation: the HTTP status of injected failures (default 500).
pub const ERROR_CODE: &str = "localkube.dev/error-code";
/// Pod-template annotation: added latency, fixed (`50ms`) or uniform in a range (`20ms-80ms`).
pub const LATENCY: &str = "localkube.dev/latency";

/// A simulated pod's identity and behaviour, read from its object.
#[derive(Debug, Clone, PartialEq)]
pub struct PodApp {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The first container's image tag (`latest` when untagged).
    pub version: String,
    pub error_ratio: f64,
    pub error_code: StatusCode,
    /// Added latency, uniform in `[min, max]`.
    pub latency: (Duration, Duration),
}

/// The tag of an image reference (`ghcr.io/stefanprodan/podinfo:6.0.1` gives `6.0.1`).
pub fn image_tag(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag.to_string(),
        _ => "latest".to_string(),
    }
}

/// Parses `50ms` or `20ms-80ms`.
pub fn parse_latency(s: &str) -> Option<(Duration, Duration)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_duration(a)?, parse_duration(b)?);
            Some((a.min(b), a.max(b)))
        }
        None => parse_duration(s).map(|d| (d, d)),
    }
}

impl PodApp {
    /// Reads a pod object. Unparseable annotations are ignored (and logged).
    pub fn from_pod(pod: &Value) -> Self {
        let ann = |k: &str| {
            pod.pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        let name = util::name(pod).to_string();
        let error_ratio = ann(ERROR_RATIO)
            .and_then(|r| {
                let v = r
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v));
                if v.is_none() {
                    tracing::warn!(pod = %name, value = r, "ignoring invalid {}", ERROR_RATIO);
                }
                v
            })
            .unwrap_or(0.0);
        let error_code = ann(ERROR_CODE)
            .and_then(|c| c.trim().parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let latency = ann(LATENCY).and_then(parse_latency).unwrap_or_default();
        let image = pod
            .pointer("/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Self {
            namespace: util::namespace(pod).to_string(),
            uid: pod
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or(&name)
                .to_string(),
            name,
            version: image_tag(image),
            error_ratio,
            error_code,
            latency,
        }
    }
}

/// An answer, and the `path` label podinfo records it under (`None`: not recorded).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub route: Option<&'static str>,
}

/// Fault state across requests: the error-diffusion accumulator of each pod.
#[derive(Debug, Default)]
pub struct Faults {
    owed: Mutex<HashMap<String, f64>>,
}

impl Faults {
    /// Whether this request to `pod` fails: true for `error_ratio` of the requests, evenly
    /// spread.
    fn fail(&self, pod: &PodApp) -> bool {
        if pod.error_ratio <= 0.0 {
            return false;
        }
        let mut owed = self.owed.lock().unwrap_or_else(|e| e.into_inner());
        let acc = owed.entry(pod.uid.clone()).or_insert(0.0);
        *acc += pod.error_ratio;
        if *acc >= 1.0 - 1e-9 {
            *acc -= 1.0;
            true
        } else {
            false
        }
    }
}

fn latency_of(pod: &PodApp) -> Duration {
    let (min, max) = pod.latency;
    if max <= min {
        return min;
    }
    min + (max - min).mul_f64(crate::faults::chance())
}

/// Whether the simulated app (podinfo) has a route for `path` (without its query).
pub fn serves(path: &str) -> bool {
    route_of(path).is_some()
}

/// A podinfo route: the `path` label podinfo records its requests under (its route's name, else
/// its path template, as `[^a-zA-Z0-9]+` turned into `_`, `root` for `/`), and the methods it
/// answers.
struct Route {
    label: &'static str,
    methods: &'static [&'static str],
}

const GET: &[&str] = &["GET"];

/// The route `path` matches; `None`: podinfo has none (404, not recorded).
fn route_of(path: &str) -> Option<Route> {
    let r = |label, methods| Some(Route { label, methods });
    // `{code:[0-9]+}`, `{wait:[0-9]+}` (fractions of seconds allowed here).
    let number = |p: &str, prefix: &str, fraction: bool| {
        p.strip_prefix(prefix).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_digit() || (fraction && c == '.'))
        })
    };
    match path.trim_end_matches('/') {
        "" => r("root", GET),
        "/api/info" => r("api_info", GET),
        "/healthz" => r("healthz", GET),
        "/readyz" => r("readyz", GET),
        "/token" => r("token", &["POST"]),
        "/version" => r("version", GET),
        "/headers" => r("headers", &["GET", "POST"]),
        "/metrics" => r("metrics", GET),
        p if number(p, "/status/", false) => r("status", &["GET", "POST", "PUT"]),
        p if number(p, "/delay/", true) => r("delay", GET),
        _ => None,
    }
}

fn msg(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (status, json!({"code": status.as_u16(), "message": message}))
}

/// Serves one request on `pod`. `/metrics` is answered by the caller (it knows the pod's
/// series); here it is only matched, so that the request is recorded like any other.
pub async fn serve(
    pod: &PodApp,
    faults: &Faults,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Answer {
    let Some(route) = route_of(path) else {
        let (status, body) = msg(StatusCode::NOT_FOUND, "404 page not found");
        return Answer {
            status,
            body,
            route: None,
        };
    };
    // gorilla/mux answers a method the route does not take with 405, before podinfo's
    // middleware: not recorded.
    if !route.methods.contains(&method.as_str()) {
        let (status, body) = msg(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        return Answer {
            status,
            body,
            route: None,
        };
    }
    let label = Some(route.label);
    let probe = matches!(route.label, "healthz" | "readyz" | "metrics");
    if !probe {
        let delay = latency_of(pod);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if faults.fail(pod) {
            let (status, body) = msg(pod.error_code, "injected fault (localkube.dev/error-ratio)");
            return Answer {
                status,
                body,
                route: label,
            };
        }
    }
    let (status, body) = match route.label {
        "root" | "api_info" => (
            StatusCode::OK,
            json!({
                "hostname": pod.name,
                "version": pod.version,
                "revision": "localkube",
                "color": "#34577c",
                "logo": "https://raw.githubusercontent.com/stefanprodan/podinfo/gh-pages/cuddle_clap.gif",
                "message": format!("greetings from podinfo v{}", pod.version),
                "goos": "linux",
                "goarch": "amd64",
                "runtime": "localkube",
                "num_goroutine": "8",
                "num_cpu": "8",
            }),
        ),
        "healthz" | "readyz" => (StatusCode::OK, json!({"status": "OK"})),
        "version" => (
            StatusCode::OK,
            json!({"commit": "localkube", "version": pod.version}),
        ),
        "headers" => {
            let mut h = serde_json::Map::new();
            for (k, v) in headers {
                let entry = h.entry(k.as_str().to_string()).or_insert_with(|| json!([]));
                if let (Some(list), Ok(v)) = (entry.as_array_mut(), v.to_str()) {
                    list.push(json!(v));
                }
            }
            (StatusCode::OK, Value::Object(h))
        }
        "token" => {
            let expires = chrono::Utc::now() + chrono::Duration::minutes(1);
            (
                StatusCode::OK,
                json!({
                    "token": format!("localkube.{}.{}", pod.name, uuid::Uuid::new_v4().simple()),
                    "expires_at": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                }),
            )
        }
        "status" => {
            let code = path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok());
            match code {
                Some(c) => (c, json!({"status": c.as_u16()})),
                None => msg(StatusCode::BAD_REQUEST, "invalid status code"),
            }
        }
        "delay" => {
            let secs = path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .and_then(|c| c.parse::<f64>().ok())
                .filter(|s| s.is_finite() && (0.0..=600.0).contains(s));
            match secs {
                Some(s) => {
                    tokio::time::sleep(Duration::from_secs_f64(s)).await;
                    (StatusCode::OK, json!({"delay": s}))
                }
                None => msg(StatusCode::BAD_REQUEST, "invalid delay"),
            }
        }
        // `metrics`: the caller answers it.
        _ => (StatusCode::OK, Value::Null),
    };
    Answer {
        status,
        body,
        route: label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags() {
        assert_eq!(image_tag("ghcr.io/stefanprodan/podinfo:6.0.1"), "6.0.1");
        assert_eq!(image_tag("localhost:5000/podinfo"), "latest");
        assert_eq!(image_tag("podinfo:2@sha256:abc"), "2");
        assert_eq!(image_tag("nginx"), "latest");
    }

    #[test]
    fn latencies() {
        assert_eq!(
            parse_latency("50ms"),
            Some((Duration::from_millis(50), Duration::from_millis(50)))
        );
        assert_eq!(
            parse_latency("80ms-20ms"),
            Some((Duration::from_millis(20), Duration::from_millis(80)))
        );
        assert_eq!(parse_latency("soon"), None);
    }

    #[test]
    fn errors_are_spread_evenly() {
        let pod = PodApp::from_pod(&json!({
            "metadata": {"name": "p", "uid": "u", "annotations": {super::ERROR_RATIO: "0.1", super::ERROR_CODE: "503"}},
            "spec": {"containers": [{"image": "podinfo:3"}]},
        }));
        assert_eq!(pod.error_code, StatusCode::SERVICE_UNAVAILABLE);
        let f = Faults::default();
        let fails: Vec<bool> = (0..1000).map(|_| f.fail(&pod)).collect();
        assert_eq!(fails.iter().filter(|x| **x).count(), 100);
        assert!(fails[..10].iter().filter(|x| **x).count() == 1);
    }
}
