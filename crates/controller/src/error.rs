//! Errors of a reconcile: one type per step of the pipeline (each defined beside its step), all
//! gathered in [`Error`], with a [`Category`] that decides how soon the canary is tried again and
//! labels `flagger_reconcile_errors_total` together with the step.

use std::time::Duration;

/// Defines the error type of one step: a message in words (events, logs) and a [`Category`].
macro_rules! step_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
        #[error("{message}")]
        pub struct $name {
            pub category: $crate::error::Category,
            pub message: String,
        }

        impl $name {
            pub fn new(category: $crate::error::Category, message: impl Into<String>) -> Self {
                Self {
                    category,
                    message: message.into(),
                }
            }

            /// A failed API request: `what` and the API server's answer.
            pub fn api(what: impl std::fmt::Display, e: &kube::Error) -> Self {
                Self::new(
                    $crate::error::Category::of_kube(e),
                    format!("{what}: {}", $crate::error::api_text(e)),
                )
            }

            /// Something the spec (or an object it names) gets wrong.
            pub fn invalid(message: impl Into<String>) -> Self {
                Self::new($crate::error::Category::InvalidSpec, message)
            }

            /// A router or metric provider failure.
            pub fn provider(message: impl Into<String>) -> Self {
                Self::new($crate::error::Category::Provider, message)
            }

            /// A failure worth trying again.
            pub fn transient(message: impl Into<String>) -> Self {
                Self::new($crate::error::Category::Transient, message)
            }

            pub fn category(&self) -> $crate::error::Category {
                self.category
            }
        }

        impl From<$crate::leader::FenceError> for $name {
            fn from(e: $crate::leader::FenceError) -> Self {
                Self::new(e.category(), e.to_string())
            }
        }
    };
}
pub(crate) use step_error;

/// Converts between step errors (a writer shared by two steps), keeping category and message.
macro_rules! step_error_from {
    ($from:ty => $($to:ty),+) => {
        $(impl From<$from> for $to {
            fn from(e: $from) -> Self {
                Self::new(e.category, e.message)
            }
        })+
    };
}
pub(crate) use step_error_from;

use crate::canary::bootstrap::BootstrapError;
use crate::canary::dereference::DereferenceError;
use crate::canary::execute::ExecuteError;
use crate::canary::finalize::FinalizeError;
use crate::canary::observe::ObserveError;
use crate::canary::oracle::DecideError;
use crate::canary::status::StatusError;

/// What kind of failure it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// The API server or the network failed; trying again later may succeed.
    Transient,
    /// The Canary (or an object it refers to) cannot run as written; it is looked at again when
    /// it changes.
    InvalidSpec,
    /// A write lost a race (409): re-read and try again at once.
    Conflict,
    /// A router or metric provider failed.
    Provider,
    /// A metric provider refused the credentials (401, 403), or there are none to be found.
    Auth,
}

impl Category {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transient => "transient",
            Category::InvalidSpec => "invalid_spec",
            Category::Conflict => "conflict",
            Category::Provider => "provider",
            Category::Auth => "auth",
        }
    }

    /// The category of a provider's answer that is not a success, by its status.
    pub fn of_status(status: reqwest::StatusCode) -> Category {
        match status.as_u16() {
            401 | 403 => Category::Auth,
            408 | 429 | 500..=599 => Category::Transient,
            _ => Category::Provider,
        }
    }

    /// The category of a router failure: the router's own categories, provider failures
    /// when transient.
    pub fn of_router(e: &crate::router::RouterError) -> Category {
        match e.category {
            crate::router::Category::Conflict => Category::Conflict,
            crate::router::Category::InvalidSpec => Category::InvalidSpec,
            crate::router::Category::Transient => Category::Provider,
        }
    }

    /// The category of a failed API request: 409 is a conflict, 400 and 422 an object the API
    /// server refuses, anything else transient.
    pub fn of_kube(e: &kube::Error) -> Category {
        match e {
            kube::Error::Api(s) if s.code == 409 => Category::Conflict,
            kube::Error::Api(s) if s.code == 400 || s.code == 422 => Category::InvalidSpec,
            _ => Category::Transient,
        }
    }
}

/// A failed reconcile, by step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dereference(#[from] DereferenceError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(transparent)]
    Decide(#[from] DecideError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Finalize(#[from] FinalizeError),
}

