//! One failure of each write the controller makes (issue 12, chaos suite part 1): for every
//! write of the executor (the target's scale-up and scale-down, Deployment and DaemonSet; the
//! apply of the primary, its configs, its HPA; the Services; the routing object; the status
//! write; the finalizer patch; the events), one injected 500, and one 409 where a write can
//! meet a conflict, armed just before the step that makes the write, as a `count: 1` rule
//! naming the object. Each scenario then checks that the canary reaches the end state its
//! checks call for (promoted, or rolled back when its webhook fails), the target is at zero,
//! the primary runs the right image with ready replicas, and no step's event was emitted twice.
//!
//! Table-driven: one row per write, one test per row, the fixtures and the driver shared.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::sync::Mutex;

use flagger_api::{Canary, CanaryPhase};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::Api;
use kube::api::PostParams;
use support::{Env, NS, Options};

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

/// When the fault is armed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    /// Before the Canary is applied: the writes of the initialization.
    Init,
    /// After `Initialized`, before the new revision: the writes that start a rollout.
    Revision,
    /// Once the last iteration has passed (or the checks have failed `threshold` times): the
    /// writes of the promotion or of the rollback.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fixture {
    /// podinfo Deployment with a ConfigMap and an HPA, `kubernetes` provider, 3 iterations.
    Deployment,
    /// The same with `revertOnDeletion` (the finalizer).
    Finalizer,
    /// podinfo DaemonSet, `kubernetes` provider.
    DaemonSet,
    /// podinfo Deployment on Istio, 10% steps to 30%.
    Istio,
}

struct Case {
    verb: &'static str,
    /// Plural, or `plural/subresource`.
    resource: &'static str,
    /// Glob over the object's name; None for any (events have generated names).
    name: Option<&'static str>,
    code: u16,
    when: When,
    fixture: Fixture,
    /// The rollout's checks pass (promotion) or fail (rollback).
    promote: bool,
}

fn target_kind(f: Fixture) -> &'static str {
    if f == Fixture::DaemonSet {
        "DaemonSet"
    } else {
        "Deployment"
    }
}

fn fixtures(env: &Env, f: Fixture) -> String {
    let kind = target_kind(f);
    let replicas = if kind == "Deployment" {
        "replicas: 1\n  "
    } else {
        ""
    };
    let mut out = format!(
        r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: podinfo-config, namespace: {NS}}}
data: {{color: blue}}
---
apiVersion: apps/v1
kind: {kind}
metadata: {{name: podinfo, namespace: {NS}, labels: {{app: podinfo}}}}
spec:
  {replicas}selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
      - name: podinfod
        image: {PODINFO}:6.0.0
        ports: [{{name: http, containerPort: 9898}}]
        envFrom: [{{configMapRef: {{name: podinfo-config}}}}]
"#
    );
    let mut autoscaler = "";
    if kind == "Deployment" {
        out.push_str(&format!(
            r#"
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 99}}}}
"#
        ));
        autoscaler = "\n  autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}";
    }
    let (provider, analysis) = if f == Fixture::Istio {
        ("istio", "maxWeight: 30\n    stepWeight: 10")
    } else {
        ("kubernetes", "iterations: 3")
    };
    let revert = if f == Fixture::Finalizer {
        "\n  revertOnDeletion: true"
    } else {
        ""
    };
    out.push_str(&support::chaos::canary(
        "podinfo",
        kind,
        &format!("{provider}{autoscaler}{revert}"),
        analysis,
        &env.hooks.url("check"),
        60,
    ));
    out
}

const ISTIO_CRDS: &str = r#"
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: virtualservices.networking.istio.io}
spec:
  group: networking.istio.io
  scope: Namespaced
  names: {kind: VirtualService, plural: virtualservices, singular: virtualservice, listKind: VirtualServiceList}
  versions:
  - {name: v1beta1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: destinationrules.networking.istio.io}
