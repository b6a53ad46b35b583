//! What a run prints: a compact timeline, a verdict per invariant, the trace hash, and on an
//! unexpected outcome the seed and the exact replay command.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;

use rollcall::host::{Event, MemberChange};

use crate::engines::EngineKind;
use crate::invariants::{Figures, Verdict};
use crate::trace::{Entry, Record, Trace, WorldEvent};
use crate::world::World;

/// The commit this binary was built from (seeds replay per commit).
pub const COMMIT: &str = env!("ROLLCALL_COMMIT");

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// Simulated time in milliseconds.
    pub t_ms: u64,
    /// Host.
    pub host: String,
    /// What happened, in words.
    pub what: String,
}

/// The result of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Scenario file as given.
    pub file: String,
    /// The seed.
    pub seed: u64,
    /// The engine that ran it.
    pub engine: EngineKind,
    /// The commit it replays on.
    pub commit: String,
    /// Simulated duration in milliseconds.
    pub duration_ms: u64,
    /// Number of trace records.
    pub records: usize,
    /// BLAKE3 of the trace.
    pub trace_hash: String,
    /// Verdicts in scenario order.
    pub verdicts: Vec<Verdict>,
    /// Windows, request counts and false failures.
    #[serde(flatten)]
    pub figures: Figures,
    /// Invariants the scenario expects to be violated.
    pub expected_violations: BTreeSet<String>,
    /// Expected violations pinned to hosts.
    pub expected_hosts: BTreeMap<String, BTreeSet<String>>,
    /// Whether the outcome is the expected one.
    pub as_expected: bool,
    /// Why it is not (empty when it is).
    pub mismatches: Vec<String>,
    /// The command that replays this run.
    pub replay: String,
    /// The compact timeline.
    pub timeline: Vec<TimelineEntry>,
    /// Which gossip view entries the trace holds, when not all (`[trace]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_scope: Option<String>,
}

impl Report {
    /// Builds the report of a finished run.
    pub fn new(
        world: &World,
        file: &str,
        seed: u64,
        trace: &Trace,
        verdicts: Vec<Verdict>,
        figures: Figures,
    ) -> Self {
        let expect = world.expect.for_seed(seed);
        let mismatches = expect.mismatches(&verdicts);
        Report {
            scenario: world.name.clone(),
            file: file.into(),
            seed,
            engine: world.engine,
            commit: COMMIT.into(),
            duration_ms: world.duration.as_millis() as u64,
            records: trace.records.len(),
            trace_hash: trace.hash(),
            as_expected: mismatches.is_empty(),
            mismatches,
            verdicts,
            figures,
            expected_violations: expect.violated,
            expected_hosts: expect.hosts,
            replay: replay_command(file, seed, world),
            timeline: timeline(trace),
            view_scope: describe_scope(&world.trace_scope, world.hosts.len()),
        }
    }

