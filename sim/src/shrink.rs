//! Shrinking: the smallest fault plan that still contradicts the same invariant with the
//! same seed, written out as a scenario file that replays it.
//!
//! Smaller means, in this order: fewer faults, then shorter windows, then weaker faults
//! (lower loss, less latency, fewer hosts cut off or impaired). Each pass keeps a candidate
//! only if its run still contradicts the target invariant; the passes repeat until none
//! makes progress or the run budget is spent. The seed stays: it fixes the engine's choices
//! and the start order, so only the plan changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Simulation;
use crate::faults::{FaultKind, FaultSpec};
use crate::world::{HostKind, World};
use rollcall::host::{Disk, RealDisk};

/// Most runs one shrink may spend.
pub const SHRINK_RUNS_MAX: usize = 400;
/// Windows are not shortened below this.
const WINDOW_MIN: Duration = Duration::from_millis(100);
/// Extra latency is not lowered below this.
const LATENCY_MIN: Duration = Duration::from_millis(1);
/// Loss rates are not lowered below this.
const LOSS_MIN: f64 = 0.01;

/// Why a shrink could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The seed's outcome is the expected one.
    #[error("seed {0} is as expected: no violation to shrink")]
    NothingToShrink(u64),
    /// The target invariant is not contradicted by the seed.
    #[error("seed {seed} does not contradict '{invariant}' (it contradicts: {found})")]
    NotViolated { seed: u64, invariant: String, found: String },
    /// `--invariant` names no invariant rollcall has.
    #[error("unknown invariant '{0}' (expected one of: {names})", names = crate::invariants::NAMES.join(", "))]
    UnknownInvariant(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] crate::engines::EngineError),
}

/// The result of a shrink.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The invariant kept contradicted.
    pub invariant: String,
    /// The seed.
    pub seed: u64,
    /// The seed's plan before shrinking.
    pub original: Vec<FaultSpec>,
    /// The smallest plan found.
    pub faults: Vec<FaultSpec>,
    /// The world with that plan (and no swarm).
    pub world: World,
    /// Every invariant the smallest plan contradicts (the target among them).
    pub violated: Vec<String>,
    /// Runs spent.
    pub runs: usize,
}

/// Shrinks the plan of `simulation`'s seed; `target` names the invariant to keep
/// contradicted (default: the first one contradicted against the scenario's expectation).
pub fn shrink(simulation: &Simulation, target: Option<&str>) -> Result<Shrunk, ShrinkError> {
    let seed = simulation.seed_value();
    if let Some(name) = target.filter(|name| !crate::invariants::NAMES.contains(name)) {
        return Err(ShrinkError::UnknownInvariant(name.to_string()));
    }
    let run = simulation.run()?;
    let contradicted: Vec<String> =
        run.report.verdicts.iter().filter(|v| v.is_contradicted()).map(|v| v.name.clone()).collect();
    let unexpected = contradicted.iter().find(|name| !run.report.expected_violations.contains(*name));
    let invariant = match target {
        Some(name) if contradicted.iter().any(|c| c == name) => name.to_string(),
        Some(name) => {
            let found = if contradicted.is_empty() { "none".into() } else { contradicted.join(", ") };
            return Err(ShrinkError::NotViolated { seed, invariant: name.into(), found });
        }
        None => unexpected.cloned().ok_or(ShrinkError::NothingToShrink(seed))?,
    };
    let world = simulation.seeded_world();
    let base = Simulation::new(world.clone(), simulation.file()).seed(seed);
    let mut search = Search { base, invariant: invariant.clone(), runs: 1 };
    let original = world.faults.clone();
    let mut faults = original.clone();
    loop {
        let before = faults.clone();
        faults = search.fewer(faults)?;
        faults = search.shorter(faults)?;
        faults = search.weaker(faults)?;
        if faults == before || search.runs >= SHRINK_RUNS_MAX {
            break;
        }
    }
    let mut world = world;
    world.faults = faults.clone();
    let run = Simulation::new(world.clone(), simulation.file()).seed(seed).run()?;
    let violated =
        run.report.verdicts.iter().filter(|v| v.is_contradicted()).map(|v| v.name.clone()).collect();
    Ok(Shrunk { invariant, seed, original, faults, world, violated, runs: search.runs + 1 })
}

struct Search {
    base: Simulation,
    invariant: String,
    runs: usize,
}