spec:
  group: networking.istio.io
  scope: Namespaced
  names: {kind: DestinationRule, plural: destinationrules, singular: destinationrule, listKind: DestinationRuleList}
  versions:
  - {name: v1beta1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
"#;

/// The rule of a case: exactly one failure of the write it names.
fn rule(case: &Case) -> localkube::Faults {
    localkube::Faults {
        rules: vec![localkube::FaultRule {
            verb: Some(case.verb.into()),
            resource: Some(case.resource.into()),
            namespace: Some(NS.into()),
            name: case.name.map(Into::into),
            error_rate: 0.0,
            code: case.code,
            times: Some(1),
            ..Default::default()
        }],
        watch_cut: None,
    }
}

/// A new revision of the target (an update, so that faults on `patch` only meet the
/// controller's writes). A read-modify-write as any client does it: a 409 (the target's status
/// moved between the read and the write) reads again and retries.
async fn new_revision(env: &Env, f: Fixture, tag: &str) {
    let image = format!("{PODINFO}:{tag}");
    if target_kind(f) == "DaemonSet" {
        let api = Api::<DaemonSet>::namespaced(env.client.clone(), NS);
        replace_retrying(&api, |d: &mut DaemonSet| {
            set_image(d.spec.as_mut().map(|s| &mut s.template), &image)
        })
        .await;
    } else {
        let api = Api::<Deployment>::namespaced(env.client.clone(), NS);
        replace_retrying(&api, |d: &mut Deployment| {
            set_image(d.spec.as_mut().map(|s| &mut s.template), &image)
        })
        .await;
    }
}

fn set_image(template: Option<&mut k8s_openapi::api::core::v1::PodTemplateSpec>, image: &str) {
    let spec = template
        .and_then(|t| t.spec.as_mut())
        .expect("the target has a pod template");
    spec.containers[0].image = Some(image.to_string());
}

async fn replace_retrying<K>(api: &Api<K>, edit: impl Fn(&mut K))
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..20 {
        let mut obj = api.get("podinfo").await.expect("read the target");
        edit(&mut obj);
        obj.meta_mut().managed_fields = None;
        match api.replace("podinfo", &PostParams::default(), &obj).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("update the target: {e}"),
        }
    }
    panic!("update the target: 20 conflicts in a row");
}

/// Waits until the rollout is about to end: the last iteration (or weight step) passed when it
/// is promoted, the failed checks at the threshold less one when it is rolled back.
async fn wait_near_end(env: &Env, case: &Case) {
    let api = Api::<Canary>::namespaced(env.client.clone(), NS);
    let last = Mutex::new(String::new());
    support::wait_for("the last step of the rollout", &last, || async {
        let s = api.get("podinfo").await.ok()?.status.unwrap_or_default();
        *last.lock().unwrap() = format!(
            "{:?} iterations {:?} weight {:?} failed {:?}",
            s.phase, s.iterations, s.canary_weight, s.failed_checks
        );
        let near = if case.promote {
            s.iterations.unwrap_or(0) >= 3 || s.canary_weight.unwrap_or(0) >= 30
        } else {
            s.failed_checks.unwrap_or(0) >= 1
        };
        (s.phase == CanaryPhase::Progressing && near).then_some(())
    })
    .await;
}

/// How many failures the case's rule injected (it may not have met its write when the write
/// did not happen, e.g. a HPA already up to date: the scenario then says so).
fn injected(faults: &localkube::Faults) -> u64 {
    faults.rules[0]
        .injected
        .load(std::sync::atomic::Ordering::SeqCst)
}

async fn run(case: Case) {
    let env = Env::start(Options {
        nodes: if case.fixture == Fixture::DaemonSet {
            2
        } else {
            1
        },
        ..Options::default()
    })
    .await;
    if case.fixture == Fixture::Istio {
        env.apply(ISTIO_CRDS).await;
    }
    let faults = rule(&case);
    if case.when == When::Init {
        env.kube.set_faults(faults.clone());
    }
    env.apply(&fixtures(&env, case.fixture)).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    env.hooks.set("check", if case.promote { 200 } else { 500 });
    if case.when == When::Revision {
        env.kube.set_faults(faults.clone());
    }
    new_revision(&env, case.fixture, "6.0.1").await;
    if case.when == When::End {
        wait_near_end(&env, &case).await;
        env.kube.set_faults(faults.clone());
    }
    let end = if case.promote {
        CanaryPhase::Succeeded
    } else {
        CanaryPhase::Failed
    };
    env.wait_phase("podinfo", end).await;
    let hit = injected(&faults);
    env.kube.set_faults(localkube::Faults::default());

    // The target back at zero.
    if target_kind(case.fixture) == "DaemonSet" {
        env.wait_jsonpath(
            "daemonset/podinfo",
            ".spec.template.spec.nodeSelector.flagger\\.app/scale-to-zero",
            "true",
        )
        .await;
    } else {
        env.wait_jsonpath("deployment/podinfo", ".spec.replicas", "0")
            .await;
    }
    // The primary runs what the checks called for, and serves.
    let kind = target_kind(case.fixture).to_lowercase();
    let want = format!("{PODINFO}:{}", if case.promote { "6.0.1" } else { "6.0.0" });
    assert_eq!(
        env.jsonpath(
            &format!("{kind}/podinfo-primary"),
            ".spec.template.spec.containers[0].image"
        )
        .await,
        want
    );
    let ready_field = if kind == "daemonset" {
        ".status.numberReady"
    } else {
        ".status.readyReplicas"
    };
    let last = Mutex::new(String::new());
    support::wait_for("the primary ready", &last, || async {
        let r = env
            .jsonpath(&format!("{kind}/podinfo-primary"), ready_field)
            .await;
        *last.lock().unwrap() = r.clone();
        (!r.is_empty() && r != "0").then_some(())
    })
    .await;
    assert!(
        !env.jsonpath("endpoints/podinfo", ".subsets[0].addresses[0].ip")
            .await
            .is_empty(),
        "the apex Service has ready endpoints"
    );
    // Every step's event once: never doubled, and not lost when its own write failed once
    // (the recorder tries again).
    for (text, want) in [
        ("Initialization done!", 1),
        ("New revision detected! Scaling up", 1),
        (
            if case.promote {
                "Promotion completed! Scaling down"
            } else {
                "Canary failed! Scaling down"
            },
            1,
        ),
    ] {
        let got = env.event_count("podinfo", text).await;
        assert!(
            got == want,
            "{text}: {got} events, meant {want}: {:#?}",
            env.events("podinfo").await
        );
    }
    println!(
        "write fault {} {} {:?} {} at {:?}: {hit} injected, ended {end:?}",
        case.verb, case.resource, case.name, case.code, case.when
    );
    assert_eq!(hit, 1, "the fault met its write once");
}

