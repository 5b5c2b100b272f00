//! Hostile input refused early, for every program of the project that reads input it did not
//! write: the CLI (manifest files), localkube (request bodies), the load tester (request
//! bodies, task commands) and the controller.
//!
//! - [`limits`]: size and nesting-depth limits on YAML and JSON, checked in one linear pass
//!   before a parser sees the text (`serde_yaml` is quadratic in the nesting of flow
//!   collections);
//! - [`files`]: files and standard input read bounded, YAML documents checked, then parsed;
//! - [`origin`]: the checks that keep a web page from using a local HTTP server (cross-site
//!   requests, DNS rebinding).
//!
//! It depends on no flagger crate: localkube, a plain Kubernetes API server, uses it too.

pub mod files;
pub mod limits;
pub mod origin;

pub use limits::{
    API_SERVER_MAX_BYTES, DEFAULT_MAX_DEPTH, Error, LimitError, Limits, check_json, check_size,
    check_yaml, from_json_slice, from_yaml_str,
};
