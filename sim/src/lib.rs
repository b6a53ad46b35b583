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

/// How long one seed of `world` takes to converge (every webapp in the balancer's rendered
/// backends): from the start of the run, and from the start of the last node it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Convergence {
    /// Simulated time from the start of the run.
    pub since_start: std::time::Duration,
    /// Simulated time since the balancer and every webapp had booted.
    pub since_last_boot: std::time::Duration,
}

/// Runs `world` with `seed` and measures its first convergence (`None`: it never converged).
pub fn convergence(world: &World, seed: u64) -> Result<Option<Convergence>, EngineError> {
    let plan = Plan::build(world, seed);
    let trace = engines::turmoil::run(world, &plan, seed)?;
    let observations = observe::Observations::new(world, &plan, &trace);
    let needed = world.webapps().into_iter().chain([world.balancer().to_string()]);
    let last_boot = needed.map(|name| plan.start_at[&name]).max().unwrap_or_default();
    Ok(observations
        .converged_at()
        .map(|at| Convergence { since_start: at, since_last_boot: at.saturating_sub(last_boot) }))
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
