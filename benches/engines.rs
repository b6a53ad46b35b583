//! The engines side by side, in one run on one machine: wall time of the same 20-node scenario
//! on turmoil and on the event engine (their ratio is the event engine's speed-up), and the
//! event engine's wall time for 100 and 1,000 nodes over the same simulated time (its
//! scaling; criterion's throughput is node-seconds simulated per wall second).
//!
//! `sim-time/*` report *simulated* time (criterion prints it as a duration), one seed per
//! iteration: join to converged (dissemination of a join storm to every view) and crash to
//! failed everywhere, on the event engine, for 20, 100 and 1,000 nodes (the 100-node crash is
//! gossip-100 with one host crashed at 30 s). A seed whose timing does not complete within
//! its run counts as the run's simulated length (more than any finished one: such a seed
//! raises the figure rather than vanishing from it) and is named on stderr: a join that one
//! node missed waits for a push-pull (90 s at 100 nodes, 180 s at 1,000), so a few seeds in
//! a hundred do; at 10,000 nodes, where seed 1 converged at 142.6 s, many may.
//!
//! 10,000 nodes are cases too, run only with `ROLLCALL_BENCH_10K=1`: an iteration takes
//! tens of minutes and criterion wants ten, so a session's `cargo bench` leaves them out
//! (`rollcall-sim run scenarios/gossip-10k.toml --figures` gives the same figures for
//! one seed).

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use rollcall_sim::Simulation;
use rollcall_sim::engines::{EngineKind, event};
use rollcall_sim::faults::{FaultKind, FaultSpec};
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
    group.finish();
    let mut group = c.benchmark_group("node-seconds");
    group.sample_size(10);
    let mut cases = vec![("100 nodes", hundred_nodes()), ("1,000 nodes", thousand_nodes())];
    if ten_thousand_wanted() {
        cases.push(("10,000 nodes", ten_thousand_nodes()));
    }
    for (label, simulation) in cases {
        let nodes = simulation.world().hosts.len() as u64;
        group.throughput(Throughput::Elements(nodes * SCALING_SPAN.as_secs()));
        group
            .bench_function(label, |b| b.iter(|| simulation.clone().seed(1).trace().expect("run completes")));
    }
    group.finish();
}

/// Simulated time of the scaling runs: the join storm and, at 30 s, gossip-1k's crashes.
const SCALING_SPAN: Duration = Duration::from_secs(60);

fn hundred_nodes() -> Simulation {
    simulation("gossip-100.toml").duration(SCALING_SPAN)
}

/// gossip-1k's join storm and its crashes at 30 s, over the scaling span.
fn thousand_nodes() -> Simulation {
    simulation("gossip-1k.toml").duration(SCALING_SPAN)
}

/// gossip-10k over the same span as the others, for the scaling ratio.
fn ten_thousand_nodes() -> Simulation {
    simulation("gossip-10k.toml").duration(SCALING_SPAN)
}

/// Whether the 10,000-node cases run (`ROLLCALL_BENCH_10K=1`).
fn ten_thousand_wanted() -> bool {
    std::env::var_os("ROLLCALL_BENCH_10K").is_some_and(|v| v == "1")
}

/// The timing a case measures.
type Pick = fn(&Timings) -> Option<Duration>;

/// Simulated time of the timing runs: past gossip-100's slowest join in 20 seeds (90.2 s)
/// and the crashes' detection at 1,000 nodes (crashes at 30 s, suspicion up to 72 s).
const TIMING_SPAN: Duration = Duration::from_secs(150);

/// gossip-100 with `s50` crashed at 30 s: failure detection at 100 nodes.
fn hundred_nodes_one_crash() -> Simulation {
    let crash = FaultSpec {
        at: Duration::from_secs(30),
        lasting: None,
        kind: FaultKind::HostCrash { host: "s50".into(), mid_render: false },
    };
    simulation("gossip-100.toml").duration(TIMING_SPAN).faults(vec![crash])
}

fn simulated(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim-time");
    group.sample_size(10);
    let twenty = || on_event(simulation("gossip-crash-20.toml"));
    let hundred = || simulation("gossip-100.toml").duration(TIMING_SPAN);
    let thousand = || simulation("gossip-1k.toml").duration(TIMING_SPAN);
    let mut cases: Vec<(&str, Simulation, Pick)> = vec![
        ("join to converged, 20 nodes", twenty(), |t| t.join_to_converged[0]),
        ("join to converged, 100 nodes", hundred(), |t| t.join_to_converged[0]),
        ("join to converged, 1,000 nodes", thousand(), |t| t.join_to_converged[0]),
        ("crash to failed everywhere, 20 nodes", twenty(), |t| t.crash_to_failed[0]),
        ("crash to failed everywhere, 100 nodes", hundred_nodes_one_crash(), |t| t.crash_to_failed[0]),
        ("crash to failed everywhere, 1,000 nodes", thousand(), |t| t.crash_to_failed[0]),
    ];
    if ten_thousand_wanted() {
        // Join to converged took 142.6 s for seed 1; the longest suspicion is 96 s after the
        // crashes at 30 s; the halves' cut comes at 150 s.
        let ten_thousand = || simulation("gossip-10k.toml").duration(TIMING_SPAN);
        cases.push(("join to converged, 10,000 nodes", ten_thousand(), |t| t.join_to_converged[0]));
        cases.push(("crash to failed everywhere, 10,000 nodes", ten_thousand(), |t| t.crash_to_failed[0]));
    }
    for (label, simulation, pick) in cases {
        let (seed, span) = (Cell::new(0u64), simulation.world().duration);
        group.bench_function(label, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| {
                        seed.set(seed.get() + 1);
                        let run = simulation.clone().seed(seed.get()).run().expect("run completes");
                        timing_or_span(label, seed.get(), span, pick(&Timings::of(&run.observations)))
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

/// `timing`, or the run's simulated length `span` when it did not complete within it, said
/// on stderr.
fn timing_or_span(label: &str, seed: u64, span: Duration, timing: Option<Duration>) -> Duration {
    timing.unwrap_or_else(|| {
        eprintln!("{label}: seed {seed} did not complete within the run; counted as its {span:?}");
        span
    })
}

criterion_group!(benches, wall, simulated);
criterion_main!(benches);
