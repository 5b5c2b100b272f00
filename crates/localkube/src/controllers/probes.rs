//! The kubelet's probes: what a container's `startupProbe`, `readinessProbe` and
//! `livenessProbe` ask for ([`Spec`]), when each runs and what its answers mean ([`Worker`],
//! pure), and running one ([`run`]).
//!
//! Timing: a probe first runs `initialDelaySeconds` after its container started (readiness
//! and liveness probes only once the startup probe, if any, has succeeded), then every
//! `periodSeconds`; an answer not back within `timeoutSeconds` is a failure. The result moves
//! to success after `successThreshold` successes in a row and to failure after
//! `failureThreshold` failures in a row. Until its first result a readiness probe counts as
//! failed, a liveness probe as succeeded and a startup probe as not yet. A liveness or startup
//! failure stops the probe until the container restarts; a startup success ends it.
//!
//! An `httpGet` probe is a real request to the pod's simulated app (through the data plane
//! when it runs, so it is recorded with the pod's other requests), with the kubelet's
//! `User-Agent`; any status from 200 to 399 is a success. The simulated app is podinfo: a probe
//! on a path it has no route for (another app's health endpoint, `/-/ready`) succeeds once the
//! app listens, without a request. `tcpSocket` and `grpc` probes succeed once the app listens;
//! `exec` probes succeed (commands are not run).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::Value;

use super::http;
use crate::dataplane::app::{self, PodApp};

/// The kubelet's `User-Agent` on HTTP probes (`kube-probe/<major>.<minor>` of the simulated
/// nodes' kubelet, v1.32.0).
pub const USER_AGENT: &str = "kube-probe/1.32";

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Startup,
    Readiness,
    Liveness,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Startup => "startupProbe",
            Kind::Readiness => "readinessProbe",
            Kind::Liveness => "livenessProbe",
        }
    }

    /// As the kubelet names it in events (`Readiness probe failed: ...`).
    pub(super) fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
        }
    }
}

/// A container port, by number or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Port {
    Number(i64),
    Named(String),
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Port::Number(n) => write!(f, "{n}"),
            Port::Named(n) => write!(f, "\"{n}\""),
        }
    }
}

impl Port {
    fn of(v: &Value) -> Option<Port> {
        match v {
            Value::Number(n) => n.as_i64().map(Port::Number),
            Value::String(s) => match s.parse() {
                Ok(n) => Some(Port::Number(n)),
                Err(_) => Some(Port::Named(s.clone())),
            },
            _ => None,
        }
    }