    /// The verdict of the invariant called `name`.
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.name == name)
    }

    /// The human-readable form.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} ({})  seed {}  commit {}",
            self.scenario, self.file, self.seed, self.commit
        );
        for entry in &self.timeline {
            let _ = writeln!(out, "{:>9.3}s  {:<8} {}", entry.t_ms as f64 / 1000.0, entry.host, entry.what);
        }
        self.write_figures(&mut out);
        if let Some(scope) = &self.view_scope {
            let _ = writeln!(out, "views recorded: {scope}");
        }
        let _ = writeln!(out, "invariants:");
        for verdict in &self.verdicts {
            let expected = self.expected_violations.contains(&verdict.name);
            let note = match (verdict.is_contradicted(), expected) {
                (true, true) => " (expected)",
                (false, true) => " (expected to be violated)",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  {:<15} {:<9} {} checked, {} failed: {}{note}",
                verdict.name, verdict.verdict, verdict.checked, verdict.failed, verdict.rule
            );
            for violation in &verdict.violations {
                let _ = writeln!(out, "      - [{}] {}", violation.hosts.join(","), violation.what);
            }
        }
        let _ = writeln!(out, "trace: {} records, hash {}", self.records, self.trace_hash);
        if self.engine == EngineKind::Real {
            let _ = writeln!(
                out,
                "real run: not replayable byte for byte (real processes on the wall clock); seed {} drew the plan, which --engine turmoil replays simulated",
                self.seed
            );
        }
        if self.verdicts.iter().any(|v| !v.holds()) {
            let _ = writeln!(out, "ROLLCALL_SEED={} (commit {})", self.seed, self.commit);
            let _ = writeln!(out, "replay: {}", self.replay);
        }
        if self.as_expected {
            let _ = writeln!(out, "outcome: as expected");
        } else {
            let _ = writeln!(out, "outcome: NOT as expected: {}", self.mismatches.join("; "));
        }
        out
    }

    fn write_figures(&self, out: &mut String) {
        let figures = &self.figures;
        let _ = writeln!(out, "windows:");
        // The event engine models the balancer's loads, not its serving: no health checks or
        // requests to measure.
        let serving = self.engine != EngineKind::Event;
        if serving {
            let _ = writeln!(out, "  D (detection) {}", figures.windows.detection.explain());
            let _ = writeln!(out, "  A (admission) {}", figures.windows.admission.explain());
        } else {
            let _ =
                writeln!(out, "  D and A (the balancer's health checks): not modelled on the event engine");
        }
        if let Some(gossip) = &figures.windows.gossip_detection {
            let _ = writeln!(out, "  gossip's D for hosts down or isolated {}", gossip.explain());
        }
        for caution in &figures.cautions {
            let _ = writeln!(out, "caution: {caution}");
        }
        let requests = &figures.requests;
        let failed: Vec<String> = requests.failed.iter().map(|(cause, n)| format!("{n} {cause}")).collect();
        let failed = if failed.is_empty() { "none".to_string() } else { failed.join(", ") };
        if serving {
            let _ = writeln!(out, "requests: {} sent, {} ok, failed: {failed}", requests.sent, requests.ok);
        }
        let _ = writeln!(
            out,
            "false failures: {} (members declared failed while running and reachable)",
            figures.false_failures
        );
        for limit in &figures.limits {
            let _ = writeln!(
                out,
                "limit reached: {} (at most {}) on {} host(s), at least {} times on one",
                limit.limit, limit.max, limit.hosts, limit.largest
            );
        }
        for attack in &figures.attacks {
            let sent: Vec<String> = attack.sent.iter().map(|(what, n)| format!("{n} {what}")).collect();
            let _ = writeln!(
                out,
                "attacker {}: sent {}; {} frames reached agents, {} refused, {} accepted",
                attack.attacker,
                sent.join(", "),
                attack.reached,
                attack.refused,
                attack.reached - attack.refused
            );
        }
    }
}

/// The exact command that replays a run. For a real run (not replayable byte for byte: the
/// seed fixes its plan and the hosts' random streams, not the kernel's scheduling) it runs
/// the same plan again; the report says so beside it.
pub fn replay_command(file: &str, seed: u64, world: &World) -> String {
    let pipeline = world.pipeline().name();
    let engine = world.engine.name();
    let file = shell_quoted(file);
    format!(
        "cargo run --release -p rollcall-sim -- run {file} --seed {seed} --pipeline {pipeline} --engine {engine}"
    )
}

/// `text` as one shell word: as it is when it holds nothing a shell reads specially, else in
/// single quotes (a quote inside closed, escaped and reopened), so a replay line pastes.
fn shell_quoted(text: &str) -> String {
    let plain = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | ',' | '+' | '=' | '@')
    };
    if !text.is_empty() && text.chars().all(plain) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Protocol-level events, plus the requests between two of them folded into one line.
