//! rollcall-sim: runs the rollcall stack in a seeded simulated world.
//!
//! - [`scenario`]: scenario files, parsed strictly into a [`world::World`].
//! - [`faults`]: the fault plan built from a world and a seed.
//! - [`engines`]: engines that run a world under a plan and record a [`trace::Trace`].
//! - [`observe`] and [`invariants`]: the observation model and the checks on it.
//! - [`report`]: the timeline, verdicts and replay command a run prints.
#![forbid(unsafe_code)]

pub mod engines;
pub mod faults;
pub mod invariants;
pub mod observe;
pub mod report;
pub mod scenario;
pub mod trace;
pub mod workload;
pub mod world;

use engines::EngineError;
use faults::Plan;
use report::Report;
use trace::Trace;
use world::World;

/// One finished run: its report and its full trace.
pub struct Run {
    /// What to print.
    pub report: Report,
    /// Every record.
    pub trace: Trace,
}

/// Runs `world` with `seed` on the turmoil engine and checks its invariants.
pub fn run(world: &World, file: &str, seed: u64) -> Result<Run, EngineError> {
    let plan = Plan::build(world, seed);
    let trace = engines::turmoil::run(world, &plan, seed)?;
    let observations = observe::Observations::new(world, &plan, &trace);
    let verdicts = invariants::check(world, &observations);
    let duration_ms = world.duration.as_millis() as u64;
    let report = Report::new(
        &world.name,
        file,
        seed,
        duration_ms,
        &trace,
        verdicts,
        world.expected_violations.clone(),
    );
    Ok(Run { report, trace })
}
