//! `flagger judge` as a binary: on the CSV fixtures in `tests/fixtures/judge/` for each exit
//! code (0 Pass, 1 Fail, 2 Marginal, 2 bad input), with `-o json`, and against a real
//! Prometheus (Debian's package) whose TSDB is backfilled by `promtool` with known samples, so
//! the range queries return exactly the series the test wrote.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flagger");

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/judge")
        .join(name)
        .display()
        .to_string()
}

fn judge(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("judge")
        .args(args)
        .output()
        .expect("run flagger judge")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn files(canary: &str) -> Vec<String> {
    vec![
        "--canary".into(),
        fixture(canary),
        "--primary".into(),
        fixture("primary.csv"),
    ]
}

fn run(args: Vec<String>) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    judge(&refs)
}

/// The row of a metric in the table, split on runs of spaces.
fn row(stdout: &str, metric: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{metric} ")))
        .unwrap_or_else(|| panic!("no row for {metric} in\n{stdout}"))
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_canary_like_the_primary_passes_with_exit_0() {
    let mut args = files("canary-good.csv");
    args.push("--direction=increase".into());
    let out = run(args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(row(&stdout, "latency")[1], "Pass");
    assert_eq!(row(&stdout, "cpu")[1], "Pass");
    assert!(
        stdout.ends_with("Pass: score 100.00 (at least pass 95): every scored metric passed\n"),
        "{stdout}"
    );
}

#[test]
fn a_canary_30_percent_slower_fails_with_exit_1() {
    let mut args = files("canary-slow.csv");
    args.push("--direction=increase".into());
    let out = run(args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let latency = row(&stdout, "latency");
    assert_eq!(
        latency[..5],
        [
            "latency",
            "High",
            "n=30 median=0.1317",
            "n=30 median=0.09977",
            "mann-whitney"
        ]
    );
    // The estimate, interval, band and effect size are printed.
    assert_eq!(
        latency[5..],
        [
            "0.03294",
            "[0.0276, 0.0383]",
            "±0.008234",
            "meanRatio 1.334"
        ]
    );
    assert!(stdout.contains("METRIC   RESULT"), "{stdout}");
    assert!(stdout.contains("98% INTERVAL"), "{stdout}");
    assert!(
        stdout.contains("latency: canary higher: the 98% interval of the shift [0.0276, 0.0383] lies above +0.008234 and the meanRatio 1.334 is at least 1"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("Fail: score 50.00 (below marginal 75): failing: latency\n"),
        "{stdout}"
    );
}

#[test]
fn a_weighted_score_between_the_thresholds_is_marginal_with_exit_2() {
    let mut args = files("canary-slow.csv");
    args.extend(["--config".into(), fixture("weighted.yaml")]);
    let out = run(args);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("group latency: 0.00, weight 20"),
        "{stdout}"
    );
    assert!(stdout.contains("group cpu: 100.00, weight 80"), "{stdout}");
    assert!(
        stdout.ends_with(
            "Marginal: score 80.00 (below pass 95, at least marginal 75): failing: latency\n"
        ),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn bad_input_exits_2_with_a_message_and_no_output() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            files("canary-bad.csv"),
            "canary-bad.csv: line 3: latency \"fast\" is not a number",
        ),
        (files("missing.csv"), "missing.csv: cannot read: "),
        (
            [files("canary-slow.csv"), vec!["--pass=50".into()]].concat(),
            "invalid options:\n  thresholds.marginal: 75 is above the pass threshold 50",
        ),
        (
            [
                files("canary-slow.csv"),
                vec!["--allowed-increase=-1".into()],
            ]
            .concat(),
            "metrics.latency.effectSize.allowedIncrease: must be a ratio of 0 or more for meanRatio, not -1",
        ),
        (
            [
                files("canary-slow.csv"),
                vec![
                    "--config".into(),
                    fixture("weighted.yaml"),
                    "--critical".into(),
                ],
            ]
            .concat(),
            "per-metric flags cannot be combined with --config",
        ),
        (
            [files("canary-slow.csv"), vec!["--test=proportions".into()]].concat(),
            "the proportions test needs its trials",
        ),
    ];
    for (args, want) in cases {
        let out = run(args.clone());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("flagger judge: "), "{stderr}");
        assert!(stderr.contains(want), "{want:?} in {stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        for debug in ["Some(", "Err(", "Ok(", " {", "\\\""] {
            assert!(!stderr.contains(debug), "debug text {debug:?} in {stderr}");
        }
    }
}

#[test]
fn json_output_carries_every_figure() {
    let mut args = files("canary-slow.csv");
    args.extend(["--direction=increase".into(), "-o".into(), "json".into()]);
    let out = run(args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(j["verdict"], "Fail");
    assert_eq!(j["score"], 50.0);
    assert_eq!(j["thresholds"]["pass"], 95.0);
    let latency = &j["metrics"][0];
    assert_eq!(latency["name"], "latency");
    assert_eq!(latency["classification"], "High");
    assert_eq!(latency["canary"]["summary"]["count"], 30);
    let c = &latency["comparison"];
    assert_eq!(c["test"], "mannWhitney");
    assert_eq!(c["confidenceLevel"], 0.98);
    let estimate = c["estimate"].as_f64().expect("estimate");
    assert!((c["band"].as_f64().expect("band") - 0.25 * estimate).abs() < 1e-15);
    assert!(c["lower"].as_f64().expect("lower") > c["band"].as_f64().expect("band"));
    assert_eq!(latency["effect"]["measure"], "meanRatio");
    assert_eq!(latency["effect"]["allowedIncrease"], 1.0);
    assert_eq!(j["groups"][0]["name"], "default");
}

#[test]
fn json_series_files_are_read_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, values: &[f64]| {
        let path = dir.path().join(name);
        let body = serde_json::json!({ "rps": values });
        std::fs::write(&path, body.to_string()).expect("write");
        path.display().to_string()
    };
    let canary = write("c.json", &[10.0, 11.0, 10.5, 9.5, 10.2, 10.8]);
    let primary = write("p.json", &[20.0, 21.0, 19.5, 20.5, 20.2, 19.8]);
    let out = judge(&[
        "--canary",
        &canary,
        "--primary",
        &primary,
        "--direction=decrease",
        "--critical",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert_eq!(row(&stdout, "rps")[1], "Low (critical)");
    assert!(
        stdout.contains(
            "Fail: score 0.00 (below marginal 75): critical metric rps failed: canary lower"
        ),
        "{stdout}"
    );
}

// === a real Prometheus ===

/// A Prometheus child process, stopped (by its PID) when dropped.
struct Prom {
    child: Child,
    url: String,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Backfills `openmetrics` into a fresh TSDB with promtool, starts Prometheus on it and waits
/// until it answers queries.
fn start_prometheus(dir: &std::path::Path, openmetrics: &str) -> Prom {
    let data = dir.join("data.om");
    std::fs::write(&data, openmetrics).expect("write samples");
    let tsdb = dir.join("tsdb");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&data)
        .arg(&tsdb)
        .output()
        .expect("promtool runs (scripts/test.sh installs Debian's prometheus package)");
    assert!(out.status.success(), "promtool: {}", text(&out.stderr));
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("write config");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (scripts/test.sh installs Debian's package)");
    let prom = Prom {
        child,
        url: format!("http://{addr}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ready = format!("{}/-/ready", prom.url);
    rt.block_on(async {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(&ready).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus at {ready} not ready within 60s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    prom
}

/// A deterministic pseudo-random walk in [-1, 1) (no dependency on a random crate).
fn jitter(i: u64, salt: u64) -> f64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[test]
fn prometheus_range_queries_feed_the_judge() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 30 steps of 10 s, an hour ago (inside the default retention, outside the head block).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let start = (now - 3600) / 10 * 10;
    let steps = 30u64;
    let mut om =
        String::from("# HELP latency_seconds Request latency.\n# TYPE latency_seconds gauge\n");
    let mut errors =
        String::from("# HELP step_errors Errors per step.\n# TYPE step_errors gauge\n");
    let mut requests =
        String::from("# HELP step_requests Requests per step.\n# TYPE step_requests gauge\n");
    let burst = [2u64, 7, 11, 19, 25];
    for i in 0..steps {
        let t = start + i * 10;
        let primary = 0.100 * (1.0 + 0.08 * jitter(i, 1));
        let same = 0.100 * (1.0 + 0.08 * jitter(i, 2));
        let slow = 0.130 * (1.0 + 0.08 * jitter(i, 3));
        for (variant, v) in [("primary", primary), ("canary", slow), ("good", same)] {
            om.push_str(&format!(
                "latency_seconds{{variant=\"{variant}\"}} {v:.5} {t}\n"
            ));
        }
        let canary_errors = if burst.contains(&i) { 6 + i % 5 } else { 0 };
        for (variant, e) in [("primary", 0), ("canary", canary_errors)] {
            errors.push_str(&format!("step_errors{{variant=\"{variant}\"}} {e} {t}\n"));
            requests.push_str(&format!("step_requests{{variant=\"{variant}\"}} 200 {t}\n"));
        }
    }
    om.push_str(&errors);
    om.push_str(&requests);
    om.push_str("# EOF\n");
    let prom = start_prometheus(dir.path(), &om);

    let start_s = start.to_string();
    let end_s = (start + (steps - 1) * 10).to_string();
    let base = |canary: &str, primary: &str| -> Vec<String> {
        [
            "--prometheus",
            &prom.url,
            "--canary-query",
            canary,
            "--primary-query",
            primary,
            "--start",
            &start_s,
            "--end",
            &end_s,
            "--step",
            "10s",
            "--direction",
            "increase",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // 30% slower: High, Fail.
    let mut args = base(
        r#"latency_seconds{variant="canary"}"#,
        r#"latency_seconds{variant="primary"}"#,
    );
    args.extend([
        "--metric".into(),
        "latency".into(),
        "-o".into(),
        "json".into(),
    ]);
    let out = run(args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let m = &j["metrics"][0];
    assert_eq!(m["name"], "latency");
    assert_eq!(m["classification"], "High");
    // Every backfilled sample came back: 30 per side, with the written medians.
    assert_eq!(m["canary"]["summary"]["count"], 30);
    assert_eq!(m["primary"]["summary"]["count"], 30);
    let ratio = m["deviation"].as_f64().expect("mean ratio");
    assert!((ratio - 1.3).abs() < 0.05, "{ratio}");

    // As good as the primary: Pass.
    let out = run(base(
        r#"latency_seconds{variant="good"}"#,
        r#"latency_seconds{variant="primary"}"#,
    ));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(row(&stdout, "metric")[1], "Pass");

    // Sparse errors: the rank test passes them, the proportions test does not.
    let errors_args = base(
        r#"step_errors{variant="canary"}"#,
        r#"step_errors{variant="primary"}"#,
    );
    let out = run(errors_args.clone());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let mut proportions = errors_args;
    proportions.extend([
        "--test=proportions".into(),
        "--canary-trials-query".into(),
        r#"step_requests{variant="canary"}"#.into(),
        "--primary-trials-query".into(),
        r#"step_requests{variant="primary"}"#.into(),
    ]);
    let out = run(proportions);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let r = row(&stdout, "metric");
    let total: u64 = burst.iter().map(|i| 6 + i % 5).sum();
    assert_eq!(total, 39);
    assert_eq!(
        r[1..5],
        ["High", "39/6000 = 0.0065", "0/6000 = 0", "proportions"]
    );

    // A query that gives two series is refused.
    let out = run(base(
        "latency_seconds",
        r#"latency_seconds{variant="primary"}"#,
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("3 series where one is needed: aggregate them in the query"),
        "{}",
        text(&out.stderr)
    );
}