impl Error {
    /// The step that failed (metric label, log field).
    pub fn step(&self) -> &'static str {
        match self {
            Error::Dereference(_) => "dereference",
            Error::Observe(_) => "observe",
            Error::Bootstrap(_) => "bootstrap",
            Error::Decide(_) => "decide",
            Error::Execute(_) => "execute",
            Error::Status(_) => "status",
            Error::Finalize(_) => "finalize",
        }
    }

    pub fn category(&self) -> Category {
        match self {
            Error::Dereference(e) => e.category(),
            Error::Observe(e) => e.category(),
            Error::Bootstrap(e) => e.category(),
            Error::Decide(e) => e.category(),
            Error::Execute(e) => e.category(),
            Error::Status(e) => e.category(),
            Error::Finalize(e) => e.category(),
        }
    }
}

/// A failed API request in words, as Flagger's Go client prints it: the API server's message
/// (`deployments.apps "podinfo" not found`); a failed connection as its causes (`client error
/// (Connect): tcp connect error: Connection refused (os error 111)`). Never the client's debug
/// rendering of the whole response.
pub fn api_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason).trim().to_string(),
        kube::Error::HyperError(inner) => text(inner),
        kube::Error::Service(inner) => text(inner.as_ref()),
        other => other.to_string(),
    }
}

/// An error and its causes in words, `: `-joined as Go's wrapped errors print; a Kubernetes API
/// failure anywhere in the chain as [`api_text`]. A wrapper that shows its cause's text in its
/// own (`failed to list: {cause}`) is cut at it, so no cause appears twice and none in debug
/// form.
pub fn text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(k) = err.downcast_ref::<kube::Error>() {
            parts.push(api_text(k));
            break;
        }
        let mut line = err.to_string();
        if let Some(cause) = err.source() {
            let shown = cause.to_string();
            if let Some(at) = line.find(&shown).filter(|_| !shown.is_empty()) {
                line.truncate(at);
                line = line.trim_end_matches([' ', ':', '(']).to_string();
            }
        }
        if !line.is_empty() {
            parts.push(line);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// Result alias of the controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Backoff of a canary's retries: 500 ms doubling with each consecutive failure, capped.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(500);
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (base * factor).min(cap).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let cap = Duration::from_secs(10);
        assert_eq!(backoff(1, cap), Duration::from_millis(500));
        assert_eq!(backoff(2, cap), Duration::from_secs(1));
        assert_eq!(backoff(4, cap), Duration::from_secs(4));
        assert_eq!(backoff(5, cap), Duration::from_secs(8));
        assert_eq!(backoff(6, cap), cap);
        assert_eq!(backoff(60, cap), cap);
    }

    #[test]
    fn api_failures_are_categorized() {
        let api = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure("m", "r")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert_eq!(Category::of_kube(&api(409)), Category::Conflict);
        assert_eq!(Category::of_kube(&api(422)), Category::InvalidSpec);
        assert_eq!(Category::of_kube(&api(500)), Category::Transient);
        assert_eq!(Category::of_kube(&api(404)), Category::Transient);
        assert_eq!(api_text(&api(404)), "m");
    }

    /// What kube-apiserver answers for a missing object, as kube's client hands it over.
    fn not_found() -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(
                r#"deployments.apps "podinfo-primary" not found"#,
                "NotFound",
            )
            .with_code(404)
            .boxed(),
        )
    }

    /// Rust debug text: what no user-facing message may hold.
    fn has_debug_text(s: &str) -> bool {
        [
            "Some(",
            "None",
            "{ ",
            "Status {",
            "ApiError",
            "ErrorResponse",
        ]
        .iter()
        .any(|p| s.contains(p))
    }

    #[test]
    fn api_failures_read_as_the_api_servers_message() {
        let e = not_found();
        assert!(has_debug_text(&e.to_string()), "kube's own text: {e}");
        assert_eq!(
            api_text(&e),
            r#"deployments.apps "podinfo-primary" not found"#
        );
        let empty = kube::Error::Api(
            kube::core::Status::failure("", "ServiceUnavailable")
                .with_code(503)
                .boxed(),
        );
        assert_eq!(api_text(&empty), "503 ServiceUnavailable");
    }

    #[test]
    fn error_chains_read_plainly() {
        // anyhow's context over a kube error, as the CLI reports it.
        let e = anyhow::Error::new(not_found()).context("reading deployment podinfo-primary");
        let plain = text(e.as_ref());
        assert_eq!(
            plain,
            r#"reading deployment podinfo-primary: deployments.apps "podinfo-primary" not found"#
        );
        // A wrapper that prints its cause inside its own text (kube's watcher errors do).
        let watch = kube::runtime::watcher::Error::InitialListFailed(not_found());
        let plain = text(&watch);
        assert!(!has_debug_text(&plain), "{plain}");
        assert_eq!(
            plain,
            r#"failed to perform initial object list: deployments.apps "podinfo-primary" not found"#
        );
    }
}
