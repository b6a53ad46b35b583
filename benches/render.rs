//! The renderer's cost per rendering, as consul-template pays it on every membership change:
//! the lab's template rendered for 10, 100 and 1,000 backends (`render`), and the same plus
//! the balancer parser's check of the result, which the fixed pipeline runs before every
//! swap (`render-and-validate`).

use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use rollcall::render::{Member, Renderer};

fn members(count: usize) -> Vec<Member> {
    let backend = |i: usize| Member {
        name: format!("web-{i:04}"),
        addr: std::net::Ipv4Addr::new(10, (i / 65_536) as u8, (i / 256 % 256) as u8, (i % 256) as u8).into(),
        tags: [("role".to_string(), "backend".to_string())].into(),
        live: true,
    };
    (0..count).map(backend).collect()
}

fn render(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/templates/haproxy.cfg.hb");
    let text = std::fs::read_to_string(&path).expect("the lab's template");
    let renderer = Renderer::new("haproxy.cfg.hb", &text).expect("the template registers");
    let mut group = c.benchmark_group("render");
    for count in [10, 100, 1_000] {
        let addresses = Renderer::addresses(&members(count));
        group.bench_with_input(BenchmarkId::new("render", count), &addresses, |b, addresses| {
            b.iter(|| renderer.render(addresses).expect("renders"))
        });
        group.bench_with_input(BenchmarkId::new("render-and-validate", count), &addresses, |b, addresses| {
            b.iter(|| {
                let text = renderer.render(addresses).expect("renders");
                rollcall::balancer::config::parse("haproxy.cfg", &text).expect("valid")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
