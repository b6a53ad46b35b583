//! A members file rendered through the lab's template, then loaded by the balancer's parser.
//! The body is in harness.rs, shared with the stable smoke run (tests/fuzz_smoke.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
#[allow(dead_code)] // each target calls one of its functions
mod harness;

fuzz_target!(|bytes: &[u8]| harness::template_data(bytes));
