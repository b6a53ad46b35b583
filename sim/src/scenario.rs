//! Scenario files (TOML): topology, start order, faults, invariants and the expected outcome.
//!
//! Parsing is strict: an unknown key, a wrong type, a missing field or an unknown host is a
//! one-line error naming the file, line and column. The parsed file is resolved into a
//! [`World`](crate::world::World), which the engines run; nothing downstream sees TOML.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::attacker::AttackerSpec;
use crate::faults::{FaultKind, FaultSpec};
use crate::swarm::{SWARM_FAULTS_MAX, Swarm, SwarmKind};
use crate::world::{
    ClientSpec, Expectation, HostKind, HostSpec, InvariantSettings, SeededViolation, SupervisionChecks, World,
};
use rollcall::gossip::keyring::{Key, KeyOp, Keyring, KeyringError, Wire};
use rollcall::gossip::{GossipConfig, JoinMode, Profile};
use rollcall::node::{GossipSettings, NodeSpec, Pipeline, PlantedBugs, Role};
use rollcall::render::driver::RenderOptions;
use rollcall::render::quiescence::Wait;

/// A scenario file could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ScenarioError {
    /// The scenario file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// The names of the invariants a scenario can check.
pub const INVARIANT_NAMES: [&str; 16] = crate::invariants::NAMES;

/// Longest simulated run: one day.
pub const RUN_SECONDS_MAX: f64 = 86_400.0;
/// Longest interval, timeout or delay a scenario may set, in milliseconds: one hour.
pub const INTERVAL_MS_MAX: u64 = 3_600_000;
/// Shortest period of a `reload` fault: bounds the plan's steps per simulated second.
pub const RELOAD_EVERY_MS_MIN: u64 = 100;
/// Period of a `reload` fault without `every_ms`.
pub const RELOAD_EVERY_MS_DEFAULT: u64 = 1000;
/// Coarsest simulation step, in milliseconds: a coarser one would skip protocol timeouts.
pub const TICK_MS_MAX: u64 = 100;
/// Largest bound in rounds.
pub const ROUNDS_MAX: u32 = 10_000;
/// `[swarm] for_s` when unset, and its smallest minimum (the draw's time step).
const SWARM_FOR_S_DEFAULT: [f64; 2] = [1.0, 20.0];
const SWARM_FOR_S_MIN: f64 = 0.1;
/// `[swarm] faults`, `loss` and `latency_ms` when unset.
const SWARM_FAULTS_DEFAULT: [u32; 2] = [1, 4];
const SWARM_LOSS_DEFAULT: [f64; 2] = [0.05, 0.5];
const SWARM_LATENCY_MS_DEFAULT: [u64; 2] = [10, 300];
/// Longest host name (a DNS label).
pub const HOST_NAME_BYTES_MAX: usize = 63;

const DEFAULT_TICK_MS: u64 = 1;
/// Serf's default `reconnect_timeout`, 24 h (above the limit a scenario may set).
const DEFAULT_RECONNECT_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
const DEFAULT_JOIN_TIMEOUT_MS: u64 = 1000;
const DEFAULT_RETRY_INTERVAL_MS: u64 = 2000;
const DEFAULT_CLIENT_INTERVAL_MS: u64 = 100;
const DEFAULT_CLIENT_TIMEOUT_MS: u64 = 2000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: String,
    duration_s: Spanned<f64>,
    tick_ms: Option<Spanned<u64>>,
    #[serde(default)]
    engine: crate::engines::EngineKind,
    #[serde(default)]
    gossip: GossipSection,
    #[serde(rename = "host")]
    hosts: Vec<HostSection>,
    #[serde(default)]
    start: StartSection,
    #[serde(default, rename = "fault")]
    faults: Vec<Spanned<FaultSection>>,
    #[serde(default)]
    node: NodeSection,
    invariants: InvariantsSection,
    #[serde(default)]
    expect: ExpectSection,
    swarm: Option<Spanned<SwarmSection>>,
    #[serde(default)]
    trace: TraceSection,
}

/// `[trace]`: which gossip view entries the trace records (see [`crate::trace::ViewScope`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceSection {
    /// Hosts whose whole view is recorded (default: every host); the balancer always is.
    views: Option<Vec<Spanned<String>>>,
    /// Members recorded in every host's view.
    #[serde(default)]
    follow: Vec<Spanned<String>>,
    /// Whether the balancer's successful loads are recorded (each lists every server).
    balancer_loads: Option<Spanned<bool>>,
}

/// `[swarm]`: ranges each seed draws its own faults from (see [`crate::swarm`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwarmSection {
    /// The chaos phase, `[from, to]` in seconds: every drawn fault starts and ends in it.
    #[serde(deserialize_with = "pair")]
    chaos_s: [f64; 2],
    /// Fault kinds a seed may turn on (default: every kind).
    kinds: Option<Vec<SwarmKind>>,
    /// How many faults a seed draws, inclusive (default `[1, 4]`).
    #[serde(default, deserialize_with = "optional_pair")]
    faults: Option<[u32; 2]>,
    /// How long a fault with a window lasts, in seconds, inclusive (default `[1, 20]`).
    #[serde(default, deserialize_with = "optional_pair")]
    for_s: Option<[f64; 2]>,
    /// Gossip loss rate, inclusive (default `[0.05, 0.5]`).
    #[serde(default, deserialize_with = "optional_pair")]
    loss: Option<[f64; 2]>,
    /// Extra gossip latency in milliseconds, inclusive (default `[10, 300]`).
    #[serde(default, deserialize_with = "optional_pair")]
    latency_ms: Option<[u64; 2]>,
    /// The nodes faults single out (default: every node).
    hosts: Option<Vec<String>>,
}

/// `[swarm]`'s checks, in the order they are reported; each error is the message that
/// follows `[swarm]: `.
impl SwarmSection {
    /// The ranges a seed of `world` draws its faults from.
    fn resolve(&self, world: &World) -> Result<Swarm, String> {
        let (from, to) = self.chaos_phase(world.duration.as_secs_f64())?;
        let (shortest, longest) = self.fault_lengths(to - from)?;
        let faults = self.fault_count()?;
        let loss = self.loss_range()?;
        let latency = self.latency_range()?;
        let targets = self.checked_targets(world)?;
        let kinds = self.checked_kinds(&targets, world)?;
        Ok(Swarm {
            kinds,
            faults,
            chaos: (seconds(from), seconds(to)),
            lasting: (seconds(shortest), seconds(longest)),
            loss,
            latency,
            targets,
        })
    }

    /// The chaos phase in seconds, within a run of `run` seconds.
    fn chaos_phase(&self, run: f64) -> Result<(f64, f64), String> {
        let [from, to] = self.chaos_s;
        if !(from.is_finite() && to.is_finite() && 0.0 <= from && from < to && to <= run) {
            return Err(format!(
                "chaos_s = [{from}, {to}] must satisfy 0 <= from < to <= duration_s ({run})"
            ));
        }
        Ok((from, to))
    }

    /// How long a fault with a window lasts, in seconds: the shortest must fit in a chaos
    /// phase of `phase` seconds.
    fn fault_lengths(&self, phase: f64) -> Result<(f64, f64), String> {
        let [shortest, longest] = self.for_s.unwrap_or(SWARM_FOR_S_DEFAULT);
        if !(shortest.is_finite()
            && longest.is_finite()
            && SWARM_FOR_S_MIN <= shortest
            && shortest <= longest)
        {
            return Err(format!(
                "for_s = [{shortest}, {longest}] must satisfy {SWARM_FOR_S_MIN} <= min <= max"
            ));
        }
        if shortest > phase {
            return Err(format!("for_s starts at {shortest} s, longer than the chaos phase ({phase} s)"));
        }
        Ok((shortest, longest))
    }

    /// How many faults a seed draws.
    fn fault_count(&self) -> Result<(u32, u32), String> {
        let [fewest, most] = self.faults.unwrap_or(SWARM_FAULTS_DEFAULT);
        if fewest > most || most > SWARM_FAULTS_MAX {
            return Err(format!("faults = [{fewest}, {most}] must satisfy min <= max <= {SWARM_FAULTS_MAX}"));
        }
        Ok((fewest, most))
    }

    /// The loss rates a seed draws from.
    fn loss_range(&self) -> Result<(f64, f64), String> {
        let [low, high] = self.loss.unwrap_or(SWARM_LOSS_DEFAULT);
        if !(low.is_finite() && high.is_finite() && 0.0 <= low && low <= high && high <= 1.0) {
            return Err(format!("loss = [{low}, {high}] must satisfy 0 <= min <= max <= 1"));
        }
        Ok((low, high))
    }

    /// The extra gossip latencies a seed draws from.
    fn latency_range(&self) -> Result<(Duration, Duration), String> {
        let [quick, slow] = self.latency_ms.unwrap_or(SWARM_LATENCY_MS_DEFAULT);
        if !(1 <= quick && quick <= slow && slow <= INTERVAL_MS_MAX) {
            return Err(format!(
                "latency_ms = [{quick}, {slow}] must satisfy 1 <= min <= max <= {INTERVAL_MS_MAX}"
            ));
        }
        Ok((Duration::from_millis(quick), Duration::from_millis(slow)))
    }

