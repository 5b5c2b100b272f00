//! Request metrics in Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Hist {
    buckets: [u64; 8],
    sum: f64,
    count: u64,
}

/// Counters and latency histograms by verb, resource and code.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<(String, String), Hist>>,
    watchers: Mutex<i64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((verb.into(), resource.into(), code))
            .or_default() += 1;
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = l.entry((verb.into(), resource.into())).or_default();
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.buckets[i] += 1;
            }
        }
        h.sum += s;
        h.count += 1;
    }

    pub fn watch_started(&self) {
        *self.watchers.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    pub fn watch_ended(&self) {
        *self.watchers.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, objects: &[(String, usize)], rv: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Requests by verb, resource and HTTP code.\n# TYPE apiserver_request_total counter\n");
        for ((v, r, c), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "apiserver_request_total{{verb=\"{v}\",resource=\"{r}\",code=\"{c}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP apiserver_request_duration_seconds Request latency.\n# TYPE apiserver_request_duration_seconds histogram\n");
        for ((v, r), h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "apiserver_request_duration_seconds_bucket{{verb=\"{v}\",resource=\"{r}\",le=\"{b}\"}} {}\n",
                    h.buckets[i]
                ));
            }
            out.push_str(&format!("apiserver_request_duration_seconds_bucket{{verb=\"{v}\",resource=\"{r}\",le=\"+Inf\"}} {}\n", h.count));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_sum{{verb=\"{v}\",resource=\"{r}\"}} {}\n",
                h.sum
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_count{{verb=\"{v}\",resource=\"{r}\"}} {}\n",
                h.count
            ));
        }
        out.push_str("# HELP apiserver_registered_watchers Open watch streams.\n# TYPE apiserver_registered_watchers gauge\n");
        out.push_str(&format!(
            "apiserver_registered_watchers {}\n",
            self.watchers.lock().unwrap_or_else(|e| e.into_inner())
        ));
        out.push_str("# HELP apiserver_storage_objects Stored objects by resource.\n# TYPE apiserver_storage_objects gauge\n");
        for (r, n) in objects {
            out.push_str(&format!(
                "apiserver_storage_objects{{resource=\"{r}\"}} {n}\n"
            ));
        }
        out.push_str(&format!("# HELP localkube_resource_version The current resourceVersion.\n# TYPE localkube_resource_version gauge\nlocalkube_resource_version {rv}\n"));
        out
    }
}
