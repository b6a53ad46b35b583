//! Convergence time of the lab, in simulated time, over many seeds; and the simulator's
//! own speed (wall time of one lab run).
//!
//! `sim-time-to-converge/*` report *simulated* time from the start of the run until every
//! webapp is in ha's rendered backends (criterion prints it as a duration). Each iteration
//! uses the next seed, so the spread is the spread over seeds.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use rollcall_sim::faults::Plan;
use rollcall_sim::observe::Observations;
use rollcall_sim::world::World;

fn world(name: &str) -> World {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    let mut world = rollcall_sim::scenario::load(&path).expect("scenario loads");
    // Convergence happens in the first seconds; the rest of the run is not needed here.
    world.duration = Duration::from_secs(20);
    world
}

fn converge_time(world: &World, seed: u64) -> Duration {
    let plan = Plan::build(world, seed);
    let trace = rollcall_sim::engines::turmoil::run(world, &plan, seed).expect("run completes");
    Observations::new(world, &plan, &trace)
        .converged_at()
        .unwrap_or_else(|| panic!("{} seed {seed} did not converge", world.name))
}

fn convergence(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim-time-to-converge");
    group.sample_size(10);
    for name in ["lab.toml", "lab-permuted.toml"] {
        let world = world(name);
        let seed = Cell::new(0u64);
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        seed.set(seed.get() + 1);
                        converge_time(&world, seed.get())
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulator-wall-time");
    group.sample_size(10);
    let world = world("lab.toml");
    group.bench_function("lab 20 s simulated", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for seed in 0..iterations {
                let plan = Plan::build(&world, seed);
                rollcall_sim::engines::turmoil::run(&world, &plan, seed).expect("run completes");
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, convergence, throughput);
criterion_main!(benches);