impl Search {
    /// Whether `faults` still contradict the invariant (false once the budget is spent).
    fn keeps(&mut self, faults: &[FaultSpec]) -> Result<bool, ShrinkError> {
        if self.runs >= SHRINK_RUNS_MAX {
            return Ok(false);
        }
        self.runs += 1;
        let run = self.base.clone().faults(faults.to_vec()).run()?;
        Ok(run.report.verdict(&self.invariant).is_some_and(|v| v.is_contradicted()))
    }

    /// Drops faults one at a time, last first, while the violation stays.
    fn fewer(&mut self, mut faults: Vec<FaultSpec>) -> Result<Vec<FaultSpec>, ShrinkError> {
        let mut index = faults.len();
        while index > 0 {
            index -= 1;
            let mut candidate = faults.clone();
            candidate.remove(index);
            if self.keeps(&candidate)? {
                faults = candidate;
            }
        }
        Ok(faults)
    }

    /// Halves each window while the violation stays.
    fn shorter(&mut self, mut faults: Vec<FaultSpec>) -> Result<Vec<FaultSpec>, ShrinkError> {
        for index in 0..faults.len() {
            while let Some(lasting) = faults[index].lasting.filter(|l| *l > WINDOW_MIN) {
                let mut candidate = faults.clone();
                let step = WINDOW_MIN.as_millis() as u64;
                let halved = Duration::from_millis((lasting.as_millis() as u64 / 2 / step * step).max(step));
                candidate[index].lasting = Some(halved);
                if !self.keeps(&candidate)? {
                    break;
                }
                faults = candidate;
            }
        }
        Ok(faults)
    }

    /// Replaces each fault by its first single-step weakening that keeps the violation,
    /// again and again.
    fn weaker(&mut self, mut faults: Vec<FaultSpec>) -> Result<Vec<FaultSpec>, ShrinkError> {
        for index in 0..faults.len() {
            'weaken: loop {
                let mut option = 0;
                while let Some(kind) = weaken(&faults[index].kind, option) {
                    let mut candidate = faults.clone();
                    candidate[index].kind = kind;
                    if self.keeps(&candidate)? {
                        faults = candidate;
                        continue 'weaken;
                    }
                    option += 1;
                }
                break;
            }
        }
        Ok(faults)
    }
}

/// The `option`-th single-step weakening of a fault (`None`: no more options).
fn weaken(kind: &FaultKind, option: usize) -> Option<FaultKind> {
    let without = |list: &[String], i: usize| -> Vec<String> {
        list.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n.clone()).collect()
    };
    match kind {
        FaultKind::Loss { hosts, rate } => {
            let mut options: Vec<FaultKind> = Vec::new();
            if *rate / 2.0 >= LOSS_MIN {
                options.push(FaultKind::Loss {
                    hosts: hosts.clone(),
                    rate: (rate / 2.0 * 100.0).round() / 100.0,
                });
            }
            if hosts.len() > 1 {
                options.extend(
                    (0..hosts.len()).map(|i| FaultKind::Loss { hosts: without(hosts, i), rate: *rate }),
                );
            }
            options.into_iter().nth(option)
        }
        FaultKind::Latency { hosts, extra } => {
            let mut options: Vec<FaultKind> = Vec::new();
            if *extra >= LATENCY_MIN * 2 {
                options.push(FaultKind::Latency { hosts: hosts.clone(), extra: *extra / 2 });
            }
            if hosts.len() > 1 {
                options.extend(
                    (0..hosts.len()).map(|i| FaultKind::Latency { hosts: without(hosts, i), extra: *extra }),
                );
            }
            options.into_iter().nth(option)
        }
        FaultKind::Partition { a, b, oneway } => {
            let mut options: Vec<FaultKind> = Vec::new();
            if !oneway {
                // A one-way cut is weaker than a two-way one.
                options.push(FaultKind::Partition { a: a.clone(), b: b.clone(), oneway: true });
                options.push(FaultKind::Partition { a: b.clone(), b: a.clone(), oneway: true });
            }
            if a.len() > 1 {
                options.extend((0..a.len()).map(|i| FaultKind::Partition {
                    a: without(a, i),
                    b: b.clone(),
                    oneway: *oneway,
                }));
            }
            if b.len() > 1 {
                options.extend((0..b.len()).map(|i| FaultKind::Partition {
                    a: a.clone(),
                    b: without(b, i),
                    oneway: *oneway,
                }));
            }
            options.into_iter().nth(option)
        }
        _ => None,
    }
}

