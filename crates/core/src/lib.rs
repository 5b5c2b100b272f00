//! The decision core of flagger-rs: validation of Canaries and the canary state machine.
//!
//! Everything here is pure and synchronous. The controller observes the cluster, hands the
//! observations and the current time to [`decide::decide`], and carries out the returned effects;
//! nothing in this crate performs I/O or reads a clock (see `clippy.toml` beside `Cargo.toml`).
//!
//! Modules are layered, each using only those before it: the leaves (`duration`, `hash`,
//! `gotemplate`, `provider`, `steer`, `queue`, `shard`, `redact`, `converge`), the model
//! (`model`, `conflict`), `validate`, `services` and `notify`, `generated` and `judge`,
//! `compare`, `metric`, `effects`, the planners of each step (`routing`, `readiness`,
//! `workload`, `explain`, `finalize`), `status` and `keda`, and `decide` on top. Inside a
//! directory, `mod.rs` only re-exports and ties its children together; no child reaches back up
//! into it (`crates/cli/tests/module_cycles.rs`).

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
