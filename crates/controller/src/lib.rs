//! The flagger-rs operator.
//!
//! A kube-runtime controller over Canaries. Each reconcile of a canary is a named pipeline:
//!
//! 1. **dereference** ([`canary::dereference`]): validate the Canary into a domain value;
//! 2. **observe** ([`canary::observe`]): read the target, its tracked configs and compute the
//!    revision;
//! 3. **bootstrap** ([`canary::bootstrap`]): make sure the generated objects exist (primary
//!    workload and configs, Services, primary autoscaler);
//! 4. **decide**: run [`flagger_core::decide`], answering what it needs (readiness, routes, hook
//!    calls, metric queries) through [`canary::oracle`];
//! 5. **apply** ([`canary::apply`]): carry out the effects (alerts through [`alerts`]);
//! 6. **status**: write the status through the status subresource.
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
//! [`canary::apply`] and never know which provider they talk to.

pub mod alerts;
pub mod args;
pub mod cache;
pub mod canary;
pub mod context;
pub mod error;
pub mod events;
pub mod handover;
pub mod leader;
pub mod logfmt;
pub mod metrics;
pub mod owner;
pub mod providers;
pub mod router;
pub mod run;
pub mod server;
pub mod templates;
pub mod webhook;

pub use args::Args;
pub use error::Error;

/// Field manager of every write the controller makes.
pub use flagger_api::labels::FIELD_MANAGER;