/// Where `shrink` writes by default: beside the scenario (so its relative template paths
/// still hold), named after it and the seed.
pub fn default_output(scenario: &Path, seed: u64, invariant: &str) -> PathBuf {
    let stem = scenario.file_stem().map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
    scenario.with_file_name(format!("{stem}-seed{seed}-{invariant}.toml"))
}

/// The scenario file that replays `shrunk`: the original file's tables, without `[swarm]`,
/// with the shrunk plan as `[[fault]]`s, the planted bugs of the world, and an `[expect]`
/// that names the violation. Written atomically.
pub fn write_scenario(scenario: &Path, shrunk: &Shrunk, replay: &str, out: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(scenario).map_err(|e| format!("{}: {e}", scenario.display()))?;
    let mut table: toml::Table = text.parse().map_err(|e| format!("{}: {e}", scenario.display()))?;
    table.remove("swarm");
    let name = format!("{}-seed{}-{}", shrunk.world.name, shrunk.seed, shrunk.invariant);
    table.insert("name".into(), name.into());
    table.insert(
        "description".into(),
        format!(
            "{} (shrunk: {} of {} faults)",
            shrunk.world.description,
            shrunk.faults.len(),
            shrunk.original.len()
        )
        .into(),
    );
    let faults: Vec<toml::Value> =
        shrunk.faults.iter().map(|f| toml::Value::Table(fault_table(f, shrunk.world.duration))).collect();
    table.insert("fault".into(), toml::Value::Array(faults));
    let mut expect = toml::Table::new();
    let violated = shrunk.violated.iter().map(|name| name.clone().into()).collect();
    expect.insert("violated".into(), toml::Value::Array(violated));
    expect.insert("allow_unchecked".into(), true.into());
    table.insert("expect".into(), toml::Value::Table(expect));
    plant_bugs(&mut table, &shrunk.world);
    let (from, to) = (scenario.parent().unwrap_or(Path::new(".")), out.parent().unwrap_or(Path::new(".")));
    if from.canonicalize().ok() != to.canonicalize().ok() {
        anchor_templates(&mut table, from);
    }
    let mut node = toml::Table::new();
    node.insert("pipeline".into(), shrunk.world.pipeline().name().into());
    table.insert("node".into(), toml::Value::Table(node));
    table.insert("engine".into(), shrunk.world.engine.name().into());
    let body = toml::to_string(&table).map_err(|e| e.to_string())?;
    let header = format!(
        "# Shrunk by `rollcall-sim shrink` from {} seed {}: {} of {} faults, {} runs.\n# It contradicts `{}` (and expects every invariant it contradicts, so `run` exits 0\n# while the bug is there); replay it with:\n#   {replay}\n\n",
        scenario.display(),
        shrunk.seed,
        shrunk.faults.len(),
        shrunk.original.len(),
        shrunk.runs,
        shrunk.invariant,
    );
    RealDisk
        .write_atomic(out, format!("{header}{body}").as_bytes())
        .map_err(|e| format!("{}: {e}", out.display()))
}

/// Template paths are relative to the scenario's directory: written elsewhere, they become
/// absolute.
fn anchor_templates(table: &mut toml::Table, base: &Path) {
    let Some(toml::Value::Array(hosts)) = table.get_mut("host") else { return };
    for host in hosts.iter_mut().filter_map(toml::Value::as_table_mut) {
        if let Some(template) = host.get("template").and_then(|t| t.as_str()) {
            let path = base.join(template);
            let path = path.canonicalize().unwrap_or(path);
            host.insert("template".into(), path.display().to_string().into());
        }
    }
}

fn plant_bugs(table: &mut toml::Table, world: &World) {
    let Some(toml::Value::Array(hosts)) = table.get_mut("host") else { return };
    for host in hosts.iter_mut() {
        let Some(host) = host.as_table_mut() else { continue };
        let name = host.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
        let spec = world.hosts.iter().find(|h| h.name == name).map(|h| &h.kind);
        if let Some(HostKind::Node(node)) = spec {
            let bugs: Vec<toml::Value> = node.bugs.planted().into_iter().map(Into::into).collect();
            if !bugs.is_empty() {
                host.insert("planted_bugs".into(), toml::Value::Array(bugs));
            }
        }
    }
}

