//! Exploration throughput: seeds of `scenarios/lab.toml` (and of `lab-swarm.toml`) explored
//! per minute with one job and with two, measured side by side in one run. One iteration
//! explores a batch of seeds; criterion reports the time per batch, and the summary line
//! converts the medians to seeds per minute.

use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};

use rollcall_sim::Simulation;
use rollcall_sim::explore;

/// Seeds per batch.
const BATCH: u64 = 8;

fn simulation(name: &str) -> Simulation {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    Simulation::from_file(&path).expect("scenario loads")
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("explore");
    group.sample_size(10);
    let mut medians = Vec::new();
    for name in ["lab.toml", "lab-swarm.toml"] {
        let simulation = simulation(name);
        for jobs in [1usize, 2] {
            let label = format!("{name} {BATCH} seeds --jobs {jobs}");
            let mut times = Vec::new();
            group.bench_function(&label, |b| {
                b.iter_custom(|iterations| {
                    let start = Instant::now();
                    for i in 0..iterations {
                        let seeds: Vec<u64> = (1 + i * BATCH..=(i + 1) * BATCH).collect();
                        let outcomes = explore::explore(&simulation, &seeds, jobs, None, |_| {});
                        assert!(outcomes.iter().all(|o| o.error.is_none()));
                    }
                    let elapsed = start.elapsed();
                    times.push(elapsed.as_secs_f64() / iterations as f64);
                    elapsed
                })
            });
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            medians.push((label, BATCH as f64 / median * 60.0));
        }
    }
    group.finish();
    for (label, per_minute) in medians {
        println!("{label}: {per_minute:.0} seeds a minute (median batch)");
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
