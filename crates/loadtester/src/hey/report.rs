//! Statistics of a run and hey's text (and CSV) report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Minimum, maximum and sum of one timing phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct Phase {
    pub sum_ns: u128,
    pub min_ns: u64,
    pub max_ns: u64,
}

impl Phase {
    fn add(&mut self, ns: u64, first: bool) {
        self.sum_ns += u128::from(ns);
        if first || ns < self.min_ns {
            self.min_ns = ns;
        }
        if ns > self.max_ns {
            self.max_ns = ns;
        }
    }

    fn merge(&mut self, other: &Phase, self_empty: bool) {
        self.sum_ns += other.sum_ns;
        if self_empty || other.min_ns < self.min_ns {
            self.min_ns = other.min_ns;
        }
        self.max_ns = self.max_ns.max(other.max_ns);
    }
}

/// The timings of one answered request, in nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub total_ns: u64,
    pub conn_ns: u64,
    pub dns_ns: u64,
    pub write_ns: u64,
    pub wait_ns: u64,
    pub read_ns: u64,
    pub status: u16,
    /// When the request started, from the start of the run.
    pub offset_ns: u64,
    pub bytes: u64,
}

/// Statistics of one worker, or of a whole run once merged.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of answered requests, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Answered requests (any status code).
    pub answered: u64,
    pub total: Phase,
    pub conn: Phase,
    pub dns: Phase,
    pub write: Phase,
    pub wait: Phase,
    pub read: Phase,
    pub bytes: u64,
    pub status: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Every sample, kept only for CSV output.
    pub samples: Option<Vec<Sample>>,
}

impl Stats {
    pub fn new(keep_samples: bool) -> Self {
        Self {
            // 1µs to 1h, auto-resizing beyond; 3 significant digits.
            latency_us: {
                let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("constant histogram bounds are valid");
                h.auto(true);
                h
            },
            answered: 0,
            total: Phase::default(),
            conn: Phase::default(),
            dns: Phase::default(),
            write: Phase::default(),
            wait: Phase::default(),
            read: Phase::default(),
            bytes: 0,
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            samples: keep_samples.then(Vec::new),
        }
    }

    pub fn record(&mut self, s: Sample) {
        let first = self.answered == 0;
        self.answered += 1;
        self.total.add(s.total_ns, first);
        self.conn.add(s.conn_ns, first);
        self.dns.add(s.dns_ns, first);
        self.write.add(s.write_ns, first);
        self.wait.add(s.wait_ns, first);
        self.read.add(s.read_ns, first);
        self.bytes += s.bytes;
        let _ = self.latency_us.record((s.total_ns / 1000).max(1));
        *self.status.entry(s.status).or_default() += 1;
        if let Some(v) = &mut self.samples {
            v.push(s);
        }
    }

    pub fn record_error(&mut self, message: String) {
        *self.errors.entry(message).or_default() += 1;
    }

