//! HTTP/1.1 reverse proxy driven by an `haproxy.cfg`.
//!
//! - [`config`]: parses the subset of HAProxy's configuration the balancer implements, and
//!   flags what HAProxy 2.6 itself would reject.
//! - [`checks`]: the health-check tasks and the table the request path reads.
//! - [`health`]: HAProxy's health-check state per server (sans-io).
//! - [`select`]: HAProxy's `balance` algorithms and cookie helpers (sans-io).
//! - [`stats`]: the stats page and its CSV (pure rendering).
//! - [`legacy`]: HAProxy's legacy reload, as the lab's run script does it: a new process per
//!   reload, sharing the port, soft-stopping the pid it was handed.
//! - [`proxy`]: serves the frontend, round-robins over the backend's servers, reloads on
//!   request without dropping in-flight requests.

pub mod checks;
pub mod config;
pub mod health;
pub mod legacy;
pub mod proxy;
pub mod select;
pub mod stats;

pub use config::{BalancerConfig, ConfigError};
