//! `rollcall-sim figures`: gossip timings over a range of seeds, side by side.

use std::ops::Range;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rollcall_sim::engines::EngineKind;
use rollcall_sim::metrics::{Distribution, Timings};
use rollcall_sim::{Run, Simulation};
use serde::Serialize;

/// What one seed measured.
struct Measured {
    seed: u64,
    timings: Timings,
    false_failures: u32,
}

/// The figures printed, one row per timing.
#[derive(Serialize)]
struct Figures {
    scenario: String,
    seeds: Range<u64>,
    /// Label, measurements that never completed, and the distribution of those that did.
    rows: Vec<(String, usize, Option<Distribution>)>,
    false_failures_per_seed: Vec<u32>,
    errors: Vec<String>,
}

/// Runs every seed of `seeds` (on `jobs` threads) and prints the distributions. Exit 1 if a
/// run failed to complete, 2 for bad arguments.
pub fn print(simulation: &Simulation, file: &Path, seeds: Range<u64>, jobs: usize, json: bool) -> ExitCode {
    if seeds.is_empty() || jobs == 0 {
        eprintln!("error: --seeds and --jobs must be at least 1");
        return ExitCode::from(2);
    }
    // Figures read no verdict: on the event engine, the invariants it cannot check are off.
    let mut simulation = simulation.clone();
    if simulation.world().engine == EngineKind::Event {
        let checkable = rollcall_sim::engines::event::checkable(&simulation.world().invariants);
        simulation = simulation.invariants(checkable);
    }
    let (mut measured, errors) = measure(&simulation, seeds.clone(), jobs);
    measured.sort_by_key(|m| m.seed);
    let name = format!("{} ({})", simulation.world().name, file.display());
    let figures = summarize(name, seeds, &measured, errors);
    if json {
        println!("{}", serde_json::to_string_pretty(&figures).expect("figures serialize"));
    } else {
        print_text(&figures);
    }
    if figures.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// Prints the figures of one run already made (`run --figures`): a run of thousands of
/// nodes takes long enough that its verdicts and its figures should come from the same run.
pub fn print_run(run: &Run, file: &Path, seed: u64) {
    let measured = Measured {
        seed,
        timings: Timings::of(&run.observations),
        false_failures: run.report.figures.false_failures,
    };
    let name = format!("{} ({})", run.report.scenario, file.display());
    print_text(&summarize(name, seed..seed + 1, &[measured], Vec::new()));
}

/// The distributions of what the seeds measured.
fn summarize(scenario: String, seeds: Range<u64>, measured: &[Measured], errors: Vec<String>) -> Figures {
    let column = |pick: fn(&Timings) -> &Vec<Option<Duration>>| -> Vec<Option<Duration>> {
        measured.iter().flat_map(|m| pick(&m.timings).iter().copied()).collect()
    };
    let row = |label: &str, values: Vec<Option<Duration>>| {
        (label.to_string(), values.iter().filter(|v| v.is_none()).count(), Distribution::of(&values))
    };
    let rows = vec![
        row("join to converged", column(|t| &t.join_to_converged)),
        row("crash to failed everywhere", column(|t| &t.crash_to_failed)),
        row("leave to left everywhere", column(|t| &t.leave_to_left)),
        row("heal to merged", column(|t| &t.heal_to_merged)),
        row("join known by 50 %", column(|t| &t.join_spread_half)),
        row("join known by 99 %", column(|t| &t.join_spread_99)),
        row("join known by all", column(|t| &t.join_spread_all)),
    ];
    Figures {
        scenario,
        seeds,
        rows,
        false_failures_per_seed: measured.iter().map(|m| m.false_failures).collect(),
        errors,
    }
}

fn measure(simulation: &Simulation, seeds: Range<u64>, jobs: usize) -> (Vec<Measured>, Vec<String>) {
    let next = AtomicU64::new(seeds.start);
    let results = Mutex::new((Vec::new(), Vec::new()));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    let outcome = simulation.clone().seed(seed).run();
                    let mut results = results.lock().expect("no thread panics while holding it");
                    match outcome {
                        Ok(run) => results.0.push(Measured {
                            seed,
                            timings: Timings::of(&run.observations),
                            false_failures: run.report.figures.false_failures,
                        }),
                        Err(error) => results.1.push(format!("seed {seed}: {error}")),
                    }
                }
            });
        }
    });
    results.into_inner().expect("no thread panicked while holding it")
}

fn print_text(figures: &Figures) {
    println!("scenario {}, seeds {}..{}", figures.scenario, figures.seeds.start, figures.seeds.end - 1);
    println!(
        "{:<28} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "simulated ms", "samples", "missing", "min", "median", "p90", "max"
    );
    for (label, missing, distribution) in &figures.rows {
        match distribution {
            Some(d) => println!(
                "{label:<28} {:>7} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                d.samples, d.missing, d.min_ms, d.median_ms, d.p90_ms, d.max_ms
            ),
            None => println!("{label:<28} {:>7} {missing:>7}", 0),
        }
    }
    let mut false_failures = figures.false_failures_per_seed.clone();
    false_failures.sort();
    if let Some(median) = false_failures.get(false_failures.len() / 2) {
        let total: u32 = false_failures.iter().sum();
        println!("false failures: {total} in all, median {median} per seed");
    }
    for error in &figures.errors {
        println!("error: {error}");
    }
}
