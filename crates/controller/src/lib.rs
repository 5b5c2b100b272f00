//! The flagger-rs operator.
//!
//! A kube-runtime controller over Canaries. Each reconcile of a canary is a named pipeline, one
//! call per step, each step with its own error type and a category (see [`error`]):
//!
//! 1. **dereference** ([`canary::dereference`]): validate the Canary into a domain value;
//! 2. **observe** ([`canary::observe`]): read the target, its tracked configs and compute the
//!    revision;
//! 3. **bootstrap** ([`canary::bootstrap`]): make sure the generated objects exist (primary
//!    workload and configs, Services, primary autoscaler, routing objects);
//! 4. **decide** ([`canary::oracle`]): run [`flagger_core::decide`], answering what it needs
//!    (readiness, routes, hook calls, metric queries);
//! 5. **execute** ([`canary::execute`]): carry out the decision's cluster actions in order,
//!    stopping at the first failure;
//! 6. **status** ([`canary::status`]): write the status the decision reached, only when every
//!    action succeeded; then the notices ([`canary::notices`]: events, alerts through
//!    [`alerts`], run counters, post-rollout hooks).
//!
//! A failed step leaves the canary where it was: a Warning event and a log line say which step
//! failed and why, [`canary::error_policy`] counts it (`flagger_reconcile_errors_total{step,
//! category}`) and retries the canary with a backoff capped at its interval.
//!
//! Every read of steps 2–5 comes from watch caches ([`cache`]), the same watch streams that
//! trigger reconciles, so an idle tick costs no API request.
//!
//! Analysis ticks run once per `analysis.interval` per canary; a new revision of the target or a
//! change to a tracked ConfigMap or Secret is acted on when its watch event arrives.
//!
//! Providers plug in through one seam per kind: [`router`] (the `Router` trait: reconcile, get
//! and set routes, finalize; one module per provider and a registry line) and [`providers`]
//! (the `MetricsProvider` trait: query and availability check; one module per MetricTemplate
//! type and a registry line). The steps reach them through [`canary::oracle`] and
//! [`canary::execute`] and never know which provider they talk to.
//!
//! ## Layers
//!
//! Every module uses only modules below it, and no two modules reach into each other: the
//! leaves ([`error`], [`write`](mod@write), [`owner`], [`args`], [`webhook`], [`logfmt`],
//! [`ratelimit`], [`canary_index`]), then the API plumbing ([`packed`], [`watched`], [`cache`],
//! [`events`], [`leader`], [`shard`], [`alerts`], [`metrics`]), the two provider seams
//! (`router::seam`, `providers::seam`), one file per provider, the registries ([`router`],
//! [`providers`]),
//! [`templates`], [`context`], [`memory`] (what the caches hold), the steps in [`canary`] (the
//! writers and readers before the steps that compose them), the pipeline (`canary/mod.rs`, with
//! the aggregate [`Error`]) and [`run`]; this file only declares and re-exports.
//! `crates/cli/tests/module_cycles.rs` keeps it so.

pub mod alerts;
pub mod args;
pub mod cache;
pub mod canary;
pub mod canary_index;
pub mod context;
pub mod error;
pub mod events;
pub mod handover;
pub mod leader;
pub mod logfmt;
pub mod memory;
pub mod metrics;
pub mod owner;
pub mod packed;
pub mod providers;
pub mod ratelimit;
pub mod router;
pub mod run;
pub mod server;
pub mod shard;
pub mod templates;
pub mod watched;
pub mod webhook;
pub mod write;

pub use args::Args;
pub use canary::Error;

pub use write::{FIELD_MANAGER, patch_params, post_params};
