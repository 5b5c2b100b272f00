//! The error vocabulary every module shares: the [`Category`] of a failure (it decides how soon
//! the canary is tried again and labels `flagger_reconcile_errors_total` together with the step),
//! the `step_error!` macro that defines one error type per step of the pipeline (each beside its
//! step; they are gathered in [`crate::canary::Error`] by the pipeline), the leadership fence's
//! refusal ([`FenceError`]), API errors in words ([`api_text`], [`text`]) and the retry
//! [`backoff`]. A leaf: it uses nothing else of the crate.

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

        impl From<$crate::error::FenceError> for $name {
            fn from(e: $crate::error::FenceError) -> Self {
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

/// Why this replica must not write. Its category is a conflict: another replica may lead, and
/// the canary is looked at again at once (by whoever leads).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FenceError {
    /// The Lease was last renewed longer ago than the renew deadline.
    #[error(
        "not writing: this replica renewed the leader election Lease {ago:.1}s ago, past the \
         renew deadline of {deadline:.1}s (another replica may lead)"
    )]
    Lapsed { ago: f64, deadline: f64 },
    /// This replica does not hold the Lease.
    #[error("not writing: this replica does not hold the leader election Lease")]
    NotLeader,
    /// With `-shards`: the canary's shard Lease was last renewed too long ago.
    #[error(
        "not writing: this replica renewed the Lease of shard {shard} {ago:.1}s ago, past the \
         renew deadline of {deadline:.1}s (another replica may own the shard)"
    )]
    ShardLapsed { shard: u32, ago: f64, deadline: f64 },
    /// With `-shards`: this replica does not hold the canary's shard Lease.
    #[error("not writing: this replica does not hold the Lease of shard {shard}")]
    NotShardOwner { shard: u32 },
}

impl FenceError {
    /// The same refusal, for the Lease of shard `shard`.
    pub fn for_shard(self, shard: u32) -> FenceError {
        match self {
            FenceError::Lapsed { ago, deadline } => FenceError::ShardLapsed {
                shard,
                ago,
                deadline,
            },
            FenceError::NotLeader => FenceError::NotShardOwner { shard },
            other => other,
        }
    }
}

impl FenceError {
    /// Every fence refusal is a lost race with another replica.
    pub fn category(&self) -> Category {
        Category::Conflict
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