    pub fn merge(&mut self, other: Stats) {
        let empty = self.answered == 0;
        if other.answered > 0 {
            self.total.merge(&other.total, empty);
            self.conn.merge(&other.conn, empty);
            self.dns.merge(&other.dns, empty);
            self.write.merge(&other.write, empty);
            self.wait.merge(&other.wait, empty);
            self.read.merge(&other.read, empty);
        }
        self.answered += other.answered;
        self.bytes += other.bytes;
        let _ = self.latency_us.add(&other.latency_us);
        for (k, v) in other.status {
            *self.status.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.samples, other.samples) {
            mine.extend(theirs);
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Report {
    pub stats: Stats,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn avg(p: &Phase, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        p.sum_ns as f64 / n as f64 / 1e9
    }
}

impl Report {
    /// Answered requests per second.
    pub fn requests_per_sec(&self) -> f64 {
        let t = self.elapsed.as_secs_f64();
        if t > 0.0 {
            self.stats.answered as f64 / t
        } else {
            0.0
        }
    }

    /// hey's summary.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let n = s.answered;
        let mut out = String::new();
        let _ = writeln!(out, "\nSummary:");
        let _ = writeln!(out, "  Total:\t{:.4} secs", self.elapsed.as_secs_f64());
        let _ = writeln!(out, "  Slowest:\t{:.4} secs", secs(s.total.max_ns));
        let _ = writeln!(out, "  Fastest:\t{:.4} secs", secs(s.total.min_ns));
        let _ = writeln!(out, "  Average:\t{:.4} secs", avg(&s.total, n));
        let _ = writeln!(out, "  Requests/sec:\t{:.4}", self.requests_per_sec());
        let _ = writeln!(out, "  ");
        if s.bytes > 0 {
            let _ = writeln!(out, "  Total data:\t{} bytes", s.bytes);
            let _ = writeln!(out, "  Size/request:\t{} bytes", s.bytes / n.max(1));
        }
        if n > 0 {
            out.push_str(&self.histogram());
            out.push_str(&self.latency_distribution());
            let _ = writeln!(out, "\nDetails (average, fastest, slowest):");
            for (label, p) in [
                ("DNS+dialup", &s.conn),
                ("DNS-lookup", &s.dns),
                ("req write", &s.write),
                ("resp wait", &s.wait),
                ("resp read", &s.read),
            ] {
                let _ = writeln!(
                    out,
                    "  {label}:\t{:.4} secs, {:.4} secs, {:.4} secs",
                    avg(p, n),
                    secs(p.min_ns),
                    secs(p.max_ns)
                );
            }
        }
        if !s.status.is_empty() {
            let _ = writeln!(out, "\nStatus code distribution:");
            for (code, count) in &s.status {
                let _ = writeln!(out, "  [{code}]\t{count} responses");
            }
        }
        if !s.errors.is_empty() {
            let _ = writeln!(out, "\nError distribution:");
            for (msg, count) in &s.errors {
                let _ = writeln!(out, "  [{count}]\t{msg}");
            }
        }
        out
    }

    fn histogram(&self) -> String {
        const BUCKETS: usize = 10;
        let s = &self.stats;
        let fastest = secs(s.total.min_ns);
        let slowest = secs(s.total.max_ns);
        let step = (slowest - fastest) / BUCKETS as f64;
        let marks: Vec<f64> = (0..=BUCKETS)
            .map(|i| {
                if i == BUCKETS {
                    slowest
                } else {
                    fastest + step * i as f64
                }
            })
            .collect();
        let mut counts = vec![0u64; marks.len()];
        for v in s.latency_us.iter_recorded() {
            let value = v.value_iterated_to() as f64 / 1e6;
            let idx = marks.iter().position(|m| value <= *m).unwrap_or(BUCKETS);
            counts[idx] += v.count_at_value();
        }
        let max = counts.iter().copied().max().unwrap_or(0).max(1);
        let mut out = String::from("\nResponse time histogram:\n");
        for (mark, count) in marks.iter().zip(&counts) {
            let bar = "■".repeat((count * 40 / max) as usize);
            let _ = writeln!(out, "  {mark:.3} [{count}]\t|{bar}");
        }
        out
    }

    fn latency_distribution(&self) -> String {
        let mut out = String::from("\nLatency distribution:\n");
        for p in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0] {
            let v = self.stats.latency_us.value_at_percentile(p);
            if v > 0 {
                let _ = writeln!(out, "  {p}% in {:.4} secs", v as f64 / 1e6);
            }
        }
        out
    }

    /// hey's `-o csv` output.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset\n",
        );
        for s in self.stats.samples.iter().flatten() {
            let _ = writeln!(
                out,
                "{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{},{:.4}",
                secs(s.total_ns),
                secs(s.conn_ns),
                secs(s.dns_ns),
                secs(s.write_ns),
                secs(s.wait_ns),
                secs(s.read_ns),
                s.status,
                secs(s.offset_ns)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, status: u16) -> Sample {
        Sample {
            total_ns: ms * 1_000_000,
            status,
            bytes: 10,
            ..Sample::default()
        }
    }

    #[test]
    fn summary_has_hey_sections() {
        let mut a = Stats::new(true);
        let mut b = Stats::new(true);
        for i in 1..=50 {
            a.record(sample(i, 200));
            b.record(sample(i + 50, 503));
        }
        b.record_error("Get \"http://x\": EOF".into());
        a.merge(b);
        let r = Report {
            stats: a,
            elapsed: Duration::from_secs(2),
        };
        let text = r.summary();
        for needle in [
            "Summary:",
            "  Total:\t2.0000 secs",
            "  Slowest:\t0.1000 secs",
            "  Fastest:\t0.0010 secs",
            "  Average:\t0.0505 secs",
            "  Requests/sec:\t50.0000",
            "  Total data:\t1000 bytes",
            "Response time histogram:",
            "Latency distribution:",
            "  50% in 0.05",
            "Details (average, fastest, slowest):",
            "  [200]\t50 responses",
            "  [503]\t50 responses",
            "Error distribution:\n  [1]\tGet \"http://x\": EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let bars: u64 = text
            .lines()
            .filter(|l| l.contains("\t|"))
            .filter_map(|l| l.split_once(" [").and_then(|(_, r)| r.split_once(']')))
            .filter_map(|(n, _)| n.parse::<u64>().ok())
            .sum();
        assert_eq!(bars, 100);
        assert_eq!(r.csv().lines().count(), 101);
    }
}
