//! Per-node process supervision with s6 and s6-overlay semantics.
//!
//! - [`core`]: the sans-io supervision state machine (finish, restart delay, readiness,
//!   permanent failure, s6-svc commands, init steps, main program, shutdown).
//! - [`signal`]: signals and exits as s6 reports them.
//! - [`driver`]: runs services as local tasks on the host's runtime.
//! - [`pause`]: SIGSTOP and SIGCONT for a service that is a task.
//! - [`process`]: services that are real processes, from s6 service directories.

pub mod core;
pub mod driver;
pub mod pause;
pub mod process;
pub mod signal;

pub use core::{ServiceSpec, Supervisor};
pub use signal::{Exit, Signal};