fn timeline(trace: &Trace) -> Vec<TimelineEntry> {
    let mut entries = Vec::new();
    let mut requests: Option<RequestRun> = None;
    for record in &trace.records {
        if let Entry::Host(Event::Request { id, status, served_by, error, .. }) = &record.event {
            let outcome = match (status, error) {
                (Some(status), _) => status.to_string(),
                (None, Some(error)) => format!("failed ({})", error.split(':').next().unwrap_or(error)),
                (None, None) => "failed".into(),
            };
            let run = requests.get_or_insert_with(|| RequestRun {
                t_ms: record.t_us / 1000,
                host: record.host.clone(),
                first: *id,
                last: *id,
                outcomes: BTreeMap::new(),
                served_by: BTreeSet::new(),
            });
            run.last = *id;
            *run.outcomes.entry(outcome).or_default() += 1;
            run.served_by.extend(served_by.clone());
            continue;
        }
        if let Some(what) = describe(record) {
            // A run of requests ends at any other event, so each run has one context.
            entries.extend(requests.take().map(RequestRun::entry));
            entries.push(TimelineEntry { t_ms: record.t_us / 1000, host: record.host.clone(), what });
        }
    }
    entries.extend(requests.map(RequestRun::entry));
    entries
}

struct RequestRun {
    t_ms: u64,
    host: String,
    first: u64,
    last: u64,
    outcomes: BTreeMap<String, u32>,
    served_by: BTreeSet<String>,
}

impl RequestRun {
    fn entry(self) -> TimelineEntry {
        let outcomes: Vec<String> =
            self.outcomes.iter().map(|(outcome, n)| format!("{n} x {outcome}")).collect();
        let by = if self.served_by.is_empty() {
            String::new()
        } else {
            format!(" (served by {})", self.served_by.into_iter().collect::<Vec<_>>().join(", "))
        };
        TimelineEntry {
            t_ms: self.t_ms,
            host: self.host,
            what: format!("requests #{}..#{}: {}{by}", self.first, self.last, outcomes.join(", ")),
        }
    }
}

fn describe(record: &Record) -> Option<String> {
    let event = match &record.event {
        Entry::World(event) => return describe_world(event),
        Entry::Host(event) => event,
    };
    let text = match event {
        Event::HostBooted { boot } => format!("host booted (boot {boot})"),
        Event::JoinAttempt { attempt, seeds } => format!("join attempt {attempt} via {}", seeds.join(", ")),
        Event::Joined { via } => format!("joined via {via}"),
        Event::GossipSynced => "gossip view synced".into(),
        Event::JoinGaveUp { attempts } => format!("join gave up after {attempts} attempt(s)"),
        Event::Leaving => "gossip agent leaving the cluster".into(),
        Event::Left => "gossip agent left the cluster and stops".into(),
        Event::Member { change, member, addr, tags } => describe_member(*change, member, addr, tags),
        Event::ServiceStarted { service } => format!("service {service} started"),
        Event::ServiceExited { service, status } => format!("service {service} exited ({status})"),
        Event::ServiceStopped { service, stopped: true } => format!("service {service} stopped (SIGSTOP)"),
        Event::ServiceStopped { service, stopped: false } => format!("service {service} continued (SIGCONT)"),
        Event::ServiceDown { service } => format!("service {service} down: not restarted"),
        Event::HostHalted { code } => format!("host halted with exit code {code}"),
        Event::NodeShutdown { code } => format!("node shutting down (exit code {code})"),
        Event::ServiceReady { service } => format!("service {service} ready"),
        Event::ServiceFinished { service, code: Some(code) } => {
            format!("service {service} finish exited {code}")
        }
        Event::ServiceFinished { service, code: None } => {
            format!("service {service} finish killed at its timeout")
        }
        Event::Rendered { path, backends, .. } => {
            format!("rendered {path}: backends [{}]", backends.join(", "))
        }
        Event::RenderStarted { path } => format!("writing {path}"),
        Event::RenderFailed { error } => format!("render failed: {error}"),
        Event::RenderRejected { error } => format!("rendering rejected, old file kept: {error}"),
        Event::Reloaded { bind, servers } => format!("balancer loaded {bind} -> [{}]", servers.join(", ")),
        Event::ReloadFailed { error } => format!("balancer could not load its config: {error}"),
        Event::Accepting { bind, pids } => {
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            format!("balancer processes accepting on {bind}: [{}]", pids.join(", "))
        }
        Event::ServerState { server, up, reason } => {
            format!("server {server} {}: {reason}", if *up { "UP" } else { "DOWN" })
        }
        Event::DatagramRejected { from, error } => format!("rejected datagram from {from}: {error}"),
        Event::StreamRejected { from, error } => format!("rejected push-pull from {from}: {error}"),
        Event::AttackSent { what, to, bytes, stream, .. } => {
            format!("attack: {what} to {to} ({bytes} bytes{})", if *stream { ", stream" } else { "" })
        }
        Event::KeyringChanged { op, keys } => format!("keyring {op}: {keys} key(s) installed"),
        Event::KeyringRefused { op, error } => format!("keyring {op} refused: {error}"),
        Event::CommandRefused { command, error } => format!("serf {command} failed: {error}"),
        Event::HealthScore { score } => format!("gossip health score {score} (probes {}x slower)", score + 1),
        Event::LimitReached { limit, max, count } => {
            format!("limit {limit} (at most {max}) reached, {count} times so far")
        }
        Event::DatagramSent { .. }
        | Event::DatagramReceived { .. }
        | Event::DatagramDropped { .. }
        | Event::StreamSent { .. }
        | Event::StreamReceived { .. }
        | Event::Timer { .. }
        | Event::Proxied { .. }
        | Event::Forwarding { .. }
        | Event::MemberState { .. }
        | Event::Request { .. } => return None,
    };
    Some(text)
}