/// One test per row.
macro_rules! cases {
    ($($test:ident: $verb:literal $resource:literal $name:expr, $code:literal, $when:ident, $fixture:ident, $promote:literal;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                run(Case {
                    verb: $verb,
                    resource: $resource,
                    name: $name,
                    code: $code,
                    when: When::$when,
                    fixture: Fixture::$fixture,
                    promote: $promote,
                })
                .await;
            }
        )*
    };
}

cases! {
    // The target: scale-up at the start of a rollout, scale-down at its end.
    scale_up_deployment_500: "patch" "deployments" Some("podinfo"), 500, Revision, Deployment, true;
    scale_up_deployment_409: "patch" "deployments" Some("podinfo"), 409, Revision, Deployment, true;
    scale_down_after_promotion_500: "patch" "deployments" Some("podinfo"), 500, End, Deployment, true;
    scale_down_after_rollback_500: "patch" "deployments" Some("podinfo"), 500, End, Deployment, false;
    scale_down_after_rollback_409: "patch" "deployments" Some("podinfo"), 409, End, Deployment, false;
    scale_down_at_init_500: "patch" "deployments" Some("podinfo"), 500, Init, Deployment, true;
    scale_up_daemonset_500: "patch" "daemonsets" Some("podinfo"), 500, Revision, DaemonSet, true;
    scale_down_daemonset_500: "patch" "daemonsets" Some("podinfo"), 500, End, DaemonSet, true;
    // The primary workload, its configs and its HPA: created at init, applied at promotion.
    primary_create_500: "patch" "deployments" Some("podinfo-primary"), 500, Init, Deployment, true;
    primary_promotion_500: "patch" "deployments" Some("podinfo-primary"), 500, End, Deployment, true;
    primary_promotion_409: "patch" "deployments" Some("podinfo-primary"), 409, End, Deployment, true;
    primary_daemonset_promotion_500: "patch" "daemonsets" Some("podinfo-primary"), 500, End, DaemonSet, true;
    primary_config_create_500: "patch" "configmaps" Some("podinfo-config-primary"), 500, Init, Deployment, true;
    primary_config_promotion_500: "patch" "configmaps" Some("podinfo-config-primary"), 500, End, Deployment, true;
    primary_hpa_create_500: "patch" "horizontalpodautoscalers" Some("podinfo-primary"), 500, Init, Deployment, true;
    // The Services (apex, primary, canary).
    apex_service_500: "patch" "services" Some("podinfo"), 500, Init, Deployment, true;
    primary_service_500: "patch" "services" Some("podinfo-primary"), 500, Init, Deployment, true;
    canary_service_500: "patch" "services" Some("podinfo-canary"), 500, Init, Deployment, true;
    // The routing object, at a weight step.
    virtual_service_500: "patch" "virtualservices" Some("podinfo"), 500, Revision, Istio, true;
    virtual_service_409: "patch" "virtualservices" Some("podinfo"), 409, Revision, Istio, true;
    virtual_service_at_end_500: "patch" "virtualservices" Some("podinfo"), 500, End, Istio, true;
    // The status writes.
    status_init_500: "update" "canaries/status" Some("podinfo"), 500, Init, Deployment, true;
    status_revision_500: "update" "canaries/status" Some("podinfo"), 500, Revision, Deployment, true;
    status_revision_409: "update" "canaries/status" Some("podinfo"), 409, Revision, Deployment, true;
    status_end_500: "update" "canaries/status" Some("podinfo"), 500, End, Deployment, true;
    status_rollback_409: "update" "canaries/status" Some("podinfo"), 409, End, Deployment, false;
    // The finalizer patch (revertOnDeletion).
    finalizer_500: "patch" "canaries" Some("podinfo"), 500, Init, Finalizer, true;
    finalizer_409: "patch" "canaries" Some("podinfo"), 409, Init, Finalizer, true;
    // Events.
    event_create_500: "create" "events" None, 500, Revision, Deployment, true;
}
