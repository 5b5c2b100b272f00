//! What the router end-to-end suites share: podinfo and Canary manifests, load through the
//! data plane counted by the version that answers, routing objects whose canary weight is
//! recorded as it changes, and the promotion and rollback scenarios every router runs.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagger_api::CanaryPhase;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use super::{Env, NS};

pub const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

/// The podinfo Deployment; `annotations` go on the pod template (YAML flow-map entries),
/// after the scrape annotations of Flagger's podinfo (metrics on port 9797).
pub fn workload(tag: &str, annotations: &str) -> String {
    let scrape = r#"prometheus.io/scrape: "true", prometheus.io/port: "9797""#;
    let annotations = if annotations.is_empty() {
        scrape.to_string()
    } else {
        format!("{scrape}, {annotations}")
    };
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {NS}, labels: {{app: podinfo}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata:
      labels: {{app: podinfo}}
      annotations: {{{annotations}}}
    spec:
      containers:
      - name: podinfod
        image: {PODINFO}:{tag}
        ports: [{{name: http, containerPort: 9898}}]
"#
    )
}

/// A Canary for podinfo with this provider; `service` and `analysis` are YAML blocks
/// (indented 4).
pub fn canary(provider: &str, service: &str, analysis: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  provider: "{provider}"
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  progressDeadlineSeconds: 60
  service:
    port: 80
    targetPort: http
{service}
  analysis:
{analysis}
"#
    )
}

/// Progressive analysis: 10% steps up to 50%, the given metrics (none when empty).
pub fn progressive(threshold: u32, metrics: &str) -> String {
    let mut yaml = format!(
        "    interval: 1s\n    threshold: {threshold}\n    maxWeight: 50\n    stepWeight: 10\n"
    );
    if !metrics.is_empty() {
        yaml.push_str(&format!("    metrics:\n{metrics}"));
    }
    yaml
}

pub fn builtin_metrics() -> String {
    "    - name: request-success-rate\n      thresholdRange: {min: 99}\n      interval: 15s\n    - name: request-duration\n      thresholdRange: {max: 500}\n      interval: 15s\n".into()
}

/// Applies the workload and the canary and waits for `Initialized`.
pub async fn init(env: &Env, canary_yaml: &str) {
    env.apply(&workload("6.0.0", "")).await;
    env.apply(canary_yaml).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
}

pub async fn primary_image(env: &Env) -> String {
    env.jsonpath(
        "deployment/podinfo-primary",
        ".spec.template.spec.containers[0].image",
    )
    .await
}

/// The apex Service, as a meshed client addresses it.
pub const APEX_URL: &str = "http://podinfo.test/";

/// The host of the NGINX scenarios' Ingress, served by the data plane's ingress controller.
pub const INGRESS_URL: &str = "http://app.example.com/";

/// Requests sent through the data plane (to [`APEX_URL`] unless said otherwise) until
/// dropped, counted by the version (image tag) that answered, or the status when not 200.
pub struct Load {
    pub counts: Arc<Mutex<BTreeMap<String, usize>>>,
    pub stop: Arc<AtomicBool>,
}

impl Load {
    pub fn start(env: &Env, headers: &[(&'static str, &'static str)]) -> Load {
        Load::start_at(env, APEX_URL, headers)
    }

    pub fn start_at(
        env: &Env,
        url: &'static str,
        headers: &[(&'static str, &'static str)],
    ) -> Load {
        let counts: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let http = proxied(env);
        let (c, s) = (counts.clone(), stop.clone());
        let headers = headers.to_vec();
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let key = answer_at(&http, url, &headers).await;
                *c.lock().unwrap().entry(key).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Load { counts, stop }
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.counts.lock().unwrap().clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn proxied(env: &Env) -> reqwest::Client {
    let proxy = env.kube.proxy_url().expect("data plane");
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy).expect("proxy"))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// One request to the apex Service: the answering version, or `status <code>`.
pub async fn answer(http: &reqwest::Client, headers: &[(&str, &str)]) -> String {
    answer_at(http, APEX_URL, headers).await
}

/// One request to `url`: the answering version, or `status <code>`.
pub async fn answer_at(http: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> String {
    let mut req = http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => {
            let body: Value = r.json().await.unwrap_or_default();
            body["version"].as_str().unwrap_or("?").to_string()
        }
        Ok(r) => format!("status {}", r.status().as_u16()),
        Err(e) => format!("error {e}"),
    }
}

/// A routing object and how to read the canary weight from it.
#[derive(Clone)]
pub struct RoutingObject {
    pub api: Api<DynamicObject>,
    pub name: &'static str,
    pub canary_weight: fn(&Value) -> Option<u64>,
}

impl RoutingObject {
    pub fn new(
        env: &Env,
        api_version: &str,
        kind: &str,
        plural: &str,
        canary_weight: fn(&Value) -> Option<u64>,
    ) -> Self {
        let (group, version) = api_version.split_once('/').unwrap();
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        RoutingObject {
            api: Api::namespaced_with(env.client.clone(), NS, &ar),
            name: "podinfo",
            canary_weight,
        }
    }

    pub async fn json(&self) -> Option<Value> {
        let obj = self.api.get_opt(self.name).await.ok().flatten()?;
        serde_json::to_value(obj).ok()
    }

