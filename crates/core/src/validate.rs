//! Wire [`Canary`] → [`ValidatedCanary`]: Flagger's schema rules and semantic checks, reporting
//! every problem with its field path and how to fix it.
//!
//! Three kinds of rules live here:
//!
//! * **schema rules** of Flagger's CRD that a typed value can still break (enums, the duration
//!   pattern, the `analysis` oneOf, minimums and ranges): the API server would reject the object;
//! * **semantic rules** Flagger's controller checks (Knative target ⇔ `knative` provider,
//!   distinct session-affinity cookies, cross-namespace references) or that leave a canary that
//!   hangs or misbehaves (a `maxWeight` above 100 is never reached, `stepWeight: 0` never
//!   advances, a provider name Flagger silently routes to Istio);
//! * **warnings** for things Flagger accepts but that rarely do what the author meant (`match`
//!   with a provider that ignores it, the kubernetes provider's forced blue/green).
//!
//! Defaults are resolved as Flagger resolves them (behaviour reference, section 1.8), except the
//! deliberate differences recorded in `docs/compatibility.md` (an empty alert severity means
//! info, as Flagger documents, not "nothing", as Flagger does).

pub mod suggest;

use std::collections::BTreeMap;
use std::time::Duration;

use flagger_api::{
    Canary, CanaryAlert, CanaryAnalysis, CanaryMetric, CanarySpec, CanaryWebhook, PROVIDERS,
    WEBHOOK_TYPES,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::duration::{format_go, matches_crd_pattern, parse_go_duration};

use crate::model::{
    AlertRoute, Analysis, Autoscaler, AutoscalerKind, BuiltinMetric, HookType, Metric,
    MetricSource, Provider, Range, SessionAffinity, Severity, Steps, Strategy, Target, TargetKind,
    ValidatedCanary, Webhook,
};
use suggest::{did_you_mean, list};

/// Settings of the controller that validation depends on.
#[derive(Clone, Debug)]
pub struct ValidationContext {
    /// `-mesh-provider`: used when `spec.provider` is empty.
    pub default_provider: Provider,
    /// Shortest analysis interval (Flagger: 10s); shorter intervals are raised to it.
    pub min_interval: Duration,
    /// `-no-cross-namespace-refs`.
    pub no_cross_namespace_refs: bool,
    /// `--no-data-policy`: what a check without data does when the Canary's
    /// `flagger.app/no-data` annotation does not say.
    pub no_data: crate::steer::NoDataPolicy,
}

impl Default for ValidationContext {
    fn default() -> Self {
        Self {
            default_provider: Provider::Istio,
            min_interval: Duration::from_secs(10),
            no_cross_namespace_refs: false,
            no_data: crate::steer::NoDataPolicy::Fail,
        }
    }
}

/// One problem with a Canary: where, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `spec.analysis.stepWeights[2]`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A validated canary and the warnings about things Flagger accepts but that surprise users.
#[derive(Clone, Debug)]
pub struct Validated {
    pub canary: ValidatedCanary,
    pub warnings: Vec<Problem>,
}

/// Everything validation found: errors, warnings, and the validated canary when there are no
/// errors. [`validate`] is the usual entry point; this one also keeps the warnings of an
/// invalid canary (for `flagger validate`).
#[derive(Clone, Debug)]
pub struct Diagnosis {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    pub canary: Option<ValidatedCanary>,
}

/// Validates a Canary. Returns every problem found, not just the first.
pub fn validate(canary: &Canary, ctx: &ValidationContext) -> Result<Validated, Vec<Problem>> {
    let d = diagnose(canary, ctx);
    match d.canary {
        Some(c) if d.errors.is_empty() => Ok(Validated {
            canary: c,
            warnings: d.warnings,
        }),
        _ => Err(d.errors),
    }
}

/// Validates a Canary and returns errors and warnings together.
pub fn diagnose(canary: &Canary, ctx: &ValidationContext) -> Diagnosis {
    let mut c = Checker {
        ctx,
        errors: Vec::new(),
        warnings: Vec::new(),
        namespace: canary
            .metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string()),
    };
    let name = canary.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        c.err(
            "metadata.name",
            "missing: every Canary needs a name (the API server rejects an object without one)",
        );
    }
    let no_data = match crate::steer::no_data_policy(
        canary
            .metadata
            .annotations
            .as_ref()
            .unwrap_or(&BTreeMap::new()),
    ) {
        Ok(policy) => policy.unwrap_or(ctx.no_data),
        Err(why) => {
            c.err(
                format!(
                    "metadata.annotations[{}]",
                    flagger_api::labels::NO_DATA_POLICY
                ),
                why,
            );
            ctx.no_data
        }
    };
    let built = c.canary(&canary.spec, name).map(|mut v| {
        v.no_data = no_data;
        v
    });
    let canary = if c.errors.is_empty() { built } else { None };
    Diagnosis {
        errors: c.errors,
        warnings: c.warnings,
        canary,
    }
}

/// Default analysis interval when none is set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default metric interval of builtin checks and inline queries.
pub const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);
/// Default webhook timeout.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default progress deadline.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
/// Default session-affinity cookie Max-Age.
pub const DEFAULT_COOKIE_MAX_AGE: i64 = 86400;
/// Iterations the kubernetes provider forces when none are set.
pub const KUBERNETES_FORCED_ITERATIONS: u32 = 10;

const TARGET_KINDS: &[&str] = &["Deployment", "DaemonSet", "Service"];
const AUTOSCALER_KINDS: &[&str] = &["HorizontalPodAutoscaler", "ScaledObject"];
const TRAFFIC_DISTRIBUTIONS: &[&str] = &["PreferClose", "PreferSameZone", "PreferSameNode"];
const SAME_SITE: &[&str] = &["Strict", "Lax", "None"];
const SEVERITIES: &[&str] = &["info", "warn", "error"];
const BUILTIN_METRICS: &[&str] = &["request-success-rate", "request-duration"];
const KNATIVE_API_VERSION: &str = "serving.knative.dev/v1";

