//! A datagram from a peer: decoded, then handled by an agent that knows a few members.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|bytes: &[u8]| {
    let (mut agent, _) = common::agent();
    let mut out = Vec::new();
    let _ = agent.handle_datagram(common::peer(), bytes, Duration::from_millis(20), &mut out);
    common::run_timers(&mut agent, out);
});
