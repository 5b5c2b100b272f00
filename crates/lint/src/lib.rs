//! `flagger lint PATH...`: finds the objects of a GitOps repository that collide with what its
//! Canaries make the controller generate, or that fight with the controller (docs/gitops.md).
//!
//! A library, so that the `flagger` binary, tests and other tools share it: [`load`] reads the
//! files (rendering kustomizations), [`rules`] judges the objects without I/O (over
//! [`object`], [`settings`] and the Canary view of `canary`), and [`command`] prints the
//! [`finding`]s and picks the exit code:
//!
//! * 0: no errors (warnings allowed);
//! * 1: at least one error;
//! * 2: a usage, read or parse problem (a path that cannot be read, YAML that does not parse,
//!   an unknown `--mesh-provider`).

mod canary;
pub mod command;
pub mod finding;
pub mod load;
pub mod object;
pub mod rules;
pub mod settings;

pub use command::{Args, Format, run};
