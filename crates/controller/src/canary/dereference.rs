//! Step 1: the wire Canary → a validated canary this build can run, or every reason it cannot.

use flagger_api::Canary;
use flagger_core::model::{MetricSource, TargetKind, ValidatedCanary};
use flagger_core::validate::{Problem, validate};

use crate::context::{Context, Settings};
use crate::error::step_error;
use crate::providers;
use crate::router::AnyRouter;
use crate::templates::{self, Lookups};
use crate::webhook::Clients;
use flagger_core::compare;

step_error!(
    /// Step 1 failed: the spec cannot run (every problem, with its path).
    DereferenceError
);

impl DereferenceError {
    fn problems(problems: &[String]) -> Self {
        Self::invalid(format!("invalid canary spec: {}", problems.join("; ")))
    }
}

/// Step 1: the spec validated and checked against what this build supports, including the
/// providers of the MetricTemplates it uses.
pub async fn run(ctx: &Context, canary: &Canary) -> Result<Dereferenced, DereferenceError> {
    let deref = dereference(canary, &ctx.settings)?;
    template_providers(&ctx.lookups, &ctx.http, &deref.canary)
        .await
        .map_err(|p| DereferenceError::problems(&p))?;
    Ok(deref)
}

/// A canary ready to run, with the warnings worth an event.
pub struct Dereferenced {
    pub canary: ValidatedCanary,
    pub router: &'static dyn AnyRouter,
    pub warnings: Vec<String>,
}

/// Validates the spec, then checks that this build supports what the spec uses.
pub fn dereference(canary: &Canary, settings: &Settings) -> Result<Dereferenced, DereferenceError> {
    let validated = validate(canary, &settings.validation).map_err(|problems| {
        DereferenceError::problems(&problems.iter().map(format_problem).collect::<Vec<_>>())
    })?;
    let c = validated.canary;
    let mut problems = Vec::new();
    let router = crate::router::for_provider(c.provider)
        .map_err(|e| problems.push(e.message))
        .ok();
    if c.target.kind == TargetKind::Service {
        problems.push(format!(
            "spec.targetRef: {} targets are not supported by flagger-rs yet; supported: Deployment, DaemonSet, Knative Service",
            c.target.kind.kind()
        ));
    }
    if !c.skip_analysis {
        for (i, m) in c.analysis.metrics.iter().enumerate() {
            match &m.source {
                MetricSource::Builtin(b) => {
                    if flagger_core::routing::observer::for_provider(c.provider).is_none() {
                        problems.push(format!(
                            "spec.analysis.metrics[{i}]: the builtin {} check for the {} provider is not supported by flagger-rs yet",
                            b.name(),
                            c.provider
                        ));
                    }
                }
                // Run by the oracle; a template's provider is checked by `template_providers`.
                MetricSource::Query(_) | MetricSource::Template { .. } => {}
            }
        }
    }
    let warnings: Vec<String> = validated.warnings.iter().map(format_problem).collect();
    match (router, problems.is_empty()) {
        (Some(router), true) => Ok(Dereferenced {
            canary: c,
            router,
            warnings,
        }),
        _ => Err(DereferenceError::problems(&problems)),
    }
}

/// Refuses MetricTemplates whose provider this build cannot query (none today:
/// every type Flagger has is registered; the refusal stays for a type Flagger adds first),
/// naming the provider, and templates whose comparison marking ([`flagger_core::compare`]) is
/// wrong or needs range queries their provider does not have. Templates that cannot be read
/// are not refused here: their check fails with Flagger's message at each tick, as in Flagger.
pub async fn template_providers(
    lookups: &Lookups,
    clients: &Clients,
    c: &ValidatedCanary,
) -> Result<(), Vec<String>> {
    if c.skip_analysis {
        return Ok(());
    }
    let mut problems = Vec::new();
    for (i, m) in c.analysis.metrics.iter().enumerate() {
        let MetricSource::Template {
            name, namespace, ..
        } = &m.source
        else {
            continue;
        };
        let Ok(template) = lookups.metric_template(namespace, name).await else {
            continue;
        };
        let at =
            format!("spec.analysis.metrics[{i}].templateRef: MetricTemplate {name}.{namespace}");
        if let Some(reason) = providers::unsupported(&template.spec.provider.r#type) {
            problems.push(format!("{at}: {reason}"));
            continue;
        }
        let annotations = template.metadata.annotations.clone().unwrap_or_default();
        match compare::marking(&annotations) {
            Ok(None) => {}
            Ok(Some(marking)) => {
                let interval = m.interval.map(flagger_core::duration::format_go);
                // A template whose provider cannot be built yet (a missing Secret) fails at
                // each tick with Flagger's message instead.
                if let Ok(prepared) = templates::prepare(
                    lookups,
                    clients,
                    namespace,
                    name,
                    interval.as_deref().unwrap_or_default(),
                )
                .await
                    && let Some(reason) =
                        providers::refuses_comparison(prepared.provider.as_ref(), &marking)
                {
                    problems.push(format!("{at}: {reason}"));
                }
            }
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn format_problem(p: &Problem) -> String {
    format!("{}: {}", p.path, p.message)
}
