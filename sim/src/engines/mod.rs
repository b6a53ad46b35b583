//! Engines run a [`World`](crate::world::World) under a [`Plan`](crate::faults::Plan) and
//! return its [`Trace`](crate::trace::Trace). All engines share the fault plan, the trace
//! format and the invariants.
//!
//! - [`turmoil`]: the full stack, HTTP included, on turmoil's simulated network (3-20 hosts).

pub mod turmoil;

/// A run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The simulated software failed (a panic or an assertion in the stack).
    #[error("simulation failed at {at_ms} ms: {message}")]
    Crashed { at_ms: u64, message: String },
}
