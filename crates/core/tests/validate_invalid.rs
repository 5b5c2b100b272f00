//! Table-driven tests of `validate`: invalid Canaries, each with the exact field path and the
//! key part of the message; then valid Canaries with the defaults Flagger would resolve.
//!
//! Every case starts from one valid Canary (`BASE`) and applies a JSON merge patch (RFC 7386:
//! objects merge, `null` deletes, everything else replaces).

use std::time::Duration;

use flagger_api::Canary;
use flagger_core::model::{
    BuiltinMetric, HookType, MetricSource, Provider, Range, Severity, Steps, Strategy, TargetKind,
};
use flagger_core::validate::{Problem, ValidationContext, diagnose, validate};
use serde_json::Value;

const BASE: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
    webhooks:
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
    alerts:
      - name: on-call
        severity: error
        providerRef:
          name: slack
"#;

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => {
            if let (Value::Null, Value::Object(_)) = (&*b, p) {
                *b = Value::Object(Default::default());
                merge(b, p);
            } else {
                *b = p.clone();
            }
        }
    }
}

fn canary(patch: &str) -> Canary {
    let mut base: Value = serde_yaml::from_str(BASE).expect("base parses");
    let patch: Value = serde_yaml::from_str(patch).expect("patch parses");
    merge(&mut base, &patch);
    serde_json::from_value(base).expect("patched canary deserializes")
}

fn strict() -> ValidationContext {
    ValidationContext {
        no_cross_namespace_refs: true,
        ..ValidationContext::default()
    }
}

struct Case {
    name: &'static str,
    patch: &'static str,
    strict: bool,
    path: &'static str,
    message: &'static str,
}

const fn case(
    name: &'static str,
    patch: &'static str,
    path: &'static str,
    message: &'static str,
) -> Case {
    Case {
        name,
        patch,
        strict: false,
        path,
        message,
    }
}

const fn strict_case(
    name: &'static str,
    patch: &'static str,
    path: &'static str,
    message: &'static str,
) -> Case {
    Case {
        name,
        patch,
        strict: true,
        path,
        message,
    }
}

