//! The dashboard under many open pages (issue 19): N live streams (default 100) stay open for a
//! duration (default 5 minutes) while both canaries change every second; every interval the
//! server process's RSS and CPU are printed, with the events the streams received. The watches
//! are one set per server, so memory should stay flat whatever the number of pages.
//!
//! `cargo bench -p flagger-cli --bench dashboard -- [--streams 100] [--duration 300]
//! [--interval 10]` (a shorter `--duration` for a quick run). Figures: docs/dashboard.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench code: a panic is the failure report"
)]

#[path = "../tests/dashboard_support/mod.rs"]
mod dashboard_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashboard_support::Env;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// RSS in KiB and CPU time (user + system) in clock ticks of a process.
fn sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat: 11 and 12 after the name.
    (rss, ticks(11) + ticks(12))
}

fn main() {
    let streams = arg("--streams", 100) as usize;
    let duration = Duration::from_secs(arg("--duration", 300));
    let interval = Duration::from_secs(arg("--interval", 10).max(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let env = Env::start().await;
        let dash = env.dashboard(&[]);
        let pid = dash.pid();
        let tokens = ["alice-token", "bob-token", "carol-token"];
        let received = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..streams {
            let url = format!("{}/api/stream", dash.url);
            let token = tokens[i % tokens.len()];
            let received = received.clone();
            let open = open.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("stream opens");
                assert!(r.status().is_success(), "stream: {}", r.status());
                open.fetch_add(1, Ordering::Relaxed);
                while let Ok(Some(chunk)) = r.chunk().await {
                    let n = chunk.windows(6).filter(|w| w == b"event:").count();
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
                open.fetch_sub(1, Ordering::Relaxed);
            }));
        }
        let hz = 100.0; // USER_HZ on Linux
        let start = Instant::now();
        let (rss0, cpu0) = sample(pid);
        println!(
            "dashboard pid {pid}: {streams} streams, {}s, both canaries change every second",
            duration.as_secs()
        );
        println!(
            "{:>6}  {:>8}  {:>6}  {:>6}  {:>10}",
            "t(s)", "RSS(MiB)", "CPU%", "open", "events"
        );
        println!(
            "{:>6}  {:>8.1}  {:>6}  {:>6}  {:>10}",
            0,
            rss0 as f64 / 1024.0,
            "-",
            open.load(Ordering::Relaxed),
            0
        );
        let mut last = (Instant::now(), cpu0);
        let mut next = Instant::now() + interval;
        let mut weight = 0;
        let (mut rss_min, mut rss_max, mut cpu_sum, mut samples) = (u64::MAX, 0u64, 0.0, 0u32);
        while start.elapsed() < duration {
            weight = (weight + 5) % 55;
            env.step("alpha", weight, 99.0 + (weight as f64) / 100.0)
                .await;
            env.set_weight("beta", weight).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if Instant::now() >= next {
                next += interval;
                let (rss, cpu) = sample(pid);
                let dt = last.0.elapsed().as_secs_f64();
                let pct = (cpu - last.1) as f64 / hz / dt * 100.0;
                last = (Instant::now(), cpu);
                rss_min = rss_min.min(rss);
                rss_max = rss_max.max(rss);
                cpu_sum += pct;
                samples += 1;
                println!(
                    "{:>6}  {:>8.1}  {:>6.1}  {:>6}  {:>10}",
                    start.elapsed().as_secs(),
                    rss as f64 / 1024.0,
                    pct,
                    open.load(Ordering::Relaxed),
                    received.load(Ordering::Relaxed)
                );
            }
        }
        let (_, cpu_end) = sample(pid);
        println!(
            "summary: RSS {:.1}..{:.1} MiB (at start {:.1}), CPU mean {:.1}% of one core \
             (total {:.1}s over {}s), {} events delivered to {} streams",
            rss_min as f64 / 1024.0,
            rss_max as f64 / 1024.0,
            rss0 as f64 / 1024.0,
            if samples > 0 {
                cpu_sum / samples as f64
            } else {
                0.0
            },
            (cpu_end - cpu0) as f64 / hz,
            start.elapsed().as_secs(),
            received.load(Ordering::Relaxed),
            open.load(Ordering::Relaxed)
        );
        for t in tasks {
            t.abort();
        }
        drop(dash);
    });
}
