//! One seed replays one run, byte for byte; another seed gives another run.

use std::path::PathBuf;

fn hash(scenario: &str, seed: u64) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(scenario);
    let world = rollcall_sim::scenario::load(&path).unwrap();
    let run = rollcall_sim::run(&world, scenario, seed).unwrap();
    assert_eq!(run.report.trace_hash, run.trace.hash());
    run.report.trace_hash
}

fn check(scenario: &str) {
    let first = [hash(scenario, 1), hash(scenario, 2)];
    let second = [hash(scenario, 1), hash(scenario, 2)];
    assert_eq!(first, second, "{scenario}: a seed did not replay");
    assert_ne!(first[0], first[1], "{scenario}: seeds 1 and 2 gave the same run");
}

#[test]
fn the_lab_replays_per_seed() {
    check("lab.toml");
}

#[test]
fn the_partition_scenario_replays_per_seed() {
    check("lab-partition.toml");
}
