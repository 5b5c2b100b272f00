//! The decision core of flagger-rs: validation of Canaries and the canary state machine.
//!
//! Everything here is pure and synchronous. The controller observes the cluster, hands the
//! observations and the current time to [`decide::decide`], and carries out the returned effects;
//! nothing in this crate performs I/O or reads a clock (see `clippy.toml` beside `Cargo.toml`).

pub mod compare;
pub mod conflict;
pub mod converge;
pub mod decide;
pub mod duration;
pub mod effects;
pub mod explain;
pub mod finalize;
pub mod generated;
pub mod gotemplate;
pub mod hash;
pub mod judge;
pub mod keda;
pub mod metric;
pub mod model;
pub mod notify;
pub mod provider;
pub mod queue;
pub mod readiness;
pub mod redact;
pub mod routing;
pub mod services;
pub mod shard;
pub mod status;
pub mod steer;
pub mod validate;
pub mod workload;

pub use decide::decide;
pub use effects::{Action, Decision, Need, Notice, Observations, Step};
