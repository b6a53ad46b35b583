//! One seed replays one run, byte for byte; another seed gives another run. Every shipped
//! scenario but the long-running ones, seeds 1 and 2, each run twice (the long gossip
//! scenarios make more seeds cost minutes; `every_shipped_scenario_ends_as_expected_for_seeds_1_to_5`
//! covers more seeds).

use rollcall_sim::Simulation;

#[path = "common/parallel.rs"]
mod parallel;
#[path = "common/shipped.rs"]
mod shipped;

fn hash(scenario: &str, seed: u64) -> String {
    let path = shipped::scenarios_dir().join(scenario);
    let simulation = Simulation::from_file(&path).unwrap_or_else(|e| panic!("{scenario}: {e}"));
    let run = simulation.seed(seed).run().unwrap_or_else(|e| panic!("{scenario} seed {seed}: {e}"));
    assert_eq!(run.report.trace_hash, run.trace.hash());
    run.report.trace_hash
}

#[test]
fn every_shipped_scenario_replays_per_seed() {
    let scenarios = shipped::shipped();
    assert!(scenarios.len() >= 7, "{scenarios:?}");
    parallel::check_all(&scenarios, |scenario| {
        let first: Vec<String> = (1..=2).map(|seed| hash(scenario, seed)).collect();
        let second: Vec<String> = (1..=2).map(|seed| hash(scenario, seed)).collect();
        assert_eq!(first, second, "{scenario}: a seed did not replay");
        assert_ne!(first[0], first[1], "{scenario}: seeds 1 and 2 gave the same run");
    });
}
