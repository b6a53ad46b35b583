//! Exploration: many seeds of one scenario, each run deterministic, run on a few threads,
//! summed into violations by invariant, the slowest convergence, the seeds to replay and
//! the coverage of the cores' states.
//!
//! A summary depends only on the seeds run, never on the threads or shards that ran them:
//! outcomes are kept per seed and summed in seed order. Shards write their outcomes as JSON
//! and [`Exploration::merge`] sums them as if one process had run every seed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::Simulation;
use crate::coverage::{self, Reached};

/// Seeds listed for replay in a summary (every unexpected seed stays in the outcomes).
pub const REPLAY_LISTED_MAX: usize = 10;
/// Most threads one exploration runs.
pub const JOBS_MAX: usize = 256;

/// What one seed did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// Whether the verdicts are the ones the scenario expects.
    pub as_expected: bool,
    /// The engine could not run it (the run counts as unexpected).
    pub error: Option<String>,
    /// Why the verdicts are not as expected.
    pub mismatches: Vec<String>,
    /// Contradicted invariants, with the hosts their violations are about.
    pub violated: BTreeMap<String, BTreeSet<String>>,
    /// Invariants that had something to check.
    pub checked: Vec<String>,
    /// Faults in the seed's plan (the scenario's and the swarm's).
    pub faults: usize,
    /// First time every webapp was in the balancer's rendered backends.
    pub converged_ms: Option<u64>,
    /// States and transitions reached.
    pub coverage: Reached,
    /// The command that replays it.
    pub replay: String,
}

/// How often one invariant was contradicted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Seeds in which it was contradicted.
    pub seeds: u64,
    /// Of those, seeds whose outcome was not the expected one.
    pub unexpected: u64,
    /// The lowest such seed.
    pub first_seed: u64,
}

/// One row of the coverage table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoverageRow {
    /// `fault`, `gossip`, `supervisor`...
    pub area: String,
    /// The state, transition or fault kind.
    pub item: String,
    /// Seeds that reached it.
    pub seeds: u64,
    /// Times it was reached in all.
    pub count: u64,
}

/// What an exploration found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Seeds run.
    pub seeds: u64,
    /// Seeds whose outcome was the expected one.
    pub as_expected: u64,
    /// Seeds whose outcome was not, lowest first.
    pub unexpected_seeds: Vec<u64>,
    /// Contradictions by invariant.
    pub violations: BTreeMap<String, Tally>,
    /// Seeds in which each invariant had something to check.
    pub checked: BTreeMap<String, u64>,
    /// Invariants the scenario enables that no seed checked (the exploration fails).
    pub never_checked: Vec<String>,
    /// The seed that took longest to converge, and how long (simulated ms).
    pub slowest_convergence: Option<(u64, u64)>,
    /// Seeds that never converged.
    pub never_converged: Vec<u64>,
    /// Replay commands of the first unexpected seeds.
    pub replay: Vec<String>,
    /// Every coverage item, reached or not.
    pub coverage: Vec<CoverageRow>,
}

/// The outcomes of an exploration (or a shard of one), as `--json` writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exploration {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file, as given.
    pub file: String,
    /// The invariants the scenario enables.
    pub invariants: Vec<String>,
    /// The balancer's pipeline and the engine (`fixed turmoil`): shards of different runs
    /// do not merge.
    pub run: String,
    /// The commit that ran it: a seed replays only on the code that ran it.
    pub commit: String,
    /// A fingerprint of everything the scenario asked for (hosts, templates, faults,
    /// invariants): shards of two versions of a file do not merge.
    pub world: String,
    /// The whole seed range explored, first and last.
    pub seeds: (u64, u64),
    /// Which shard of the range this is, `(index, count)` from 1; `(1, 1)` for the whole.
    pub shard: (u64, u64),
    /// Seed outcomes, by seed.
    pub outcomes: Vec<SeedOutcome>,
}

impl Exploration {
    /// The outcomes of `simulation`'s seeds; `file` names the scenario as given.
    pub fn new(simulation: &Simulation, file: &str, outcomes: Vec<SeedOutcome>) -> Self {
        let world = simulation.world();
        let enabled = crate::invariants::NAMES.iter().filter(|name| world.invariants.enables(name));
        let first = outcomes.iter().map(|o| o.seed).min().unwrap_or(1);
        let last = outcomes.iter().map(|o| o.seed).max().unwrap_or(first);
        Exploration {
            scenario: world.name.clone(),
            file: file.to_string(),
            invariants: enabled.map(|name| name.to_string()).collect(),
            run: format!("{} {}", world.pipeline().name(), world.engine.name()),
            commit: crate::report::COMMIT.to_string(),
            world: fingerprint(world),
            seeds: (first, last),
            shard: (1, 1),
            outcomes,
        }
    }