const CASES: &[Case] = &[
    // ----- the analysis oneOf and the weight ladder -----
    case(
        "stepWeight and stepWeights together",
        "spec: {analysis: {stepWeights: [10, 20]}}",
        "spec.analysis",
        "stepWeight and stepWeights are set together",
    ),
    case(
        "iterations with stepWeight",
        "spec: {analysis: {iterations: 10}}",
        "spec.analysis",
        "the strategy is ambiguous",
    ),
    case(
        "no strategy at all",
        "spec: {analysis: {stepWeight: null}}",
        "spec.analysis",
        "set exactly one of iterations",
    ),
    case(
        "stepWeights not strictly increasing",
        "spec: {analysis: {stepWeight: null, stepWeights: [10, 30, 20]}}",
        "spec.analysis.stepWeights[2]",
        "strictly increasing",
    ),
    case(
        "stepWeights repeats a step",
        "spec: {analysis: {stepWeight: null, stepWeights: [10, 10]}}",
        "spec.analysis.stepWeights[1]",
        "strictly increasing",
    ),
    case(
        "stepWeights with zero",
        "spec: {analysis: {stepWeight: null, stepWeights: [0, 10]}}",
        "spec.analysis.stepWeights[0]",
        "between 1 and 100",
    ),
    case(
        "stepWeights above 100",
        "spec: {analysis: {stepWeight: null, stepWeights: [50, 150]}}",
        "spec.analysis.stepWeights[1]",
        "between 1 and 100",
    ),
    case(
        "stepWeights empty",
        "spec: {analysis: {stepWeight: null, stepWeights: []}}",
        "spec.analysis.stepWeights",
        "never advance",
    ),
    case(
        "maxWeight above 100",
        "spec: {analysis: {maxWeight: 150}}",
        "spec.analysis.maxWeight",
        "never be promoted",
    ),
    case(
        "maxWeight zero",
        "spec: {analysis: {maxWeight: 0}}",
        "spec.analysis.maxWeight",
        "between 1 and 100",
    ),
    case(
        "stepWeight above 100",
        "spec: {analysis: {stepWeight: 120}}",
        "spec.analysis.stepWeight",
        "120 is above 100",
    ),
    case(
        "stepWeight negative",
        "spec: {analysis: {stepWeight: -5}}",
        "spec.analysis.stepWeight",
        "-5 is negative",
    ),
    case(
        "stepWeight zero hangs",
        "spec: {analysis: {stepWeight: 0}}",
        "spec.analysis.stepWeight",
        "never advance",
    ),
    case(
        "iterations zero hangs",
        "spec: {analysis: {stepWeight: null, maxWeight: null, iterations: 0}}",
        "spec.analysis.iterations",
        "use 1 or more",
    ),
    case(
        "threshold negative",
        "spec: {analysis: {threshold: -1}}",
        "spec.analysis.threshold",
        "-1 is negative",
    ),
    case(
        "threshold missing",
        "spec: {analysis: {threshold: null}}",
        "spec.analysis.threshold",
        "requires threshold",
    ),
    case(
        "interval missing",
        "spec: {analysis: {interval: null}}",
        "spec.analysis.interval",
        "requires interval",
    ),
    case(
        "analysis missing",
        "spec: {analysis: null}",
        "spec.analysis",
        "requires spec.analysis",
    ),
    case(
        "stepWeightPromotion above 100",
        "spec: {analysis: {stepWeightPromotion: 101}}",
        "spec.analysis.stepWeightPromotion",
        "outside 0..100",
    ),
    // ----- durations -----
    case(
        "interval in hours breaks the CRD pattern",
        "spec: {analysis: {interval: 1h}}",
        "spec.analysis.interval",
        "^[0-9]+(m|s), so the API server rejects it; write whole minutes or seconds such as 30s, 1m or 90m (1h is 60m)",
    ),
    case(
        "interval that Go cannot parse",
        "spec: {analysis: {interval: 1m3x}}",
        "spec.analysis.interval",
        "is not a Go duration",
    ),
    case(
        "metric interval with an unknown unit",
        "spec: {analysis: {metrics: [{name: request-success-rate, interval: 5mins, thresholdRange: {min: 99}}]}}",
        "spec.analysis.metrics[0].interval",
        "unknown unit \"mins\"",
    ),
    case(
        "webhook timeout without unit",
        "spec: {analysis: {webhooks: [{name: load-test, url: 'http://tester/', timeout: '5'}]}}",
        "spec.analysis.webhooks[0].timeout",
        "does not match Flagger's CRD pattern",
    ),
    // ----- metrics -----
    case(
        "custom metric with neither query nor templateRef",
        "spec: {analysis: {metrics: [{name: request-success-rate, thresholdRange: {min: 99}}, {name: error-rate, thresholdRange: {max: 1}}]}}",
        "spec.analysis.metrics[1]",
        "neither templateRef nor query",
    ),
    case(
        "metric with both query and templateRef",
        "spec: {analysis: {metrics: [{name: errors, query: 'sum(x)', templateRef: {name: errors}}]}}",
        "spec.analysis.metrics[0]",
        "sets both query and templateRef",
    ),
    case(
        "thresholdRange min above max",
        "spec: {analysis: {metrics: [{name: request-duration, thresholdRange: {min: 500, max: 100}}]}}",
        "spec.analysis.metrics[0].thresholdRange",
        "min 500 is above max 100",
    ),
    case(
        "templateRef without a name",
        "spec: {analysis: {metrics: [{name: latency, templateRef: {name: ''}, interval: 1m}]}}",
        "spec.analysis.metrics[0].templateRef.name",
        "name the MetricTemplate",
    ),
    // ----- webhooks and alerts -----
    case(
        "webhook url without scheme",
        "spec: {analysis: {webhooks: [{name: load-test, url: flagger-loadtester.test/}]}}",
        "spec.analysis.webhooks[0].url",
        "is not an absolute URL",
    ),
    case(
        "webhook with a misspelt type",
        "spec: {analysis: {webhooks: [{name: smoke, type: pre-rolout, url: 'http://tester/'}]}}",
        "spec.analysis.webhooks[0].type",
        "Did you mean `pre-rollout`?",
    ),
    case(
        "webhook retries negative",
        "spec: {analysis: {webhooks: [{name: smoke, url: 'http://tester/', retries: -1}]}}",
        "spec.analysis.webhooks[0].retries",
        "-1 is negative",
    ),
    case(
        "alert severity outside the enum",
        "spec: {analysis: {alerts: [{name: oncall, severity: warning, providerRef: {name: slack}}]}}",
        "spec.analysis.alerts[0].severity",
        "Did you mean `warn`?",
    ),
    // ----- session affinity -----
    case(
        "same cookie name for canary and primary",
        "spec: {analysis: {sessionAffinity: {cookieName: flagger, primaryCookieName: flagger}}}",
        "spec.analysis.sessionAffinity.primaryCookieName",
        "can't use the same cookie name for both primary and cookie name",
    ),
    case(
        "sameSite in the wrong case",
        "spec: {analysis: {sessionAffinity: {cookieName: flagger, sameSite: strict}}}",
        "spec.analysis.sessionAffinity.sameSite",
        "Did you mean `Strict`?",
    ),
    case(
        "negative cookie maxAge",
        "spec: {analysis: {sessionAffinity: {cookieName: flagger, maxAge: -1}}}",
        "spec.analysis.sessionAffinity.maxAge",
        "expire at once",
    ),
    // ----- ranges -----
    case(
        "mirrorWeight above 100",
        "spec: {analysis: {mirror: true, mirrorWeight: 150}}",
        "spec.analysis.mirrorWeight",
        "150 is outside 0..100",
    ),
    case(
        "primaryReadyThreshold above 100",
        "spec: {analysis: {primaryReadyThreshold: 120}}",
        "spec.analysis.primaryReadyThreshold",
        "120 is outside 0..100",
    ),
    case(
        "canaryReadyThreshold negative",
        "spec: {analysis: {canaryReadyThreshold: -1}}",
        "spec.analysis.canaryReadyThreshold",
        "-1 is outside 0..100",
    ),
    case(
        "progress deadline zero",
        "spec: {progressDeadlineSeconds: 0}",
        "spec.progressDeadlineSeconds",
        "positive number of seconds",
    ),
    // ----- providers -----
    case(
        "plain gatewayapi falls to Istio in Flagger",
        "spec: {provider: gatewayapi}",
        "spec.provider",
        "would silently use the Istio router for it; write `gatewayapi:v1`",
    ),
    case(
        "misspelt provider",
        "spec: {provider: istoi}",
        "spec.provider",
        "Did you mean `istio`?",
    ),
    case(
        "controller-flag spelling of a provider",
        "spec: {provider: 'smi:v1alpha3:linkerd'}",
        "spec.provider",
        "write `smi:v1alpha3`",
    ),
    case(
        "nginx without ingressRef",
        "spec: {provider: nginx}",
        "spec.ingressRef",
        "the nginx provider clones an existing Ingress",
    ),
    case(
        "skipper without ingressRef",
        "spec: {provider: skipper}",
        "spec.ingressRef",
        "the skipper provider clones an existing Ingress",
    ),
    case(
        "apisix without routeRef",
        "spec: {provider: apisix}",
        "spec.routeRef",
        "set routeRef",
    ),
    case(
        "gatewayapi without gatewayRefs",
        "spec: {provider: 'gatewayapi:v1'}",
        "spec.service.gatewayRefs",
        "GatewayRefs must be specified when using Gateway API as a provider",
    ),
    case(
        "appmesh without meshName",
        "spec: {provider: appmesh}",
        "spec.service.meshName",
        "mesh name cannot be empty",
    ),
    case(
        "knative provider with a Deployment",
        "spec: {provider: knative}",
        "spec.targetRef",
        "can't use apps/v1/Deployment as target if provider is set to knative",
    ),
    case(
        "Knative Service with the istio provider",
        "spec: {provider: istio, targetRef: {apiVersion: serving.knative.dev/v1, kind: Service}}",
        "spec.provider",
        "can't use istio provider with Knative Service as target",
    ),
    case(
        "Knative Service with an autoscaler",
        "spec: {provider: knative, targetRef: {apiVersion: serving.knative.dev/v1, kind: Service}, autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo}}",
        "spec.autoscalerRef",
        "can't use autoscaler with Knative Service",
    ),
    case(
        "mirror with a provider that cannot mirror",
        "spec: {provider: linkerd, analysis: {mirror: true}}",
        "spec.analysis.mirror",
        "the linkerd provider does not implement traffic mirroring",
    ),
    case(
        "mirror with a progressive Gateway API canary",
        "spec: {provider: 'gatewayapi:v1', service: {gatewayRefs: [{name: gw}]}, analysis: {mirror: true}}",
        "spec.analysis.mirror",
        "only works for blue/green",
    ),
    // ----- target, autoscaler, service -----
    case(
        "StatefulSet target",
        "spec: {targetRef: {kind: StatefulSet}}",
        "spec.targetRef.kind",
        "`StatefulSet` is not a kind Flagger can target",
    ),
    case(
        "lower-case target kind",
        "spec: {targetRef: {kind: deployment}}",
        "spec.targetRef.kind",
        "Did you mean `Deployment`?",
    ),
    case(
        "empty target name",
        "spec: {targetRef: {name: ''}}",
        "spec.targetRef.name",
        "empty",
    ),
    case(
        "unknown autoscaler kind",
        "spec: {autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscalar, name: podinfo}}",
        "spec.autoscalerRef.kind",
        "Did you mean `HorizontalPodAutoscaler`?",
    ),
    case(
        "primary scaler minReplicas above maxReplicas",
        "spec: {autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo, primaryScalerReplicas: {minReplicas: 5, maxReplicas: 2}}}",
        "spec.autoscalerRef.primaryScalerReplicas.minReplicas",
        "minReplicas 5 is above maxReplicas 2",
    ),
    case(
        "service missing",
        "spec: {service: null}",
        "spec.service",
        "Flagger needs spec.service.port",
    ),
    case(
        "service port above 65535",
        "spec: {service: {port: 70000}}",
        "spec.service.port",
        "between 1 and 65535",
    ),
    case(
        "service port zero",
        "spec: {service: {port: 0}}",
        "spec.service.port",
        "0 is not a valid port",
    ),
    case(
        "gatewayRefs port out of range",
        "spec: {provider: 'gatewayapi:v1', service: {gatewayRefs: [{name: gw, port: 0}]}}",
        "spec.service.gatewayRefs[0].port",
        "outside 1..65535",
    ),
    case(
        "trafficDistribution outside the enum",
        "spec: {service: {trafficDistribution: PreferZone}}",
        "spec.service.trafficDistribution",
        "is not accepted by Flagger's CRD",
    ),
    case(
        "delegate VirtualService with hosts",
        "spec: {provider: istio, service: {delegation: true, hosts: [app.example.com]}}",
        "spec.service.delegation",
        "cannot have hosts and gateways",
    ),
    case(
        "A/B header with two conditions",
        "spec: {analysis: {stepWeight: null, maxWeight: null, iterations: 10, match: [{headers: {x-canary: {exact: insider, regex: '.*'}}}]}}",
        "spec.analysis.match[0].headers[x-canary]",
        "exactly one of exact, prefix, suffix or regex",
    ),
    case(
        "metric without a name",
        "spec: {analysis: {metrics: [{name: '', templateRef: {name: errors}, interval: 1m}]}}",
        "spec.analysis.metrics[0].name",
        "name the check",
    ),
    case(
        "webhook without a name",
        "spec: {analysis: {webhooks: [{name: '', url: 'http://tester/'}]}}",
        "spec.analysis.webhooks[0].name",
        "give the webhook a name",
    ),
    case(
        "alert without a name",
        "spec: {analysis: {alerts: [{name: '', severity: info, providerRef: {name: slack}}]}}",
        "spec.analysis.alerts[0].name",
        "give the alert a name",
    ),
    case(
        "alert without a provider name",
        "spec: {analysis: {alerts: [{name: oncall, severity: info, providerRef: {name: ''}}]}}",
        "spec.analysis.alerts[0].providerRef.name",
        "name the AlertProvider",
    ),
    case(
        "session affinity without a cookie name",
        "spec: {analysis: {sessionAffinity: {cookieName: ''}}}",
        "spec.analysis.sessionAffinity.cookieName",
        "name the cookie that pins users to the canary",
    ),
    case(
        "autoscaler without a name",
        "spec: {autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: ''}}",
        "spec.autoscalerRef.name",
        "name the HorizontalPodAutoscaler or ScaledObject",
    ),
    case(
        "primary scaler with zero replicas",
        "spec: {autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: podinfo, primaryScalerReplicas: {minReplicas: 0, maxReplicas: 3}}}",
        "spec.autoscalerRef.primaryScalerReplicas.minReplicas",
        "below the CRD minimum of 1",
    ),
    case(
        "ingressRef to a Service",
        "spec: {provider: nginx, ingressRef: {apiVersion: v1, kind: Service, name: podinfo}}",
        "spec.ingressRef.kind",
        "write `Ingress`",
    ),
    case(
        "ingressRef without a name",
        "spec: {provider: nginx, ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: ''}}",
        "spec.ingressRef.name",
        "name the Ingress",
    ),
    case(
        "targetPort zero",
        "spec: {service: {targetPort: 0}}",
        "spec.service.targetPort",
        "0 is not a valid port",
    ),
    case(
        "gatewayRefs entry without a name",
        "spec: {provider: 'gatewayapi:v1', service: {gatewayRefs: [{name: ''}]}}",
        "spec.service.gatewayRefs[0].name",
        "name the parent Gateway",
    ),
    case(
        "metricsServer without scheme",
        "spec: {metricsServer: 'prometheus.monitoring:9090'}",
        "spec.metricsServer",
        "http or https",
    ),
    // ----- cross-namespace references (-no-cross-namespace-refs) -----
    strict_case(
        "cross-namespace metric template",
        "spec: {analysis: {metrics: [{name: errors, templateRef: {name: error-rate, namespace: flagger-system}, thresholdRange: {max: 1}, interval: 1m}]}}",
        "spec.analysis.metrics[0].templateRef.namespace",
        "can't access metric template error-rate.flagger-system, cross-namespace references are blocked",
    ),
    strict_case(
        "cross-namespace alert provider",
        "spec: {analysis: {alerts: [{name: oncall, severity: error, providerRef: {name: slack, namespace: flagger-system}}]}}",
        "spec.analysis.alerts[0].providerRef.namespace",
        "can't access alert provider slack.flagger-system, cross-namespace references are blocked",
    ),
    strict_case(
        "cross-namespace gloo upstream",
        "spec: {provider: gloo, upstreamRef: {apiVersion: gloo.solo.io/v1, kind: Upstream, name: up, namespace: gloo-system}}",
        "spec.upstreamRef.namespace",
        "can't access gloo upstream up.gloo-system, cross-namespace references are blocked",
    ),
];