/// (field path, (kind, name) when set, the only kind the CRD accepts).
type RefCheck<'a> = (&'static str, Option<(&'a str, &'a str)>, &'static str);

struct Checker<'a> {
    ctx: &'a ValidationContext,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    namespace: String,
}

impl Checker<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn canary(&mut self, spec: &CanarySpec, name: String) -> Option<ValidatedCanary> {
        let provider = self.provider(spec);
        let target = self.target(spec, provider);
        let autoscaler = self.autoscaler(spec, target.as_ref());
        self.references(spec, provider);
        let service = self.service(spec, provider, target.as_ref());
        let analysis = self.analysis(spec.analysis.as_ref(), provider);

        let progress_deadline = match spec.progress_deadline_seconds {
            None => DEFAULT_PROGRESS_DEADLINE,
            Some(s) if s <= 0 => {
                self.err(
                    "spec.progressDeadlineSeconds",
                    format!(
                        "{s} is not a usable deadline: Flagger would declare every rollout stuck \
                         at once; use a positive number of seconds (default 600) or remove it"
                    ),
                );
                DEFAULT_PROGRESS_DEADLINE
            }
            Some(s) => Duration::from_secs(u64::from(s.unsigned_abs())),
        };
        if let Some(server) = spec.metrics_server.as_deref().filter(|s| !s.is_empty())
            && let Err(why) = absolute_url(server)
        {
            self.err(
                "spec.metricsServer",
                format!(
                    "{server:?} {why}; write the Prometheus address, e.g. \
                         http://prometheus.monitoring:9090"
                ),
            );
        }

