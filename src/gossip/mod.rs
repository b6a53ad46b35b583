//! Gossip membership in the manner of Serf on memberlist.
//!
//! - [`core`]: the sans-io agent (probe, suspect, refute, disseminate, push-pull, join).
//! - [`lifeguard`]: local health awareness and suspicion timeouts that shrink with confirmations.
//! - [`deadlines`]: when the suspicions held run out, and the one timer that wakes the agent.
//! - [`serf`]: Serf's layer: Lamport-ordered join and leave intents, graceful leave.
//! - [`codec`]: the datagram format; [`keyring`]: its label and AES-GCM encryption.
//! - [`driver`]: runs the agent on a [`crate::net::Net`] with timers and the loss model.
//! - [`broadcasts`]: the queue of pending broadcasts.
//! - [`intern`]: names, tags, member states and news shared between tables and queues.
//! - [`table`]: the member table's layout (insertion order and a hash index).
//! - [`coalesce`] and [`handlers`]: Serf's event handlers, coalesced, on real processes.

pub mod broadcasts;
pub mod coalesce;
pub mod codec;
pub mod config;
pub mod core;
pub mod deadlines;
pub mod driver;
pub mod handlers;
pub mod intern;
pub mod keyring;
pub mod lifeguard;
pub mod limits;
pub mod serf;
pub mod snapshot;
pub mod stream;
pub mod table;

pub use codec::{NodeState, Status};
pub use config::{GossipConfig, JoinMode, Profile};
pub use core::{Action, Agent, Timer};
