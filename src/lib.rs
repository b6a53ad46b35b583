//! rollcall: the lab stack (HAProxy + Serf + s6 + handlebars) as one Rust stack that runs on
//! real sockets and inside a seeded network simulator.
//!
//! Protocol cores are sans-io state machines ([`gossip::core`], [`supervisor::core`],
//! [`render::core`]); drivers are thin and generic over [`net::Net`]; a node reaches the
//! outside world only through its [`host::HostEnv`].
#![forbid(unsafe_code)]

pub mod balancer;
pub mod files;
pub mod gossip;
pub mod host;
pub mod net;
pub mod node;
pub mod render;
pub mod supervisor;
pub mod webapp;
