//! A haproxy.cfg as the balancer loads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = rollcall::balancer::config::parse("fuzz.cfg", text);
    }
});
