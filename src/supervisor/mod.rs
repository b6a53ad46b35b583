//! Per-node process supervision with s6 semantics.
//!
//! - [`core`]: the sans-io supervision state machine (restart delay, permanent failure, main
//!   service halting the node).
//! - [`driver`]: runs services as local tasks on the host's runtime.

pub mod core;
pub mod driver;

pub use core::{ExitStatus, ServiceSpec, Supervisor};
