//! Errors of the controller, with a stable category for metric labels and log fields.

/// What can go wrong while reconciling a canary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object the canary needs is missing or malformed (target, config, primary).
    #[error("{0}")]
    Object(String),
    /// A router could not read, write or give back routes.
    #[error("router: {0}")]
    Router(#[from] crate::router::RouterError),
    /// Serialization of an object failed.
    #[error("serialization: {0}")]
    Serde(#[from] serde_json::Error),
}

impl Error {
    /// A short, stable label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Object(_) => "object",
            Self::Router(_) => "router",
            Self::Serde(_) => "serde",
        }
    }
}

/// Result alias of the controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;
