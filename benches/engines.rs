//! The engines side by side, in one run on one machine: wall time of the same 20-node scenario
//! on turmoil and on the event engine (their ratio is the event engine's speed-up), and the
//! event engine's wall time for 100 and 300 nodes over the same simulated time (its scaling).
//!
//! `sim-time/*` report *simulated* time (criterion prints it as a duration), one seed per
//! iteration: join to converged (dissemination of a join storm to every view) and crash to
//! failed everywhere, on the event engine.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use rollcall_sim::Simulation;
use rollcall_sim::engines::{EngineKind, event};
use rollcall_sim::metrics::Timings;

fn simulation(name: &str) -> Simulation {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    Simulation::from_file(&path).expect("scenario loads")
}

/// `simulation` on the event engine with the invariants it checks.
fn on_event(simulation: Simulation) -> Simulation {
    let checkable = event::checkable(&simulation.world().invariants);
    simulation.engine(EngineKind::Event).invariants(checkable)
}

fn wall(c: &mut Criterion) {
    let mut group = c.benchmark_group("wall-time");
    group.sample_size(10);
    let turmoil = simulation("gossip-crash-20.toml");
    let event = on_event(turmoil.clone());
    for (label, simulation) in [("gossip-crash-20 turmoil", turmoil), ("gossip-crash-20 event", event)] {
        group.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                let start = Instant::now();
                for seed in 0..iterations {
                    simulation.clone().seed(seed + 1).trace().expect("run completes");
                }
                start.elapsed()
            })
        });
    }
    let hundred = simulation("gossip-100.toml").duration(Duration::from_secs(60));
    group.bench_function("gossip-100 event 60 s simulated", |b| {
        b.iter(|| hundred.clone().seed(1).trace().expect("run completes"))
    });
    group.finish();
}

/// The timing a case measures.
type Pick = fn(&Timings) -> Option<Duration>;

fn simulated(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim-time");
    group.sample_size(10);
    let cases: [(&str, Simulation, Pick); 3] = [
        ("join to converged, 20 nodes", on_event(simulation("gossip-crash-20.toml")), |t| {
            t.join_to_converged[0]
        }),
        (
            "join to converged, 100 nodes",
            simulation("gossip-100.toml").duration(Duration::from_secs(60)),
            |t| t.join_to_converged[0],
        ),
        ("crash to failed everywhere, 20 nodes", on_event(simulation("gossip-crash-20.toml")), |t| {
            t.crash_to_failed[0]
        }),
    ];
    for (label, simulation, pick) in cases {
        let seed = Cell::new(0u64);
        group.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        seed.set(seed.get() + 1);
                        let run = simulation.clone().seed(seed.get()).run().expect("run completes");
                        pick(&Timings::of(&run.observations)).expect("completes within the run")
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, wall, simulated);
criterion_main!(benches);