    /// Marks this as shard `shard` (`(index, count)`) of the seed range `seeds`.
    pub fn sharded(mut self, seeds: (u64, u64), shard: (u64, u64)) -> Self {
        self.seeds = seeds;
        self.shard = shard;
        self
    }

    /// The summary of every outcome.
    pub fn summary(&self) -> Summary {
        summarize(&self.scenario, &self.invariants, &self.outcomes)
    }

    /// Several shards' outcomes as one exploration. Shards must come from one scenario,
    /// invariant set, pipeline and engine; a seed in two shards must have one outcome.
    pub fn merge(parts: Vec<Exploration>) -> Result<Exploration, String> {
        check_shards(&parts)?;
        let mut parts = parts.into_iter();
        let Some(mut merged) = parts.next() else { return Err("nothing to merge".into()) };
        merged.shard = (1, 1);
        for part in parts {
            let key = |e: &Exploration| (e.scenario.clone(), e.invariants.clone(), e.run.clone());
            if key(&part) != key(&merged) {
                return Err(format!(
                    "shards of different runs: '{}' ({}, {}) and '{}' ({}, {})",
                    merged.scenario,
                    merged.run,
                    merged.invariants.join(","),
                    part.scenario,
                    part.run,
                    part.invariants.join(",")
                ));
            }
            merged.outcomes.extend(part.outcomes);
        }
        merged.outcomes.sort_by_key(|o| o.seed);
        if let Some(pair) = merged.outcomes.windows(2).find(|w| w[0].seed == w[1].seed && w[0] != w[1]) {
            return Err(format!("seed {} has two different outcomes", pair[0].seed));
        }
        merged.outcomes.dedup_by_key(|o| o.seed);
        Ok(merged)
    }
}

/// What `world` asks for, as a short hex string: the same wherever its file lies and however
/// its path is spelled (a template is told by its text, not its path), and different when
/// only its keys differ (their Debug form hides them).
fn fingerprint(world: &crate::world::World) -> String {
    let mut world = world.clone();
    let mut keys = Vec::new();
    for host in &mut world.hosts {
        if let crate::world::HostKind::Node(node) = &mut host.kind {
            if let rollcall::node::Role::Balancer { template_file, .. } = &mut node.role {
                template_file.clear();
            }
            keys.extend(node.gossip.wire.keyring.iter().flat_map(|ring| ring.encoded()));
        }
    }
    format!("{:016x}", rollcall::host::stable_hash(format!("{world:?}{keys:?}").as_bytes()))
}

/// Shards merge only when they come from one commit, one version of the scenario and one
/// seed range, and are every shard of it, once each: a sum of anything else would report
/// seeds that were never run, or run on other code, as explored.
fn check_shards(parts: &[Exploration]) -> Result<(), String> {
    let Some(first) = parts.first() else { return Err("nothing to merge".into()) };
    for part in parts {
        if part.commit != first.commit {
            return Err(format!("shards of different commits: {} and {}", first.commit, part.commit));
        }
        if part.world != first.world {
            return Err(format!(
                "shards of different scenarios: {} and {} differ in what they ask for",
                first.file, part.file
            ));
        }
        if (part.seeds, part.shard.1) != (first.seeds, first.shard.1) {
            return Err(format!(
                "shards of different explorations: seeds {}..{} in {} shards and seeds {}..{} in {}",
                first.seeds.0, first.seeds.1, first.shard.1, part.seeds.0, part.seeds.1, part.shard.1
            ));
        }
    }
    let count = first.shard.1;
    parts.iter().try_for_each(check_shard_outcomes)?;
    let given: std::collections::BTreeSet<u64> = parts.iter().map(|part| part.shard.0).collect();
    if given.len() != parts.len() {
        return Err("a shard is given twice".into());
    }
    let missing: Vec<String> =
        (1..=count).filter(|index| !given.contains(index)).map(|index| format!("{index}/{count}")).collect();
    if !missing.is_empty() {
        return Err(format!("shard {} missing: the sum would leave its seeds out", missing.join(", ")));
    }
    Ok(())
}

