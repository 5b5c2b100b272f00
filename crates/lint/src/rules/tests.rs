use serde_json::Value;

use flagger_core::model::Provider;

use super::*;
use crate::settings::helm_settings;

/// Objects from one multi-document YAML text, one "file" per document, line = index.
fn objects(yaml: &str) -> Vec<Object> {
    yaml.split("\n---\n")
        .enumerate()
        .map(|(i, doc)| {
            let value: Value = serde_yaml::from_str(doc).expect("test YAML");
            Object::new(&format!("f{i}.yaml"), 1, value)
        })
        .collect()
}

const CANARY: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: app, namespace: prod}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: app}
  service: {port: 80}
  analysis: {interval: 1m, threshold: 2, iterations: 5}";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: prod}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app, team: web}}
    spec:
      containers:
      - name: app
        image: app:1
        envFrom: [{configMapRef: {name: app-config}}]";

fn run(extra: &str) -> Vec<Finding> {
    let yaml = format!("{CANARY}\n---\n{DEPLOYMENT}\n---\n{extra}");
    lint(&objects(&yaml), &Context::default())
}

fn rules(findings: &[Finding]) -> Vec<(Level, Rule, String)> {
    findings
        .iter()
        .map(|f| (f.level, f.rule, f.object.clone()))
        .collect()
}

#[test]
fn the_canary_and_its_target_alone_are_clean() {
    let yaml = format!("{CANARY}\n---\n{DEPLOYMENT}");
    assert_eq!(lint(&objects(&yaml), &Context::default()), vec![]);
}

#[test]
fn apex_service_in_the_repository_is_an_error_that_explains_the_503s() {
    let f = run(
        "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {selector: {app: app}, ports: [{port: 80}]}",
    );
    assert_eq!(
        rules(&f),
        vec![(Level::Error, Rule::GeneratedService, "Service/app".into())]
    );
    let m = &f[0].message;
    assert!(m.contains("apex Service"), "{m}");
    assert!(m.contains("{app: app-primary}"), "{m}");
    assert!(m.contains("with {app: app}"), "{m}");
    assert!(m.contains("503"), "{m}");
}

#[test]
fn primary_and_canary_services_are_errors_and_other_namespaces_are_not() {
    let f = run("apiVersion: v1\nkind: Service\nmetadata: {name: app-primary}\nspec: {selector: {app: app-primary}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: app-canary, namespace: prod}\nspec: {selector: {app: app}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: other}\nspec: {selector: {app: app}}");
    assert_eq!(
        rules(&f),
        vec![
            (
                Level::Error,
                Rule::GeneratedService,
                "Service/app-primary".into()
            ),
            (
                Level::Error,
                Rule::GeneratedService,
                "Service/app-canary".into()
            ),
        ]
    );
}

#[test]
fn service_name_sets_the_apex() {
    let yaml = format!(
        "{}\n---\n{DEPLOYMENT}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{selector: {{app: app-primary}}}}",
        CANARY.replace("service: {port: 80}", "service: {port: 80, name: web}")
    );
    let f = lint(&objects(&yaml), &Context::default());
    assert_eq!(
        rules(&f),
        vec![(Level::Error, Rule::GeneratedService, "Service/web".into())]
    );
}

#[test]
fn flux_reconcile_disabled_turns_the_service_collision_into_a_warning() {
    let f = run(
        "apiVersion: v1\nkind: Service\nmetadata: {name: app, annotations: {kustomize.toolkit.fluxcd.io/reconcile: disabled}}\nspec: {selector: {app: app}}",
    );
    assert_eq!(
        rules(&f),
        vec![(Level::Warning, Rule::GeneratedService, "Service/app".into())]
    );
}

const ARGO_APP: &str = "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: app, namespace: argocd}
spec:
  ignoreDifferences:
  - {group: '', kind: Service, name: app, jsonPointers: [/spec/selector, /spec/ports]}
  - {group: apps, kind: Deployment, jqPathExpressions: [.spec.replicas]}
  syncPolicy: {syncOptions: [RespectIgnoreDifferences=true]}";