    /// The nodes faults single out, patterns expanded: nodes only (default every node).
    fn checked_targets(&self, world: &World) -> Result<Vec<String>, String> {
        let nodes: Vec<String> = world
            .hosts
            .iter()
            .filter(|h| matches!(h.kind, HostKind::Node(_)))
            .map(|h| h.name.clone())
            .collect();
        let mut targets = Vec::new();
        for item in self.hosts.clone().unwrap_or_else(|| nodes.clone()) {
            targets.extend(crate::names::expand(&item)?.into_iter().map(|(_, name)| name));
        }
        let node_set: BTreeSet<&String> = nodes.iter().collect();
        if let Some(stranger) = targets.iter().find(|name| !node_set.contains(name)) {
            return Err(format!(
                "hosts: '{stranger}' is not a node (nodes: {})",
                crate::names::listed(&nodes)
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(twice) = targets.iter().find(|name| !seen.insert(*name)) {
            return Err(format!("hosts: '{twice}' is listed twice"));
        }
        Ok(targets)
    }

    /// The fault kinds a seed may turn on, each once, and only those `world` can stage; by
    /// default every kind.
    fn checked_kinds(&self, targets: &[String], world: &World) -> Result<Vec<SwarmKind>, String> {
        let kinds = self.kinds.clone().unwrap_or_else(|| SwarmKind::ALL.to_vec());
        if let Some(twice) = kinds.iter().enumerate().find(|(i, k)| kinds[..*i].contains(k)) {
            return Err(format!("kinds: '{}' is listed twice", twice.1.name()));
        }
        if kinds.is_empty() || targets.is_empty() {
            return Err("kinds and hosts must not be empty".into());
        }
        if world.hosts.len() < 2 && kinds.iter().any(|k| k.cuts_links()) {
            return Err("partitions and power losses need at least two hosts".into());
        }
        Ok(kinds)
    }
}

/// `[node]`: how the balancer node's pipeline runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    /// `"lab"` or `"fixed"` (default).
    #[serde(default)]
    pipeline: Pipeline,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum JoinKind {
    Once,
    #[default]
    Retry,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum ProfileKind {
    #[default]
    Lan,
    Local,
    Wan,
}

impl ProfileKind {
    fn profile(self) -> Profile {
        match self {
            ProfileKind::Lan => Profile::Lan,
            ProfileKind::Local => Profile::Local,
            ProfileKind::Wan => Profile::Wan,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GossipSection {
    /// memberlist's profile the timings start from.
    #[serde(default)]
    profile: ProfileKind,
    probe_interval_ms: Option<Spanned<u64>>,
    probe_timeout_ms: Option<Spanned<u64>>,
    gossip_interval_ms: Option<Spanned<u64>>,
    reconnect_interval_ms: Option<Spanned<u64>>,
    push_pull_interval_ms: Option<Spanned<u64>>,
    /// Serf's `reconnect_timeout`: a member failed this long is reaped.
    reconnect_timeout_ms: Option<Spanned<u64>>,
    #[serde(default = "join_kind")]
    join: JoinKind,
    join_timeout_ms: Option<Spanned<u64>>,
    retry_interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    retry_max: u32,
    #[serde(default)]
    seeds: Vec<Spanned<String>>,
    /// Serf's `-snapshot` and `-rejoin`: each node keeps its alive peers at
    /// [`SNAPSHOT_PATH`] on its disk and push-pulls with them when it restarts.
    #[serde(default)]
    snapshot: bool,
    /// Serf's `-encrypt` and keyring file: base64 AES keys, the first one primary.
    #[serde(default)]
    keyring: Vec<Spanned<String>>,
    /// memberlist's `Label`: frames without it are refused.
    label: Option<Spanned<String>>,
}

/// Where a node keeps its gossip snapshot when `[gossip] snapshot = true`.
pub const SNAPSHOT_PATH: &str = "/serf/snapshot";
/// Where a node keeps its keyring when `[gossip] keyring` is set (Serf's `-keyring-file`).
pub const KEYRING_PATH: &str = "/serf/keyring";

fn join_kind() -> JoinKind {
    JoinKind::Retry
}

/// The `[gossip]` section as every node's agent starts from it, resolved once.
struct ClusterGossip<'a> {
    section: &'a GossipSection,
    times: GossipTimes,
    /// The seeds of a host that names none.
    seeds: Vec<String>,
    wire: Wire,
}

/// Gossip timings after validation.
struct GossipTimes {
    probe_interval: Duration,
    probe_timeout: Duration,
    gossip_interval: Duration,
    reconnect_interval: Duration,
    push_pull_interval: Duration,
    reconnect_timeout: Duration,
    join_timeout: Duration,
    retry_interval: Duration,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RoleKind {
    Balancer,
    Backend,
    Client,
    Attacker,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSection {
    name: Spanned<String>,
    role: RoleKind,
    /// Balancer: the handlebars template, relative to the scenario file.
    template: Option<Spanned<String>>,
    /// Balancer: where the rendered file goes on the host's disk.
    output: Option<String>,
    /// Balancer: consul-template's `wait` minimum (0: render at once).
    render_wait_min_ms: Option<Spanned<u64>>,
    /// Balancer: the `wait` maximum (default 4 x the minimum).
    render_wait_max_ms: Option<Spanned<u64>>,
    /// Balancer: check each rendering with the balancer's parser before it replaces the file.
    render_validate: Option<bool>,
    /// Balancer: keep the replaced file as `<output>.bak`.
    render_backup: Option<bool>,
    /// Backend: the webapp's TAG.
    tag: Option<String>,
    /// Overrides the gossip join mode for this host.
    join: Option<JoinKind>,
    /// Overrides the gossip seeds for this host.
    seeds: Option<Vec<Spanned<String>>>,
    /// Services whose finish script exits 125 (never restarted).
    #[serde(default)]
    permanent_failure: Vec<Spanned<String>>,
    /// Client: the host to send requests to (port 80).
    target: Option<Spanned<String>>,
    /// Client: time between requests.
    interval_ms: Option<Spanned<u64>>,
    /// Client: give up on a request after this long.
    timeout_ms: Option<Spanned<u64>>,
    /// Attacker: the node its forgeries are about.
    victim: Option<Spanned<String>>,
    /// Attacker: the nodes it sends to (default: every node).
    targets: Option<Vec<Spanned<String>>>,
    /// Attacker: time between two moves.
    every_ms: Option<Spanned<u64>>,
    /// Attacker: a key it seals with (a guess, or one that was removed); default plain.
    key: Option<Spanned<String>>,
    /// Bugs planted on purpose, to test the oracle and the chaos engine (never in real mode).
    #[serde(default)]
    planted_bugs: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartSection {
    /// Start order; hosts not listed start after the listed ones, in file order.
    #[serde(default)]
    order: Vec<Spanned<String>>,
    /// Let the seed permute the start order of all hosts.
    #[serde(default)]
    permuted: bool,
    /// Time between two host starts.
    gap_ms: Option<Spanned<u64>>,
    /// Each start is delayed by a seeded amount below this, as real boots are.
    jitter_ms: Option<Spanned<u64>>,
}

/// Host names inside a fault are plain strings: serde buffers internally tagged enums, which
/// loses spans, so errors point at the `[[fault]]` table instead.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum FaultSection {
    /// Two-way cut between groups `a` and `b` (default: every other host).
    Partition { at_s: f64, for_s: f64, a: Vec<String>, b: Option<Vec<String>> },
    /// One-way cut: datagrams and segments from `from` to `to` are lost.
    PartitionOneway { at_s: f64, for_s: f64, from: Vec<String>, to: Vec<String> },
    /// Gossip datagram loss on the listed hosts' sends (default: all hosts).
    Loss { at_s: f64, for_s: f64, rate: f64, hosts: Option<Vec<String>> },
    /// Extra gossip latency on the listed hosts' sends (default: all hosts).
    Latency { at_s: f64, for_s: f64, extra_ms: u64, hosts: Option<Vec<String>> },
    /// The host dies (every process at once); it boots again after `restart_after_s`.
    HostCrash { at_s: f64, host: String, restart_after_s: Option<f64>, during: Option<String> },
    /// One service is killed; the supervisor decides what happens next.
    ServiceCrash { at_s: f64, host: String, service: String },
    /// The service is stopped (SIGSTOP, `s6-svc -p`) and continued `for_s` later.
    Stall { at_s: f64, for_s: f64, host: String, service: String },
    /// The balancer reloads its file every `every_ms` (SIGHUP, as `s6-svc -h`) for `for_s`.
    Reload { at_s: f64, for_s: f64, host: String, every_ms: Option<u64> },
    /// The host's gossip agent leaves gracefully; it starts again after `rejoin_after_s`.
    Leave { at_s: f64, host: String, rejoin_after_s: Option<f64> },
    /// `host` runs `serf force-leave [-prune] target`.
    ForceLeave { at_s: f64, host: String, target: String, prune: Option<bool> },
    /// The node is stopped (`docker stop`) and stays down.
    Stop { at_s: f64, host: String },
    /// `host` runs `serf tags -set K=V -delete K`.
    Tags { at_s: f64, host: String, set: Option<BTreeMap<String, String>>, delete: Option<Vec<String>> },
    /// `serf keys -install|-use|-remove KEY` on the listed hosts (default: every gossip node).
    Keys { at_s: f64, op: KeyOp, key: String, hosts: Option<Vec<String>> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvariantsSection {
    /// Every live webapp is in the balancer's rendered backends within this many rounds.
    converge_rounds: Option<Spanned<u32>>,
    /// A webapp down or isolated leaves the rendered backends within this many rounds.
    detect_rounds: Option<Spanned<u32>>,
    /// Every request gets 200 unless the stack could not yet know better.
    #[serde(default)]
    available: bool,
    /// Gossip views agree with the running agents once the world settles.
    #[serde(default)]
    views: bool,
    /// Incarnations never go down except across a restart.
    #[serde(default)]
    incarnation: bool,
    /// A running agent never records itself dead.
    #[serde(default)]
    no_self_death: bool,
    /// No member is declared failed while its agent runs and a gossip path to it exists.
    #[serde(default)]
    no_false_failure: bool,
    /// Every frame an attacker host gets to an agent is refused.
    #[serde(default)]
    outsiders_refused: bool,
    /// A member that left gracefully is recorded as left by every running agent.
    #[serde(default)]
    left: bool,
    /// Two starts of one service are at least the restart delay apart.
    #[serde(default)]
    restart_spacing: bool,
    /// A service is never started while it runs.
    #[serde(default)]
    one_instance: bool,
    /// Nothing starts once a node's shutdown began.
    #[serde(default)]
    quiet_shutdown: bool,
    /// A finish script runs after a death, at most once per death, before the next start.
    #[serde(default)]
    finish_once: bool,
    /// Once the balancer's view is still, its rendered backends are the view's live webapps.
    #[serde(default)]
    rendered_view: bool,
    /// The balancer never fails to load the configuration it is given.
    #[serde(default)]
    valid_config: bool,
    /// At most one balancer process accepts connections at a time.
    #[serde(default)]
    one_balancer: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSection {
    /// Invariants this scenario expects to be violated (the bug it demonstrates).
    #[serde(default)]
    violated: Vec<Spanned<String>>,
    /// Expected violations pinned to the exact hosts they are about.
    #[serde(default)]
    violation: Vec<PinnedViolation>,
    /// What the lab pipeline is expected to do instead, when it differs.
    lab: Option<PipelineExpectSection>,
    /// What the fixed pipeline is expected to do instead, when it differs.
    fixed: Option<PipelineExpectSection>,
    /// An invariant that checked nothing is no mismatch (default: only with a `[swarm]`).
    allow_unchecked: Option<bool>,
}

/// `[expect.lab]` or `[expect.fixed]`: the outcome under one pipeline.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineExpectSection {
    #[serde(default)]
    violated: Vec<Spanned<String>>,
    #[serde(default)]
    violation: Vec<PinnedViolation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinnedViolation {
    invariant: Spanned<String>,
    hosts: Vec<Spanned<String>>,
    /// Only these seeds (a known weakness that shows on some draws only); all when absent.
    seeds: Option<Spanned<Vec<u64>>>,
}

/// Largest scenario file read (`gossip-10k.toml`, with a fault per crashed host, is 10 KB).
pub const SCENARIO_BYTES_MAX: u64 = 16 << 20;

/// Loads, parses and resolves a scenario file.
pub fn load(path: &Path) -> Result<World, ScenarioError> {
    let file = path.display().to_string();
    let text = rollcall::files::read_bounded(path, SCENARIO_BYTES_MAX).map_err(|message| ScenarioError {
        file: file.clone(),
        line: 1,
        column: 1,
        message,
    })?;
    parse(&file, &text, path.parent().unwrap_or(Path::new(".")))
}

/// Parses scenario text; `base` is the directory relative paths start from.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<World, ScenarioError> {
    let error = |span: Option<Range<usize>>, message: String| {
        let (line, column) = line_column(text, span.map_or(0, |s| s.start));
        ScenarioError { file: file.to_string(), line, column, message }
    };
    let mut parsed: ScenarioFile =
        toml::from_str(text).map_err(|e| error(e.span(), e.message().trim().replace('\n', " ")))?;
    parsed.hosts = expand_hosts(std::mem::take(&mut parsed.hosts), &error)?;
    let names: Vec<String> = parsed.hosts.iter().map(|h| h.name.get_ref().clone()).collect();
    let known = names.iter().cloned().collect();
    let with_role =
        |role| parsed.hosts.iter().filter(|h| h.role == role).map(|h| h.name.get_ref().clone()).collect();
    let balancers = with_role(RoleKind::Balancer);
    let clients = [with_role(RoleKind::Client), with_role(RoleKind::Attacker)].concat();
    Resolver { error: &error, base, names, known, balancers, clients }.resolve(parsed)
}

/// One `[[host]]` table per host: a table named with a pattern (`s{1..100}`) stands for one
/// host per number, `{n}` in its `tag` replaced by the number.
fn expand_hosts(
    hosts: Vec<HostSection>,
    error: &impl Fn(Option<Range<usize>>, String) -> ScenarioError,
) -> Result<Vec<HostSection>, ScenarioError> {
    let mut expanded = Vec::new();
    for host in hosts {
        let span = host.name.span();
        let names = crate::names::expand(host.name.get_ref()).map_err(|e| error(Some(span.clone()), e))?;
        for (number, name) in names {
            let mut copy = host.clone();
            copy.name = Spanned::new(span.clone(), name);
            if let (Some(n), Some(tag)) = (number, copy.tag.as_mut()) {
                *tag = tag.replace("{n}", &n.to_string());
            }
            expanded.push(copy);
        }
        if expanded.len() > crate::names::HOSTS_MAX {
            let message = format!("more than {} hosts", crate::names::HOSTS_MAX);
            return Err(error(Some(span), message));
        }
    }
    Ok(expanded)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

struct Resolver<'a, E: Fn(Option<Range<usize>>, String) -> ScenarioError> {
    error: &'a E,
    base: &'a Path,
    /// Host names in file order.
    names: Vec<String>,
    /// The same names, to look up.
    known: BTreeSet<String>,
    /// The balancer hosts' names.
    balancers: Vec<String>,
    /// The client hosts' names.
    clients: Vec<String>,
}

impl<E: Fn(Option<Range<usize>>, String) -> ScenarioError> Resolver<'_, E> {
    fn fail<T>(&self, span: Range<usize>, message: impl Into<String>) -> Result<T, ScenarioError> {
        Err((self.error)(Some(span), message.into()))
    }

    fn known(&self, name: &Spanned<String>) -> Result<String, ScenarioError> {
        if self.known.contains(name.get_ref()) {
            Ok(name.get_ref().clone())
        } else {
            let hosts = crate::names::listed(&self.names);
            self.fail(name.span(), format!("unknown host '{}' (hosts: {hosts})", name.get_ref()))
        }
    }

    /// A name given twice in one list is a slip: an error at the second.
    fn once(&self, list: &[Spanned<String>]) -> Result<(), ScenarioError> {
        let mut seen = BTreeSet::new();
        match list.iter().find(|item| !seen.insert(item.get_ref())) {
            Some(twice) => self.fail(twice.span(), format!("'{}' is listed twice", twice.get_ref())),
            None => Ok(()),
        }
    }

    /// Known hosts, patterns (`s{1..10}`) expanded; a host listed twice is an error (a
    /// slip the user would want to hear of: twice a seed, twice in a start order).
    fn known_all(&self, list: &[Spanned<String>]) -> Result<Vec<String>, ScenarioError> {
        let mut names = Vec::new();
        let mut seen = BTreeSet::new();
        for item in list {
            let expanded =
                crate::names::expand(item.get_ref()).map_err(|e| (self.error)(Some(item.span()), e))?;
            for (_, name) in expanded {
                let name = self.known(&Spanned::new(item.span(), name))?;
                if !seen.insert(name.clone()) {
                    return self.fail(item.span(), format!("host '{name}' is listed twice"));
                }
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Gossip seeds: nodes, never clients (each item checked after its pattern is expanded).
    fn seeds(&self, list: &[Spanned<String>]) -> Result<Vec<String>, ScenarioError> {
        for item in list {
            let names = self.known_all(std::slice::from_ref(item))?;
            if let Some(client) = names.iter().find(|name| self.clients.contains(*name)) {
                return self.fail(
                    item.span(),
                    format!("seed '{client}' is a client or an attacker, not a gossip node"),
                );
            }
        }
        self.known_all(list)
    }

    /// An attacker's settings: its victim and targets are nodes, its key (if any) a key. It
    /// knows the cluster's label, which is no secret.
    fn attacker(&self, host: &HostSection, wire: &Wire) -> Result<AttackerSpec, ScenarioError> {
        let name = host.name.get_ref();
        let victim = host.victim.as_ref().ok_or_else(|| {
            (self.error)(Some(host.name.span()), format!("attacker '{name}' needs a 'victim'"))
        })?;
        let victim = self.gossip_node(victim)?;
        let targets = match &host.targets {
            Some(targets) => self.known_all(targets)?,
            None => self.names.iter().filter(|n| !self.clients.contains(*n)).cloned().collect(),
        };
        if let Some(client) = targets.iter().find(|t| self.clients.contains(*t)) {
            return self.fail(
                host.name.span(),
                format!("attacker '{name}': target '{client}' runs no gossip agent"),
            );
        }
        if targets.is_empty() {
            return self.fail(host.name.span(), format!("attacker '{name}': 'targets' names no host"));
        }
        let every = self.millis(&host.every_ms, crate::attacker::EVERY_MS_DEFAULT, "every_ms", false)?;
        let keyring = match &host.key {
            Some(key) => match Key::parse(key.get_ref()).and_then(|key| Keyring::new(vec![key])) {
                Ok(ring) => Some(ring),
                Err(error) => return self.fail(key.span(), format!("key: {error}")),
            },
            None => None,
        };
        let wire = Wire { label: wire.label.clone(), keyring };
        Ok(AttackerSpec { victim, targets, every, wire })
    }

    /// A host that runs a gossip agent.
    fn gossip_node(&self, name: &Spanned<String>) -> Result<String, ScenarioError> {
        let known = self.known(name)?;
        if self.clients.contains(&known) {
            return self.fail(name.span(), format!("'{known}' runs no gossip agent"));
        }
        Ok(known)
    }

    /// The label and keyring of `[gossip]`; each key is checked where it is written.
    fn wire(&self, gossip: &GossipSection) -> Result<Wire, ScenarioError> {
        let mut keys = Vec::new();
        for key in &gossip.keyring {
            match Key::parse(key.get_ref()) {
                // A slip, as a host named twice is: the ring would hold it once.
                Ok(parsed) if keys.contains(&parsed) => {
                    return self.fail(key.span(), "keyring: this key is listed twice");
                }
                Ok(parsed) => keys.push(parsed),
                Err(error) => return self.fail(key.span(), format!("keyring: {error}")),
            }
        }
        let keyring = match Keyring::new(keys) {
            Ok(ring) => Some(ring),
            Err(KeyringError::Empty) => None,
            Err(error) => return self.fail(gossip.keyring[0].span(), format!("keyring: {error}")),
        };
        let label = gossip.label.as_ref().map(|label| label.get_ref().clone());
        if let Some(spanned) = gossip.label.as_ref().filter(|label| label.get_ref().contains('\0')) {
            // No command line or file of a real run can carry it.
            return self.fail(spanned.span(), "label must not hold a NUL byte");
        }
        Wire::new(label, keyring).or_else(|error| {
            let span = gossip.label.as_ref().map(|label| label.span()).unwrap_or_default();
            self.fail(span, format!("label: {error}"))
        })
    }

    /// A duration in milliseconds: at most [`INTERVAL_MS_MAX`], and positive unless
    /// `zero_ok`.
    fn millis(
        &self,
        value: &Option<Spanned<u64>>,
        default: u64,
        key: &str,
        zero_ok: bool,
    ) -> Result<Duration, ScenarioError> {
        let Some(value) = value else { return Ok(Duration::from_millis(default)) };
        let ms = *value.get_ref();
        if ms == 0 && !zero_ok {
            return self.fail(value.span(), format!("{key} must be positive"));
        }
        if ms > INTERVAL_MS_MAX {
            return self
                .fail(value.span(), format!("{key} = {ms} is over the limit of {INTERVAL_MS_MAX} ms"));
        }
        Ok(Duration::from_millis(ms))
    }

    fn rounds(&self, value: &Option<Spanned<u32>>, key: &str) -> Result<Option<u32>, ScenarioError> {
        let Some(value) = value else { return Ok(None) };
        match *value.get_ref() {
            0 => self.fail(value.span(), format!("{key} must be at least 1")),
            n if n > ROUNDS_MAX => {
                self.fail(value.span(), format!("{key} = {n} is over the limit of {ROUNDS_MAX}"))
            }
            n => Ok(Some(n)),
        }
    }

    fn gossip_times(&self, gossip: &GossipSection) -> Result<GossipTimes, ScenarioError> {
        // Unset timings are the profile's.
        let base =
            GossipConfig::of(gossip.profile.profile(), "defaults", (std::net::Ipv4Addr::LOCALHOST, 0).into());
        let ms = |d: Duration| d.as_millis() as u64;
        let times = GossipTimes {
            probe_interval: self.millis(
                &gossip.probe_interval_ms,
                ms(base.probe_interval),
                "probe_interval_ms",
                false,
            )?,
            probe_timeout: self.millis(
                &gossip.probe_timeout_ms,
                ms(base.probe_timeout),
                "probe_timeout_ms",
                false,
            )?,
            gossip_interval: self.millis(
                &gossip.gossip_interval_ms,
                ms(base.gossip_interval),
                "gossip_interval_ms",
                false,
            )?,
            reconnect_interval: self.millis(
                &gossip.reconnect_interval_ms,
                ms(base.reconnect_interval),
                "reconnect_interval_ms",
                false,
            )?,
            push_pull_interval: self.millis(
                &gossip.push_pull_interval_ms,
                ms(base.push_pull_interval),
                "push_pull_interval_ms",
                false,
            )?,
            reconnect_timeout: self.millis(
                &gossip.reconnect_timeout_ms,
                DEFAULT_RECONNECT_TIMEOUT_MS,
                "reconnect_timeout_ms",
                false,
            )?,
            join_timeout: self.millis(
                &gossip.join_timeout_ms,
                DEFAULT_JOIN_TIMEOUT_MS,
                "join_timeout_ms",
                false,
            )?,
            retry_interval: self.millis(
                &gossip.retry_interval_ms,
                DEFAULT_RETRY_INTERVAL_MS,
                "retry_interval_ms",
                false,
            )?,
        };
        let redials = [
            (times.retry_interval, &gossip.retry_interval_ms, "retry_interval_ms"),
            (times.reconnect_interval, &gossip.reconnect_interval_ms, "reconnect_interval_ms"),
        ];
        for (interval, value, key) in redials {
            if interval < Duration::from_millis(REDIAL_INTERVAL_MS_MIN) {
                let span = value.as_ref().map(Spanned::span);
                let message = format!("gossip.{key} must be at least {REDIAL_INTERVAL_MS_MIN} ms");
                return Err((self.error)(span, message));
            }
        }
        if times.probe_timeout >= times.probe_interval {
            let span =
                gossip.probe_timeout_ms.as_ref().or(gossip.probe_interval_ms.as_ref()).map(Spanned::span);
            return Err((self.error)(span, "gossip.probe_timeout_ms must be below probe_interval_ms".into()));
        }
        Ok(times)
    }

    fn run_length(&self, file: &ScenarioFile) -> Result<(Duration, Duration), ScenarioError> {
        let seconds = *file.duration_s.get_ref();
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= RUN_SECONDS_MAX) {
            let message = format!(
                "duration_s = {seconds} must be a number of seconds above 0 and at most {RUN_SECONDS_MAX}"
            );
            return self.fail(file.duration_s.span(), message);
        }
        let tick = self.millis(&file.tick_ms, DEFAULT_TICK_MS, "tick_ms", false)?;
        if tick > Duration::from_millis(TICK_MS_MAX) {
            let span = file.tick_ms.as_ref().map(Spanned::span).unwrap_or_default();
            return self.fail(span, format!("tick_ms is over the limit of {TICK_MS_MAX} ms"));
        }
        let duration = Duration::from_secs_f64(seconds);
        if duration < tick {
            return self
                .fail(file.duration_s.span(), format!("duration_s = {seconds} is shorter than one tick"));
        }
        Ok((duration, tick))
    }

    fn check_names(&self, hosts: &[HostSection]) -> Result<(), ScenarioError> {
        let mut seen = BTreeSet::new();
        for host in hosts {
            let name = host.name.get_ref();
            let label = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if name.is_empty() || name.len() > HOST_NAME_BYTES_MAX || !label || name == crate::trace::WORLD {
                let message = format!(
                    "host name '{name}' must be 1 to {HOST_NAME_BYTES_MAX} letters, digits or '-', and not '{}'",
                    crate::trace::WORLD
                );
                return self.fail(host.name.span(), message);
            }
            if !seen.insert(name.clone()) {
                return self.fail(host.name.span(), format!("host '{name}' is defined twice"));
            }
        }
        Ok(())
    }

    fn resolve(&self, file: ScenarioFile) -> Result<World, ScenarioError> {
        let names = &self.names;
        self.check_names(&file.hosts)?;
        let balancers = file.hosts.iter().filter(|h| h.role == RoleKind::Balancer).count();
        if balancers != 1 {
            let span = file.hosts.first().map(|h| h.name.span());
            return Err((self.error)(span, format!("expected exactly one balancer host, found {balancers}")));
        }
        let (duration, tick) = self.run_length(&file)?;
        let cluster = ClusterGossip {
            section: &file.gossip,
            times: self.gossip_times(&file.gossip)?,
            seeds: self.seeds(&file.gossip.seeds)?,
            wire: self.wire(&file.gossip)?,
        };
        let mut hosts = Vec::new();
        for host in &file.hosts {
            hosts.push(self.resolve_host(host, &cluster, tick)?);
        }
        let times = cluster.times;
        let mut start_order = self.known_all(&file.start.order)?;
        for name in names {
            if !start_order.contains(name) {
                start_order.push(name.clone());
            }
        }
        let mut faults = Vec::new();
        for fault in &file.faults {
            faults.push(self.resolve_fault(fault, (duration, tick), &hosts)?);
        }
        let invariants = self.invariants(&file.invariants)?;
        let expect_default = self.expectation(&file.expect.violated, &file.expect.violation, &invariants)?;
        let mut expect_by_pipeline = BTreeMap::new();
        for (pipeline, section) in [(Pipeline::Lab, &file.expect.lab), (Pipeline::Fixed, &file.expect.fixed)]
        {
            if let Some(section) = section {
                let expect = self.expectation(&section.violated, &section.violation, &invariants)?;
                expect_by_pipeline.insert(pipeline, expect);
            }
        }
        let trace_scope = self.trace_scope(&file.trace, invariants.valid_config)?;
        let mut world = World {
            name: file.name,
            description: file.description,
            duration,
            tick,
            round: times.probe_interval,
            hosts,
            start_order,
            start_permuted: file.start.permuted,
            start_gap: self.millis(&file.start.gap_ms, 0, "gap_ms", true)?,
            start_jitter: self.millis(&file.start.jitter_ms, 0, "jitter_ms", true)?,
            faults,
            invariants,
            expect: Expectation::default(),
            expect_by_pipeline,
            expect_default,
            engine: file.engine,
            swarm: None,
            trace_scope,
        };
        self.check_starts(&file.start, &world)?;
        if let Some(section) = &file.swarm {
            world.swarm = Some(self.swarm(section, &world)?);
        }
        let allow_unchecked = file.expect.allow_unchecked.unwrap_or(world.swarm.is_some());
        world.expect_default.allow_unchecked = allow_unchecked;
        world.expect_by_pipeline.values_mut().for_each(|expect| expect.allow_unchecked = allow_unchecked);
        // The balancer's pipeline, and the outcome expected of it.
        world.set_pipeline(file.node.pipeline);
        Ok(world)
    }

    /// Every host starts before the run ends, whatever its jitter: one that starts later
    /// would take no part, and every invariant about it would go unchecked.
    fn check_starts(&self, start: &StartSection, world: &World) -> Result<(), ScenarioError> {
        let Some(last) = world.start_order.len().checked_sub(1) else { return Ok(()) };
        let jitter = world.start_jitter.saturating_sub(Duration::from_millis(1));
        let latest = world.start_gap * u32::try_from(last).unwrap_or(u32::MAX) + jitter;
        if latest < world.duration {
            return Ok(());
        }
        let span = start.gap_ms.as_ref().or(start.jitter_ms.as_ref()).map(|value| value.span());
        let message = format!(
            "[start] starts the last host up to {} s in, not before the end of the run ({} s): every host must start within the run",
            latest.as_secs_f64(),
            world.duration.as_secs_f64()
        );
        Err((self.error)(span, message))
    }

    fn trace_scope(
        &self,
        section: &TraceSection,
        valid_config: bool,
    ) -> Result<crate::trace::ViewScope, ScenarioError> {
        let observers = match &section.views {
            Some(views) => {
                let mut hosts: BTreeSet<String> = self.known_all(views)?.into_iter().collect();
                // The renderer's invariants read the balancer's view.
                hosts.extend(self.balancers.iter().cloned());
                Some(hosts)
            }
            None => None,
        };
        let followed = self.known_all(&section.follow)?.into_iter().collect();
        let drops_balancer_loads = section.balancer_loads.as_ref().is_some_and(|loads| !*loads.get_ref());
        if let (Some(loads), true) = (&section.balancer_loads, drops_balancer_loads && valid_config) {
            return self
                .fail(loads.span(), "balancer_loads = false: valid_config reads the balancer's loads");
        }
        Ok(crate::trace::ViewScope { observers, followed, drops_balancer_loads })
    }

    fn swarm(&self, section: &Spanned<SwarmSection>, world: &World) -> Result<Swarm, ScenarioError> {
        let resolved = section.get_ref().resolve(world);
        resolved.or_else(|message| self.fail(section.span(), format!("[swarm]: {message}")))
    }

    fn invariants(&self, section: &InvariantsSection) -> Result<InvariantSettings, ScenarioError> {
        Ok(InvariantSettings {
            converge_rounds: self.rounds(&section.converge_rounds, "converge_rounds")?,
            detect_rounds: self.rounds(&section.detect_rounds, "detect_rounds")?,
            available: section.available,
            views: section.views,
            incarnation: section.incarnation,
            no_self_death: section.no_self_death,
            no_false_failure: section.no_false_failure,
            outsiders_refused: section.outsiders_refused,
            left: section.left,
            supervision: SupervisionChecks {
                restart_spacing: section.restart_spacing,
                one_instance: section.one_instance,
                quiet_shutdown: section.quiet_shutdown,
                finish_once: section.finish_once,
            },
            rendered_view: section.rendered_view,
            valid_config: section.valid_config,
            one_balancer: section.one_balancer,
        })
    }

    fn invariant_name(
        &self,
        name: &Spanned<String>,
        enabled: &InvariantSettings,
    ) -> Result<String, ScenarioError> {
        let text = name.get_ref();
        if !INVARIANT_NAMES.contains(&text.as_str()) {
            let known = INVARIANT_NAMES.join(", ");
            return self.fail(name.span(), format!("unknown invariant '{text}' (known: {known})"));
        }
        if !enabled.enables(text) {
            return self.fail(
                name.span(),
                format!("invariant '{text}' is expected but not enabled in [invariants]"),
            );
        }
        Ok(text.clone())
    }

    fn expectation(
        &self,
        violated: &[Spanned<String>],
        violation: &[PinnedViolation],
        enabled: &InvariantSettings,
    ) -> Result<Expectation, ScenarioError> {
        self.once(violated)?;
        let mut expect = Expectation::default();
        for name in violated {
            expect.violated.insert(self.invariant_name(name, enabled)?);
        }
        for pinned in violation.iter().filter(|pinned| pinned.seeds.is_none()) {
            let name = self.invariant_name(&pinned.invariant, enabled)?;
            let hosts = self.pinned_hosts(pinned, &name)?;
            if expect.hosts.insert(name.clone(), hosts).is_some() {
                return self.fail(pinned.invariant.span(), format!("'{name}' is pinned twice"));
            }
            expect.violated.insert(name);
        }
        for pinned in violation {
            let Some(seeds) = &pinned.seeds else { continue };
            let name = self.invariant_name(&pinned.invariant, enabled)?;
            let hosts = self.pinned_hosts(pinned, &name)?;
            if expect.violated.contains(&name) {
                let message = format!("'{name}' is expected on every seed, so it cannot be pinned to some");
                return self.fail(pinned.invariant.span(), message);
            }
            if seeds.get_ref().is_empty() {
                return self.fail(seeds.span(), format!("expected violation of '{name}' lists no seeds"));
            }
            let mut listed = BTreeSet::new();
            if let Some(twice) = seeds.get_ref().iter().find(|seed| !listed.insert(**seed)) {
                return self.fail(seeds.span(), format!("seed {twice} is listed twice"));
            }
            for &seed in seeds.get_ref() {
                if expect.seeded.iter().any(|other| other.invariant == name && other.seeds.contains(&seed)) {
                    return self.fail(seeds.span(), format!("'{name}' is pinned twice for seed {seed}"));
                }
            }
            let seeds = seeds.get_ref().iter().copied().collect();
            expect.seeded.push(SeededViolation { invariant: name, hosts, seeds });
        }
        Ok(expect)
    }

    fn pinned_hosts(&self, pinned: &PinnedViolation, name: &str) -> Result<BTreeSet<String>, ScenarioError> {
        if pinned.hosts.is_empty() {
            return self
                .fail(pinned.invariant.span(), format!("expected violation of '{name}' pins no hosts"));
        }
        Ok(self.known_all(&pinned.hosts)?.into_iter().collect())
    }

    fn resolve_host(
        &self,
        host: &HostSection,
        cluster: &ClusterGossip,
        tick: Duration,
    ) -> Result<HostSpec, ScenarioError> {
        let name = host.name.get_ref().clone();
        self.reject_misplaced_fields(host)?;
        let role = match host.role {
            RoleKind::Attacker => {
                return Ok(HostSpec { name, kind: HostKind::Attacker(self.attacker(host, &cluster.wire)?) });
            }
            RoleKind::Client => {
                return Ok(HostSpec { name, kind: HostKind::Client(self.client(host, tick)?) });
            }
            RoleKind::Balancer => self.balancer_role(host)?,
            RoleKind::Backend => Role::Backend,
        };
        let permanent_failure = self.permanent_failures(host, &role)?;
        let node = NodeSpec {
            handlers: Vec::new(),
            tags: BTreeMap::new(),
            haproxy: None,
            role,
            gossip: self.gossip_settings(host, cluster)?,
            gossip_port: rollcall::node::GOSSIP_PORT,
            tag: host.tag.clone().unwrap_or_default(),
            permanent_failure,
            bugs: self.planted_bugs(&host.planted_bugs)?,
        };
        Ok(HostSpec { name, kind: HostKind::Node(Box::new(node)) })
    }

    /// A field set for a role it means nothing to is a slip: an error naming the field.
    fn reject_misplaced_fields(&self, host: &HostSection) -> Result<(), ScenarioError> {
        let name = host.name.get_ref();
        let misplaced = |field: &str, present: bool, allowed: bool| -> Result<(), ScenarioError> {
            if present && !allowed {
                return self
                    .fail(host.name.span(), format!("host '{name}': '{field}' does not apply to this role"));
            }
            Ok(())
        };
        let is_client = host.role == RoleKind::Client;
        let is_attacker = host.role == RoleKind::Attacker;
        let is_balancer = host.role == RoleKind::Balancer;
        let role_keys = [
            ("victim", host.victim.is_some(), is_attacker),
            ("targets", host.targets.is_some(), is_attacker),
            ("every_ms", host.every_ms.is_some(), is_attacker),
            ("key", host.key.is_some(), is_attacker),
            ("template", host.template.is_some(), is_balancer),
            ("output", host.output.is_some(), is_balancer),
            ("render_wait_min_ms", host.render_wait_min_ms.is_some(), is_balancer),
            ("render_wait_max_ms", host.render_wait_max_ms.is_some(), is_balancer),
            ("render_validate", host.render_validate.is_some(), is_balancer),
            ("render_backup", host.render_backup.is_some(), is_balancer),
        ];
        for (key, present, allowed) in role_keys {
            misplaced(key, present, allowed)?;
        }
        misplaced("tag", host.tag.is_some(), host.role == RoleKind::Backend)?;
        misplaced("target", host.target.is_some(), is_client)?;
        misplaced("interval_ms", host.interval_ms.is_some(), is_client)?;
        misplaced("timeout_ms", host.timeout_ms.is_some(), is_client)?;
        misplaced("join", host.join.is_some(), !is_client && !is_attacker)?;
        misplaced("seeds", host.seeds.is_some(), !is_client && !is_attacker)?;
        misplaced("planted_bugs", !host.planted_bugs.is_empty(), !is_client && !is_attacker)?;
        misplaced("permanent_failure", !host.permanent_failure.is_empty(), !is_client && !is_attacker)?;
        Ok(())
    }

    /// A client's settings: it sends its requests to the balancer.
    fn client(&self, host: &HostSection, tick: Duration) -> Result<ClientSpec, ScenarioError> {
        let (name, span) = (host.name.get_ref(), host.name.span());
        let target =
            host.target.as_ref().map(|t| self.known(t)).transpose()?.ok_or_else(|| {
                (self.error)(Some(span.clone()), format!("client '{name}' needs a 'target'"))
            })?;
        if !self.balancers.contains(&target) {
            let target_span = host.target.as_ref().map(Spanned::span).unwrap_or(span.clone());
            return self.fail(target_span, format!("client '{name}': target '{target}' is not the balancer"));
        }
        let interval = self.millis(&host.interval_ms, DEFAULT_CLIENT_INTERVAL_MS, "interval_ms", false)?;
        let timeout = self.millis(&host.timeout_ms, DEFAULT_CLIENT_TIMEOUT_MS, "timeout_ms", false)?;
        // Shorter, every request would fail on the client's own clock, and `available`
        // would blame the webapps.
        let shortest = Duration::from_millis(CLIENT_TIMEOUT_MS_MIN).max(tick * CLIENT_TIMEOUT_TICKS_MIN);
        if timeout < shortest {
            let span = host.timeout_ms.as_ref().map_or(span, Spanned::span);
            let message = format!(
                "client '{name}': timeout_ms must be at least {} ms (and {CLIENT_TIMEOUT_TICKS_MIN} ticks): a request crosses four links and takes several ticks",
                shortest.as_millis()
            );
            return self.fail(span, message);
        }
        Ok(ClientSpec { target, interval, timeout })
    }

    /// A node's gossip agent: the scenario's timings and wire, the host's own seeds and join.
    fn gossip_settings(
        &self,
        host: &HostSection,
        cluster: &ClusterGossip,
    ) -> Result<GossipSettings, ScenarioError> {
        let ClusterGossip { section: gossip, times, wire, seeds: default_seeds } = cluster;
        let seeds = match &host.seeds {
            Some(seeds) => self.seeds(seeds)?,
            None => default_seeds.clone(),
        };
        let join = match host.join.unwrap_or(gossip.join) {
            JoinKind::Once => JoinMode::Once { timeout: times.join_timeout },
            JoinKind::Retry => JoinMode::Retry { interval: times.retry_interval, max: gossip.retry_max },
        };
        Ok(GossipSettings {
            seeds,
            join,
            probe_interval: times.probe_interval,
            probe_timeout: times.probe_timeout,
            gossip_interval: times.gossip_interval,
            reconnect_interval: times.reconnect_interval,
            push_pull_interval: times.push_pull_interval,
            reconnect_timeout: times.reconnect_timeout,
            profile: gossip.profile.profile(),
            snapshot: gossip.snapshot.then(|| PathBuf::from(SNAPSHOT_PATH)),
            wire: wire.clone(),
            keyring_file: wire.keyring.is_some().then(|| PathBuf::from(KEYRING_PATH)),
        })
    }

    fn planted_bugs(&self, names: &[Spanned<String>]) -> Result<PlantedBugs, ScenarioError> {
        self.once(names)?;
        let mut bugs = PlantedBugs::default();
        for name in names {
            if !bugs.plant(name.get_ref()) {
                let known = PlantedBugs::NAMES.join(", ");
                return self
                    .fail(name.span(), format!("unknown planted bug '{}' (known: {known})", name.get_ref()));
            }
        }
        Ok(bugs)
    }

    fn permanent_failures(&self, host: &HostSection, role: &Role) -> Result<Vec<String>, ScenarioError> {
        self.once(&host.permanent_failure)?;
        let allowed = role.services();
        let mut services = Vec::new();
        for service in &host.permanent_failure {
            if !allowed.contains(&service.get_ref().as_str()) {
                let (name, wanted) = (host.name.get_ref(), service.get_ref());
                let message =
                    format!("host '{name}' has no service '{wanted}' (services: {})", allowed.join(", "));
                return self.fail(service.span(), message);
            }
            services.push(service.get_ref().clone());
        }
        Ok(services)
    }

    fn balancer_role(&self, host: &HostSection) -> Result<Role, ScenarioError> {
        let name = host.name.get_ref();
        let template = host.template.as_ref().ok_or_else(|| {
            (self.error)(Some(host.name.span()), format!("balancer '{name}' needs a 'template'"))
        })?;
        let path: PathBuf = self.base.join(template.get_ref());
        let text = read_template(&path).or_else(|e| {
            self.fail(template.span(), format!("cannot read template {}: {e}", path.display()))
        })?;
        // Check the template now: a syntax error is bad input, reported with its place.
        if let Err(error) = rollcall::render::Renderer::new(&path.display().to_string(), &text) {
            return self.fail(template.span(), error.to_string());
        }
        let output = host.output.clone().unwrap_or_else(|| "/etc/haproxy/haproxy.cfg".into());
        if let Err(why) = check_output(&output) {
            return self.fail(host.name.span(), format!("balancer '{name}': 'output' {output:?} {why}"));
        }
        Ok(Role::Balancer {
            template_file: path.display().to_string(),
            template_text: text,
            output: PathBuf::from(output),
            options: self.render_options(host)?,
            // Set from `[node] pipeline` once every host is resolved.
            pipeline: Pipeline::default(),
        })
    }

    fn render_options(&self, host: &HostSection) -> Result<RenderOptions, ScenarioError> {
        let min = self.millis(&host.render_wait_min_ms, 0, "render_wait_min_ms", true)?;
        let max = match &host.render_wait_max_ms {
            // consul-template's default, four times the min, within the limit of every `*_ms`.
            None => Wait::of_min(min).max.min(Duration::from_millis(INTERVAL_MS_MAX)),
            Some(max) if *max.get_ref() < min.as_millis() as u64 => {
                return self.fail(max.span(), "render_wait_max_ms must not be below render_wait_min_ms");
            }
            max => self.millis(max, 0, "render_wait_max_ms", true)?,
        };
        let defaults = RenderOptions::default();
        Ok(RenderOptions {
            wait: Wait { min, max },
            validate: host.render_validate.unwrap_or(defaults.validate),
            backup: host.render_backup.unwrap_or(defaults.backup),
            in_place: false,
            wait_for_sync: defaults.wait_for_sync,
        })
    }

    fn resolve_fault(
        &self,
        fault: &Spanned<FaultSection>,
        (duration, tick): (Duration, Duration),
        hosts: &[HostSpec],
    ) -> Result<FaultSpec, ScenarioError> {
        let place = FaultPlace { resolver: self, span: fault.span(), duration, tick };
        match fault.get_ref() {
            FaultSection::Partition { at_s, for_s, a, b } => place.partition(*at_s, *for_s, a, b.as_deref()),
            FaultSection::PartitionOneway { at_s, for_s, from, to } => {
                let (a, b) = (place.known_all(from)?, place.known_all(to)?);
                place.disjoint(&a, &b)?;
                place.windowed(*at_s, *for_s, FaultKind::Partition { a, b, oneway: true })
            }
            FaultSection::Loss { at_s, for_s, rate, hosts } => {
                if !(rate.is_finite() && (0.0..=1.0).contains(rate)) {
                    return place.fail(format!("loss rate {rate} is not within 0 and 1"));
                }
                place.windowed(*at_s, *for_s, FaultKind::Loss { hosts: place.all_or(hosts)?, rate: *rate })
            }
            FaultSection::Latency { at_s, for_s, extra_ms, hosts } => {
                if *extra_ms == 0 || *extra_ms > INTERVAL_MS_MAX {
                    return place.fail(format!("extra_ms must be within 1 and {INTERVAL_MS_MAX}"));
                }
                let extra = Duration::from_millis(*extra_ms);
                place.windowed(*at_s, *for_s, FaultKind::Latency { hosts: place.all_or(hosts)?, extra })
            }
            FaultSection::HostCrash { at_s, host, restart_after_s, during } => {
                place.host_crash(*at_s, host, *restart_after_s, during.as_deref(), hosts)
            }
            FaultSection::ServiceCrash { at_s, host, service } => {
                let (at, _) = place.window(*at_s, 1.0, "for_s")?;
                let (host, service) = place.service(host, service, hosts)?;
                Ok(FaultSpec { at, lasting: None, kind: FaultKind::ServiceCrash { host, service } })
            }
            FaultSection::Stall { at_s, for_s, host, service } => {
                let (at, lasting) = place.window(*at_s, *for_s, "for_s")?;
                let (host, service) = place.service(host, service, hosts)?;
                Ok(FaultSpec { at, lasting: Some(lasting), kind: FaultKind::Stall { host, service } })
            }
            FaultSection::Leave { at_s, host, rejoin_after_s } => {
                // Without rejoin_after_s the agent stays out until the end of the run.
                let (at, lasting) = place.window(*at_s, rejoin_after_s.unwrap_or(1.0), "rejoin_after_s")?;
                let lasting = rejoin_after_s.map(|_| lasting);
                Ok(FaultSpec { at, lasting, kind: FaultKind::Leave { host: place.node(host, hosts)? } })
            }
            FaultSection::ForceLeave { at_s, host, target, prune } => {
                place.force_leave(*at_s, host, target, *prune, hosts)
            }
            FaultSection::Stop { at_s, host } => {
                let (at, _) = place.window(*at_s, 1.0, "for_s")?;
                Ok(FaultSpec { at, lasting: None, kind: FaultKind::Stop { host: place.node(host, hosts)? } })
            }
            FaultSection::Tags { at_s, host, set, delete } => place.tags(*at_s, host, set, delete, hosts),
            FaultSection::Keys { at_s, op, key, hosts: listed } => {
                let (at, _) = place.window(*at_s, 1.0, "for_s")?;
                let kind = place.keys(*op, key, listed, hosts)?;
                Ok(FaultSpec { at, lasting: None, kind })
            }
            FaultSection::Reload { at_s, for_s, host, every_ms } => {
                place.reload(*at_s, *for_s, host, *every_ms, hosts)
            }
        }
    }
}

/// A `[[fault]]` table being resolved: errors point at the table (serde loses the spans of
/// values inside internally tagged enums).
struct FaultPlace<'a, E: Fn(Option<Range<usize>>, String) -> ScenarioError> {
    resolver: &'a Resolver<'a, E>,
    span: Range<usize>,
    duration: Duration,
    tick: Duration,
}

impl<E: Fn(Option<Range<usize>>, String) -> ScenarioError> FaultPlace<'_, E> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, ScenarioError> {
        self.resolver.fail(self.span.clone(), message)
    }

    /// A fault that starts at `at_s` and is undone `for_s` later.
    fn windowed(&self, at_s: f64, for_s: f64, kind: FaultKind) -> Result<FaultSpec, ScenarioError> {
        let (at, lasting) = self.window(at_s, for_s, "for_s")?;
        Ok(FaultSpec { at, lasting: Some(lasting), kind })
    }

    /// A two-way cut between `a` and `b`, or between `a` and every other host.
    fn partition(
        &self,
        at_s: f64,
        for_s: f64,
        a: &[String],
        b: Option<&[String]>,
    ) -> Result<FaultSpec, ScenarioError> {
        let a = self.known_all(a)?;
        let b = match b {
            Some(b) => self.known_all(b)?,
            None => {
                let in_a: BTreeSet<&String> = a.iter().collect();
                self.resolver.names.iter().filter(|n| !in_a.contains(n)).cloned().collect()
            }
        };
        self.disjoint(&a, &b)?;
        self.windowed(at_s, for_s, FaultKind::Partition { a, b, oneway: false })
    }

    /// A host crash, optionally in the middle of a render (which only the balancer does).
    fn host_crash(
        &self,
        at_s: f64,
        host: &String,
        restart_after_s: Option<f64>,
        during: Option<&str>,
        hosts: &[HostSpec],
    ) -> Result<FaultSpec, ScenarioError> {
        // Without restart_after_s the host stays down until the end of the run.
        let (at, lasting) = self.window(at_s, restart_after_s.unwrap_or(1.0), "restart_after_s")?;
        let lasting = restart_after_s.map(|_| lasting);
        let known = self.known(host)?;
        let mid_render = match during {
            None => false,
            Some("render") if hosts.iter().any(|h| h.name == *host && h.is_balancer()) => true,
            Some("render") => {
                return self
                    .fail(format!("during = \"render\": '{host}' renders nothing (only the balancer does)"));
            }
            Some(other) => {
                return self.fail(format!("during = \"{other}\": the only moment is \"render\""));
            }
        };
        Ok(FaultSpec { at, lasting, kind: FaultKind::HostCrash { host: known, mid_render } })
    }

    /// `host` forces `target` out; a node cannot force itself out.
    fn force_leave(
        &self,
        at_s: f64,
        host: &String,
        target: &String,
        prune: Option<bool>,
        hosts: &[HostSpec],
    ) -> Result<FaultSpec, ScenarioError> {
        let (at, _) = self.window(at_s, 1.0, "for_s")?;
        let (host, target) = (self.node(host, hosts)?, self.node(target, hosts)?);
        if host == target {
            return self.fail(format!("'{host}' cannot force-leave itself"));
        }
        let kind = FaultKind::ForceLeave { host, target, prune: prune.unwrap_or(false) };
        Ok(FaultSpec { at, lasting: None, kind })
    }

    /// A `tags` change, checked against what the agent will carry once it applies.
    fn tags(
        &self,
        at_s: f64,
        host: &String,
        set: &Option<BTreeMap<String, String>>,
        delete: &Option<Vec<String>>,
        hosts: &[HostSpec],
    ) -> Result<FaultSpec, ScenarioError> {
        let (at, _) = self.window(at_s, 1.0, "for_s")?;
        let (set, delete) = (set.clone().unwrap_or_default(), delete.clone().unwrap_or_default());
        if set.is_empty() && delete.is_empty() {
            return self.fail("a tags fault changes nothing without 'set' or 'delete'");
        }
        if set.contains_key("role") || delete.iter().any(|key| key == "role") {
            return self.fail("the 'role' tag is the host's role: set it with the host's 'role'");
        }
        let host = self.node(host, hosts)?;
        // What the agent will carry: its configured tags and role, then the change.
        let mut carried = BTreeMap::new();
        if let Some(HostKind::Node(node)) = hosts.iter().find(|h| h.name == host).map(|h| &h.kind) {
            carried.extend(node.tags.clone());
            carried.insert("role".to_string(), node.role.tag().to_string());
        }
        if let Some(problem) = tags_problem(&set, &delete, carried) {
            return self.fail(problem);
        }
        let kind = FaultKind::Tags { host, set, delete };
        Ok(FaultSpec { at, lasting: None, kind })
    }

    /// The balancer reloading its file every `every_ms` for a while.
    fn reload(
        &self,
        at_s: f64,
        for_s: f64,
        host: &String,
        every_ms: Option<u64>,
        hosts: &[HostSpec],
    ) -> Result<FaultSpec, ScenarioError> {
        let name = self.known(host)?;
        let is_balancer = hosts.iter().any(|h| {
            h.name == name && matches!(&h.kind, HostKind::Node(n) if matches!(n.role, Role::Balancer { .. }))
        });
        if !is_balancer {
            return self.fail(format!("host '{name}' is not a balancer: nothing to reload"));
        }
        let every_ms = every_ms.unwrap_or(RELOAD_EVERY_MS_DEFAULT);
        if !(RELOAD_EVERY_MS_MIN..=INTERVAL_MS_MAX).contains(&every_ms) {
            let range = format!("{RELOAD_EVERY_MS_MIN} and {INTERVAL_MS_MAX}");
            return self.fail(format!("every_ms must be within {range}"));
        }
        self.windowed(at_s, for_s, FaultKind::Reload { host: name, every: Duration::from_millis(every_ms) })
    }

    fn known(&self, name: &String) -> Result<String, ScenarioError> {
        if self.resolver.known.contains(name) {
            return Ok(name.clone());
        }
        self.fail(format!(
            "unknown host '{name}' in fault (hosts: {})",
            crate::names::listed(&self.resolver.names)
        ))
    }

    /// A known node and one of its services.
    fn service(
        &self,
        host: &String,
        service: &str,
        hosts: &[HostSpec],
    ) -> Result<(String, String), ScenarioError> {
        let name = self.known(host)?;
        let services = match hosts.iter().find(|h| h.name == name).map(|h| &h.kind) {
            Some(HostKind::Node(node)) => node.role.services(),
            _ => &[],
        };
        if !services.contains(&service) {
            return self.fail(format!("host '{name}' has no service '{service}'"));
        }
        Ok((name, service.to_string()))
    }

    /// A `keys` fault: a valid key, sent to the listed nodes (default every node) of a
    /// cluster whose gossip is encrypted.
    fn keys(
        &self,
        op: KeyOp,
        key: &str,
        listed: &Option<Vec<String>>,
        hosts: &[HostSpec],
    ) -> Result<FaultKind, ScenarioError> {
        if let Err(error) = Key::parse(key) {
            return self.fail(format!("key: {error}"));
        }
        let targets = match listed {
            Some(listed) => {
                let names = self.known_all(listed)?;
                names.iter().map(|name| self.node(name, hosts)).collect::<Result<_, _>>()?
            }
            None => {
                hosts.iter().filter(|h| matches!(h.kind, HostKind::Node(_))).map(|h| h.name.clone()).collect()
            }
        };
        let encrypted =
            hosts.iter().any(|h| matches!(&h.kind, HostKind::Node(n) if n.gossip.wire.keyring.is_some()));
        if !encrypted {
            return self.fail("a keys fault needs encrypted gossip: set [gossip] keyring");
        }
        Ok(FaultKind::Keys { hosts: targets, op, key: key.to_string() })
    }

    /// A known host that runs a node (a gossip agent), not a client.
    fn node(&self, name: &String, hosts: &[HostSpec]) -> Result<String, ScenarioError> {
        let name = self.known(name)?;
        if hosts.iter().any(|h| h.name == name && matches!(h.kind, HostKind::Node(_))) {
            return Ok(name);
        }
        self.fail(format!("host '{name}' is a client: it runs no gossip agent"))
    }

    /// Known hosts, patterns (`s{1..10}`) expanded; none twice, and at least one.
    fn known_all(&self, list: &[String]) -> Result<Vec<String>, ScenarioError> {
        if list.is_empty() {
            return self.fail("an empty host list names no host".to_string());
        }
        let mut names = Vec::new();
        let mut seen = BTreeSet::new();
        for item in list {
            for (_, name) in crate::names::expand(item).or_else(|e| self.fail(e))? {
                let name = self.known(&name)?;
                if !seen.insert(name.clone()) {
                    return self.fail(format!("host '{name}' is listed twice"));
                }
                names.push(name);
            }
        }
        Ok(names)
    }

    fn all_or(&self, list: &Option<Vec<String>>) -> Result<Vec<String>, ScenarioError> {
        match list {
            Some(list) => self.known_all(list),
            None => Ok(self.resolver.names.to_vec()),
        }
    }

    fn disjoint(&self, a: &[String], b: &[String]) -> Result<(), ScenarioError> {
        let in_b: BTreeSet<&String> = b.iter().collect();
        if a.is_empty() || b.is_empty() || a.iter().any(|n| in_b.contains(n)) {
            return self.fail("a partition needs two disjoint, non-empty groups");
        }
        Ok(())
    }

    fn window(&self, at_s: f64, for_s: f64, length: &str) -> Result<(Duration, Duration), ScenarioError> {
        if !(at_s >= 0.0 && for_s > 0.0 && at_s.is_finite() && for_s.is_finite()) {
            return self.fail(format!("fault times must be finite, at_s >= 0 and {length} > 0"));
        }
        if at_s > RUN_SECONDS_MAX || for_s > RUN_SECONDS_MAX {
            return self.fail(format!("fault times must be at most {RUN_SECONDS_MAX} s"));
        }
        // One within the last tick would never start: turmoil applies faults tick by tick.
        if seconds(at_s) + self.tick > self.duration {
            let (end, tick) = (self.duration.as_secs_f64(), self.tick.as_millis());
            let message = format!(
                "fault at {at_s} s is not at least a tick ({tick} ms) before the end of the run ({end} s)"
            );
            return self.fail(message);
        }
        // The plan counts in milliseconds: a shorter window would be planned as none.
        if seconds(for_s) < WINDOW_MIN {
            return self
                .fail(format!("{length} = {for_s} is shorter than the shortest window, 1 ms (0.001)"));
        }
        Ok((seconds(at_s), seconds(for_s)))
    }
}

/// The shortest fault window: the plan's unit.
const WINDOW_MIN: Duration = Duration::from_millis(1);

/// Seconds as a duration; callers have checked the value is finite and within a day.
fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.clamp(0.0, RUN_SECONDS_MAX))
}

/// What is wrong with a `tags` fault's keys, if anything: an empty key, a key both set and
/// deleted, or more tags than a member may carry once applied to `carried` (the agent would
/// refuse them at run time). Several tags faults on one host are checked one at a time.
fn tags_problem(
    set: &BTreeMap<String, String>,
    delete: &[String],
    mut carried: BTreeMap<String, String>,
) -> Option<String> {
    use rollcall::gossip::codec::{TAGS_BYTES_MAX, tags_bytes};
    if set.keys().chain(delete).any(|key| key.is_empty()) {
        return Some("a tag key is empty".into());
    }
    if let Some(key) = delete.iter().find(|key| set.contains_key(*key)) {
        return Some(format!("tag '{key}' is both set and deleted"));
    }
    carried.retain(|key, _| !delete.contains(key));
    carried.extend(set.clone());
    let bytes = tags_bytes(&carried);
    (bytes > TAGS_BYTES_MAX).then(|| {
        format!("the host's tags would be {bytes} bytes (a member carries at most {TAGS_BYTES_MAX})")
    })
}

/// A `[from, to]` pair: exactly two values (serde's arrays would ignore a third).
fn pair<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<[T; 2], D::Error> {
    let values = Vec::<T>::deserialize(deserializer)?;
    let len = values.len();
    <[T; 2]>::try_from(values)
        .map_err(|_| serde::de::Error::custom(format!("expected [from, to], two values, got {len}")))
}

/// An optional `[from, to]` pair.
fn optional_pair<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<[T; 2]>, D::Error> {
    pair(deserializer).map(Some)
}

/// Why a balancer's `output` cannot be its rendered file, if it cannot: it must name a file
/// (not a directory, not above the host's root: the real engine roots relative and absolute
/// paths alike in the host's directory), and not serf's own files or directory, which the
/// renderer would overwrite and serf then read a config as.
fn check_output(output: &str) -> Result<(), String> {
    use std::path::Component;
    if output.is_empty() {
        return Err("is an empty path".into());
    }
    if output.contains('\0') {
        return Err("holds a NUL byte, which no path can".into());
    }
    let path = Path::new(output);
    if path.components().any(|part| part == Component::ParentDir) {
        return Err("must not climb with '..'".into());
    }
    let last = output.rsplit('/').next().unwrap_or_default();
    if matches!(last, "" | "." | "..") {
        return Err("names a directory, not a file".into());
    }
    let normalized: PathBuf = Path::new("/").join(path).components().collect();
    let serf_dir = Path::new(KEYRING_PATH).parent().unwrap_or(Path::new("/"));
    if normalized == serf_dir {
        return Err(format!("would replace serf's directory ({})", serf_dir.display()));
    }
    for (file, what) in [(SNAPSHOT_PATH, "serf's snapshot"), (KEYRING_PATH, "serf's keyring file")] {
        if normalized == Path::new(file) {
            return Err(format!("would overwrite {what} ({file})"));
        }
    }
    Ok(())
}

/// Shortest join retry and reconnect interval. Each try opens a TCP connection, which waits
/// for a dead or cut-off peer up to the TCP timeout (10 s on the LAN profile): every 1 ms,
/// turmoil ran out of ports or overflowed a socket buffer (a panic). Serf's own are 30 s.
pub const REDIAL_INTERVAL_MS_MIN: u64 = 100;

/// Shortest client timeout: a request crosses four links (client, balancer, webapp and back,
/// up to 5 ms each) and each hop may wait for a tick...
pub const CLIENT_TIMEOUT_MS_MIN: u64 = 100;
/// ...and at least this many ticks.
pub const CLIENT_TIMEOUT_TICKS_MIN: u32 = 10;

/// Largest template a scenario may name (the renderer's limit).
pub const TEMPLATE_BYTES_MAX: u64 = rollcall::render::limits::TEMPLATE_BYTES_MAX as u64;

/// A template file's text: a regular file (a pipe or a device would block or never end) of
/// at most [`TEMPLATE_BYTES_MAX`].
fn read_template(path: &std::path::Path) -> Result<String, String> {
    rollcall::files::read_bounded(path, TEMPLATE_BYTES_MAX)
}
