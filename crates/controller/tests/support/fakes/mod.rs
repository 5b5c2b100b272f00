//! API-faithful fakes of the hosted monitoring services, one module per vendor, each written
//! from the vendor's published API reference (each module names the pages its answers follow),
//! not from flagger-rs' client: they check what the vendor checks (paths, methods, auth
//! headers, required parameters) and answer as the vendor does (shapes, error bodies, rate
//! limits).
//!
//! Every fake serves a scripted [`Answer`] that a test changes between phases, and records
//! each request it received ([`Seen`]).

#![allow(dead_code)]

pub mod aws;
pub mod datadog;
pub mod dynatrace;
pub mod gcp;
pub mod influxdb;
pub mod newrelic;
pub mod splunk;

mod shared;
pub use shared::*;
