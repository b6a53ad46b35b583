//! Scenario files (TOML): topology, start order, faults, invariants and the expected outcome.
//!
//! Parsing is strict: an unknown key, a wrong type, a missing field or an unknown host is a
//! one-line error naming the file, line and column. The parsed file is resolved into a
//! [`World`](crate::world::World), which the engines run; nothing downstream sees TOML.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::world::{ClientSpec, HostKind, HostSpec, World};
use rollcall::gossip::JoinMode;
use rollcall::node::{GossipSettings, NodeSpec, Role};

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
pub const INVARIANT_NAMES: [&str; 3] = ["converge", "serve", "detect"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: String,
    duration_s: f64,
    #[serde(default = "default_tick_ms")]
    tick_ms: u64,
    #[serde(default)]
    gossip: GossipSection,
    #[serde(rename = "host")]
    hosts: Vec<HostSection>,
    #[serde(default)]
    start: StartSection,
    #[serde(default, rename = "fault")]
    faults: Vec<Spanned<FaultSection>>,
    invariants: InvariantsSection,
    #[serde(default)]
    expect: ExpectSection,
}

fn default_tick_ms() -> u64 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum JoinKind {
    Once,
    Retry,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GossipSection {
    #[serde(default = "probe_interval_ms")]
    probe_interval_ms: u64,
    #[serde(default = "probe_timeout_ms")]
    probe_timeout_ms: u64,
    #[serde(default = "gossip_interval_ms")]
    gossip_interval_ms: u64,
    #[serde(default = "reconnect_interval_ms")]
    reconnect_interval_ms: u64,
    #[serde(default = "join_kind")]
    join: JoinKind,
    #[serde(default = "join_timeout_ms")]
    join_timeout_ms: u64,
    #[serde(default = "retry_interval_ms")]
    retry_interval_ms: u64,
    #[serde(default)]
    retry_max: u32,
    #[serde(default)]
    seeds: Vec<Spanned<String>>,
}

fn probe_interval_ms() -> u64 {
    1000
}
fn probe_timeout_ms() -> u64 {
    500
}
fn gossip_interval_ms() -> u64 {
    200
}
fn reconnect_interval_ms() -> u64 {
    5000
}
fn join_kind() -> JoinKind {
    JoinKind::Retry
}
fn join_timeout_ms() -> u64 {
    1000
}
fn retry_interval_ms() -> u64 {
    2000
}

impl Default for GossipSection {
    fn default() -> Self {
        toml::from_str("").expect("every gossip field has a default")
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RoleKind {
    Balancer,
    Backend,
    Client,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSection {
    name: Spanned<String>,
    role: RoleKind,
    /// Balancer: the handlebars template, relative to the scenario file.
    template: Option<Spanned<String>>,
    /// Balancer: where the rendered file goes on the host's disk.
    output: Option<String>,
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
    interval_ms: Option<u64>,
    /// Client: give up on a request after this long.
    timeout_ms: Option<u64>,
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
    #[serde(default)]
    gap_ms: u64,
    /// Each start is delayed by a seeded amount below this, as real boots are.
    #[serde(default)]
    jitter_ms: u64,
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
    HostCrash { at_s: f64, host: String, restart_after_s: Option<f64> },
    /// One service is killed; the supervisor decides what happens next.
    ServiceCrash { at_s: f64, host: String, service: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvariantsSection {
    /// (a) Every live webapp is in the balancer's rendered backends within this many rounds.
    converge_rounds: Option<u32>,
    /// (b) While converged, every client request gets 200 from a webapp.
    #[serde(default)]
    serve: bool,
    /// A webapp cut off from the balancer leaves its rendered backends within this many rounds.
    detect_rounds: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSection {
    /// Invariants this scenario expects to be violated (the bug it demonstrates).
    #[serde(default)]
    violated: Vec<Spanned<String>>,
}

/// Loads, parses and resolves a scenario file.
pub fn load(path: &Path) -> Result<World, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 1,
        column: 1,
        message: e.to_string(),
    })?;
    parse(&file, &text, path.parent().unwrap_or(Path::new(".")))
}

/// Parses scenario text; `base` is the directory relative paths start from.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<World, ScenarioError> {
    let error = |span: Option<Range<usize>>, message: String| {
        let (line, column) = line_column(text, span.map_or(0, |s| s.start));
        ScenarioError { file: file.to_string(), line, column, message }
    };
    let parsed: ScenarioFile =
        toml::from_str(text).map_err(|e| error(e.span(), e.message().trim().replace('\n', " ")))?;
    let names = parsed.hosts.iter().map(|h| h.name.get_ref().clone()).collect();
    Resolver { error: &error, base, names }.resolve(parsed)
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
}

impl<E: Fn(Option<Range<usize>>, String) -> ScenarioError> Resolver<'_, E> {
    fn fail<T>(&self, span: Range<usize>, message: impl Into<String>) -> Result<T, ScenarioError> {
        Err((self.error)(Some(span), message.into()))
    }

    fn known(&self, name: &Spanned<String>) -> Result<String, ScenarioError> {
        if self.names.contains(name.get_ref()) {
            Ok(name.get_ref().clone())
        } else {
            let hosts = self.names.join(", ");
            self.fail(name.span(), format!("unknown host '{}' (hosts: {hosts})", name.get_ref()))
        }
    }

    fn known_all(&self, list: &[Spanned<String>]) -> Result<Vec<String>, ScenarioError> {
        list.iter().map(|name| self.known(name)).collect()
    }

    fn resolve(&self, file: ScenarioFile) -> Result<World, ScenarioError> {
        let names = &self.names;
        let mut seen = BTreeSet::new();
        for host in &file.hosts {
            if !seen.insert(host.name.get_ref().clone()) {
                return self
                    .fail(host.name.span(), format!("host '{}' is defined twice", host.name.get_ref()));
            }
        }
        let balancers: Vec<&HostSection> =
            file.hosts.iter().filter(|h| h.role == RoleKind::Balancer).collect();
        if balancers.len() != 1 {
            return Err((self.error)(
                None,
                format!("expected exactly one balancer host, found {}", balancers.len()),
            ));
        }
        let duration = seconds(file.duration_s);
        if duration.is_zero() || file.tick_ms == 0 {
            return Err((self.error)(None, "duration_s and tick_ms must be positive".into()));
        }
        let gossip = &file.gossip;
        if gossip.probe_timeout_ms >= gossip.probe_interval_ms {
            return Err((self.error)(None, "gossip.probe_timeout_ms must be below probe_interval_ms".into()));
        }
        let default_seeds = self.known_all(&gossip.seeds)?;
        let mut hosts = Vec::new();
        for host in &file.hosts {
            hosts.push(self.resolve_host(host, gossip, &default_seeds)?);
        }
        let mut start_order = self.known_all(&file.start.order)?;
        for name in names {
            if !start_order.contains(name) {
                start_order.push(name.clone());
            }
        }
        let mut faults = Vec::new();
        for fault in &file.faults {
            faults.push(self.resolve_fault(fault, duration, &hosts)?);
        }
        let mut expected_violations = Vec::new();
        for name in &file.expect.violated {
            if !INVARIANT_NAMES.contains(&name.get_ref().as_str()) {
                return self.fail(
                    name.span(),
                    format!("unknown invariant '{}' (known: {})", name.get_ref(), INVARIANT_NAMES.join(", ")),
                );
            }
            expected_violations.push(name.get_ref().clone());
        }
        Ok(World {
            name: file.name,
            description: file.description,
            duration,
            tick: Duration::from_millis(file.tick_ms),
            round: Duration::from_millis(gossip.probe_interval_ms),
            hosts,
            start_order,
            start_permuted: file.start.permuted,
            start_gap: Duration::from_millis(file.start.gap_ms),
            start_jitter: Duration::from_millis(file.start.jitter_ms),
            faults,
            converge_rounds: file.invariants.converge_rounds,
            serve: file.invariants.serve,
            detect_rounds: file.invariants.detect_rounds,
            expected_violations,
        })
    }

    fn resolve_host(
        &self,
        host: &HostSection,
        gossip: &GossipSection,
        default_seeds: &[String],
    ) -> Result<HostSpec, ScenarioError> {
        let name = host.name.get_ref().clone();
        let span = host.name.span();
        let misplaced = |field: &str, present: bool, allowed: bool| -> Result<(), ScenarioError> {
            if present && !allowed {
                return self
                    .fail(span.clone(), format!("host '{name}': '{field}' does not apply to this role"));
            }
            Ok(())
        };
        let is_client = host.role == RoleKind::Client;
        misplaced("template", host.template.is_some(), host.role == RoleKind::Balancer)?;
        misplaced("output", host.output.is_some(), host.role == RoleKind::Balancer)?;
        misplaced("tag", host.tag.is_some(), host.role == RoleKind::Backend)?;
        misplaced("target", host.target.is_some(), is_client)?;
        misplaced("interval_ms", host.interval_ms.is_some(), is_client)?;
        misplaced("timeout_ms", host.timeout_ms.is_some(), is_client)?;
        misplaced("join", host.join.is_some(), !is_client)?;
        misplaced("seeds", host.seeds.is_some(), !is_client)?;
        if is_client {
            let target = host.target.as_ref().map(|t| self.known(t)).transpose()?.ok_or_else(|| {
                (self.error)(Some(span.clone()), format!("client '{name}' needs a 'target'"))
            })?;
            let interval = Duration::from_millis(host.interval_ms.unwrap_or(100).max(1));
            let timeout = Duration::from_millis(host.timeout_ms.unwrap_or(2000).max(1));
            return Ok(HostSpec { name, kind: HostKind::Client(ClientSpec { target, interval, timeout }) });
        }
        let role = match host.role {
            RoleKind::Balancer => {
                let template = host.template.as_ref().ok_or_else(|| {
                    (self.error)(Some(span.clone()), format!("balancer '{name}' needs a 'template'"))
                })?;
                let path: PathBuf = self.base.join(template.get_ref());
                let text = std::fs::read_to_string(&path).or_else(|e| {
                    self.fail(template.span(), format!("cannot read template {}: {e}", path.display()))
                })?;
                // Check the template now: a syntax error is bad input, reported with its place.
                if let Err(error) = rollcall::render::Renderer::new(&path.display().to_string(), &text) {
                    return self.fail(template.span(), error.to_string());
                }
                Role::Balancer {
                    template_file: path.display().to_string(),
                    template_text: text,
                    output: PathBuf::from(
                        host.output.clone().unwrap_or_else(|| "/etc/haproxy/haproxy.cfg".into()),
                    ),
                }
            }
            RoleKind::Backend => Role::Backend,
            RoleKind::Client => unreachable!("clients returned above"),
        };
        let allowed_services = role.services();
        let mut permanent_failure = Vec::new();
        for service in &host.permanent_failure {
            if !allowed_services.contains(&service.get_ref().as_str()) {
                return self.fail(
                    service.span(),
                    format!(
                        "host '{name}' has no service '{}' (services: {})",
                        service.get_ref(),
                        allowed_services.join(", ")
                    ),
                );
            }
            permanent_failure.push(service.get_ref().clone());
        }
        let seeds = match &host.seeds {
            Some(seeds) => self.known_all(seeds)?,
            None => default_seeds.to_vec(),
        };
        let join = match host.join.unwrap_or(gossip.join) {
            JoinKind::Once => JoinMode::Once { timeout: Duration::from_millis(gossip.join_timeout_ms) },
            JoinKind::Retry => JoinMode::Retry {
                interval: Duration::from_millis(gossip.retry_interval_ms),
                max: gossip.retry_max,
            },
        };
        let node = NodeSpec {
            role,
            gossip: GossipSettings {
                seeds,
                join,
                probe_interval: Duration::from_millis(gossip.probe_interval_ms),
                probe_timeout: Duration::from_millis(gossip.probe_timeout_ms),
                gossip_interval: Duration::from_millis(gossip.gossip_interval_ms),
                reconnect_interval: Duration::from_millis(gossip.reconnect_interval_ms),
            },
            gossip_port: rollcall::node::GOSSIP_PORT,
            tag: host.tag.clone().unwrap_or_default(),
            permanent_failure,
        };
        Ok(HostSpec { name, kind: HostKind::Node(Box::new(node)) })
    }

    fn resolve_fault(
        &self,
        fault: &Spanned<FaultSection>,
        duration: Duration,
        hosts: &[HostSpec],
    ) -> Result<crate::faults::FaultSpec, ScenarioError> {
        use crate::faults::{FaultKind, FaultSpec};
        let span = fault.span();
        let names = &self.names;
        let known = |name: &String| -> Result<String, ScenarioError> {
            if names.contains(name) {
                Ok(name.clone())
            } else {
                self.fail(
                    span.clone(),
                    format!("unknown host '{name}' in fault (hosts: {})", names.join(", ")),
                )
            }
        };
        let known_all = |list: &[String]| list.iter().map(known).collect::<Result<Vec<_>, _>>();
        let window = |at_s: f64, for_s: f64| -> Result<(Duration, Duration), ScenarioError> {
            if !(at_s >= 0.0 && for_s > 0.0 && at_s.is_finite() && for_s.is_finite()) {
                return self.fail(span.clone(), "fault times must be finite, at_s >= 0 and for_s > 0");
            }
            if seconds(at_s) > duration {
                return self.fail(span.clone(), format!("fault at {at_s} s is after the end of the run"));
            }
            Ok((seconds(at_s), seconds(for_s)))
        };
        let all_or = |list: &Option<Vec<String>>| match list {
            Some(list) => known_all(list),
            None => Ok(names.to_vec()),
        };
        let spec = match fault.get_ref() {
            FaultSection::Partition { at_s, for_s, a, b } => {
                let (at, lasting) = window(*at_s, *for_s)?;
                let a = known_all(a)?;
                let b = match b {
                    Some(b) => known_all(b)?,
                    None => names.iter().filter(|n| !a.contains(n)).cloned().collect(),
                };
                if a.is_empty() || b.is_empty() || a.iter().any(|n| b.contains(n)) {
                    return self.fail(span, "a partition needs two disjoint, non-empty groups");
                }
                FaultSpec { at, lasting: Some(lasting), kind: FaultKind::Partition { a, b, oneway: false } }
            }
            FaultSection::PartitionOneway { at_s, for_s, from, to } => {
                let (at, lasting) = window(*at_s, *for_s)?;
                let (a, b) = (known_all(from)?, known_all(to)?);
                if a.is_empty() || b.is_empty() || a.iter().any(|n| b.contains(n)) {
                    return self.fail(span, "a partition needs two disjoint, non-empty groups");
                }
                FaultSpec { at, lasting: Some(lasting), kind: FaultKind::Partition { a, b, oneway: true } }
            }
            FaultSection::Loss { at_s, for_s, rate, hosts } => {
                let (at, lasting) = window(*at_s, *for_s)?;
                if !(0.0..=1.0).contains(rate) {
                    return self.fail(span, format!("loss rate {rate} is not within 0 and 1"));
                }
                FaultSpec {
                    at,
                    lasting: Some(lasting),
                    kind: FaultKind::Loss { hosts: all_or(hosts)?, rate: *rate },
                }
            }
            FaultSection::Latency { at_s, for_s, extra_ms, hosts } => {
                let (at, lasting) = window(*at_s, *for_s)?;
                let extra = Duration::from_millis(*extra_ms);
                FaultSpec {
                    at,
                    lasting: Some(lasting),
                    kind: FaultKind::Latency { hosts: all_or(hosts)?, extra },
                }
            }
            FaultSection::HostCrash { at_s, host, restart_after_s } => {
                // Without restart_after_s the host stays down until the end of the run.
                let (at, lasting) = window(*at_s, restart_after_s.unwrap_or(1.0))?;
                let lasting = restart_after_s.map(|_| lasting);
                FaultSpec { at, lasting, kind: FaultKind::HostCrash { host: known(host)? } }
            }
            FaultSection::ServiceCrash { at_s, host, service } => {
                let (at, _) = window(*at_s, 1.0)?;
                let name = known(host)?;
                let services = match hosts.iter().find(|h| h.name == name).map(|h| &h.kind) {
                    Some(HostKind::Node(node)) => node.role.services(),
                    _ => &[],
                };
                if !services.contains(&service.as_str()) {
                    return self.fail(span, format!("host '{name}' has no service '{service}'"));
                }
                FaultSpec {
                    at,
                    lasting: None,
                    kind: FaultKind::ServiceCrash { host: name, service: service.clone() },
                }
            }
        };
        Ok(spec)
    }
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}
