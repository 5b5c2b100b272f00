//! Targeted API failures (localkube's fault injection) on the writes a rollout depends on: the
//! target's scale-up and scale-down, the promotion of the primary and the status write. Each
//! failure leaves the canary where it was until the write succeeds on a retry; the apex Service
//! keeps ready endpoints throughout; no event is emitted twice.
//!
//! A fault is switched on just before the write it targets and off as soon as localkube has
//! answered one request with it (its `apiserver_request_total` counter), so the controller sees
//! one failure (rarely two) and then success.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flagger_api::{Canary, CanaryPhase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Endpoints;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use support::{Env, NS, Options};

use support::chaos::PODINFO;

fn manifests(interval: &str, iterations: u32) -> String {
    let deployment = support::chaos::podinfo_deployment("podinfo", 2);
    format!(
        r#"{deployment}---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  progressDeadlineSeconds: 60
  service: {{port: 80, targetPort: http}}
  analysis: {{interval: {interval}, threshold: 2, iterations: {iterations}}}
"#
    )
}

/// One fault rule: every `verb` on `resource` answered 409 (as a stale resourceVersion is).
fn conflict(verb: &str, resource: &str) -> localkube::Faults {
    localkube::Faults {
        rules: vec![localkube::FaultRule {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            conflict_rate: 1.0,
            ..Default::default()
        }],
        watch_cut: None,
    }
}

/// One fault rule: every `verb` on `resource` answered 500.
fn fail(verb: &str, resource: &str) -> localkube::Faults {
    localkube::Faults {
        rules: vec![localkube::FaultRule {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            error_rate: 1.0,
            code: 500,
            ..Default::default()
        }],
        watch_cut: None,
    }
}

