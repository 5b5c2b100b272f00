//! The seam every metric provider implements, and what they share: the [`MetricsProvider`]
//! trait, the [`Setup`] a provider is built from, [`ProviderError`] and [`QueryError`] with
//! their [`Category`], the [`RangeWindow`] of range queries. The provider modules beside it use
//! it; the registry in [`crate::providers`] picks one of them per MetricTemplate type. See
//! [`crate::providers`] for the design.

use std::collections::BTreeMap;

use flagger_api::metric::MetricProvider as ProviderSpec;
use flagger_core::effects::MetricOutcome;
use futures::future::BoxFuture;

use crate::webhook::Clients;

/// What kind of failure a provider's is (the categories of step errors, with
/// [`Category::Auth`] for credentials a provider refuses or that cannot be found).
pub use crate::error::Category;

/// Why a provider cannot be built, or is not available: the text (Flagger's words where it has
/// some) and its [`Category`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub category: Category,
    pub message: String,
}

impl ProviderError {
    pub fn new(category: Category, message: impl Into<String>) -> Self {
        Self {
            category,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Category::InvalidSpec, message)
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(Category::Transient, message)
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(Category::Auth, message)
    }

    pub fn provider(message: impl Into<String>) -> Self {
        Self::new(Category::Provider, message)
    }

    /// An answer that is not a success, categorized by its status.
    pub fn answered(status: reqwest::StatusCode, message: impl Into<String>) -> Self {
        Self::new(Category::of_status(status), message)
    }

    /// The same failure, its text prefixed (`Metric template podinfo.test provider datadog
    /// error: `).
    pub fn context(self, prefix: impl std::fmt::Display) -> Self {
        Self::new(self.category, format!("{prefix}{}", self.message))
    }
}

/// A query meets the failures of a provider as [`QueryError::Failed`], text unchanged.
impl From<ProviderError> for QueryError {
    fn from(e: ProviderError) -> Self {
        QueryError::Failed(e.message)
    }
}

/// Why a query gave no value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query ran and found nothing (Flagger's `ErrNoValuesFound`; NaN counts as nothing).
    #[error("{0}")]
    NoValues(String),
    /// The query could not run or its answer could not be read.
    #[error("{0}")]
    Failed(String),
}

/// What a check judges: the value, or why there is none.
pub fn outcome(answer: Result<f64, QueryError>) -> MetricOutcome {
    match answer {
        Ok(v) => MetricOutcome::Value(v),
        Err(QueryError::NoValues(why)) => MetricOutcome::NoValues(why),
        Err(QueryError::Failed(why)) => MetricOutcome::Error(why),
    }
}

/// A monitoring system that answers metric queries.
pub trait MetricsProvider: Send + Sync {
    /// The provider's type as MetricTemplates spell it (`prometheus`).
    fn name(&self) -> &'static str;

    /// Runs a rendered query: one value, no values, or why it failed.
    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>>;

    /// The availability check at initialization (reference §5.5): `Err` says why the system
    /// is not usable.
    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>>;

    /// Whether [`MetricsProvider::run_range_query`] works: the judge of a comparison check
    /// (`flagger.app/compare: judge`, [`flagger_core::compare`]) needs it. `false` unless a
    /// provider says otherwise.
    fn range_queries(&self) -> bool {
        false
    }

    /// Runs a range query whose answer is one series: its values over `window`, in time order
    /// (non-numbers kept, for the judge's `nanStrategy`; no series: no values). Providers
    /// without range queries refuse, naming themselves.
    fn run_range_query<'a>(
        &'a self,
        query: &'a str,
        window: RangeWindow,
    ) -> BoxFuture<'a, Result<Vec<f64>, QueryError>> {
        let _ = (query, window);
        let name = self.name();
        Box::pin(async move {
            Err(QueryError::Failed(format!(
                "the {name} provider has no range queries in flagger-rs"
            )))
        })
    }
}

/// The time range of a range query: Unix seconds and the step in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RangeWindow {
    pub start: f64,
    pub end: f64,
    pub step: f64,
}

impl RangeWindow {
    /// The window of a comparison check ending at `now` (Unix seconds).
    pub fn ending(now: f64, window: flagger_core::compare::Window) -> Self {
        Self {
            start: now - window.range.as_secs_f64(),
            end: now,
            step: window.step.as_secs_f64(),
        }
    }
}

/// Why a comparison check cannot run on a template's provider; `None` when it can.
pub fn refuses_comparison(
    provider: &dyn MetricsProvider,
    marking: &flagger_core::compare::Marking,
) -> Option<String> {
    (marking.needs_range_queries() && !provider.range_queries()).then(|| {
        format!(
            "the {} provider has no range queries in flagger-rs, which {}: judge needs; \
             providers with range queries: prometheus (a ratio or difference comparison works \
             with every provider)",
            provider.name(),
            flagger_core::compare::COMPARE
        )
    })
}

/// What a provider is built from.
pub struct Setup<'a> {
    /// The MetricTemplate's `spec.provider` (`type`, `address`, `secretRef`, `headers`,
    /// `region`, `insecureSkipVerify`).
    pub spec: &'a ProviderSpec,
    /// The data of the Secret `secretRef` names, when it names one.
    pub secret: Option<&'a BTreeMap<String, Vec<u8>>>,
    /// The metric's `interval` as written (empty when it has none): the window of the
    /// providers that query one.
    pub interval: &'a str,
    /// HTTP clients (TLS verified, and not for `insecureSkipVerify`).
    pub http: &'a Clients,
    /// The cluster, for providers that read it.
    pub kube: &'a kube::Client,
}

/// Builds a provider, or says why its Setup cannot make one.
pub type Build = fn(&Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError>;
