//! One metric check as it ran: which provider answered, the query it was sent, and what came
//! back (the value read, or why there is none). The controller's metric providers produce it;
//! [`MetricCheck::outcome`] is what [`crate::decide()`] judges, and the rest is what explanations
//! of a decision are made from (which provider, which rendered query, which value).
//!
//! Nothing here holds credentials: a provider's address and Secret never enter a check.

/// Outcome of one metric query.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricOutcome {
    Value(f64),
    /// The query ran but returned no data (Flagger's `ErrNoValuesFound`).
    NoValues(String),
    /// The query, the template or the provider failed.
    Error(String),
    /// The check could not be set up (a missing MetricTemplate or Secret, an unsupported
    /// provider, a query that does not render); the text is the whole event message, as Flagger
    /// words each of these (`Metric template podinfo.test error: ...`).
    Unusable(String),
    /// A comparison check (a MetricTemplate marked for comparison, [`crate::compare`]): both
    /// sides' queries and the figures computed from their answers.
    Compared(Box<crate::compare::Compared>),
}

/// One metric check as it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricCheck {
    /// The provider's type as MetricTemplates spell it (`prometheus`, `datadog`, ...).
    pub provider: String,
    /// The query as rendered and sent; `None` when the check failed before a query existed
    /// (a missing template or Secret, a query that does not render).
    pub query: Option<String>,
    pub outcome: MetricOutcome,
}

impl MetricCheck {
    /// A check that ran `query` against `provider`.
    pub fn ran(provider: &str, query: impl Into<String>, outcome: MetricOutcome) -> Self {
        Self {
            provider: provider.to_string(),
            query: Some(query.into()),
            outcome,
        }
    }

    /// A check that never reached a query.
    pub fn not_run(provider: &str, outcome: MetricOutcome) -> Self {
        Self {
            provider: provider.to_string(),
            query: None,
            outcome,
        }
    }

    /// A check known only by its outcome (no provider, no query): tests and replays.
    pub fn outcome(outcome: MetricOutcome) -> Self {
        Self {
            provider: String::new(),
            query: None,
            outcome,
        }
    }

    /// The value read, when there is one.
    pub fn value(&self) -> Option<f64> {
        match &self.outcome {
            MetricOutcome::Value(v) => Some(*v),
            MetricOutcome::Compared(c) => c.value(),
            _ => None,
        }
    }

    /// The comparison's figures (the judge's, or the ratio or difference), for a comparison
    /// check.
    pub fn compared(&self) -> Option<&crate::compare::Compared> {
        match &self.outcome {
            MetricOutcome::Compared(c) => Some(c),
            _ => None,
        }
    }

    /// Why there is no value, when there is none.
    pub fn failure(&self) -> Option<&str> {
        match &self.outcome {
            MetricOutcome::Value(_) | MetricOutcome::Compared(_) => None,
            MetricOutcome::NoValues(why)
            | MetricOutcome::Error(why)
            | MetricOutcome::Unusable(why) => Some(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_says_what_it_read_or_why_not() {
        let ok = MetricCheck::ran("prometheus", "vector(1)", MetricOutcome::Value(1.0));
        assert_eq!(ok.value(), Some(1.0));
        assert_eq!(ok.failure(), None);
        assert_eq!(ok.query.as_deref(), Some("vector(1)"));
        let empty = MetricCheck::ran(
            "prometheus",
            "x",
            MetricOutcome::NoValues("no values found".into()),
        );
        assert_eq!(empty.value(), None);
        assert_eq!(empty.failure(), Some("no values found"));
        let unusable = MetricCheck::not_run(
            "datadog",
            MetricOutcome::Unusable("Metric template dd.test error: not found".into()),
        );
        assert_eq!(unusable.query, None);
        assert_eq!(
            unusable.failure(),
            Some("Metric template dd.test error: not found")
        );
    }
}