fn show(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_invalid_case_reports_its_path_and_fix() {
    assert!(CASES.len() >= 30, "keep at least 30 invalid specs");
    let mut failures = Vec::new();
    for c in CASES {
        let ctx = if c.strict {
            strict()
        } else {
            ValidationContext::default()
        };
        match validate(&canary(c.patch), &ctx) {
            Ok(_) => failures.push(format!("{}: accepted, expected {}", c.name, c.path)),
            Err(problems) => {
                let hit = problems
                    .iter()
                    .any(|p| p.path == c.path && p.message.contains(c.message));
                if !hit {
                    failures.push(format!(
                        "{}: expected `{}` with {:?}, got:\n{}",
                        c.name,
                        c.path,
                        c.message,
                        show(&problems)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_base_canary_is_valid() {
    let v = validate(&canary("{}"), &ValidationContext::default());
    assert!(v.is_ok(), "{:?}", v.err());
}

#[test]
fn the_same_spec_is_valid_without_the_cross_namespace_flag() {
    for c in CASES.iter().filter(|c| c.strict) {
        let v = validate(&canary(c.patch), &ValidationContext::default());
        assert!(v.is_ok(), "{}: {:?}", c.name, v.err());
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let c = canary(
        "spec: {provider: istoi, service: {port: 0}, analysis: {threshold: -1, stepWeight: 200, \
         maxWeight: 300, webhooks: [{name: x, url: nope}]}}",
    );
    let problems = validate(&c, &ValidationContext::default()).expect_err("invalid");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "spec.provider",
        "spec.service.port",
        "spec.analysis.threshold",
        "spec.analysis.stepWeight",
        "spec.analysis.maxWeight",
        "spec.analysis.webhooks[0].url",
    ] {
        assert!(paths.contains(&want), "missing {want} in {paths:?}");
    }
}

#[test]
fn problems_name_the_metadata_when_it_is_missing() {
    let mut c = canary("{}");
    c.metadata.name = None;
    let problems = validate(&c, &ValidationContext::default()).expect_err("invalid");
    assert_eq!(problems[0].path, "metadata.name");
}

// ----- warnings: accepted, but worth saying -----

fn warnings(patch: &str) -> Vec<Problem> {
    match validate(&canary(patch), &ValidationContext::default()) {
        Ok(v) => v.warnings,
        Err(e) => panic!("expected valid, got:\n{}", show(&e)),
    }
}

fn has(problems: &[Problem], path: &str, message: &str) -> bool {
    problems
        .iter()
        .any(|p| p.path == path && p.message.contains(message))
}

#[test]
fn kubernetes_provider_with_step_weights_warns_and_keeps_the_strategy() {
    let c = canary("spec: {provider: kubernetes}");
    let v = validate(&c, &ValidationContext::default()).expect("valid");
    assert!(has(
        &v.warnings,
        "spec.analysis",
        "Flagger runs blue/green with 10 iterations"
    ));
    assert!(matches!(
        v.canary.analysis.strategy,
        Strategy::Canary {
            steps: Steps::Linear(10),
            max_weight: 50,
            ..
        }
    ));
}

#[test]
fn match_with_a_provider_that_ignores_it_is_a_warning() {
    let w = warnings(
        "spec: {provider: linkerd, analysis: {stepWeight: null, maxWeight: null, iterations: 5, \
         match: [{headers: {x-canary: {exact: insider}}}]}}",
    );
    assert!(has(
        &w,
        "spec.analysis.match",
        "the linkerd provider ignores match"
    ));
}

#[test]
fn match_with_the_kubernetes_provider_is_a_warning() {
    let w = warnings(
        "spec: {provider: kubernetes, analysis: {stepWeight: null, maxWeight: null, iterations: 5, \
         match: [{headers: {x-canary: {exact: insider}}}]}}",
    );
    assert!(has(
        &w,
        "spec.analysis.match",
        "A/B testing is not supported"
    ));
}

#[test]
fn short_intervals_are_raised_with_a_warning() {
    let c = canary("spec: {analysis: {interval: 5s}}");
    let v = validate(&c, &ValidationContext::default()).expect("valid");
    assert_eq!(v.canary.analysis.interval, Duration::from_secs(10));
    assert!(has(
        &v.warnings,
        "spec.analysis.interval",
        "every 10s instead"
    ));
}

#[test]
fn max_weight_that_is_not_a_multiple_of_the_step_warns() {
    let w = warnings("spec: {analysis: {stepWeight: 20, maxWeight: 50}}");
    assert!(has(&w, "spec.analysis.maxWeight", "goes up to 60"));
}

#[test]
fn builtin_name_with_a_template_warns() {
    let w = warnings(
        "spec: {analysis: {metrics: [{name: request-success-rate, templateRef: {name: sr}, \
         thresholdRange: {min: 99}, interval: 1m}]}}",
    );
    assert!(has(
        &w,
        "spec.analysis.metrics[0].name",
        "runs the builtin check as well"
    ));
}

#[test]
fn template_metric_without_interval_warns() {
    let w = warnings(
        "spec: {analysis: {metrics: [{name: latency, templateRef: {name: latency}, \
         thresholdRange: {max: 500}}]}}",
    );
    assert!(has(
        &w,
        "spec.analysis.metrics[0].interval",
        "renders empty"
    ));
}

#[test]
fn empty_alert_severity_means_info_with_a_warning() {
    for patch in [
        "spec: {analysis: {alerts: [{name: oncall, severity: '', providerRef: {name: slack}}]}}",
        "spec: {analysis: {alerts: [{name: oncall, severity: null, providerRef: {name: slack}}]}}",
    ] {
        let v = validate(&canary(patch), &ValidationContext::default()).expect("valid");
        assert_eq!(
            v.canary.analysis.alerts[0].severity,
            Some(Severity::Info),
            "{patch}"
        );
        assert!(
            has(
                &v.warnings,
                "spec.analysis.alerts[0].severity",
                "Flagger sends nothing to an alert without severity"
            ),
            "{patch}: {}",
            show(&v.warnings)
        );
    }
}

#[test]
fn custom_metric_without_threshold_warns_and_fails_above_zero() {
    let v = validate(
        &canary("spec: {analysis: {metrics: [{name: errors, query: 'sum(x)'}]}}"),
        &ValidationContext::default(),
    )
    .expect("valid");
    assert!(has(
        &v.warnings,
        "spec.analysis.metrics[0]",
        "fails the check whenever the value is above 0"
    ));
    assert_eq!(
        v.canary.analysis.metrics[0].range,
        Range {
            min: None,
            max: Some(0.0)
        }
    );
}

#[test]
fn builtin_success_rate_without_threshold_does_not_warn() {
    let w = warnings("spec: {analysis: {metrics: [{name: request-success-rate, interval: 1m}]}}");
    assert!(
        !w.iter()
            .any(|p| p.path.starts_with("spec.analysis.metrics")),
        "{}",
        show(&w)
    );
}

#[test]
fn diagnose_keeps_warnings_of_an_invalid_canary() {
    let d = diagnose(
        &canary("spec: {provider: kubernetes, analysis: {threshold: -2}}"),
        &ValidationContext::default(),
    );
    assert!(d.canary.is_none());
    assert!(has(&d.errors, "spec.analysis.threshold", "negative"));
    assert!(has(&d.warnings, "spec.analysis", "kubernetes provider"));
}

// ----- defaults on valid canaries -----

#[test]
fn defaults_are_resolved_as_flagger_resolves_them() {
    let c = canary(
        "spec: {analysis: {threshold: 0, maxWeight: null, \
         metrics: [{name: request-success-rate, threshold: 99}, \
                   {name: request-duration, threshold: 500}, \
                   {name: errors, query: 'sum(x)'}, \
                   {name: latency, templateRef: {name: latency}, thresholdRange: {max: 5}}], \
         webhooks: [{name: gate, type: confirm-rollout, url: 'http://tester/gate'}], \
         alerts: [{name: oncall, severity: '', providerRef: {name: slack}}], \
         sessionAffinity: {cookieName: canary, maxAge: 0}}}",
    );
    let v = validate(&c, &ValidationContext::default()).expect("valid");
    let vc = &v.canary;
    assert_eq!(vc.name, "podinfo");
    assert_eq!(vc.namespace, "test");
    assert_eq!(vc.provider, Provider::Istio);
    assert_eq!(vc.target.kind, TargetKind::Deployment);
    assert_eq!(vc.apex, "podinfo");
    assert_eq!(vc.primary_service(), "podinfo-primary");
    assert_eq!(vc.progress_deadline, Duration::from_secs(600));
    assert!(!vc.skip_analysis);
    assert!(!vc.suspend);
    assert!(!vc.revert_on_deletion);

    let a = &vc.analysis;
    assert_eq!(a.interval, Duration::from_secs(60));
    assert_eq!(a.threshold, 1, "threshold 0 means 1");
    assert_eq!(
        a.strategy,
        Strategy::Canary {
            steps: Steps::Linear(10),
            max_weight: 100,
            mirror: false
        }
    );
    assert_eq!(a.strategy.label(), "canary");
    assert_eq!(a.primary_ready_threshold, 100);
    assert_eq!(a.canary_ready_threshold, 100);
    assert_eq!(a.step_weight_promotion, 0);
    assert_eq!(a.mirror_weight, 0);

    let m = &a.metrics;
    assert_eq!(
        m[0].source,
        MetricSource::Builtin(BuiltinMetric::RequestSuccessRate)
    );
    assert_eq!(
        m[0].range,
        Range {
            min: Some(99.0),
            max: None
        }
    );
    assert_eq!(m[0].interval, Some(Duration::from_secs(60)));
    assert_eq!(
        m[1].range,
        Range {
            min: None,
            max: Some(500.0)
        }
    );
    assert_eq!(m[2].source, MetricSource::Query("sum(x)".into()));
    assert_eq!(m[2].interval, Some(Duration::from_secs(60)));
    assert_eq!(
        m[2].range,
        Range {
            min: None,
            max: Some(0.0)
        },
        "custom metric without thresholds fails above 0"
    );
    assert_eq!(
        m[3].source,
        MetricSource::Template {
            name: "latency".into(),
            namespace: "test".into(),
            variables: Default::default()
        }
    );
    assert_eq!(m[3].interval, None, "templates get no default interval");

    let hook = &a.webhooks[0];
    assert_eq!(hook.hook_type, HookType::ConfirmRollout);
    assert_eq!(hook.timeout, Duration::from_secs(10));
    assert_eq!(hook.retries, 0);

    let alert = &a.alerts[0];
    assert_eq!(
        alert.severity,
        Some(Severity::Info),
        "empty severity means info"
    );
    assert_eq!(alert.provider_namespace, "test");

    let sa = a.session_affinity.as_ref().expect("session affinity");
    assert_eq!(sa.max_age, 86400);
    assert_eq!(sa.primary_cookie_name, None);
}

#[test]
fn explicit_values_are_kept() {
    let c = canary(
        "spec: {provider: nginx, ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, \
         name: podinfo}, progressDeadlineSeconds: 60, skipAnalysis: true, suspend: true, \
         revertOnDeletion: true, service: {name: frontend}, \
         analysis: {interval: 30s, stepWeightPromotion: 20, primaryReadyThreshold: 50, \
         canaryReadyThreshold: 80, webhooks: [{name: t, url: 'http://tester/', timeout: 1m30s, \
         retries: 3}], alerts: [{name: a, severity: warn, providerRef: {name: s, namespace: ops}}]}}",
    );
    let v = validate(&c, &ValidationContext::default()).expect("valid");
    let vc = &v.canary;
    assert_eq!(vc.provider, Provider::Nginx);
    assert_eq!(vc.apex, "frontend");
    assert_eq!(vc.primary_workload(), "podinfo-primary");
    assert_eq!(vc.progress_deadline, Duration::from_secs(60));
    assert!(vc.skip_analysis && vc.suspend && vc.revert_on_deletion);
    let a = &vc.analysis;
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.step_weight_promotion, 20);
    assert_eq!(a.primary_ready_threshold, 50);
    assert_eq!(a.canary_ready_threshold, 80);
    assert_eq!(a.webhooks[0].timeout, Duration::from_secs(90));
    assert_eq!(a.webhooks[0].retries, 3);
    assert_eq!(a.alerts[0].severity, Some(Severity::Warn));
    assert_eq!(a.alerts[0].provider_namespace, "ops");
}

#[test]
fn step_weights_set_the_promotion_point() {
    let c = canary("spec: {analysis: {stepWeight: null, maxWeight: 20, stepWeights: [5, 10, 40]}}");
    let v = validate(&c, &ValidationContext::default()).expect("valid");
    assert_eq!(
        v.canary.analysis.strategy,
        Strategy::Canary {
            steps: Steps::Explicit(vec![5, 10, 40]),
            max_weight: 40,
            mirror: false
        }
    );
    assert!(has(
        &v.warnings,
        "spec.analysis.maxWeight",
        "ignored with stepWeights"
    ));
}

#[test]
fn iterations_choose_blue_green_or_ab_testing() {
    let bg = canary(
        "spec: {analysis: {stepWeight: null, maxWeight: null, iterations: 10, mirror: true}}",
    );
    let v = validate(&bg, &ValidationContext::default()).expect("valid");
    assert_eq!(
        v.canary.analysis.strategy,
        Strategy::BlueGreen {
            iterations: 10,
            mirror: true
        }
    );
    assert_eq!(v.canary.analysis.strategy.label(), "blue-green");

    let ab = canary(
        "spec: {analysis: {stepWeight: null, maxWeight: null, iterations: 4, \
         match: [{headers: {x-canary: {exact: insider}}}]}}",
    );
    let v = validate(&ab, &ValidationContext::default()).expect("valid");
    assert_eq!(v.canary.analysis.strategy.label(), "ab-testing");
    assert_eq!(v.canary.analysis.strategy.iterations(), 4);
}

#[test]
fn empty_provider_uses_the_controller_default() {
    let ctx = ValidationContext {
        default_provider: Provider::Linkerd,
        ..ValidationContext::default()
    };
    let v = validate(&canary("spec: {provider: ''}"), &ctx).expect("valid");
    assert_eq!(v.canary.provider, Provider::Linkerd);
}

#[test]
fn knative_service_targets_are_recognised() {
    let c = canary(
        "spec: {provider: knative, service: null, targetRef: {apiVersion: serving.knative.dev/v1, \
         kind: Service}}",
    );
    let v = validate(&c, &ValidationContext::default()).expect("valid");
    assert_eq!(v.canary.target.kind, TargetKind::KnativeService);
}

#[test]
fn missing_namespace_means_default() {
    let mut c = canary("{}");
    c.metadata.namespace = None;
    let v = validate(&c, &ValidationContext::default()).expect("valid");
    assert_eq!(v.canary.namespace, "default");
    assert_eq!(v.canary.analysis.alerts[0].provider_namespace, "default");
}