        let (provider, target, analysis) = (provider?, target?, analysis?);
        let apex = service
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| target.name.clone());
        Some(ValidatedCanary {
            name,
            namespace: self.namespace.clone(),
            provider,
            target,
            apex,
            service,
            autoscaler,
            analysis,
            skip_analysis: spec.skip_analysis.unwrap_or(false) || spec.analysis.is_none(),
            progress_deadline,
            revert_on_deletion: spec.revert_on_deletion.unwrap_or(false),
            suspend: spec.suspend.unwrap_or(false),
            metrics_server: spec.metrics_server.clone().filter(|s| !s.is_empty()),
            no_data: self.ctx.no_data,
        })
    }

    // ----- provider, target, autoscaler, references ------------------------------------------

    fn provider(&mut self, spec: &CanarySpec) -> Option<Provider> {
        let raw = match spec.provider.as_deref() {
            None | Some("") => return Some(self.ctx.default_provider),
            Some(raw) => raw,
        };
        if let Some(p) = Provider::parse(raw) {
            return Some(p);
        }
        let message = if raw == "gatewayapi" {
            "`gatewayapi` without a version is not in Flagger's CRD enum, and Flagger's controller \
             would silently use the Istio router for it; write `gatewayapi:v1` (or \
             `gatewayapi:v1beta1` for older Gateway API installs)"
                .to_string()
        } else if let Some(p) = Provider::parse_flag(raw) {
            format!(
                "`{raw}` is accepted by Flagger's -mesh-provider flag but not by the Canary CRD \
                 (the API server rejects it); write `{p}`"
            )
        } else {
            format!(
                "`{raw}` is not a provider Flagger knows: the CRD rejects it, and the controller \
                 would fall back to the Istio router.{} Valid providers: {}",
                did_you_mean(raw, PROVIDERS),
                list(PROVIDERS)
            )
        };
        self.err("spec.provider", message);
        None
    }

    fn target(&mut self, spec: &CanarySpec, provider: Option<Provider>) -> Option<Target> {
        let t = &spec.target_ref;
        let mut ok = true;
        if t.name.is_empty() {
            self.err(
                "spec.targetRef.name",
                "empty: name the Deployment, DaemonSet or Service this canary rolls out",
            );
            ok = false;
        }
        let kind = match t.kind.as_str() {
            "Deployment" => Some(TargetKind::Deployment),
            "DaemonSet" => Some(TargetKind::DaemonSet),
            "Service" if t.api_version == KNATIVE_API_VERSION => Some(TargetKind::KnativeService),
            "Service" => Some(TargetKind::Service),
            other => {
                self.err(
                    "spec.targetRef.kind",
                    format!(
                        "`{other}` is not a kind Flagger can target (the CRD accepts {}).{}",
                        list(TARGET_KINDS),
                        did_you_mean(other, TARGET_KINDS)
                    ),
                );
                None
            }
        };
        if let (Some(kind), Some(p)) = (kind, provider) {
            if p == Provider::Knative && kind != TargetKind::KnativeService {
                self.err(
                    "spec.targetRef",
                    format!(
                        "can't use {}/{} as target if provider is set to knative: the knative \
                         provider needs a Knative Service (apiVersion {KNATIVE_API_VERSION}, \
                         kind Service)",
                        t.api_version, t.kind
                    ),
                );
                ok = false;
            } else if p != Provider::Knative && kind == TargetKind::KnativeService {
                self.err(
                    "spec.provider",
                    format!(
                        "can't use {p} provider with Knative Service as target; set \
                         spec.provider: knative"
                    ),
                );
                ok = false;
            }
        }
        if matches!(kind, Some(TargetKind::Deployment | TargetKind::DaemonSet))
            && t.api_version != "apps/v1"
        {
            self.warn(
                "spec.targetRef.apiVersion",
                format!(
                    "Flagger reads {} targets through apps/v1 whatever this says; write apps/v1",
                    t.kind
                ),
            );
        }
        let kind = kind?;
        ok.then(|| Target {
            kind,
            api_version: t.api_version.clone(),
            name: t.name.clone(),
        })
    }

    fn autoscaler(&mut self, spec: &CanarySpec, target: Option<&Target>) -> Option<Autoscaler> {
        let a = spec.autoscaler_ref.as_ref()?;
        let p = "spec.autoscalerRef";
        if target.is_some_and(|t| t.kind == TargetKind::KnativeService) {
            self.err(
                p,
                "can't use autoscaler with Knative Service: Knative scales its revisions itself; \
                 remove spec.autoscalerRef",
            );
        }
        let kind = match a.kind.as_str() {
            "HorizontalPodAutoscaler" => Some(AutoscalerKind::HorizontalPodAutoscaler),
            "ScaledObject" => Some(AutoscalerKind::ScaledObject),
            other => {
                self.err(
                    format!("{p}.kind"),
                    format!(
                        "`{other}` is not an autoscaler Flagger supports (the CRD accepts {}).{}",
                        list(AUTOSCALER_KINDS),
                        did_you_mean(other, AUTOSCALER_KINDS)
                    ),
                );
                None
            }
        };
        let expected_api = match kind {
            Some(AutoscalerKind::HorizontalPodAutoscaler) => Some("autoscaling/v2"),
            Some(AutoscalerKind::ScaledObject) => Some("keda.sh/v1alpha1"),
            None => None,
        };
        if let Some(want) = expected_api.filter(|want| a.api_version != *want) {
            self.warn(
                format!("{p}.apiVersion"),
                format!(
                    "Flagger reads the {} through {want} whatever this says{}; write {want}",
                    a.kind,
                    if a.api_version.starts_with("autoscaling/v2beta") {
                        format!(" ({} was removed in Kubernetes 1.26)", a.api_version)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        if a.name.is_empty() {
            self.err(
                format!("{p}.name"),
                "empty: name the HorizontalPodAutoscaler or ScaledObject of the target",
            );
        }
        let (mut min, mut max) = (None, None);
        if let Some(r) = &a.primary_scaler_replicas {
            let rp = format!("{p}.primaryScalerReplicas");
            for (field, value) in [
                ("minReplicas", r.min_replicas),
                ("maxReplicas", r.max_replicas),
            ] {
                if let Some(v) = value.filter(|v| *v < 1) {
                    self.err(
                        format!("{rp}.{field}"),
                        format!("{v} is below the CRD minimum of 1; use at least 1 replica"),
                    );
                }
            }
            if let (Some(lo), Some(hi)) = (r.min_replicas, r.max_replicas)
                && lo > hi
            {
                self.err(
                    format!("{rp}.minReplicas"),
                    format!(
                        "minReplicas {lo} is above maxReplicas {hi}: the primary scaler \
                             would be rejected; make minReplicas <= maxReplicas"
                    ),
                );
            }
            (min, max) = (r.min_replicas, r.max_replicas);
        }
        let queries = a.primary_scaler_queries.clone().unwrap_or_default();
        if !queries.is_empty() && kind == Some(AutoscalerKind::HorizontalPodAutoscaler) {
            self.warn(
                format!("{p}.primaryScalerQueries"),
                "only used with a KEDA ScaledObject; Flagger ignores it for a \
                 HorizontalPodAutoscaler",
            );
        }
        Some(Autoscaler {
            kind: kind?,
            api_version: a.api_version.clone(),
            name: a.name.clone(),
            primary_scaler_queries: queries,
            primary_min_replicas: min,
            primary_max_replicas: max,
        })
    }

    fn references(&mut self, spec: &CanarySpec, provider: Option<Provider>) {
        let kinds: [RefCheck<'_>; 3] = [
            (
                "spec.ingressRef",
                spec.ingress_ref
                    .as_ref()
                    .map(|r| (r.kind.as_str(), r.name.as_str())),
                "Ingress",
            ),
            (
                "spec.routeRef",
                spec.route_ref
                    .as_ref()
                    .map(|r| (r.kind.as_str(), r.name.as_str())),
                "ApisixRoute",
            ),
            (
                "spec.upstreamRef",
                spec.upstream_ref
                    .as_ref()
                    .map(|r| (r.kind.as_str(), r.name.as_str())),
                "Upstream",
            ),
        ];
        for (path, value, want) in kinds {
            let Some((kind, name)) = value else { continue };
            if kind != want {
                self.err(
                    format!("{path}.kind"),
                    format!("`{kind}` is not accepted by Flagger's CRD here; write `{want}`"),
                );
            }
            if name.is_empty() {
                self.err(format!("{path}.name"), format!("empty: name the {want}"));
            }
        }
        // The fields the provider itself needs (`ingressRef`, `routeRef`, `gatewayRefs`,
        // `meshName`...): its module's checks.
        if let Some(p) = provider {
            for f in (p.descriptor().check)(spec) {
                if f.warning {
                    self.warn(f.path, f.message);
                } else {
                    self.err(f.path, f.message);
                }
            }
        }
        if let Some(u) = &spec.upstream_ref {
            let ns = u.namespace.as_deref().filter(|n| !n.is_empty());
            if let Some(ns) = ns
                && self.ctx.no_cross_namespace_refs
                && ns != self.namespace
            {
                self.err(
                    "spec.upstreamRef.namespace",
                    format!(
                        "can't access gloo upstream {}.{ns}, cross-namespace references are \
                             blocked (-no-cross-namespace-refs); move the Upstream to namespace \
                             {} or drop the namespace",
                        u.name, self.namespace
                    ),
                );
            }
        }
    }

    // ----- service -------------------------------------------------------------------------

    fn service(
        &mut self,
        spec: &CanarySpec,
        provider: Option<Provider>,
        target: Option<&Target>,
    ) -> flagger_api::CanaryService {
        let p = "spec.service";
        let Some(svc) = &spec.service else {
            if !target.is_some_and(|t| t.kind == TargetKind::KnativeService) {
                self.err(
                    p,
                    "missing: Flagger needs spec.service.port to create the apex, -primary and \
                     -canary Services; add `service: {port: <the port your app serves on>}`",
                );
            }
            return Default::default();
        };
        if !(1..=65535).contains(&svc.port) {
            self.err(
                format!("{p}.port"),
                format!(
                    "{} is not a valid port; use the Service port, between 1 and 65535",
                    svc.port
                ),
            );
        }
        match &svc.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => self.err(
                format!("{p}.targetPort"),
                format!("{n} is not a valid port; use a container port between 1 and 65535 or a port name"),
            ),
            Some(IntOrString::String(s)) if s.is_empty() => self.err(
                format!("{p}.targetPort"),
                "empty: use a container port number or name, or remove it (default: service.port)",
            ),
            _ => {}
        }
        if let Some(td) = svc.traffic_distribution.as_deref()
            && !TRAFFIC_DISTRIBUTIONS.contains(&td)
        {
            self.err(
                format!("{p}.trafficDistribution"),
                format!(
                    "`{td}` is not accepted by Flagger's CRD (use {}).{}",
                    list(TRAFFIC_DISTRIBUTIONS),
                    did_you_mean(td, TRAFFIC_DISTRIBUTIONS)
                ),
            );
        }
        let refs = svc.gateway_refs.as_deref().unwrap_or_default();
        if refs.len() > 32 {
            self.err(
                format!("{p}.gatewayRefs"),
                format!(
                    "{} entries; Flagger's CRD allows at most 32 parent references",
                    refs.len()
                ),
            );
        }
        for (i, r) in refs.iter().enumerate() {
            let rp = format!("{p}.gatewayRefs[{i}]");
            if r.name.is_empty() {
                self.err(format!("{rp}.name"), "empty: name the parent Gateway");
            }
            if let Some(port) = r.port.filter(|port| !(1..=65535).contains(port)) {
                self.err(
                    format!("{rp}.port"),
                    format!("{port} is outside 1..65535; use the listener port of the Gateway"),
                );
            }
        }
        if let Some(p_) = provider {
            let gateway_api = matches!(p_, Provider::GatewayApiV1 | Provider::GatewayApiV1Beta1);
            if !gateway_api && !svc.mirror.as_deref().unwrap_or_default().is_empty() {
                self.warn(
                    format!("{p}.mirror"),
                    format!(
                        "static request mirroring is only implemented by the Gateway API \
                         providers; the {p_} provider ignores it"
                    ),
                );
            }
        }
        svc.clone()
    }

    // ----- analysis ------------------------------------------------------------------------

    fn analysis(
        &mut self,
        a: Option<&CanaryAnalysis>,
        provider: Option<Provider>,
    ) -> Option<Analysis> {
        let p = "spec.analysis";
        let Some(a) = a else {
            self.err(
                p,
                "missing: Flagger's CRD requires spec.analysis (the API server rejects the \
                 Canary); add interval, threshold and one of iterations, stepWeight or \
                 stepWeights (set skipAnalysis: true to promote without checks)",
            );
            return None;
        };
        let mut ok = true;

        // interval
        let interval = match a.interval.as_deref() {
            None => {
                self.err(
                    format!("{p}.interval"),
                    "missing: Flagger's CRD requires interval together with threshold and the \
                     strategy field; add e.g. `interval: 1m`",
                );
                DEFAULT_INTERVAL
            }
            Some(s) => match self.duration(&format!("{p}.interval"), s) {
                None => {
                    ok = false;
                    DEFAULT_INTERVAL
                }
                Some(d) if d < self.ctx.min_interval => {
                    self.warn(
                        format!("{p}.interval"),
                        format!(
                            "{s} is below the controller's minimum; Flagger runs the analysis \
                             every {} instead",
                            format_go(self.ctx.min_interval)
                        ),
                    );
                    self.ctx.min_interval
                }
                Some(d) => d,
            },
        };

        // threshold
        let threshold = match a.threshold {
            None => {
                self.err(
                    format!("{p}.threshold"),
                    "missing: Flagger's CRD requires threshold (failed checks before rollback) \
                     together with interval; add e.g. `threshold: 5`",
                );
                1
            }
            Some(t) if t < 0 => {
                self.err(
                    format!("{p}.threshold"),
                    format!(
                        "{t} is negative; use the number of failed checks that triggers a \
                         rollback (1 or more)"
                    ),
                );
                1
            }
            Some(0) => 1,
            Some(t) => t.unsigned_abs(),
        };

        // oneOf: exactly one of iterations / stepWeight / stepWeights
        let present: Vec<&str> = [
            ("iterations", a.iterations.is_some()),
            ("stepWeight", a.step_weight.is_some()),
            ("stepWeights", a.step_weights.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect();
        match present.as_slice() {
            [] => {
                self.err(
                    p,
                    "no strategy: set exactly one of iterations (A/B testing or blue/green), \
                     stepWeight or stepWeights (progressive canary); Flagger's CRD requires one",
                );
                ok = false;
            }
            [_] => {}
            many => {
                let advice = if a.iterations.is_some() {
                    "the strategy is ambiguous: keep iterations for A/B testing or blue/green, \
                     or stepWeight/stepWeights for a progressive canary"
                } else {
                    "keep stepWeights for an explicit ladder or stepWeight for equal steps \
                     (Flagger's controller would use stepWeight and ignore stepWeights)"
                };
                self.err(
                    p,
                    format!(
                        "{} are set together, but Flagger's CRD accepts exactly one of \
                         iterations, stepWeight and stepWeights (the API server rejects this \
                         Canary); {advice}",
                        many.join(" and ")
                    ),
                );
                ok = false;
            }
        }

        let max_weight_raw = a.max_weight;
        if let Some(m) = max_weight_raw {
            if m <= 0 {
                self.err(
                    format!("{p}.maxWeight"),
                    format!(
                        "{m} can never be the promotion point; use a weight between 1 and 100 \
                         (default 100)"
                    ),
                );
                ok = false;
            } else if m > 100 {
                self.err(
                    format!("{p}.maxWeight"),
                    format!(
                        "{m} is above 100: the canary weight stops at 100, so Flagger would never \
                         reach maxWeight and the canary would never be promoted; use at most 100"
                    ),
                );
                ok = false;
            }
        }

        let matches = a.r#match.clone().unwrap_or_default();
        let mirror = a.mirror.unwrap_or(false);
        let strategy = if let Some(n) = a.iterations {
            if n < 1 {
                self.err(
                    format!("{p}.iterations"),
                    format!(
                        "{n} iterations: Flagger would treat the analysis as a progressive canary \
                         without a step and never advance; use 1 or more"
                    ),
                );
                ok = false;
            }
            if max_weight_raw.is_some() && present.len() == 1 {
                self.warn(
                    format!("{p}.maxWeight"),
                    "ignored with iterations (A/B testing and blue/green switch all at once)",
                );
            }
            let iterations = n.max(0).unsigned_abs();
            if matches.is_empty() {
                Strategy::BlueGreen { iterations, mirror }
            } else {
                Strategy::AbTesting {
                    iterations,
                    matches: matches.clone(),
                }
            }
        } else if let Some(ws) = &a.step_weights {
            let steps = self.step_weights(ws);
            if steps.is_none() {
                ok = false;
            }
            if max_weight_raw.is_some() && present.len() == 1 {
                self.warn(
                    format!("{p}.maxWeight"),
                    "ignored with stepWeights: Flagger promotes after the last step",
                );
            }
            let steps = steps.unwrap_or_default();
            let max_weight = steps.last().copied().unwrap_or(100).min(100);
            Strategy::Canary {
                steps: Steps::Explicit(steps),
                max_weight,
                mirror,
            }
        } else {
            let step = a.step_weight.unwrap_or(0);
            if a.step_weight.is_some() && !(1..=100).contains(&step) {
                let why = if step == 0 {
                    "0 never moves traffic, so the canary would never advance".to_string()
                } else if step < 0 {
                    format!("{step} is negative")
                } else {
                    format!("{step} is above 100")
                };
                self.err(
                    format!("{p}.stepWeight"),
                    format!("{why}; use a percentage between 1 and 100"),
                );
                ok = false;
            }
            let max_weight = max_weight_raw
                .filter(|m| (1..=100).contains(m))
                .map_or(100, i32::unsigned_abs);
            if (1..=100).contains(&step) && max_weight_raw.is_some() {
                let step_u = step.unsigned_abs();
                let last = max_weight.div_ceil(step_u).saturating_mul(step_u).min(100);
                if last != max_weight {
                    self.warn(
                        format!("{p}.maxWeight"),
                        format!(
                            "{max_weight} is not a multiple of stepWeight {step}: maxWeight is \
                             the promotion point, not a cap, so the canary weight goes up to \
                             {last} before promotion"
                        ),
                    );
                }
            }
            Strategy::Canary {
                steps: Steps::Linear(step.max(0).unsigned_abs()),
                max_weight,
                mirror,
            }
        };

        let step_weight_promotion = match a.step_weight_promotion {
            Some(s) if !(0..=100).contains(&s) => {
                self.err(
                    format!("{p}.stepWeightPromotion"),
                    format!("{s} is outside 0..100; use a percentage (0 switches at once)"),
                );
                ok = false;
                0
            }
            Some(s) => s.unsigned_abs(),
            None => 0,
        };

        let mirror_weight = match a.mirror_weight {
            Some(w) if !(0..=100).contains(&w) => {
                self.err(
                    format!("{p}.mirrorWeight"),
                    format!("{w} is outside 0..100; use the percentage of traffic to mirror"),
                );
                ok = false;
                0
            }
            Some(w) => {
                if !mirror {
                    self.warn(
                        format!("{p}.mirrorWeight"),
                        "has no effect without `mirror: true`",
                    );
                } else if provider.is_some_and(|p| p != Provider::Istio) {
                    self.warn(
                        format!("{p}.mirrorWeight"),
                        "only the istio provider honours mirrorWeight; others mirror all traffic",
                    );
                }
                w.unsigned_abs()
            }
            None => 0,
        };

        let mut ready = [100u32; 2];
        for (slot, (field, value)) in ready.iter_mut().zip([
            ("primaryReadyThreshold", a.primary_ready_threshold),
            ("canaryReadyThreshold", a.canary_ready_threshold),
        ]) {
            match value {
                Some(v) if !(0..=100).contains(&v) => {
                    self.err(
                        format!("{p}.{field}"),
                        format!(
                            "{v} is outside 0..100; use the percentage of pods that must be \
                             available (default 100)"
                        ),
                    );
                    ok = false;
                }
                Some(v) => *slot = v.unsigned_abs(),
                None => {}
            }
        }

        self.provider_strategy_rules(a, provider, &strategy, mirror);

        let metrics = self.metrics(a.metrics.as_deref().unwrap_or_default());
        let webhooks = self.webhooks(a.webhooks.as_deref().unwrap_or_default());
        let alerts = self.alerts(a.alerts.as_deref().unwrap_or_default());
        let session_affinity = self.session_affinity(a, provider);

        let (metrics, webhooks, alerts) = (metrics?, webhooks?, alerts?);
        (ok).then_some(Analysis {
            interval,
            threshold,
            strategy,
            step_weight_promotion,
            mirror_weight,
            primary_ready_threshold: ready[0],
            canary_ready_threshold: ready[1],
            metrics,
            webhooks,
            alerts,
            session_affinity: session_affinity?,
        })
    }

    fn step_weights(&mut self, ws: &[i32]) -> Option<Vec<u32>> {
        let p = "spec.analysis.stepWeights";
        if ws.is_empty() {
            self.err(
                p,
                "empty: Flagger would fall back to stepWeight 0 and never advance; list the \
                 canary weights, e.g. [5, 10, 25, 50]",
            );
            return None;
        }
        let mut ok = true;
        let mut prev: Option<i32> = None;
        for (i, w) in ws.iter().copied().enumerate() {
            if w <= 0 || w > 100 {
                self.err(
                    format!("{p}[{i}]"),
                    format!("{w} is not a weight; every step must be between 1 and 100"),
                );
                ok = false;
            } else if let Some(before) = prev.filter(|before| w <= *before) {
                self.err(
                    format!("{p}[{i}]"),
                    format!(
                        "{w} does not increase on the previous step {before}: stepWeights must be \
                         strictly increasing (Flagger would jump straight to promotion or skip \
                         steps)"
                    ),
                );
                ok = false;
            }
            prev = Some(w);
        }
        ok.then(|| ws.iter().map(|w| w.unsigned_abs()).collect())
    }

    fn provider_strategy_rules(
        &mut self,
        a: &CanaryAnalysis,
        provider: Option<Provider>,
        strategy: &Strategy,
        mirror: bool,
    ) {
        let p = "spec.analysis";
        let matches = a.r#match.as_deref().unwrap_or_default();
        for (i, m) in matches.iter().enumerate() {
            let empty = m.headers.as_ref().is_none_or(BTreeMap::is_empty)
                && m.query_params.as_ref().is_none_or(BTreeMap::is_empty)
                && m.source_labels.as_ref().is_none_or(BTreeMap::is_empty);
            if empty {
                self.warn(
                    format!("{p}.match[{i}]"),
                    "matches nothing specific: add headers, queryParams or sourceLabels",
                );
            }
            for (key, h) in m.headers.iter().flatten() {
                let set = [&h.exact, &h.prefix, &h.suffix, &h.regex]
                    .iter()
                    .filter(|v| v.is_some())
                    .count();
                if set != 1 {
                    self.err(
                        format!("{p}.match[{i}].headers[{key}]"),
                        format!(
                            "sets {set} conditions; Flagger's CRD needs exactly one of exact, \
                             prefix, suffix or regex"
                        ),
                    );
                }
            }
        }
        let Some(prov) = provider else { return };
        if !matches.is_empty() {
            if prov == Provider::Kubernetes {
                self.warn(
                    format!("{p}.match"),
                    "A/B testing is not supported when using the kubernetes provider: Flagger \
                     drops match and runs blue/green",
                );
            } else if !matches!(strategy, Strategy::AbTesting { .. }) {
                self.warn(
                    format!("{p}.match"),
                    "only used for A/B testing, which needs iterations; with stepWeight(s) \
                     Flagger ignores match",
                );
            } else if !prov.supports_ab() {
                self.warn(
                    format!("{p}.match"),
                    format!(
                        "the {prov} provider ignores match: during the iterations all traffic \
                         goes to the canary instead of the matched requests only"
                    ),
                );
            }
        }
        if prov == Provider::Kubernetes
            && a.iterations.is_none()
            && (a.step_weight.is_some() || a.step_weights.is_some())
        {
            self.warn(
                p,
                format!(
                    "Progressive traffic is not supported when using the kubernetes \
                         provider: Flagger runs blue/green with {KUBERNETES_FORCED_ITERATIONS} \
                         iterations instead; set iterations to choose the number"
                ),
            );
        }
        if mirror {
            if !prov.supports_mirroring() {
                self.err(
                    format!("{p}.mirror"),
                    format!(
                        "the {prov} provider does not implement traffic mirroring (only istio \
                         and the gatewayapi providers do); remove mirror or change provider"
                    ),
                );
            } else if matches!(prov, Provider::GatewayApiV1 | Provider::GatewayApiV1Beta1)
                && matches!(strategy, Strategy::Canary { .. })
            {
                self.err(
                    format!("{p}.mirror"),
                    "Gateway API mirroring only works for blue/green (iterations without \
                     match); with stepWeight(s) Flagger cannot represent the mirror step. Use \
                     iterations or remove mirror",
                );
            } else if matches!(strategy, Strategy::AbTesting { .. }) {
                self.warn(
                    format!("{p}.mirror"),
                    "ignored for A/B testing: Flagger mirrors only in canary and blue/green \
                     runs",
                );
            }
        }
    }

    fn session_affinity(
        &mut self,
        a: &CanaryAnalysis,
        provider: Option<Provider>,
    ) -> Option<Option<SessionAffinity>> {
        let Some(s) = &a.session_affinity else {
            return Some(None);
        };
        let p = "spec.analysis.sessionAffinity";
        let mut ok = true;
        if s.cookie_name.is_empty() {
            self.err(
                format!("{p}.cookieName"),
                "empty: name the cookie that pins users to the canary",
            );
            ok = false;
        }
        let primary = s.primary_cookie_name.clone().filter(|n| !n.is_empty());
        if primary.as_deref() == Some(s.cookie_name.as_str()) && !s.cookie_name.is_empty() {
            self.err(
                format!("{p}.primaryCookieName"),
                "can't use the same cookie name for both primary and cookie name; please update \
                 them to be different",
            );
            ok = false;
        }
        let max_age = match s.max_age {
            None | Some(0) => DEFAULT_COOKIE_MAX_AGE,
            Some(m) if m < 0 => {
                self.err(
                    format!("{p}.maxAge"),
                    format!(
                        "{m} makes the cookie expire at once; use seconds (default 86400) or \
                         remove it"
                    ),
                );
                ok = false;
                DEFAULT_COOKIE_MAX_AGE
            }
            Some(m) => i64::from(m),
        };
        if let Some(ss) = s.same_site.as_deref()
            && !SAME_SITE.contains(&ss)
        {
            self.err(
                format!("{p}.sameSite"),
                format!(
                    "`{ss}` is not accepted by Flagger's CRD (use {}).{}",
                    list(SAME_SITE),
                    did_you_mean(ss, SAME_SITE)
                ),
            );
            ok = false;
        }
        if let Some(prov) = provider
            && !prov.supports_session_affinity()
        {
            self.warn(
                p,
                format!(
                    "the {prov} provider does not implement session affinity; only istio and \
                     the gatewayapi providers do"
                ),
            );
        }
        ok.then(|| {
            Some(SessionAffinity {
                cookie_name: s.cookie_name.clone(),
                primary_cookie_name: primary,
                max_age,
                domain: s.domain.clone().filter(|d| !d.is_empty()),
                http_only: s.http_only.unwrap_or(false),
                partitioned: s.partitioned.unwrap_or(false),
                path: s.path.clone().filter(|d| !d.is_empty()),
                same_site: s.same_site.clone().filter(|d| !d.is_empty()),
                secure: s.secure.unwrap_or(false),
            })
        })
    }

    // ----- metrics, webhooks, alerts --------------------------------------------------------

    fn metrics(&mut self, metrics: &[CanaryMetric]) -> Option<Vec<Metric>> {
        let mut out = Vec::with_capacity(metrics.len());
        let mut ok = true;
        for (i, m) in metrics.iter().enumerate() {
            match self.metric(&format!("spec.analysis.metrics[{i}]"), m) {
                Some(metric) => out.push(metric),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn metric(&mut self, p: &str, m: &CanaryMetric) -> Option<Metric> {
        let mut ok = true;
        if m.name.is_empty() {
            self.err(
                format!("{p}.name"),
                "empty: name the check (request-success-rate, request-duration, or any name \
                 with a templateRef)",
            );
            ok = false;
        }
        let builtin = match m.name.as_str() {
            "request-success-rate" => Some(BuiltinMetric::RequestSuccessRate),
            "request-duration" => Some(BuiltinMetric::RequestDuration),
            _ => None,
        };
        let query = m.query.clone().filter(|q| !q.trim().is_empty());
        let source = match (&query, &m.template_ref) {
            (Some(_), Some(_)) => {
                self.err(
                    p,
                    "sets both query and templateRef; keep one: templateRef (a MetricTemplate) \
                     or the deprecated inline query",
                );
                ok = false;
                None
            }
            (None, Some(t)) => {
                if t.name.is_empty() {
                    self.err(
                        format!("{p}.templateRef.name"),
                        "empty: name the MetricTemplate",
                    );
                    ok = false;
                }
                let namespace = t
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| self.namespace.clone());
                if self.ctx.no_cross_namespace_refs && namespace != self.namespace {
                    self.err(
                        format!("{p}.templateRef.namespace"),
                        format!(
                            "can't access metric template {}.{namespace}, cross-namespace \
                             references are blocked (-no-cross-namespace-refs); copy the \
                             MetricTemplate to namespace {}",
                            t.name, self.namespace
                        ),
                    );
                    ok = false;
                }
                Some(MetricSource::Template {
                    name: t.name.clone(),
                    namespace,
                    variables: m.template_variables.clone().unwrap_or_default(),
                })
            }
            (Some(q), None) => Some(MetricSource::Query(q.clone())),
            (None, None) => match builtin {
                Some(b) => Some(MetricSource::Builtin(b)),
                None => {
                    if !m.name.is_empty() {
                        self.err(
                            p,
                            format!(
                                "`{}` is not a builtin check ({}), and it has neither templateRef \
                                 nor query, so Flagger fails it on every run with \"no usable \
                                 metrics template and query were configured\"; add a templateRef \
                                 to a MetricTemplate{}",
                                m.name,
                                list(BUILTIN_METRICS),
                                did_you_mean(&m.name, BUILTIN_METRICS)
                                    .replace(" Did you mean", ", or did you mean")
                            ),
                        );
                    }
                    ok = false;
                    None
                }
            },
        };
        if let (Some(b), Some(src)) = (builtin, &source)
            && !matches!(src, MetricSource::Builtin(_))
        {
            self.warn(
                format!("{p}.name"),
                format!(
                    "`{}` is a builtin check name: Flagger runs the builtin check as well as \
                         the {}; rename the metric to run only the {}",
                    b.name(),
                    if matches!(src, MetricSource::Query(_)) {
                        "query"
                    } else {
                        "template"
                    },
                    if matches!(src, MetricSource::Query(_)) {
                        "query"
                    } else {
                        "template"
                    },
                ),
            );
        }

        let is_template = matches!(source, Some(MetricSource::Template { .. }));
        let interval = match m.interval.as_deref() {
            Some(s) => match self.duration(&format!("{p}.interval"), s) {
                Some(d) => Some(d),
                None => {
                    ok = false;
                    None
                }
            },
            None if is_template => {
                self.warn(
                    format!("{p}.interval"),
                    "not set: Flagger gives template metrics no default, so `{{ interval }}` \
                     renders empty and the datadog, newrelic, cloudwatch, dynatrace and splunk \
                     providers fail; set e.g. `interval: 1m`",
                );
                None
            }
            None => Some(DEFAULT_METRIC_INTERVAL),
        };

        let range = match &m.threshold_range {
            Some(r) => {
                if let (Some(lo), Some(hi)) = (r.min, r.max)
                    && lo > hi
                {
                    self.err(
                        format!("{p}.thresholdRange"),
                        format!(
                            "min {lo} is above max {hi}: no value can pass, so every check \
                                 fails; swap them"
                        ),
                    );
                    ok = false;
                }
                if r.min.is_none() && r.max.is_none() {
                    self.warn(
                        format!("{p}.thresholdRange"),
                        "sets neither min nor max, so every value passes",
                    );
                }
                if m.threshold.is_some() {
                    self.warn(
                        format!("{p}.threshold"),
                        "ignored: thresholdRange takes precedence",
                    );
                }
                Range {
                    min: r.min,
                    max: r.max,
                }
            }
            None => {
                let t = m.threshold;
                let success_rate = builtin == Some(BuiltinMetric::RequestSuccessRate)
                    && matches!(source, Some(MetricSource::Builtin(_)));
                if t.is_none() && !success_rate {
                    self.warn(
                        p,
                        "has neither thresholdRange nor threshold: Flagger then fails the check \
                         whenever the value is above 0; set thresholdRange",
                    );
                }
                let t = t.unwrap_or(0.0);
                if success_rate {
                    Range {
                        min: Some(t),
                        max: None,
                    }
                } else {
                    Range {
                        min: None,
                        max: Some(t),
                    }
                }
            }
        };
        if let Some(t) = m.threshold.filter(|t| *t < 0.0) {
            self.warn(
                format!("{p}.threshold"),
                format!("{t} is negative; metric values are rarely below 0"),
            );
        }
        let source = source?;
        ok.then(|| Metric {
            name: m.name.clone(),
            source,
            interval,
            range,
        })
    }

    fn webhooks(&mut self, hooks: &[CanaryWebhook]) -> Option<Vec<Webhook>> {
        let mut out = Vec::with_capacity(hooks.len());
        let mut ok = true;
        for (i, h) in hooks.iter().enumerate() {
            let p = format!("spec.analysis.webhooks[{i}]");
            let mut hook_ok = true;
            if h.name.is_empty() {
                self.err(format!("{p}.name"), "empty: give the webhook a name");
                hook_ok = false;
            }
            let raw_type = h.r#type.as_deref().unwrap_or("");
            let hook_type = HookType::parse(raw_type);
            if hook_type.is_none() {
                self.err(
                    format!("{p}.type"),
                    format!(
                        "`{raw_type}` is not a webhook type Flagger's CRD accepts (use {}).{}",
                        list(WEBHOOK_TYPES),
                        did_you_mean(raw_type, WEBHOOK_TYPES)
                    ),
                );
                hook_ok = false;
            }
            if let Err(why) = absolute_url(&h.url) {
                self.err(
                    format!("{p}.url"),
                    format!(
                        "{:?} {why}; write a full URL such as http://flagger-loadtester.test/",
                        crate::redact::url(&h.url)
                    ),
                );
                hook_ok = false;
            }
            let timeout = match h.timeout.as_deref() {
                None | Some("") => DEFAULT_WEBHOOK_TIMEOUT,
                Some(s) => match self.duration(&format!("{p}.timeout"), s) {
                    Some(d) => d,
                    None => {
                        hook_ok = false;
                        DEFAULT_WEBHOOK_TIMEOUT
                    }
                },
            };
            let retries = match h.retries {
                Some(r) if r < 0 => {
                    self.err(
                        format!("{p}.retries"),
                        format!("{r} is negative; use 0 (one attempt) or more"),
                    );
                    hook_ok = false;
                    0
                }
                Some(r) => r.unsigned_abs(),
                None => 0,
            };
            if h.mute_alert == Some(true) && hook_type.is_some_and(|t| !t.is_gate()) {
                self.warn(
                    format!("{p}.muteAlert"),
                    "only confirm-rollout, confirm-traffic-increase and confirm-promotion hooks \
                     send alerts; muteAlert has no effect here",
                );
            }
            match (hook_ok, hook_type) {
                (true, Some(hook_type)) => out.push(Webhook {
                    name: h.name.clone(),
                    hook_type,
                    url: h.url.clone(),
                    timeout,
                    retries,
                    mute_alert: h.mute_alert.unwrap_or(false),
                    disable_tls: h.disable_tls.unwrap_or(false),
                    metadata: h.metadata.clone().unwrap_or_default(),
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn alerts(&mut self, alerts: &[CanaryAlert]) -> Option<Vec<AlertRoute>> {
        let mut out = Vec::with_capacity(alerts.len());
        let mut ok = true;
        for (i, a) in alerts.iter().enumerate() {
            let p = format!("spec.analysis.alerts[{i}]");
            let mut alert_ok = true;
            if a.name.is_empty() {
                self.err(format!("{p}.name"), "empty: give the alert a name");
                alert_ok = false;
            }
            let severity = match a.severity.as_deref().unwrap_or("") {
                "" => {
                    // Flagger's docs give info as the default, but its router skips an entry
                    // with an empty severity; flagger-rs resolves it to info, as documented.
                    self.warn(
                        format!("{p}.severity"),
                        "empty: flagger-rs sends every alert to it (info, the documented \
                         default), but Flagger sends nothing to an alert without severity; set \
                         `severity: info` so both behave the same",
                    );
                    Some(Severity::Info)
                }
                "info" => Some(Severity::Info),
                "warn" => Some(Severity::Warn),
                "error" => Some(Severity::Error),
                other => {
                    self.err(
                        format!("{p}.severity"),
                        format!(
                            "`{other}` is not accepted by Flagger's CRD (use {}).{}",
                            list(SEVERITIES),
                            did_you_mean(other, SEVERITIES)
                        ),
                    );
                    alert_ok = false;
                    None
                }
            };
            if a.provider_ref.name.is_empty() {
                self.err(
                    format!("{p}.providerRef.name"),
                    "empty: name the AlertProvider",
                );
                alert_ok = false;
            }
            let namespace = a
                .provider_ref
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| self.namespace.clone());
            if self.ctx.no_cross_namespace_refs && namespace != self.namespace {
                self.err(
                    format!("{p}.providerRef.namespace"),
                    format!(
                        "can't access alert provider {}.{namespace}, cross-namespace references \
                         are blocked (-no-cross-namespace-refs); copy the AlertProvider to \
                         namespace {}",
                        a.provider_ref.name, self.namespace
                    ),
                );
                alert_ok = false;
            }
            if alert_ok {
                out.push(AlertRoute {
                    name: a.name.clone(),
                    severity,
                    provider_name: a.provider_ref.name.clone(),
                    provider_namespace: namespace,
                });
            } else {
                ok = false;
            }
        }
        ok.then_some(out)
    }

    // ----- helpers --------------------------------------------------------------------------

    /// A duration field with Flagger's CRD pattern (`^[0-9]+(m|s)`), parsed as Go parses it.
    fn duration(&mut self, path: &str, s: &str) -> Option<Duration> {
        if !matches_crd_pattern(s) {
            let hint = crate::duration::crd_form(s)
                .map(|f| format!(" ({s} is {f})"))
                .unwrap_or_default();
            self.err(
                path,
                format!(
                    "{s:?} does not match Flagger's CRD pattern ^[0-9]+(m|s), so the API server \
                     rejects it; write whole minutes or seconds such as 30s, 1m or 90m{hint}"
                ),
            );
            return None;
        }
        match parse_go_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    path,
                    format!(
                        "{s:?} is not a Go duration ({e}), so Flagger cannot use it (an analysis \
                         interval silently becomes 60s); write e.g. 30s, 1m or 1m30s"
                    ),
                );
                None
            }
        }
    }
}

/// Checks that a string is an absolute http(s) URL with a host.
fn absolute_url(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Err(format!(
            "uses the scheme `{}`, but Flagger calls webhooks and Prometheus over http or https",
            u.scheme()
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Err("has no host".to_string()),
        Ok(_) => Ok(()),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            Err("is not an absolute URL (no scheme such as http://)".to_string())
        }
        Err(e) => Err(format!("is not a valid URL ({e})")),
    }
}