#[test]
fn argo_cd_ignore_differences_with_respect_turns_the_collision_into_a_warning() {
    let service =
        "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {selector: {app: app}}";
    let yaml = format!(
        "{CANARY}\n---\n{}\n---\n{service}\n---\n{ARGO_APP}",
        DEPLOYMENT.replace("spec:\n  selector", "spec:\n  replicas: 3\n  selector")
    );
    let f = lint(&objects(&yaml), &Context::default());
    assert_eq!(
        rules(&f),
        vec![(Level::Warning, Rule::GeneratedService, "Service/app".into())]
    );
    assert!(
        f[0].message.contains("RespectIgnoreDifferences"),
        "{}",
        f[0].message
    );
    // Without RespectIgnoreDifferences a sync still writes the fields back.
    let yaml = yaml.replace(
        "syncOptions: [RespectIgnoreDifferences=true]",
        "syncOptions: []",
    );
    assert_eq!(
        rules(&lint(&objects(&yaml), &Context::default())),
        vec![
            (
                Level::Warning,
                Rule::TargetReplicas,
                "Deployment/app".into()
            ),
            (Level::Error, Rule::GeneratedService, "Service/app".into()),
        ]
    );
}

#[test]
fn argo_cd_trusting_flaggers_field_manager_covers_every_field() {
    let app = "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: a}\nspec:\n  ignoreDifferences: [{kind: Service, managedFieldsManagers: [flagger]}]\n  syncPolicy: {syncOptions: [RespectIgnoreDifferences=true]}";
    let f = run(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: app}}\nspec: {{selector: {{app: app}}}}\n---\n{app}"
    ));
    assert_eq!(
        rules(&f),
        vec![(Level::Warning, Rule::GeneratedService, "Service/app".into())]
    );
}

#[test]
fn a_service_with_flaggers_own_selector_still_collides() {
    let f = run(
        "apiVersion: v1\nkind: Service\nmetadata: {name: app}\nspec: {selector: {app: app-primary}}",
    );
    assert_eq!(
        rules(&f),
        vec![(Level::Error, Rule::GeneratedService, "Service/app".into())]
    );
    assert!(
        f[0].message.contains("as this manifest does"),
        "{}",
        f[0].message
    );
}

#[test]
fn service_targets_collide_on_their_primary_and_canary_copies() {
    let yaml = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: api}
spec:
  provider: gatewayapi:v1
  targetRef: {apiVersion: v1, kind: Service, name: api}
  service: {port: 80, gatewayRefs: [{name: gw}]}
  analysis: {interval: 1m, threshold: 2, stepWeight: 10, maxWeight: 50}
---
apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {selector: {app: api}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: api-canary}\nspec: {selector: {app: api}}";
    let f = lint(&objects(yaml), &Context::default());
    assert_eq!(
        rules(&f),
        vec![(
            Level::Error,
            Rule::GeneratedService,
            "Service/api-canary".into()
        )]
    );
    assert!(
        f[0].message.contains("copy of Service/api"),
        "{}",
        f[0].message
    );
}

#[test]
fn flux_create_once_policy_turns_collisions_into_warnings() {
    let f = run(
        "apiVersion: v1\nkind: Service\nmetadata: {name: app, annotations: {kustomize.toolkit.fluxcd.io/ssa: IfNotPresent, kustomize.toolkit.fluxcd.io/prune: Disabled}}\nspec: {selector: {app: app}}",
    );
    assert_eq!(
        rules(&f),
        vec![(Level::Warning, Rule::GeneratedService, "Service/app".into())]
    );
    assert!(
        f[0].message
            .contains("kustomize.toolkit.fluxcd.io/ssa: IfNotPresent"),
        "{}",
        f[0].message
    );
    // `Merge` still applies the manifest's fields: the selector keeps flipping.
    let f = run(
        "apiVersion: v1\nkind: Service\nmetadata: {name: app, annotations: {kustomize.toolkit.fluxcd.io/ssa: Merge}}\nspec: {selector: {app: app}}",
    );
    assert_eq!(
        rules(&f),
        vec![(Level::Error, Rule::GeneratedService, "Service/app".into())]
    );
    let vs = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: app, annotations: {kustomize.toolkit.fluxcd.io/ssa: Ignore}}\nspec: {}";
    assert_eq!(
        rules(&with_provider("istio", "", vs)),
        vec![(
            Level::Warning,
            Rule::GeneratedRoute,
            "VirtualService/app".into()
        )]
    );
}

