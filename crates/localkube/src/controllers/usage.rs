//! Simulated resource usage of pods, for the HPA's resource metrics: CPU follows the rate of
//! requests the pod answered (as the data plane recorded them, probes included), memory is
//! constant.
//!
//! The model, per pod: CPU in cores = idle + rate × CPU time per request, where the rate is
//! requests per second over the last [`WINDOW`] (what the kubelet's summary reports to
//! metrics-server); the pod's template annotations set the terms: [`CPU_IDLE`] (a quantity,
//! default `1m`), [`CPU_PER_REQUEST`] (a duration, default `5ms`: 20 requests/s use 100m) and
//! [`MEMORY`] (a quantity, default `32Mi`). Without the data plane no request is served, so
//! pods use their idle CPU.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::objects::annotation;
use super::quantity;
use crate::util::parse_duration;

/// Pod-template annotation: CPU used with no traffic (a quantity, default `1m`).
pub const CPU_IDLE: &str = "localkube.dev/cpu-idle";
/// Pod-template annotation: CPU time each request costs (a duration, default `5ms`).
pub const CPU_PER_REQUEST: &str = "localkube.dev/cpu-per-request";
/// Pod-template annotation: memory used (a quantity, default `32Mi`).
pub const MEMORY: &str = "localkube.dev/memory-usage";

/// The window request rates are measured over.
pub const WINDOW: Duration = Duration::from_secs(15);

/// Per-pod samples of the requests answered, to measure rates.
#[derive(Debug, Default)]
pub(super) struct Rates {
    samples: HashMap<String, VecDeque<(Instant, u64)>>,
}

impl Rates {
    /// Records that pod `uid` has answered `count` requests by `now`; its request rate
    /// (per second) over the window. `started` is when the pod started (no request before).
    pub(super) fn rate(&mut self, uid: &str, count: u64, started: Instant, now: Instant) -> f64 {
        let s = self.samples.entry(uid.to_string()).or_default();
        // Samples older than the window go, but for the newest of them.
        while s.len() > 1 && s[1].0 + WINDOW <= now {
            s.pop_front();
        }
        // The base: the oldest sample in the window, else the last one before it, else the
        // pod's start (no request before); at least a second back, to measure something.
        let old_enough =
            |(t, _): &&(Instant, u64)| now.duration_since(*t) >= Duration::from_secs(1);
        let in_window = s.iter().filter(|(t, _)| *t + WINDOW > now).find(old_enough);
        let before = s.iter().rev().find(|(t, _)| *t + WINDOW <= now);
        let (t, c) = in_window.or(before).copied().unwrap_or((started, 0));
        if s.back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_millis(100))
        {
            s.push_back((now, count));
        }
        let secs = now.saturating_duration_since(t).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        count.saturating_sub(c) as f64 / secs
    }

    /// Forgets pods not in `live`.
    pub(super) fn retain(&mut self, live: &dyn Fn(&str) -> bool) {
        self.samples.retain(|uid, _| live(uid));
    }
}

/// CPU in cores a pod uses at `rate` requests per second.
pub(super) fn cpu(pod: &Value, rate: f64) -> f64 {
    let idle = annotation(pod, CPU_IDLE)
        .and_then(|q| quantity::parse(&Value::from(q)))
        .unwrap_or(0.001);
    let per_request = annotation(pod, CPU_PER_REQUEST)
        .and_then(parse_duration)
        .unwrap_or(Duration::from_millis(5));
    idle + rate * per_request.as_secs_f64()
}

/// Memory in bytes a pod uses.
pub(super) fn memory(pod: &Value) -> f64 {
    annotation(pod, MEMORY)
        .and_then(|q| quantity::parse(&Value::from(q)))
        .unwrap_or(32.0 * 1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_are_measured_over_the_window() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        // The first look: the average since the pod started.
        assert_eq!(r.rate("p", 100, t0, t0 + Duration::from_secs(10)), 10.0);
        // Later: over the last window only.
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(r.rate("p", 100, t0, at(20)), 0.0);
        assert_eq!(r.rate("p", 400, t0, at(30)), 30.0);
        assert_eq!(r.rate("p", 700, t0, at(40)), 30.0);
        r.retain(&|u| u != "p");
        assert_eq!(r.rate("p", 0, at(40), at(40)), 0.0);
    }

    #[test]
    fn cpu_follows_the_request_rate() {
        let pod = json!({"metadata": {"annotations": {CPU_IDLE: "10m", CPU_PER_REQUEST: "2ms"}}});
        assert!((cpu(&pod, 0.0) - 0.010).abs() < 1e-9);
        assert!((cpu(&pod, 50.0) - 0.110).abs() < 1e-9);
        let plain = json!({"metadata": {}});
        assert!((cpu(&plain, 20.0) - 0.101).abs() < 1e-9);
        assert_eq!(memory(&plain), 33554432.0);
    }
}
