//! Hostile-input bench: how the cost of reading YAML grows with nesting depth and with size.
//!
//! For each input it prints the wall time of
//! - `yaml`: `serde_yaml::from_str` alone (the library every reader uses), to show where the
//!   cost is;
//! - `guard`: the linear pre-pass (`input_guard::check_yaml`) that refuses the input before
//!   the parser sees it;
//! - `validate`: `flagger validate FILE` (this package's binary, a separate process);
//! - `localkube`: a `POST` of the document as `application/yaml` to an in-process localkube
//!   (what `kubectl create --raw` or a server-side apply sends), with the answer's status code.
//!
//! Two curves: depth (a flow mapping nested `d` deep, `{a: {a: ... 1}}`, about 4 bytes a
//! level: the shape that makes the parser quadratic) and size (a ConfigMap with many flat keys,
//! and many Canary documents in one file for `validate`). Rows stop growing once one takes
//! longer than `--budget` seconds (default 20), so the quadratic side of a "before" run ends.
//!
//! `cargo bench -p flagger-cli --bench input` (`-- --budget SECS`).

#![allow(
    clippy::unwrap_used,
    reason = "bench code: a panic is the failure report"
)]

use std::io::Write as _;
use std::time::{Duration, Instant};

fn flow_nested(depth: usize) -> String {
    let mut s =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n  x: ");
    s.push_str(&"{a: ".repeat(depth));
    s.push('1');
    s.push_str(&"}".repeat(depth));
    s.push('\n');
    s
}

fn wide_configmap(bytes: usize) -> String {
    let mut s = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: wide}\ndata:\n");
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&format!("  key{i:07}: \"{}\"\n", "v".repeat(48)));
        i += 1;
    }
    s
}

const CANARY: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo-N
  namespace: test
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    threshold: 5
    iterations: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
    webhooks:
    - name: load-test
      url: http://flagger-loadtester.test/
      metadata: {cmd: \"hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/\"}
";

fn many_canaries(bytes: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < bytes {
        s.push_str("---\n");
        s.push_str(&CANARY.replace("podinfo-N", &format!("podinfo-{i}")));
        i += 1;
    }
    s
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed(), v)
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// `flagger validate` on `text`; wall time and the first line of its output.
fn validate(dir: &std::path::Path, text: &str) -> (Duration, String) {
    let file = dir.join("input.yaml");
    std::fs::write(&file, text).unwrap();
    let (took, out) = time(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flagger"))
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap()
    });
    let mut first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    first.truncate(140);
    (took, first)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let budget = args
        .iter()
        .position(|a| a == "--budget")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(20.0);
    let budget = Duration::from_secs_f64(budget);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let kube = rt.block_on(localkube::Server::start(localkube::Config {
        controllers: false,
        ..Default::default()
    }))?;
    let url = format!("{}/api/v1/namespaces/default/configmaps", kube.url());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let post = |body: String| -> (Duration, String) {
        let (took, r) = time(|| {
            rt.block_on(async {
                let r = http
                    .post(&url)
                    .header("content-type", "application/yaml")
                    .body(body)
                    .send()
                    .await?;
                let code = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let mut msg = v["message"].as_str().unwrap_or("").to_string();
                msg.truncate(90);
                anyhow::Ok(format!("{code} {msg}"))
            })
        });
        (took, r.unwrap_or_else(|e| format!("error: {e}")))
    };
    // Each created ConfigMap needs its own name.
    let mut n = 0;
    let mut named = |text: &str, name: &str| {
        n += 1;
        text.replacen(&format!("name: {name}"), &format!("name: {name}-{n}"), 1)
    };
    let dir = tempfile::tempdir()?;
    let mut out = std::io::stdout();

    writeln!(
        out,
        "depth curve: flow mapping nested d deep (`{{a: {{a: ... 1}}}}`)"
    )?;
    writeln!(
        out,
        "{:>7} {:>8} {:>9} {:>9} {:>9} {:>10}  answers",
        "depth", "bytes", "yaml", "guard", "validate", "localkube"
    )?;
    let mut stop = false;
    for depth in [
        100, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000,
    ] {
        if stop {
            break;
        }
        let text = flow_nested(depth);
        let (yaml, _) = time(|| serde_yaml::from_str::<serde_json::Value>(&text).is_ok());
        let (guard, _) = time(|| input_guard::check_yaml(&text, &input_guard::Limits::default()));
        let (val, val_msg) = validate(dir.path(), &text);
        let (lk, lk_msg) = post(named(&text, "deep"));
        writeln!(
            out,
            "{depth:>7} {:>8} {:>9} {:>9} {:>9} {:>10}  validate: {val_msg} | localkube: {lk_msg}",
            text.len(),
            secs(yaml),
            secs(guard),
            secs(val),
            secs(lk),
        )?;
        stop = [yaml, val, lk].iter().any(|d| *d > budget);
    }

    writeln!(
        out,
        "\nsize curve: a ConfigMap with flat keys (yaml, localkube); Canary documents (validate)"
    )?;
    writeln!(
        out,
        "{:>9} {:>9} {:>9} {:>9} {:>10}  answers",
        "bytes", "yaml", "guard", "validate", "localkube"
    )?;
    for kib in [100, 200, 400, 800, 1_600, 3_000, 3_200, 6_400] {
        let wide = wide_configmap(kib * 1024);
        let canaries = many_canaries(kib * 1024);
        let (yaml, _) = time(|| serde_yaml::from_str::<serde_json::Value>(&wide).is_ok());
        let (guard, _) = time(|| input_guard::check_yaml(&wide, &input_guard::Limits::default()));
        let (val, val_msg) = validate(dir.path(), &canaries);
        let (lk, lk_msg) = post(named(&wide, "wide"));
        writeln!(
            out,
            "{:>9} {:>9} {:>9} {:>9} {:>10}  validate: {val_msg} | localkube: {lk_msg}",
            wide.len(),
            secs(yaml),
            secs(guard),
            secs(val),
            secs(lk),
        )?;
    }
    Ok(())
}
