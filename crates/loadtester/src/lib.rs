//! flagger-rs load tester: a drop-in replacement for Flagger's `flagger-loadtester` service
//! (webhook task runner, manual and rollback gates) and a built-in `hey` load generator.
//!
//! **Security:** the service runs arbitrary commands sent to it. Never expose it outside the
//! cluster; restrict it with `-namespace-regexp`, a bearer token and a NetworkPolicy. It
//! refuses requests a browser sends on a web page's behalf (`Origin` of another site,
//! `Sec-Fetch-Site: cross-site`), and when it listens on a loopback address, requests whose
//! `Host` is not a loopback name (DNS rebinding).

pub mod cli;
pub mod concord;
pub mod conn;
pub mod exec;
pub mod gates;
pub mod goflags;
pub mod hey;
pub mod metrics;
pub mod ngrinder;
pub mod server;
pub mod tasks;
