//! membership -> registry -> handlebars template -> `haproxy.cfg`, consul-template style.
//!
//! - [`core`]: the sans-io renderer (registry, template, render-only-on-change).
//! - [`calls`]: the helpers a template calls, checked when it loads.
//! - [`limits`]: how large a template may be (bytes, tags, nesting).
//! - [`quiescence`]: consul-template's `wait = "min:max"`.
//! - [`driver`]: watches the gossip view, validates, writes atomically (with an optional
//!   backup), asks the balancer to reload.

pub mod calls;
pub mod core;
pub mod driver;
pub mod limits;
pub mod quiescence;

pub use core::{Address, Member, RenderError, Renderer};