#[test]
fn primary_workload_in_the_repository_is_an_error() {
    let f = run("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app-primary}\nspec: {}");
    assert_eq!(
        rules(&f),
        vec![(
            Level::Error,
            Rule::GeneratedWorkload,
            "Deployment/app-primary".into()
        )]
    );
}

#[test]
fn primary_copy_of_a_tracked_configmap_is_an_error_unless_tracking_is_off() {
    let f = run("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config-primary}\ndata: {}");
    assert_eq!(
        rules(&f),
        vec![(
            Level::Error,
            Rule::GeneratedConfig,
            "ConfigMap/app-config-primary".into()
        )]
    );
    let f = run("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config-primary}\ndata: {}
---
apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-config, annotations: {flagger.app/config-tracking: disabled}}\ndata: {}");
    assert_eq!(f, vec![]);
}

#[test]
fn autoscalers_of_the_primary_are_errors() {
    let f = run("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: app-primary-hpa}\nspec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: app-primary}, maxReplicas: 4}
---
apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: app-so}\nspec: {scaleTargetRef: {name: app-primary}}
---
apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: app}\nspec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: app}, maxReplicas: 4}");
    assert_eq!(
        rules(&f),
        vec![
            (
                Level::Error,
                Rule::GeneratedAutoscaler,
                "HorizontalPodAutoscaler/app-primary-hpa".into()
            ),
            (
                Level::Error,
                Rule::GeneratedAutoscaler,
                "ScaledObject/app-so".into()
            ),
        ]
    );
}

#[test]
fn the_generated_hpa_name_collides_too() {
    let yaml = format!(
            "{}\n---\n{DEPLOYMENT}\n---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: web-primary}}\nspec: {{scaleTargetRef: {{name: other}}}}",
            CANARY.replace(
                "service:",
                "autoscalerRef: {apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, name: web}\n  service:"
            )
        );
    let f = lint(&objects(&yaml), &Context::default());
    assert_eq!(
        rules(&f),
        vec![(
            Level::Error,
            Rule::GeneratedAutoscaler,
            "HorizontalPodAutoscaler/web-primary".into()
        )]
    );
}

#[test]
fn replicas_on_the_target_is_a_warning() {
    let yaml = format!(
        "{CANARY}\n---\n{}",
        DEPLOYMENT.replace("spec:\n  selector", "spec:\n  replicas: 3\n  selector")
    );
    let f = lint(&objects(&yaml), &Context::default());
    assert_eq!(
        rules(&f),
        vec![(
            Level::Warning,
            Rule::TargetReplicas,
            "Deployment/app".into()
        )]
    );
    assert!(f[0].message.contains("replicas: 3"), "{}", f[0].message);
}

fn with_provider(provider: &str, extra_spec: &str, objects_yaml: &str) -> Vec<Finding> {
    let yaml = format!(
        "{}\n---\n{DEPLOYMENT}\n---\n{objects_yaml}",
        CANARY.replace(
            "provider: kubernetes",
            &format!("provider: {provider}\n  {extra_spec}")
        )
    );
    lint(&objects(&yaml), &Context::default())
}

#[test]
fn routing_objects_of_the_provider_are_errors() {
    let istio = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: app}\nspec: {}
