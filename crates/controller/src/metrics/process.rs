//! The `process_*` metrics Go's Prometheus client exports for every process (Flagger's
//! included), read from `/proc` at each scrape: CPU seconds, resident and virtual memory, open
//! and maximum file descriptors, start time. Dashboards and alerts written for Flagger's pod
//! keep working.
//!
//! Written by hand: prometheus-client has no process collector, and the `/proc` parsing crates
//! (procfs) bring far more than these six files' few fields. Off Linux (no `/proc`), nothing
//! is exported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/<pid>/stat` times: Linux's USER_HZ, 100 on every
/// architecture Linux exposes to userspace.
const USER_HZ: f64 = 100.0;

/// How `/proc` reports "no limit" in `limits`; exported as Go's client does (2^64).
const UNLIMITED: f64 = u64::MAX as f64;

/// One reading of the process's figures; a field is `None` when `/proc` did not tell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub virtual_max_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl Sample {
    /// Reads this process's figures from `/proc`.
    pub fn read() -> Sample {
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as f64);
        Sample::parse(
            std::fs::read_to_string("/proc/self/stat").ok().as_deref(),
            std::fs::read_to_string("/proc/self/status").ok().as_deref(),
            std::fs::read_to_string("/proc/self/limits").ok().as_deref(),
            std::fs::read_to_string("/proc/stat").ok().as_deref(),
            open_fds,
        )
    }

    /// The figures from the texts of `/proc/self/{stat,status,limits}` and `/proc/stat`.
    pub fn parse(
        stat: Option<&str>,
        status: Option<&str>,
        limits: Option<&str>,
        system_stat: Option<&str>,
        open_fds: Option<f64>,
    ) -> Sample {
        // Fields after the command name (which may hold spaces and parentheses): the first
        // is field 3 (`state`) of proc(5).
        let fields: Vec<&str> = stat
            .and_then(|s| s.rsplit_once(')'))
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
        let cpu_seconds = match (field(14), field(15)) {
            (Some(user), Some(system)) => Some((user + system) / USER_HZ),
            _ => None,
        };
        let boot_time = system_stat.and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        let start_time_seconds = match (boot_time, field(22)) {
            (Some(boot), Some(ticks)) => Some(boot + ticks / USER_HZ),
            _ => None,
        };
        let kib = |key: &str| -> Option<f64> {
            let line = status?.lines().find_map(|l| l.strip_prefix(key))?;
            let value: f64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(value * 1024.0)
        };
        let soft_limit = |name: &str| -> Option<f64> {
            let line = limits?.lines().find_map(|l| l.strip_prefix(name))?;
            match line.split_whitespace().next()? {
                "unlimited" => Some(UNLIMITED),
                v => v.parse().ok(),
            }
        };
        Sample {
            cpu_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: field(23),
            virtual_max_bytes: soft_limit("Max address space"),
            open_fds,
            max_fds: soft_limit("Max open files"),
            start_time_seconds,
        }
    }
}

/// Exports a fresh [`Sample`] at each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = Sample::read();
        if let Some(v) = s.cpu_seconds {
            let counter = ConstCounter::new(v);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time of the process, in seconds.",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory of the process, in bytes.",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory of the process, in bytes.",
                s.virtual_bytes,
            ),
            (
                "process_virtual_memory_max_bytes",
                "Most virtual memory the process may have, in bytes.",
                s.virtual_max_bytes,
            ),
            (
                "process_open_fds",
                "File descriptors the process has open.",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Most file descriptors the process may open.",
                s.max_fds,
            ),
            (
                "process_start_time_seconds",
                "When the process started, in seconds since the Unix epoch.",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let gauge = ConstGauge::new(v);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (flagger (ctl)) S 1 4242 4242 0 -1 4194560 2500 0 0 0 \
        150 50 0 0 20 0 9 0 12345 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 \
        1 0 0 0 0 0";
    const STATUS: &str = "Name:\tflagger\nVmSize:\t  120560 kB\nVmRSS:\t    8192 kB\nThreads:\t9\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
        Max address space         unlimited            unlimited            bytes\n\
        Max open files            1024                 1048576              files\n";
    const SYSTEM: &str = "cpu  1 2 3 4\nbtime 1700000000\nprocesses 100\n";

    #[test]
    fn reads_procs_fields_as_gos_client_does() {
        let s = Sample::parse(
            Some(STAT),
            Some(STATUS),
            Some(LIMITS),
            Some(SYSTEM),
            Some(12.0),
        );
        assert_eq!(
            s,
            Sample {
                cpu_seconds: Some(2.0),
                resident_bytes: Some(8192.0 * 1024.0),
                virtual_bytes: Some(123_456_789.0),
                virtual_max_bytes: Some(UNLIMITED),
                open_fds: Some(12.0),
                max_fds: Some(1024.0),
                start_time_seconds: Some(1_700_000_000.0 + 123.45),
            }
        );
    }

    #[test]
    fn missing_files_export_nothing() {
        assert_eq!(
            Sample::parse(None, None, None, None, None),
            Sample::default()
        );
    }

    #[test]
    fn this_process_is_exported() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for name in [
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "missing {name:?} in:\n{text}");
        }
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("a resident memory figure");
        assert!(rss > 1024.0 * 1024.0, "{rss}");
    }
}
