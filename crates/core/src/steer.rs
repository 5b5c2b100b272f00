//! Steering a canary without editing what a GitOps tool owns: the requests people make through
//! annotations on the Canary (`kubectl flagger promote|abort|pause|resume|retry` writes them),
//! and the no-data policy a Canary chooses by annotation.
//!
//! The controller reads the annotations into [`crate::effects::Observations::action`]; the
//! decision core acts on them (see [`crate::decide`]) and asks, by a
//! [`crate::effects::Notice::ClearAction`], for the request to be removed once it is done, so a
//! GitOps applier that re-applies the Canary (it does not own these annotations) neither undoes
//! nor repeats it. `pause` stays until `resume` replaces it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use flagger_api::labels::{ACTION, ACTION_ID, NO_DATA_POLICY};

/// What a metric check without data does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoDataPolicy {
    /// Flagger's behaviour: it is a failed check.
    #[default]
    Fail,
    /// Neither advance nor count a failed check, until data arrives or the progress deadline
    /// passes (then it counts as failed).
    Hold,
}

impl NoDataPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Hold => "hold",
        }
    }
}

impl FromStr for NoDataPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "fail" => Ok(Self::Fail),
            "hold" => Ok(Self::Hold),
            other => Err(format!(
                "{other:?} is not a no-data policy: use \"fail\" (Flagger's behaviour) or \"hold\""
            )),
        }
    }
}

impl fmt::Display for NoDataPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy a Canary's annotations choose, if any (`Err` for a value that is not one).
pub fn no_data_policy(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<NoDataPolicy>, String> {
    annotations
        .get(NO_DATA_POLICY)
        .map(|v| v.parse())
        .transpose()
}

/// A request made through the `flagger.app/action` annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Finish now: skip the remaining analysis and promote.
    Promote,
    /// Roll back now.
    Abort,
    /// Stop the analysis where it is (no advance, no check) until `resume`.
    Pause,
    /// Undo `pause`.
    Resume,
    /// Run the analysis of a failed revision again.
    Retry,
}

impl Verb {
    pub const ALL: [Verb; 5] = [
        Self::Promote,
        Self::Abort,
        Self::Pause,
        Self::Resume,
        Self::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Abort => "abort",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Retry => "retry",
        }
    }
}

impl FromStr for Verb {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "{s:?} is not an action: use promote, abort, pause, resume or retry \
                     (kubectl flagger --help)"
                )
            })
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request as observed on the Canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The verb, or why the annotation's value is not one.
    pub verb: Result<Verb, String>,
    /// The annotation's value as written (the removal is conditional on it).
    pub raw: String,
    /// `flagger.app/action-id`, empty when absent.
    pub id: String,
}

/// The request on a Canary, if any.
pub fn request(annotations: &BTreeMap<String, String>) -> Option<Request> {
    let raw = annotations.get(ACTION)?;
    Some(Request {
        verb: raw.parse(),
        raw: raw.clone(),
        id: annotations.get(ACTION_ID).cloned().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_policies_parse_or_say_why_not() {
        let mut a = BTreeMap::new();
        assert_eq!(request(&a), None);
        assert_eq!(no_data_policy(&a), Ok(None));
        a.insert(ACTION.to_string(), "promote".to_string());
        a.insert(ACTION_ID.to_string(), "x1".to_string());
        a.insert(NO_DATA_POLICY.to_string(), "hold".to_string());
        let r = request(&a).expect("a request");
        assert_eq!(r.verb, Ok(Verb::Promote));
        assert_eq!(r.id, "x1");
        assert_eq!(no_data_policy(&a), Ok(Some(NoDataPolicy::Hold)));
        a.insert(ACTION.to_string(), "rollback".to_string());
        let bad = request(&a)
            .expect("a request")
            .verb
            .expect_err("not a verb");
        assert!(bad.contains("promote, abort"), "{bad}");
        a.insert(NO_DATA_POLICY.to_string(), "skip".to_string());
        assert!(no_data_policy(&a).is_err());
    }
}
