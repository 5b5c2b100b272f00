//! What the data plane records of each request, for the meshes' telemetry: the types the
//! recorder ([`super::metrics`]) keeps and each mesh module renders as its own series
//! ([`Telemetry`]), and the Prometheus text helpers they share.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Prometheus's default buckets (seconds), which podinfo and ingress-nginx use.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Istio's and Envoy's default duration buckets, in milliseconds (OSM's Envoy too).
pub const ISTIO_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Linkerd's proxy latency buckets, in milliseconds.
pub const LINKERD_BUCKETS: [f64; 25] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

/// A histogram over [`BUCKETS`] (seconds).
#[derive(Debug, Default, Clone)]
pub struct Hist {
    pub buckets: [u64; 11],
    pub sum: f64,
    pub count: u64,
}

impl Hist {
    pub fn observe(&mut self, took: Duration) {
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i] += 1;
            }
        }
        self.sum += s;
        self.count += 1;
    }
}

/// Which proxy reports a request: the client's (its sidecar, or the gateway it came through) or
/// the one of the pod that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reporter {
    Source,
    Destination,
}

impl Reporter {
    /// As Istio's `reporter` label writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

/// The labels of one mesh series: who reported it, the client, the workload that answered and
/// the Service it was reached through.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeshLabels {
    pub reporter: Reporter,
    /// The client's namespace and workload (empty: not known, `unknown` in the series).
    pub source_namespace: String,
    pub source_workload: String,
    /// Envoy's response flags (`-`: none; `UH` no healthy upstream, `UT` upstream timeout,
    /// `NR` no route, `FI` an injected abort).
    pub response_flags: &'static str,
    /// The namespace of the pod that answered (empty when none did).
    pub namespace: String,
    /// The kind of its workload (`Deployment`, `DaemonSet`, ..., `Pod`; `Service` for a
    /// Service forwarded to a real process).
    pub workload_kind: String,
    /// Its workload: the Deployment owning its ReplicaSet (or its DaemonSet, StatefulSet...);
    /// for a Service forwarded to a real process, the Service's name.
    pub workload: String,
    pub pod: String,
    /// The Service the request was sent to (empty when a pod was addressed by IP).
    pub service_namespace: String,
    pub service: String,
    pub port: u16,
    pub status: u16,
}

/// The durations of one mesh series, in milliseconds, over Istio's and Linkerd's buckets.
#[derive(Debug, Default, Clone)]
pub struct MeshHist {
    pub istio: [u64; 19],
    pub linkerd: [u64; 25],
    pub sum_ms: f64,
    pub count: u64,
}

impl MeshHist {
    pub fn observe(&mut self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        for (i, b) in ISTIO_BUCKETS.iter().enumerate() {
            if ms <= *b {
                self.istio[i] += 1;
            }
        }
        for (i, b) in LINKERD_BUCKETS.iter().enumerate() {
            if ms <= *b {
                self.linkerd[i] += 1;
            }
        }
        self.sum_ms += ms;
        self.count += 1;
    }
}

/// The labels of one ingress controller series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IngressLabels {
    /// The namespace of the Ingress owning the location.
    pub namespace: String,
    /// The main Ingress owning the location (canary traffic included).
    pub ingress: String,
    /// The main Ingress's Service for that location.
    pub service: String,
    /// The canary upstream (`<namespace>-<service>-<port>`) when a canary Ingress took the
    /// request, else empty.
    pub canary: String,
    /// The Ingress path of the location.
    pub path: String,
    pub host: String,
    pub method: String,
    pub status: u16,
}

/// The durations of one ingress controller series.
#[derive(Debug, Default, Clone)]
pub struct IngressHist {
    /// The whole request as the controller saw it.
    pub request: Hist,
    /// The upstream's part (absent when no upstream answered).
    pub response: Hist,
}

/// The labels of one gateway series: what the gateway filed the request under, with the
/// request's method and the answer's status.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GatewayLabels {
    pub telemetry: super::router::GatewayTelemetry,
    pub method: String,
    pub status: u16,
}

