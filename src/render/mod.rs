//! membership -> registry -> handlebars template -> `haproxy.cfg`, consul-template style.
//!
//! - [`core`]: the sans-io renderer (registry, template, render-only-on-change).
//! - [`calls`]: the helpers a template calls, checked when it loads.
//! - [`nesting`]: how deeply a template nests, bounded before it compiles.
//! - [`quiescence`]: consul-template's `wait = "min:max"`.
//! - [`driver`]: watches the gossip view, validates, writes atomically (with an optional
//!   backup), asks the balancer to reload.

pub mod calls;
pub mod core;
pub mod driver;
pub mod nesting;
pub mod quiescence;

pub use core::{Address, Member, RenderError, Renderer};
