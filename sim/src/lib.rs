//! rollcall-sim: runs the rollcall stack in a seeded simulated world, or on real processes
//! ([`engines::real`]) to compare the two ([`calibrate`]).
//!
//! - [`Simulation`]: the one pipeline: a world (from a scenario file or built in code) and a
//!   seed -> plan -> engine -> trace -> observations -> invariants -> report.
//! - [`scenario`]: scenario files, parsed strictly into a [`world::World`].
//! - [`faults`]: the fault plan built from a world and a seed.
//! - [`engines`]: engines that run a world under a plan and record a [`trace::Trace`].
//! - [`observe`] and [`invariants`]: the observation model (from the trace alone) and the
//!   checks on it.
//! - [`report`]: the timeline, verdicts, figures and replay command a run prints.
#![forbid(unsafe_code)]

pub mod attacker;
pub mod calibrate;
pub mod coverage;
pub mod diff;
pub mod engines;
pub mod explore;
pub mod faults;
pub mod html;
pub mod invariants;
pub mod links;
pub mod metrics;
pub mod names;
pub mod observe;
pub mod outsiders;
pub mod report;
pub mod scenario;
pub mod shrink;
pub mod strategy;
pub mod swarm;
pub mod trace;
pub mod workload;
pub mod world;

use std::path::Path;
use std::time::Duration;

use engines::{EngineError, EngineKind};
use faults::{FaultSpec, Plan};
use observe::Observations;
use report::Report;
use rollcall::node::PlantedBugs;
use scenario::ScenarioError;
use trace::Trace;
use world::{Expectation, HostKind, InvariantSettings, World};

/// One finished run: its report, its full trace and what the invariants saw.
pub struct Run {
    /// What to print.
    pub report: Report,
    /// Every record.
    pub trace: Trace,
    /// The observation model built from the trace.
    pub observations: Observations,
}

/// How long one seed of a world takes to converge (every webapp in the balancer's rendered
/// backends): from the start of the run, and from the first boot of the last node it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Convergence {
    /// Simulated time from the start of the run.
    pub since_start: Duration,
    /// Simulated time since the balancer and every webapp had booted.
    pub since_last_boot: Duration,
}

/// A world, a seed, and how to name the run in replay commands.
#[derive(Clone, Debug)]
pub struct Simulation {
    world: World,
    file: String,
    seed: u64,
}

impl Simulation {
    /// The world of a scenario file, seed 1.
    pub fn from_file(path: &Path) -> Result<Self, ScenarioError> {
        let world = scenario::load(path)?;
        Ok(Simulation { world, file: path.display().to_string(), seed: 1 })
    }

    /// A world built in code; `name` stands for the file in replay lines.
    pub fn new(world: World, name: &str) -> Self {
        Simulation { world, file: name.to_string(), seed: 1 }
    }

    /// Runs with this seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Replaces the scenario's own faults (a `[swarm]` still draws more per seed).
    pub fn faults(mut self, faults: Vec<FaultSpec>) -> Self {
        self.world.faults = faults;
        self
    }

    /// Replaces the invariants checked.
    pub fn invariants(mut self, invariants: InvariantSettings) -> Self {
        self.world.invariants = invariants;
        self
    }

    /// Replaces the expected outcome.
    pub fn expect(mut self, expect: Expectation) -> Self {
        self.world.expect = expect;
        self
    }

    /// Runs the balancer's pipeline as `pipeline`, expecting what the scenario expects of it.
    pub fn pipeline(mut self, pipeline: rollcall::node::Pipeline) -> Self {
        self.world.set_pipeline(pipeline);
        self
    }

    /// Sets the simulated run length.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.world.duration = duration;
        self
    }

    /// Plants bugs in one node (the oracle's mutation tests).
    pub fn planted_bugs(mut self, host: &str, bugs: PlantedBugs) -> Self {
        for spec in &mut self.world.hosts {
            if let (true, HostKind::Node(node)) = (spec.name == host, &mut spec.kind) {
                node.bugs = bugs;
            }
        }
        self
    }

    /// The world, for anything the builder does not cover.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The world.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The world this seed runs: the scenario's faults and the swarm's draw for the seed.
    pub fn seeded_world(&self) -> World {
        self.world.for_seed(self.seed)
    }

    /// The seed.
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// The file (or name) replay commands name.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Runs the engine and returns the trace.
    pub fn trace(&self) -> Result<Trace, EngineError> {
        self.trace_of(&self.seeded_world())
    }

    fn trace_of(&self, world: &World) -> Result<Trace, EngineError> {
        let (plan, seed) = (Plan::build(world, self.seed), self.seed);
        match world.engine {
            EngineKind::Turmoil => engines::turmoil::run(world, &plan, seed),
            EngineKind::Event => engines::event::run(world, &plan, seed),
            EngineKind::Real => {
                let binary = engines::real::host_binary()?;
                engines::real::run(world, &plan, seed, Path::new(&self.file), &binary)
            }
        }
    }

    /// Runs on `engine` instead of the world's own.
    pub fn engine(mut self, engine: EngineKind) -> Self {
        self.world.engine = engine;
        self
    }

    /// Runs and checks every invariant the world enables.
    pub fn run(&self) -> Result<Run, EngineError> {
        let world = self.seeded_world();
        let refused = match world.engine {
            EngineKind::Event => engines::event::unsupported(&world),
            EngineKind::Real => engines::real::unsupported(&world),
            EngineKind::Turmoil => Vec::new(),
        };
        if !refused.is_empty() {
            return Err(EngineError::Unsupported { engine: world.engine.name(), what: refused.join("; ") });
        }
        if world.invariants.valid_config && world.trace_scope.drops_balancer_loads {
            let scope = "[trace] balancer_loads = false";
            return Err(EngineError::UnrecordedForInvariant { invariant: "valid-config", scope });
        }
        let trace = self.trace_of(&world)?;
        let observations = Observations::new(&trace);
        let (verdicts, figures) = invariants::check(&world, &observations);
        let report = Report::new(&world, &self.file, self.seed, &trace, verdicts, figures);
        Ok(Run { report, trace, observations })
    }

    /// Runs and measures the first convergence (`None`: it never converged).
    pub fn convergence(&self) -> Result<Option<Convergence>, EngineError> {
        let observations = Observations::new(&self.trace()?);
        let needed = observations.webapps.iter().chain([&observations.balancer]);
        let first_boot = |name: &String| {
            observations.host_up.get(name).and_then(|up| up.0.first()).map(|(start, _)| *start)
        };
        let last_boot = needed.filter_map(first_boot).max().unwrap_or_default();
        Ok(observations
            .converged_at()
            .map(|at| Convergence { since_start: at, since_last_boot: at.saturating_sub(last_boot) }))
    }
}