fn seconds(at: Duration) -> toml::Value {
    let ms = at.as_millis() as u64;
    if ms % 1000 == 0 {
        toml::Value::Integer((ms / 1000) as i64)
    } else {
        toml::Value::Float(ms as f64 / 1000.0)
    }
}

fn names(list: &[String]) -> toml::Value {
    toml::Value::Array(list.iter().map(|n| n.clone().into()).collect())
}

/// A fault in scenario syntax (the inverse of the scenario parser's `resolve_fault`).
pub fn fault_table(fault: &FaultSpec, duration: Duration) -> toml::Table {
    let mut t = toml::Table::new();
    let lasting = fault.lasting.unwrap_or(duration.saturating_sub(fault.at));
    let kind = match windowed_keys(&fault.kind, &mut t) {
        Some(kind) => {
            t.insert("for_s".into(), seconds(lasting));
            kind
        }
        None => instant_keys(fault, &mut t),
    };
    t.insert("at_s".into(), seconds(fault.at));
    t.insert("kind".into(), kind.into());
    t
}

/// The keys of a fault with a `for_s` window, and its kind name (`None`: another fault).
fn windowed_keys(kind: &FaultKind, t: &mut toml::Table) -> Option<&'static str> {
    let mut put = |key: &str, value: toml::Value| {
        t.insert(key.into(), value);
    };
    Some(match kind {
        FaultKind::Partition { a, b, oneway: false } => {
            put("a", names(a));
            put("b", names(b));
            "partition"
        }
        FaultKind::Partition { a, b, oneway: true } => {
            put("from", names(a));
            put("to", names(b));
            "partition-oneway"
        }
        FaultKind::Loss { hosts, rate } => {
            put("rate", toml::Value::Float(*rate));
            put("hosts", names(hosts));
            "loss"
        }
        FaultKind::Latency { hosts, extra } => {
            put("extra_ms", toml::Value::Integer(extra.as_millis() as i64));
            put("hosts", names(hosts));
            "latency"
        }
        FaultKind::Stall { host, service } => {
            put("host", host.clone().into());
            put("service", service.clone().into());
            "stall"
        }
        FaultKind::Reload { host, every } => {
            put("host", host.clone().into());
            put("every_ms", toml::Value::Integer(every.as_millis() as i64));
            "reload"
        }
        _ => return None,
    })
}

/// The keys of a fault without a `for_s` window (an instant, or one with its own restart
/// key), and its kind name.
fn instant_keys(fault: &FaultSpec, t: &mut toml::Table) -> &'static str {
    let mut put = |key: &str, value: toml::Value| {
        t.insert(key.into(), value);
    };
    match &fault.kind {
        FaultKind::HostCrash { host, mid_render } => {
            put("host", host.clone().into());
            if let Some(lasting) = fault.lasting {
                put("restart_after_s", seconds(lasting));
            }
            if *mid_render {
                put("during", "render".into());
            }
            "host-crash"
        }
        FaultKind::Leave { host } => {
            put("host", host.clone().into());
            if let Some(lasting) = fault.lasting {
                put("rejoin_after_s", seconds(lasting));
            }
            "leave"
        }
        FaultKind::ServiceCrash { host, service } => {
            put("host", host.clone().into());
            put("service", service.clone().into());
            "service-crash"
        }
        FaultKind::Stop { host } => {
            put("host", host.clone().into());
            "stop"
        }
        FaultKind::ForceLeave { host, target, prune } => {
            put("host", host.clone().into());
            put("target", target.clone().into());
            put("prune", (*prune).into());
            "force-leave"
        }
        FaultKind::Tags { host, set, delete } => {
            put("host", host.clone().into());
            let set: toml::Table = set.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            put("set", toml::Value::Table(set));
            put("delete", names(delete));
            "tags"
        }
        FaultKind::Keys { hosts, op, key } => {
            put("hosts", names(hosts));
            put("op", op.name().into());
            put("key", key.clone().into());
            "keys"
        }
        FaultKind::Partition { .. }
        | FaultKind::Loss { .. }
        | FaultKind::Latency { .. }
        | FaultKind::Stall { .. }
        | FaultKind::Reload { .. } => unreachable!("windowed_keys writes these"),
    }
}