---
apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: app-canary}\nspec: {}";
    assert_eq!(
        rules(&with_provider("istio", "", istio)),
        vec![
            (
                Level::Error,
                Rule::GeneratedRoute,
                "VirtualService/app".into()
            ),
            (
                Level::Error,
                Rule::GeneratedRoute,
                "DestinationRule/app-canary".into()
            ),
        ]
    );
    // The same objects are not generated by the kubernetes provider.
    assert_eq!(with_provider("kubernetes", "", istio), vec![]);

    let split = "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: app}\nspec: {}";
    for p in ["linkerd", "osm", "smi:v1alpha3"] {
        assert_eq!(
            rules(&with_provider(p, "", split)),
            vec![(
                Level::Error,
                Rule::GeneratedRoute,
                "TrafficSplit/app".into()
            )],
            "{p}"
        );
    }

    let ingress =
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web-canary}\nspec: {}
---
apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec: {}";
    assert_eq!(
        rules(&with_provider(
            "nginx",
            "ingressRef: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: web}",
            ingress
        )),
        vec![(
            Level::Error,
            Rule::GeneratedRoute,
            "Ingress/web-canary".into()
        )]
    );

    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: app}\nspec: {}";
    let yaml = format!(
        "{}\n---\n{DEPLOYMENT}\n---\n{route}",
        CANARY
            .replace("provider: kubernetes", "provider: gatewayapi:v1")
            .replace("{port: 80}", "{port: 80, gatewayRefs: [{name: gw}]}")
    );
    assert_eq!(
        rules(&lint(&objects(&yaml), &Context::default())),
        vec![(Level::Error, Rule::GeneratedRoute, "HTTPRoute/app".into())]
    );
}

#[test]
fn default_provider_applies_when_the_canary_has_none() {
    let yaml = format!(
        "{}\n---\n{DEPLOYMENT}\n---\napiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: {{name: app}}\nspec: {{}}",
        CANARY.replace("  provider: kubernetes\n", "")
    );
    let objs = objects(&yaml);
    assert_eq!(lint(&objs, &Context::default()), vec![]);
    let ctx = Context {
        default_provider: Provider::Linkerd,
        ..Context::default()
    };
    assert_eq!(
        rules(&lint(&objs, &ctx)),
        vec![(
            Level::Error,
            Rule::GeneratedRoute,
            "TrafficSplit/app".into()
        )]
    );
}

#[test]
fn services_selecting_the_target_pods_are_warnings() {
    let f = run(
        "apiVersion: v1\nkind: Service\nmetadata: {name: app-tmp}\nspec: {selector: {app: app}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: team}\nspec: {selector: {team: web}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: stable}\nspec: {selector: {app: app-primary}}
---
apiVersion: v1\nkind: Service\nmetadata: {name: unrelated}\nspec: {selector: {app: other}}",
    );
    assert_eq!(
        rules(&f),
        vec![
            (
                Level::Warning,
                Rule::SelectsCanaryPods,
                "Service/app-tmp".into()
            ),
            (
                Level::Warning,
                Rule::SelectsCanaryPods,
                "Service/team".into()
            ),
        ]
    );
    assert!(f[0].message.contains("scales to zero"), "{}", f[0].message);
    assert!(f[1].message.contains("both"), "{}", f[1].message);
}

#[test]
fn invalid_canaries_are_reported_briefly() {
    let yaml = CANARY.replace("iterations: 5", "iterations: 5, stepWeight: 10");
    let f = lint(&objects(&yaml), &Context::default());
    assert_eq!(
        rules(&f),
        vec![(Level::Error, Rule::InvalidCanary, "Canary/app".into())]
    );
    assert!(
        f[0].message.starts_with("fails validation: spec.analysis"),
        "{}",
        f[0].message
    );
    assert!(
        f[0].message.contains("flagger validate f0.yaml"),
        "{}",
        f[0].message
    );
}

#[test]
fn helm_values_of_the_flagger_chart_are_read() {
    let o = objects(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: flagger}\nspec:\n  chart: {spec: {chart: flagger}}\n  values: {meshProvider: nginx, selectorLabels: 'app.kubernetes.io/name'}",
    );
    assert_eq!(
        helm_settings(&o),
        (Some("nginx".into()), Some("app.kubernetes.io/name".into()))
    );
}
