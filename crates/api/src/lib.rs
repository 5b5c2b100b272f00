//! Wire types of Flagger's `flagger.app/v1beta1` API: [`Canary`], [`MetricTemplate`] and
//! [`AlertProvider`], with the JSON names, optionality, enums and defaults of Flagger's CRDs.
//!
//! These types are deliberately permissive: enum-valued fields are plain strings with the
//! enum recorded in the generated schema, so that one bad value never makes a whole object
//! unreadable. The strict, domain-level view lives in `flagger-core`'s `validate`, which turns a
//! wire [`Canary`] into a validated value or lists every problem with its field path.
//!
//! This crate does no I/O: it depends on `kube` for the derive macro only.

pub mod alert;
pub mod canary;
pub mod crd;
pub mod gateway;
pub mod istio;
pub mod labels;
pub mod metric;
pub mod status;

pub use alert::{AlertProvider, AlertProviderSpec};
pub use canary::*;
pub use metric::{MetricTemplate, MetricTemplateSpec};
pub use status::{AnalysisStatus, CanaryCondition, CanaryPhase, CanaryStatus, CheckStatus};

/// The API group of every Flagger resource.
pub const GROUP: &str = "flagger.app";
/// The only served (and stored) version.
pub const VERSION: &str = "v1beta1";
/// `apiVersion` string of every Flagger resource.
pub const API_VERSION: &str = "flagger.app/v1beta1";
