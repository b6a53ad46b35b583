//! A stream frame from a peer (a push-pull, a TCP ping, an ack), as a request and as the
//! answer to our own push-pull.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|bytes: &[u8]| {
    for is_answer in [false, true] {
        let (mut agent, _) = common::agent();
        let mut out = Vec::new();
        let _ = agent.handle_stream(common::peer(), bytes, is_answer, Duration::from_millis(20), &mut out);
        common::run_timers(&mut agent, out);
    }
});
