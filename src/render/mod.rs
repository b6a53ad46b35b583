//! membership -> registry -> handlebars template -> `haproxy.cfg`, consul-template style.
//!
//! - [`core`]: the sans-io renderer (registry, template, render-only-on-change).
//! - [`driver`]: watches the gossip view, writes atomically, asks the balancer to reload.

pub mod core;
pub mod driver;

pub use core::{Address, RenderError, Renderer};
