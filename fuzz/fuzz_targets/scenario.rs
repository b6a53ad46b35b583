//! A scenario file as `rollcall-sim run` reads it (templates resolve against scenarios/).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let _ = rollcall_sim::scenario::parse("fuzz.toml", text, &base);
    }
});