/// Every bucket bound (ms) a gateway's histogram uses: Envoy's (Istio's), Prometheus's
/// default ones, Traefik's (0.1s, 0.3s, 1.2s, 5s) and APISIX's.
pub const GATEWAY_BOUNDS_MS: [f64; 25] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0, 200.0, 250.0, 300.0, 500.0, 1000.0, 1200.0,
    2000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Durations in milliseconds, counted over [`GATEWAY_BOUNDS_MS`]; each gateway renders the
/// bounds it uses.
#[derive(Debug, Default, Clone)]
pub struct Durations {
    pub buckets: [u64; 25],
    pub sum_ms: f64,
    pub count: u64,
}

impl Durations {
    pub fn observe(&mut self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        for (i, b) in GATEWAY_BOUNDS_MS.iter().enumerate() {
            if ms <= *b {
                self.buckets[i] += 1;
            }
        }
        self.sum_ms += ms;
        self.count += 1;
    }

    /// The cumulative counts at `bounds_ms` (each one of [`GATEWAY_BOUNDS_MS`]).
    pub fn cumulative(&self, bounds_ms: &[f64]) -> Vec<u64> {
        bounds_ms
            .iter()
            .map(|b| {
                GATEWAY_BOUNDS_MS
                    .iter()
                    .position(|g| g == b)
                    .map_or(0, |i| self.buckets[i])
            })
            .collect()
    }
}

/// The durations of one gateway series: the whole request as the gateway saw it, and the
/// upstream's part (absent when no upstream answered).
#[derive(Debug, Default, Clone)]
pub struct GatewayHist {
    pub request: Durations,
    pub upstream: Durations,
}

/// Everything recorded so far, as the renderers see it.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// Requests as the proxies report them: every request a pod (or a Service's upstream)
    /// answered, by the destination's proxy; every request routed to a Service or through a
    /// gateway, by the client's.
    pub mesh: BTreeMap<MeshLabels, MeshHist>,
    /// Requests the ingress controller served.
    pub ingress: BTreeMap<IngressLabels, IngressHist>,
    /// Requests the gateways served.
    pub gateway: BTreeMap<GatewayLabels, GatewayHist>,
}

/// A mesh's (or ingress controller's) series, rendered from what was recorded.
pub trait Telemetry: Send + Sync + std::fmt::Debug {
    /// Appends the series in the Prometheus text format.
    fn render(&self, recorded: &Recorded, out: &mut String);
}

impl Recorded {
    /// The records reported by the destinations' proxies.
    pub fn destination(&self) -> impl Iterator<Item = (&MeshLabels, &MeshHist)> {
        self.mesh
            .iter()
            .filter(|(l, _)| l.reporter == Reporter::Destination)
    }
}

/// A label value escaped for the text format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `v` escaped, or `unknown` when empty (as Istio and OSM write a label they cannot fill).
pub fn or_unknown(v: &str) -> String {
    if v.is_empty() {
        "unknown".to_string()
    } else {
        escape(v)
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes one histogram series (`_bucket` per bound and `+Inf`, `_sum`, `_count`).
pub fn histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    buckets: &[u64],
    sum: f64,
    count: u64,
) {
    for (b, n) in bounds.iter().zip(buckets) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// One series of a request counter and the histogram of the same requests' durations.
pub struct Row<'a> {
    /// The labels both carry.
    pub labels: String,
    /// Labels only the counter carries (`,name="value"`...), or empty.
    pub counter_only: String,
    pub buckets: &'a [u64],
    pub sum: f64,
    pub count: u64,
}

/// Writes a counter and a histogram over `bounds`, each with its `(name, help)`, one series of
/// each per row.
pub fn counter_and_histogram(
    out: &mut String,
    counter: (&str, &str),
    hist: (&str, &str),
    bounds: &[f64],
    rows: &[Row<'_>],
) {
    header(out, counter.0, "counter", counter.1);
    for r in rows {
        let _ = writeln!(
            out,
            "{}{{{}{}}} {}",
            counter.0, r.labels, r.counter_only, r.count
        );
    }
    header(out, hist.0, "histogram", hist.1);
    for r in rows {
        histogram(out, hist.0, &r.labels, bounds, r.buckets, r.sum, r.count);
    }
}