/// How many requests localkube answered with `code` for `verb` on `resource`.
async fn answered(env: &Env, verb: &str, resource: &str, code: u16) -> u64 {
    // Through the kube client: its TLS and credentials are the cluster's (HTTPS with RBAC).
    let text = env
        .client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("metrics request"),
        )
        .await
        .expect("localkube metrics");
    let series = format!(
        "apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Switches `faults` on, waits until one more request of `verb` on `resource` (as localkube's
/// metrics name it: `canaries/status` for the status subresource) was answered 500 by them, and
/// switches them off.
async fn fail_once(env: &Env, verb: &str, resource: &str, faults: localkube::Faults) {
    fail_once_with(env, verb, resource, faults, 500).await;
}

async fn fail_once_with(
    env: &Env,
    verb: &str,
    resource: &str,
    faults: localkube::Faults,
    code: u16,
) {
    let before = answered(env, verb, resource, code).await;
    env.kube.set_faults(faults);
    let last = Mutex::new(String::new());
    support::wait_for(
        &format!("a {code} answered to {verb} {resource}"),
        &last,
        || async {
            let n = answered(env, verb, resource, code).await;
            *last.lock().unwrap() = format!("{n} (before: {before})");
            (n > before).then_some(())
        },
    )
    .await;
    env.kube.set_faults(localkube::Faults::default());
}

/// A new revision of the target through an update (PUT), so that a fault on `patch` only hits
/// the controller's writes.
async fn new_revision(env: &Env, tag: &str) {
    let api = Api::<Deployment>::namespaced(env.client.clone(), NS);
    let mut d = api.get("podinfo").await.unwrap();
    let containers = &mut d
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers;
    containers[0].image = Some(format!("{PODINFO}:{tag}"));
    d.metadata.managed_fields = None;
    api.replace("podinfo", &PostParams::default(), &d)
        .await
        .unwrap();
}

/// Records, every time the apex Service's Endpoints change, whether they have a ready address.
struct EndpointsLog {
    log: Arc<Mutex<Vec<(Instant, bool)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EndpointsLog {
    async fn start(env: &Env, name: &str) -> EndpointsLog {
        let log: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::default();
        let api: Api<Endpoints> = Api::namespaced(env.client.clone(), NS);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let sink = log.clone();
        let task = tokio::spawn(async move {
            let mut s = watcher::watcher(api, cfg).boxed();
            while let Some(Ok(ev)) = s.next().await {
                if let watcher::Event::Apply(ep) | watcher::Event::InitApply(ep) = ev {
                    let ready = ep
                        .subsets
                        .iter()
                        .flatten()
                        .any(|s| s.addresses.as_ref().is_some_and(|a| !a.is_empty()));
                    sink.lock().unwrap().push((Instant::now(), ready));
                }
            }
        });
        let this = EndpointsLog { log, task };
        let last = Mutex::new(String::new());
        support::wait_for("the apex Endpoints ready", &last, || async {
            this.log
                .lock()
                .unwrap()
                .last()
                .is_some_and(|(_, ready)| *ready)
                .then_some(())
        })
        .await;
        this
    }

    /// Changes to Endpoints without a ready address, since the log started.
    fn empty(&self) -> usize {
        self.log.lock().unwrap().iter().filter(|(_, r)| !r).count()
    }
}

impl Drop for EndpointsLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Samples the canary, then the target, every 20 ms: the samples where the canary was
/// `Progressing` while the target had no replicas.
struct ProgressWithoutPods {
    bad: Arc<Mutex<Vec<String>>>,
    samples: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressWithoutPods {
    fn start(env: &Env) -> ProgressWithoutPods {
        let bad: Arc<Mutex<Vec<String>>> = Arc::default();
        let samples = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let canaries: Api<Canary> = Api::namespaced(env.client.clone(), NS);
        let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
        let (sink, count) = (bad.clone(), samples.clone());
        let task = tokio::spawn(async move {
            loop {
                if let (Ok(c), Ok(d)) = (
                    canaries.get("podinfo").await,
                    deployments.get("podinfo").await,
                ) {
                    let status = c.status.clone().unwrap_or_default();
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    if status.phase == CanaryPhase::Progressing && replicas == 0 {
                        sink.lock().unwrap().push(format!(
                            "Progressing (iterations {:?}) with the target at 0 replicas",
                            status.iterations
                        ));
                    }
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        ProgressWithoutPods { bad, samples, task }
    }
}

impl Drop for ProgressWithoutPods {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn replicas(env: &Env, name: &str) -> String {
    env.jsonpath(&format!("deployment/{name}"), ".spec.replicas")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scale_up_holds_the_canary_until_it_succeeds() {
    // The controller's /metrics on a known port: the failed step is counted there.
    let env = Env::start(Options {
        scrape_controller: true,
        ..Default::default()
    })
    .await;
    env.apply(&manifests("1s", 3)).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    let endpoints = EndpointsLog::start(&env, "podinfo").await;
    let progress = ProgressWithoutPods::start(&env);

    // The next patch of a Deployment is the scale-up of the target for the new revision.
    let faults = fail("patch", "deployments");
    env.kube.set_faults(faults.clone());
    new_revision(&env, "6.0.1").await;
    fail_once(&env, "patch", "deployments", faults).await;

    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        format!("{PODINFO}:6.0.1")
    );
    assert_eq!(
        replicas(&env, "podinfo-primary").await,
        "2",
        "the primary keeps its replicas"
    );
    let bad = progress.bad.lock().unwrap().clone();
    let samples = progress.samples.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "scale-up fault: {samples} samples, {} Progressing with the target at zero; apex Endpoints without a ready address {} times",
        bad.len(),
        endpoints.empty()
    );
    assert!(
        bad.is_empty(),
        "the canary progressed without pods: {bad:?}"
    );
    assert_eq!(
        endpoints.empty(),
        0,
        "the apex Service always had ready endpoints"
    );
    for text in [
        "New revision detected! Scaling up podinfo.test",
        "Promotion completed! Scaling down podinfo.test",
    ] {
        assert_eq!(env.event_count("podinfo", text).await, 1, "{text}");
    }
    let events = env.events("podinfo").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("scaling up deployment podinfo.test failed")),
        "the failure is reported: {events:#?}"
    );
    // In words: the API server's message, never the client's debug rendering.
    for e in &events {
        for debug in ["Some(", "Status {", "ApiError", "{ "] {
            assert!(!e.contains(debug), "{debug} in {e}");
        }
    }
    // The failed step reached the error policy, counted by step and category (a 500 is
    // transient).
    let metrics = reqwest::get(format!("{}/metrics", env.controller_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "flagger_reconcile_errors_total{step=\"execute\",category=\"transient\"} ",
            )
        })
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(
        counted.is_some_and(|n| n >= 1.0),
        "the failed scale-up counted: {counted:?}\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_scale_down_is_retried_until_the_target_is_at_zero() {
    let env = Env::start(Options::default()).await;
    // The controller's first patch of the target Deployment is its scale-down once the primary
    // is ready (kubectl's apply creates it with a POST). The fault is armed before the apply,
    // for that one object and once: armed after the primary appeared, it raced the scale-down
    // and, on a loaded machine, came too late.
    let before = answered(&env, "patch", "deployments", 500).await;
    let mut faults = fail("patch", "deployments");
    faults.rules[0].name = Some("podinfo".into());
    faults.rules[0].times = Some(1);
    env.kube.set_faults(faults);
    env.apply(&manifests("5s", 2)).await;
    let last = Mutex::new(String::new());
    support::wait_for(
        "a 500 answered to the target's scale-down",
        &last,
        || async {
            let n = answered(&env, "patch", "deployments", 500).await;
            *last.lock().unwrap() = format!("{n} (before: {before})");
            (n > before).then_some(())
        },
    )
    .await;
    env.kube.set_faults(localkube::Faults::default());
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    assert!(
        deployments
            .get_opt("podinfo-primary")
            .await
            .unwrap()
            .is_some(),
        "the failed patch came after the primary was created"
    );
    let failed_at = Instant::now();

    // Within two intervals.
    let last = Mutex::new(String::new());
    let deadline = failed_at + Duration::from_secs(10);
    loop {
        let r = replicas(&env, "podinfo").await;
        if r == "0" {
            break;
        }
        *last.lock().unwrap() = r;
        assert!(
            Instant::now() < deadline,
            "the target is not at zero two intervals after the failed scale-down (replicas {})",
            last.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "scale-down fault: the target reached 0 replicas {:.2}s after the failed write",
        failed_at.elapsed().as_secs_f64()
    );
    let c = env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    assert_eq!(c.name_any(), "podinfo");
    assert_eq!(env.event_count("podinfo", "Initialization done!").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_status_and_promotion_writes_converge() {
    let env = Env::start(Options::default()).await;
    env.apply(&manifests("1s", 3)).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    let endpoints = EndpointsLog::start(&env, "podinfo").await;

    // The status write of the new revision fails once (an update of canaries/status, which the
    // fault rules see as `canaries`).
    let faults = fail("update", "canaries");
    env.kube.set_faults(faults.clone());
    new_revision(&env, "6.0.1").await;
    fail_once(&env, "update", "canaries/status", faults).await;

    // The promotion's write of the primary fails once: after the last iteration, the next
    // patch of a Deployment is the primary's.
    let canaries: Api<Canary> = Api::namespaced(env.client.clone(), NS);
    let last = Mutex::new(String::new());
    support::wait_for("the last iteration", &last, || async {
        let c = canaries.get("podinfo").await.ok()?;
        let s = c.status.unwrap_or_default();
        *last.lock().unwrap() = format!("{:?} {:?}", s.phase, s.iterations);
        (s.phase == CanaryPhase::Progressing && s.iterations.unwrap_or(0) >= 3).then_some(())
    })
    .await;
    fail_once(&env, "patch", "deployments", fail("patch", "deployments")).await;

    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
        .await;
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        format!("{PODINFO}:6.0.1"),
        "the promotion reached the primary"
    );
    assert_eq!(replicas(&env, "podinfo-primary").await, "2");
    assert_eq!(endpoints.empty(), 0, "the apex always had ready endpoints");
    for text in [
        "New revision detected! Scaling up podinfo.test",
        "Copying podinfo.test template spec to podinfo-primary.test",
        "Promotion completed! Scaling down podinfo.test",
    ] {
        assert_eq!(env.event_count("podinfo", text).await, 1, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_write_refused_as_stale_is_read_again_and_retried() {
    let env = Env::start(Options::default()).await;
    env.apply(&manifests("1s", 2)).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;

    // The status write of the new revision is refused once as if another writer had changed
    // the Canary (409): the canary is read again and the tick runs again from what it reads.
    let faults = conflict("update", "canaries");
    env.kube.set_faults(faults.clone());
    new_revision(&env, "6.0.1").await;
    fail_once_with(&env, "update", "canaries/status", faults, 409).await;

    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    let phases = env.phases.of("podinfo");
    let progressing = phases
        .iter()
        .filter(|p| **p == CanaryPhase::Progressing)
        .count();
    assert_eq!(progressing, 1, "one run, never back: {phases:?}");
    assert_eq!(
        env.event_count("podinfo", "New revision detected! Scaling up podinfo.test")
            .await,
        1
    );
}
