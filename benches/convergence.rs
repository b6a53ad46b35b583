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

use rollcall_sim::Simulation;

fn simulation(name: &str) -> Simulation {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    // Convergence happens in the first seconds; the rest of the run is not needed here.
    Simulation::from_file(&path).expect("scenario loads").duration(Duration::from_secs(20))
}

fn converge_time(simulation: &Simulation, seed: u64) -> Duration {
    let convergence = simulation.clone().seed(seed).convergence().expect("run completes");
    convergence
        .unwrap_or_else(|| panic!("{} seed {seed} did not converge", simulation.world().name))
        .since_start
}

fn convergence(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim-time-to-converge");
    group.sample_size(10);
    for name in ["lab.toml", "lab-permuted.toml"] {
        let simulation = simulation(name);
        let seed = Cell::new(0u64);
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        seed.set(seed.get() + 1);
                        converge_time(&simulation, seed.get())
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
    let simulation = simulation("lab.toml");
    group.bench_function("lab 20 s simulated", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for seed in 0..iterations {
                simulation.clone().seed(seed).trace().expect("run completes");
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, convergence, throughput);
criterion_main!(benches);
