//! A property test as a user of rollcall writes one over their own scenario: proptest draws
//! fault plans from the scenario's hosts (`rollcall_sim::strategy`), every run must have the
//! outcome the scenario expects, and a failure is shrunk to a minimal plan and printed with
//! the seed, the plan as `[[fault]]` tables and the replay command.
//!
//! The proptest seed is fixed so CI replays the same plans; `PROPTEST_CASES=200` explores more.

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rollcall_sim::{Simulation, strategy};

fn my_scenario() -> Simulation {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lab.toml");
    Simulation::from_file(&path).unwrap()
}

fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(4),
        rng_seed: RngSeed::Fixed(0x00c0_ffee),
        max_shrink_iters: 32,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_lab_recovers_from_what_proptest_draws(faults in strategy::fault_plan(my_scenario().world()), seed in 0u64..1_000_000) {
        strategy::check(&my_scenario(), faults, seed)?;
    }
}