/// A member event as Serf's handlers see it: `member-join s1 10.0.0.2:7946 role=backend`.
fn describe_member(
    change: MemberChange,
    member: &str,
    addr: &str,
    tags: &BTreeMap<String, String>,
) -> String {
    let change = match change {
        MemberChange::Join => "member-join",
        MemberChange::Update => "member-update",
        MemberChange::Failed => "member-failed",
        MemberChange::Leave => "member-leave",
        MemberChange::Reap => "member-reap",
    };
    let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{change} {member} {addr} {}", tags.join(","))
}

fn describe_world(event: &WorldEvent) -> Option<String> {
    let text = match event {
        WorldEvent::FaultStarted { id, fault } => format!("FAULT #{id} {fault}"),
        WorldEvent::FaultEnded { id, fault } => format!("HEAL #{id} {fault}"),
        WorldEvent::HostCrashed => "host crashed".into(),
        WorldEvent::HostRestarted => "host powered on".into(),
        WorldEvent::Plan { .. }
        | WorldEvent::LinkCut { .. }
        | WorldEvent::LinkRepaired { .. }
        | WorldEvent::GossipImpaired { .. } => return None,
    };
    Some(text)
}

/// What a partial view scope records, for the report; `None` when every entry is.
fn describe_scope(scope: &crate::trace::ViewScope, hosts: usize) -> Option<String> {
    let observers = scope.observers.as_ref()?;
    let list =
        |names: &std::collections::BTreeSet<String>| names.iter().cloned().collect::<Vec<_>>().join(", ");
    let followed = match scope.followed.len() {
        0 => String::new(),
        _ => format!(", every host's entry for {}", list(&scope.followed)),
    };
    Some(format!(
        "the whole view of {} of {hosts} hosts ({}){followed}, and every host's own entry; \
         views, left, incarnation and the gossip figures read these entries only",
        observers.len(),
        list(observers)
    ))
}

#[cfg(test)]
mod replay_tests {
    use super::shell_quoted;

    #[test]
    fn a_replay_line_quotes_a_path_a_shell_would_split_or_expand() {
        assert_eq!(shell_quoted("scenarios/lab.toml"), "scenarios/lab.toml");
        assert_eq!(shell_quoted("/tmp/dir with space/n$x'r.toml"), r"'/tmp/dir with space/n$x'\''r.toml'");
        assert_eq!(shell_quoted(""), "''");
    }
}