/// A shard's outcomes are its share of the range (every `count`-th seed from its own), in
/// order from the first: all of it, or, if `--stop-after` stopped it, the seeds up to an
/// unexpected one. Anything else is a file that was cut or edited.
fn check_shard_outcomes(part: &Exploration) -> Result<(), String> {
    let ((first, last), (index, count)) = (part.seeds, part.shard);
    let name = format!("shard {index}/{count} ({})", part.file);
    if count == 0 || index == 0 || index > count || first > last {
        return Err(format!("{name}: seeds {first}..{last} in shard {index} of {count} is no shard"));
    }
    let share =
        (first.saturating_add(index - 1)..=last).step_by(usize::try_from(count).unwrap_or(usize::MAX));
    let mut outcomes = part.outcomes.iter();
    for seed in share {
        let Some(outcome) = outcomes.next() else {
            let stopped = part.outcomes.last().is_some_and(|last| !last.as_expected);
            if stopped {
                return Ok(());
            }
            return Err(format!("{name}: seed {seed} and later seeds of its share have no outcome"));
        };
        if outcome.seed != seed {
            return Err(format!("{name}: seed {} where seed {seed} of its share belongs", outcome.seed));
        }
    }
    match outcomes.next() {
        Some(extra) => Err(format!("{name}: seed {} is not in its share", extra.seed)),
        None => Ok(()),
    }
}

/// Runs one seed.
pub fn run_seed(simulation: &Simulation, seed: u64) -> SeedOutcome {
    let simulation = simulation.clone().seed(seed);
    let replay = crate::report::replay_command(simulation.file(), seed, simulation.world());
    let faults = simulation.seeded_world().faults.len();
    match simulation.run() {
        Ok(run) => SeedOutcome {
            seed,
            as_expected: run.report.as_expected,
            error: None,
            mismatches: run.report.mismatches.clone(),
            violated: run
                .report
                .verdicts
                .iter()
                .filter(|v| v.is_contradicted())
                .map(|v| (v.name.clone(), v.hosts.clone()))
                .collect(),
            checked: run
                .report
                .verdicts
                .iter()
                .filter(|v| !v.is_unchecked())
                .map(|v| v.name.clone())
                .collect(),
            faults,
            converged_ms: run.observations.converged_at().map(|at| at.as_millis() as u64),
            coverage: coverage::of(&run.trace),
            replay,
        },
        Err(error) => SeedOutcome {
            seed,
            as_expected: false,
            error: Some(error.to_string()),
            mismatches: Vec::new(),
            violated: BTreeMap::new(),
            checked: Vec::new(),
            faults,
            converged_ms: None,
            coverage: Reached::new(),
            replay,
        },
    }
}

/// Runs `seeds` on `jobs` threads; `progress` hears of each outcome as it ends. Stops
/// handing out seeds once `stop_after` unexpected outcomes were seen (seeds already running
/// finish). Outcomes come back in seed order.
pub fn explore(
    simulation: &Simulation,
    seeds: &[u64],
    jobs: usize,
    stop_after: Option<u64>,
    mut progress: impl FnMut(&SeedOutcome),
) -> Vec<SeedOutcome> {
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (sender, receiver) = mpsc::channel();
    let mut outcomes = Vec::with_capacity(seeds.len());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, JOBS_MAX).min(seeds.len().max(1)) {
            let (sender, next, stop) = (sender.clone(), &next, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed) as usize) else { break };
                    if sender.send(run_seed(simulation, seed)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut unexpected = 0;
        for outcome in receiver {
            progress(&outcome);
            unexpected += u64::from(!outcome.as_expected);
            if stop_after.is_some_and(|most| unexpected >= most) {
                stop.store(true, Ordering::Relaxed);
            }
            outcomes.push(outcome);
        }
    });
    outcomes.sort_by_key(|o| o.seed);
    // Threads run ahead of the stop: keep the seeds up to the one that made it, so the
    // result does not depend on the number of jobs (every lower seed was handed out first).
    if let Some(most) = stop_after.filter(|most| *most > 0) {
        let last = outcomes.iter().filter(|o| !o.as_expected).nth(most as usize - 1).map(|o| o.seed);
        if let Some(last) = last {
            outcomes.retain(|o| o.seed <= last);
        }
    }
    outcomes
}