    /// Waits until `weights` has recorded the weight the object shows now (the final write of
    /// a run), so that what follows reads the whole sequence; fails after the deadline.
    pub async fn settled(&self, weights: &Weights) {
        let deadline = std::time::Instant::now() + super::DEADLINE;
        loop {
            let now = self.json().await.as_ref().and_then(self.canary_weight);
            if now.is_none() || weights.get().last() == now.as_ref() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the recorder never saw the object's weight {now:?}: {:?}",
                weights.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records every canary weight the object shows, polling every 20 ms, until dropped.
    pub fn record(&self) -> Weights {
        let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (me, log, s) = (self.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Some(w) = me.json().await.as_ref().and_then(me.canary_weight) {
                    let mut l = log.lock().unwrap();
                    if l.last() != Some(&w) {
                        l.push(w);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Weights { seen, stop }
    }
}

pub struct Weights {
    pub seen: Arc<Mutex<Vec<u64>>>,
    pub stop: Arc<AtomicBool>,
}

impl Weights {
    pub fn get(&self) -> Vec<u64> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Weights {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs a progressive canary to promotion with load flowing; returns the weights seen and
/// the versions that answered.
pub async fn promote_progressively(
    env: &Env,
    object: &RoutingObject,
) -> (Vec<u64>, BTreeMap<String, usize>) {
    promote_progressively_at(env, object, APEX_URL).await
}

/// As [`promote_progressively`], the load sent to `url`.
pub async fn promote_progressively_at(
    env: &Env,
    object: &RoutingObject,
    url: &'static str,
) -> (Vec<u64>, BTreeMap<String, usize>) {
    let weights = object.record();
    let load = Load::start_at(env, url, &[]);
    env.apply(&workload("6.0.1", "")).await;
    env.wait_phase("podinfo", CanaryPhase::Progressing).await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(primary_image(env).await, format!("{PODINFO}:6.0.1"));
    object.settled(&weights).await;
    let seen = weights.get();
    let counts = load.counts();
    println!("weights seen: {seen:?}; answers: {counts:?}");
    (seen, counts)
}

/// The weights went up 10, 20, …, 50 in order and ended back at 0 (after promotion).
pub fn assert_progressive(seen: &[u64]) {
    let steps: Vec<u64> = seen.iter().copied().filter(|w| *w > 0).collect();
    assert_eq!(steps, vec![10, 20, 30, 40, 50], "weights seen: {seen:?}");
    assert_eq!(seen.last(), Some(&0), "weights seen: {seen:?}");
}

/// Rolls out 6.0.1 with half its requests failing (`localkube.dev/error-ratio: "0.5"`) while
/// load is sent to `url`: the builtin success rate, queried from Prometheus, halts it at the
/// first step until the threshold (2) is reached, and it is rolled back. Returns the answers
/// the clients got.
pub async fn faulty_canary_is_rolled_back(
    env: &Env,
    object: &RoutingObject,
    url: &'static str,
) -> BTreeMap<String, usize> {
    faulty_canary_is_rolled_back_within(env, object, url, 10..=20).await
}

/// As [`faulty_canary_is_rolled_back`], halted at a weight in `halted_at`.
pub async fn faulty_canary_is_rolled_back_within(
    env: &Env,
    object: &RoutingObject,
    url: &'static str,
    halted_at: std::ops::RangeInclusive<u64>,
) -> BTreeMap<String, usize> {
    faulty_rollout_is_rolled_back(env, object, url, ("6.0.1", "6.0.0"), halted_at).await
}

/// As [`faulty_canary_is_rolled_back_within`], rolling out `tags.0` while the primary runs
/// `tags.1`.
pub async fn faulty_rollout_is_rolled_back(
    env: &Env,
    object: &RoutingObject,
    url: &'static str,
    (tag, primary): (&str, &str),
    halted_at: std::ops::RangeInclusive<u64>,
) -> BTreeMap<String, usize> {
    let weights = object.record();
    let load = Load::start_at(env, url, &[]);
    env.apply(&workload(tag, r#""localkube.dev/error-ratio": "0.5""#))
        .await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    object.settled(&weights).await;
    let seen = weights.get();
    let counts = load.counts();
    println!("weights seen: {seen:?}; answers: {counts:?}");
    let events = env.events("podinfo").await;
    println!("events:\n{}", events.join("\n"));
    assert_eq!(primary_image(env).await, format!("{PODINFO}:{primary}"));
    // It was halted at the first step (or the second: when the canary's first 5xx answer
    // lands one scrape after its first 2xx, the 5xx series has a single sample at the first
    // check, `rate` drops it and that check reads 100%), and traffic went back to the primary.
    let max = seen.iter().max().copied().unwrap_or(0);
    assert!(halted_at.contains(&max), "weights seen: {seen:?}");
    assert_eq!(seen.last(), Some(&0), "weights seen: {seen:?}");
    assert!(
        events
            .iter()
            .any(|e| e.contains("Halt podinfo.test advancement success rate")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.contains("Rolling back")),
        "{events:?}"
    );
    // Failed requests reached clients: the canary's faults were real.
    assert!(
        counts.get("status 500").copied().unwrap_or(0) > 0,
        "{counts:?}"
    );
    counts
}

/// The value of `query` in Prometheus (0 when it has none), printed.
pub async fn prom_value(env: &Env, what: &str, query: &str) -> f64 {
    let v = env
        .prometheus
        .as_ref()
        .unwrap()
        .query(query)
        .await
        .unwrap_or(0.0);
    println!("{what}: {v}");
    v
}

/// The sum of the data plane's own `metric` series whose labels contain `matcher`, read from
/// its metrics endpoint (what Prometheus scrapes).
pub async fn dataplane_counter(env: &Env, metric: &str, matcher: &str) -> f64 {
    let url = env.kube.dataplane_metrics_url().expect("data plane");
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(matcher))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// `n` requests to `url` with `headers`, counted by the version answering.
pub async fn answers_at(
    env: &Env,
    url: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> BTreeMap<String, usize> {
    let http = proxied(env);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        *counts
            .entry(answer_at(&http, url, headers).await)
            .or_default() += 1;
    }
    println!("{headers:?}: {counts:?}");
    counts
}