    /// The port number in `container` (a name resolved against its ports).
    pub(super) fn resolve(&self, container: &Value) -> Option<u16> {
        let n = match self {
            Port::Number(n) => *n,
            Port::Named(name) => container["ports"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == name.as_str())?["containerPort"]
                .as_i64()?,
        };
        u16::try_from(n).ok()
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    Http {
        host: Option<String>,
        port: Port,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        port: Port,
    },
    Grpc {
        port: Port,
    },
    Exec,
}

/// A probe of a container, with the API's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Spec {
    pub kind: Kind,
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

fn seconds(probe: &Value, field: &str, default: u64) -> Duration {
    Duration::from_secs(probe[field].as_u64().unwrap_or(default))
}

fn count(probe: &Value, field: &str, default: u32) -> u32 {
    probe[field]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

impl Spec {
    /// The `kind` probe of a container object, if it has one with a handler.
    pub(super) fn of(container: &Value, kind: Kind) -> Option<Spec> {
        let p = container.get(kind.field())?;
        let action = if let Some(h) = p.get("httpGet") {
            Action::Http {
                host: h["host"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(String::from),
                port: Port::of(&h["port"])?,
                path: match h["path"].as_str() {
                    Some(path) if path.starts_with('/') => path.to_string(),
                    Some(path) => format!("/{path}"),
                    None => "/".to_string(),
                },
                headers: h["httpHeaders"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| Some((x["name"].as_str()?.into(), x["value"].as_str()?.into())))
                    .collect(),
            }
        } else if let Some(t) = p.get("tcpSocket") {
            Action::Tcp {
                port: Port::of(&t["port"])?,
            }
        } else if let Some(g) = p.get("grpc") {
            Action::Grpc {
                port: Port::of(&g["port"])?,
            }
        } else if p.get("exec").is_some() {
            Action::Exec
        } else {
            return None;
        };
        Some(Spec {
            kind,
            action,
            initial_delay: seconds(p, "initialDelaySeconds", 0),
            period: seconds(p, "periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: seconds(p, "timeoutSeconds", 1).max(Duration::from_secs(1)),
            success_threshold: count(p, "successThreshold", 1),
            failure_threshold: count(p, "failureThreshold", 3),
        })
    }
}

/// One probe's answer: success, or a failure worded as the kubelet words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Success,
    Failure(String),
}

/// When a probe runs and what its answers add up to.
#[derive(Debug, Clone)]
pub(super) struct Worker {
    pub spec: Spec,
    /// `None` until a first result (startup probes).
    result: Option<bool>,
    /// The last answer and how many times in a row it came.
    last: Option<bool>,
    run: u32,
    next: Instant,
    in_flight: bool,
    /// No more probing for this container (liveness or startup failed; startup succeeded).
    done: bool,
}

impl Worker {
    /// A worker for a container that started at `started`, created at `now`.
    pub(super) fn new(spec: Spec, started: Instant, now: Instant) -> Worker {
        let result = match spec.kind {
            Kind::Readiness => Some(false),
            Kind::Liveness => Some(true),
            Kind::Startup => None,
        };
        Worker {
            next: (started + spec.initial_delay).max(now),
            spec,
            result,
            last: None,
            run: 0,
            in_flight: false,
            done: false,
        }
    }

    /// The current result (`Some(true)`: success).
    pub(super) fn result(&self) -> Option<bool> {
        self.result
    }

    /// Whether a probe should start now.
    pub(super) fn due(&self, now: Instant) -> bool {
        !self.in_flight && !self.done && now >= self.next
    }

    /// When the next probe is due (`None` while one runs, or when done).
    pub(super) fn next_due(&self) -> Option<Instant> {
        (!self.in_flight && !self.done).then_some(self.next)
    }

    /// A probe starts at `now`; the next one is due a period after this one was.
    pub(super) fn begin(&mut self, now: Instant) {
        self.in_flight = true;
        self.next += self.spec.period;
        if self.next <= now {
            self.next = now + self.spec.period;
        }
    }

    /// Takes an answer; the new result when it changed.
    pub(super) fn finish(&mut self, outcome: &Outcome) -> Option<bool> {
        self.in_flight = false;
        let ok = *outcome == Outcome::Success;
        if self.last == Some(ok) {
            self.run += 1;
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.spec.success_threshold
        } else {
            self.spec.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        let changed = self.result != Some(ok);
        self.result = Some(ok);
        match (self.spec.kind, ok) {
            (Kind::Liveness | Kind::Startup, false) | (Kind::Startup, true) => self.done = true,
            _ => {}
        }
        changed.then_some(ok)
    }
}

/// Where a probe goes.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub pod_ip: String,
    /// The pod object (its app answers in-process when the data plane does not run).
    pub pod: Value,
    /// The container object.
    pub container: Value,
    /// Whether the container's app accepts connections yet.
    pub listening: bool,
    /// The data plane's proxy, when it runs.
    pub proxy: Option<SocketAddr>,
}

fn missing_port(port: &Port, container: &Value) -> String {
    format!(
        "port {port} not found in container \"{}\"",
        container["name"].as_str().unwrap_or_default()
    )
}

fn refused(host: &str, port: u16) -> String {
    format!("dial tcp {host}:{port}: connect: connection refused")
}

/// Runs one probe.
pub(super) async fn run(action: &Action, timeout: Duration, t: &Target) -> Outcome {
    match action {
        Action::Exec => Outcome::Success,
        Action::Tcp { port } | Action::Grpc { port } => {
            let Some(port) = port.resolve(&t.container) else {
                return Outcome::Failure(missing_port(port, &t.container));
            };
            if t.listening {
                Outcome::Success
            } else {
                Outcome::Failure(refused(&t.pod_ip, port))
            }
        }
        Action::Http {
            host,
            port,
            path,
            headers,
        } => {
            let Some(port) = port.resolve(&t.container) else {
                return Outcome::Failure(missing_port(port, &t.container));
            };
            let host = host.as_deref().unwrap_or(&t.pod_ip);
            http_probe(host, port, path, headers, timeout, t).await
        }
    }
}

async fn http_probe(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
    t: &Target,
) -> Outcome {
    let Ok(url) = url::Url::parse(&format!("http://{host}:{port}{path}")) else {
        return Outcome::Failure(format!("invalid probe URL http://{host}:{port}{path}"));
    };
    if !t.listening {
        return Outcome::Failure(format!("Get \"{url}\": {}", refused(host, port)));
    }
    if host == t.pod_ip && !app::serves(url.path()) {
        // The pod's simulated app is podinfo: a path it has no route for stands for the real
        // app's own health endpoint (Prometheus' `/-/ready`, an `/actuator/health`), which
        // answers once the app listens. (A probe `host` elsewhere gets its request.)
        return Outcome::Success;
    }
    let mut all = vec![
        ("User-Agent".to_string(), USER_AGENT.to_string()),
        ("Accept".to_string(), "*/*".to_string()),
    ];
    all.extend(headers.iter().cloned());
    let status = match t.proxy {
        Some(proxy) => {
            let req = http::Get {
                url: url.clone(),
                headers: all,
                timeout,
            };
            match http::get(Some(proxy), &req).await {
                Ok((status, _)) => status,
                Err(e) => return Outcome::Failure(e.describe(&url)),
            }
        }
        None => match in_process(&t.pod, path, &all, timeout).await {
            Some(status) => status,
            None => return Outcome::Failure(http::HttpError::Timeout.describe(&url)),
        },
    };
    if (200..400).contains(&status) {
        Outcome::Success
    } else {
        Outcome::Failure(format!("HTTP probe failed with statuscode: {status}"))
    }
}

/// The pod's app answers directly (no data plane: nothing records the request).
async fn in_process(
    pod: &Value,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Option<u16> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.insert(k, v);
        }
    }
    let app = PodApp::from_pod(pod);
    let faults = app::Faults::default();
    let answer = tokio::time::timeout(timeout, app::serve(&app, &faults, &Method::GET, path, &map))
        .await
        .ok()?;
    Some(answer.status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(kind: Kind, probe: Value) -> Spec {
        let mut c = json!({"name": "app", "ports": [{"name": "http", "containerPort": 9898}]});
        c[kind.field()] = probe;
        Spec::of(&c, kind).expect("a probe")
    }

    #[test]
    fn specs_take_the_api_defaults_and_resolve_named_ports() {
        let s = spec(
            Kind::Readiness,
            json!({"httpGet": {"path": "readyz", "port": "http", "httpHeaders": [{"name": "X-A", "value": "1"}]}}),
        );
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
        assert_eq!(s.initial_delay, Duration::ZERO);
        let Action::Http {
            path,
            port,
            headers,
            ..
        } = &s.action
        else {
            panic!("an HTTP probe");
        };
        assert_eq!(path, "/readyz");
        assert_eq!(
            port.resolve(&json!({"ports": [{"name": "http", "containerPort": 9898}]})),
            Some(9898)
        );
        assert_eq!(headers, &vec![("X-A".to_string(), "1".to_string())]);
        assert!(
            Spec::of(
                &json!({"livenessProbe": {"periodSeconds": 3}}),
                Kind::Liveness
            )
            .is_none(),
            "no handler, no probe"
        );
        assert_eq!(
            spec(Kind::Liveness, json!({"exec": {"command": ["true"]}})).action,
            Action::Exec
        );
    }

    #[test]
    fn probes_run_after_the_initial_delay_then_every_period() {
        let t0 = Instant::now();
        let s = spec(
            Kind::Liveness,
            json!({"tcpSocket": {"port": 9898}, "initialDelaySeconds": 5, "periodSeconds": 10}),
        );
        let mut w = Worker::new(s, t0, t0);
        assert!(!w.due(t0 + Duration::from_secs(4)));
        assert!(w.due(t0 + Duration::from_secs(5)));
        w.begin(t0 + Duration::from_secs(5));
        assert_eq!(w.next_due(), None, "one probe at a time");
        assert!(!w.due(t0 + Duration::from_secs(14)));
        w.finish(&Outcome::Success);
        assert_eq!(w.next_due(), Some(t0 + Duration::from_secs(15)));
        // A probe that started late does not bunch up the next ones.
        w.begin(t0 + Duration::from_secs(40));
        w.finish(&Outcome::Success);
        assert_eq!(w.next_due(), Some(t0 + Duration::from_secs(50)));
    }

    #[test]
    fn readiness_follows_the_thresholds() {
        let t0 = Instant::now();
        let s = spec(
            Kind::Readiness,
            json!({"httpGet": {"port": 80}, "successThreshold": 2, "failureThreshold": 2}),
        );
        let mut w = Worker::new(s, t0, t0);
        assert_eq!(w.result(), Some(false), "not ready before the first answer");
        let fail = Outcome::Failure("HTTP probe failed with statuscode: 503".into());
        assert_eq!(w.finish(&Outcome::Success), None, "one success of two");
        assert_eq!(w.finish(&Outcome::Success), Some(true));
        assert_eq!(w.finish(&Outcome::Success), None, "no change");
        assert_eq!(w.finish(&fail), None, "one failure of two");
        assert_eq!(w.finish(&Outcome::Success), None, "the run starts over");
        assert_eq!(w.finish(&fail), None);
        assert_eq!(w.finish(&fail), Some(false));
        assert!(
            w.next_due().is_some(),
            "readiness keeps probing after a failure"
        );
    }

    #[test]
    fn liveness_failure_and_startup_success_end_the_probe() {
        let t0 = Instant::now();
        let mut live = Worker::new(
            spec(
                Kind::Liveness,
                json!({"httpGet": {"port": 80}, "failureThreshold": 1}),
            ),
            t0,
            t0,
        );
        assert_eq!(live.result(), Some(true));
        assert_eq!(live.finish(&Outcome::Failure("x".into())), Some(false));
        assert_eq!(live.next_due(), None);
        let mut startup = Worker::new(spec(Kind::Startup, json!({"exec": {}})), t0, t0);
        assert_eq!(startup.result(), None);
        assert_eq!(startup.finish(&Outcome::Success), Some(true));
        assert_eq!(startup.next_due(), None);
    }

    #[tokio::test]
    async fn an_app_that_does_not_listen_refuses_and_one_that_does_answers() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"containers": [{"name": "app", "image": "podinfo:1"}]}});
        let mut t = Target {
            pod_ip: "10.244.0.7".into(),
            pod: pod.clone(),
            container: json!({"name": "app", "ports": [{"name": "http", "containerPort": 9898}]}),
            listening: false,
            proxy: None,
        };
        let healthz = Action::Http {
            host: None,
            port: Port::Named("http".into()),
            path: "/healthz".into(),
            headers: Vec::new(),
        };
        assert_eq!(
            run(&healthz, Duration::from_secs(1), &t).await,
            Outcome::Failure(
                "Get \"http://10.244.0.7:9898/healthz\": dial tcp 10.244.0.7:9898: connect: connection refused".into()
            )
        );
        t.listening = true;
        assert_eq!(
            run(&healthz, Duration::from_secs(1), &t).await,
            Outcome::Success
        );
        let missing = Action::Http {
            host: None,
            port: Port::Number(9898),
            path: "/status/503".into(),
            headers: Vec::new(),
        };
        assert_eq!(
            run(&missing, Duration::from_secs(1), &t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
        let other_app = Action::Http {
            host: None,
            port: Port::Number(9090),
            path: "/-/ready".into(),
            headers: Vec::new(),
        };
        assert_eq!(
            run(&other_app, Duration::from_secs(1), &t).await,
            Outcome::Success,
            "another app's health endpoint answers once it listens"
        );
        let slow = Action::Http {
            host: None,
            port: Port::Number(9898),
            path: "/delay/3".into(),
            headers: Vec::new(),
        };
        assert!(matches!(
            run(&slow, Duration::from_secs(1), &t).await,
            Outcome::Failure(m) if m.contains("context deadline exceeded")
        ));
    }
}
