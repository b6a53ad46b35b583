//! Which scenario files the test suites run: every file in scenarios/ but the long-running
//! ones, which CI leaves out and `every_long_running_scenario_ends_as_expected` runs.

use std::path::PathBuf;

/// Scenarios that cost minutes to hours of wall time per seed, so CI leaves them out:
/// gossip-50 about 45 s per seed under turmoil, gossip-1k about 32.5 s per seed on the event
/// engine in a release build (more in the test profile, which optimises less), gossip-10k
/// 1 h 28-1 h 33 min and 18.0-18.5 GB at most (seed 1 at 205388a and 46752b6).
/// `every_long_running_scenario_ends_as_expected` runs them, one per core at once: the
/// machine needs gossip-10k's 18.5 GB beside the others' (under 1 GB together).
pub const LONG_RUNNING: [&str; 3] = ["gossip-10k.toml", "gossip-1k.toml", "gossip-50.toml"];

/// Every scenario file shipped in scenarios/, long-running ones included.
pub fn scenario_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    names.sort();
    names
}

/// The shipped scenarios CI runs: all but the long-running ones.
pub fn shipped() -> Vec<String> {
    scenario_files().into_iter().filter(|name| !LONG_RUNNING.contains(&name.as_str())).collect()
}

/// scenarios/ at the workspace's root.
pub fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}
