//! HTTP/1.1 reverse proxy driven by an `haproxy.cfg`.
//!
//! - [`config`]: parses the subset of HAProxy's configuration the balancer implements, and
//!   flags what HAProxy 2.6 itself would reject.
//! - [`proxy`]: serves the frontend, round-robins over the backend's servers, reloads on
//!   request without dropping in-flight requests.

pub mod config;
pub mod proxy;

pub use config::{BalancerConfig, ConfigError};
