//! A members file (the renderer's data when no agent feeds it) rendered through the lab's
//! template, and the config that makes loaded by the balancer's parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall::render::core::{Member, Renderer};

const TEMPLATE: &str = include_str!("../../scenarios/templates/haproxy.cfg.hb");

fuzz_target!(|bytes: &[u8]| {
    let Ok(view) = serde_json::from_slice::<Vec<Member>>(bytes) else { return };
    let renderer = Renderer::new("haproxy.cfg.hb", TEMPLATE).expect("the lab's template compiles");
    if let Ok(Some(output)) = renderer.update(&view) {
        if let Ok(text) = std::str::from_utf8(&output.bytes) {
            let _ = rollcall::balancer::config::parse("haproxy.cfg", text);
        }
    }
});