fn summarize(scenario: &str, enabled: &[String], outcomes: &[SeedOutcome]) -> Summary {
    let mut violations: BTreeMap<String, Tally> = BTreeMap::new();
    let mut checked: BTreeMap<String, u64> = enabled.iter().map(|name| (name.clone(), 0)).collect();
    let mut reached: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for outcome in outcomes {
        for name in outcome.violated.keys() {
            let tally = violations
                .entry(name.clone())
                .or_insert(Tally { first_seed: outcome.seed, ..Tally::default() });
            tally.seeds += 1;
            tally.unexpected += u64::from(!outcome.as_expected);
        }
        for name in &outcome.checked {
            *checked.entry(name.clone()).or_default() += 1;
        }
        for (item, count) in &outcome.coverage {
            let entry = reached.entry(item).or_default();
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(*count);
        }
    }
    let unexpected: Vec<&SeedOutcome> = outcomes.iter().filter(|o| !o.as_expected).collect();
    let slowest = outcomes
        .iter()
        .filter_map(|o| o.converged_ms.map(|ms| (o.seed, ms)))
        .max_by_key(|(seed, ms)| (*ms, std::cmp::Reverse(*seed)));
    let mut coverage = Vec::new();
    for (area, items) in coverage::ITEMS {
        for item in *items {
            let (seeds, count) = reached.get(format!("{area}:{item}").as_str()).copied().unwrap_or_default();
            coverage.push(CoverageRow { area: area.to_string(), item: item.to_string(), seeds, count });
        }
    }
    Summary {
        scenario: scenario.to_string(),
        seeds: outcomes.len() as u64,
        as_expected: outcomes.len() as u64 - unexpected.len() as u64,
        unexpected_seeds: unexpected.iter().map(|o| o.seed).collect(),
        violations,
        never_checked: checked
            .iter()
            .filter(|(_, seeds)| **seeds == 0)
            .map(|(name, _)| name.clone())
            .collect(),
        checked,
        slowest_convergence: slowest,
        never_converged: outcomes.iter().filter(|o| o.converged_ms.is_none()).map(|o| o.seed).collect(),
        replay: unexpected.iter().take(REPLAY_LISTED_MAX).map(|o| o.replay.clone()).collect(),
        coverage,
    }
}

impl Summary {
    /// Whether every seed was as expected and every invariant checked something.
    pub fn passed(&self) -> bool {
        self.unexpected_seeds.is_empty() && self.never_checked.is_empty()
    }

    /// The summary as text: verdict counts, then the coverage table.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "scenario {}: {} seeds, {} as expected, {} not\n",
            self.scenario,
            self.seeds,
            self.as_expected,
            self.unexpected_seeds.len()
        );
        if !self.violations.is_empty() {
            out.push_str(&format!(
                "{:<18} {:>8} {:>11} {:>11}\n",
                "violated", "seeds", "unexpected", "first seed"
            ));
            for (name, tally) in &self.violations {
                out.push_str(&format!(
                    "{name:<18} {:>8} {:>11} {:>11}\n",
                    tally.seeds, tally.unexpected, tally.first_seed
                ));
            }
        }
        let checked: Vec<String> =
            self.checked.iter().map(|(name, seeds)| format!("{name} {seeds}")).collect();
        out.push_str(&format!("seeds that checked each invariant: {}\n", checked.join(", ")));
        if !self.never_checked.is_empty() {
            out.push_str(&format!(
                "NEVER CHECKED (no seed had anything to check): {}\n",
                self.never_checked.join(", ")
            ));
        }
        if let Some((seed, ms)) = self.slowest_convergence {
            out.push_str(&format!("slowest convergence: seed {seed}, {:.1} s\n", ms as f64 / 1000.0));
        }
        if !self.never_converged.is_empty() {
            out.push_str(&format!(
                "never converged: {} seeds, first {:?}\n",
                self.never_converged.len(),
                &self.never_converged[..self.never_converged.len().min(REPLAY_LISTED_MAX)]
            ));
        }
        for replay in &self.replay {
            out.push_str(&format!("replay: {replay}\n"));
        }
        out.push_str(&format!(
            "coverage ({} seeds)\n{:<11} {:<22} {:>8} {:>10}\n",
            self.seeds, "area", "item", "seeds", "count"
        ));
        for row in &self.coverage {
            let mark = if row.seeds == 0 { "  (never reached)" } else { "" };
            out.push_str(&format!(
                "{:<11} {:<22} {:>8} {:>10}{mark}\n",
                row.area, row.item, row.seeds, row.count
            ));
        }
        out
    }
}
