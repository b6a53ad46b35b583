//! Bytes a client sends to the balancer's HTTP server, through hyper as the balancer runs it.
//! The body is in harness.rs, shared with the stable smoke run (tests/fuzz_smoke.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
#[allow(dead_code)] // each target calls one of its functions
mod harness;

fuzz_target!(|bytes: &[u8]| harness::http_request(bytes));
