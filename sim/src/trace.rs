//! The trace: every observable event of a run, with simulated time and host, in order.
//!
//! The trace is what invariants read and what replays are compared by: its hash (BLAKE3 over
//! the JSON Lines form, a fixed algorithm) is printed by every run.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::faults::{FaultKind, FaultSpec};
use rollcall::host::{Disk, Event, Observer, RealDisk};

/// The host name world-level records (the plan, faults, links) are filed under.
pub const WORLD: &str = "world";

/// What the world did, as the engine records it. Invariants read these records, never the
/// engine: the effective state changes (a link cut, a host down, a loss rate) are recorded
/// after the engine has resolved overlapping faults, so nothing downstream counts them again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WorldEvent {
    /// The run, recorded first: its length, every host and its role (`balancer`, `backend`
    /// or `client`), start times, and every fault of the plan with its id (its index).
    Plan {
        duration_ms: u64,
        roles: BTreeMap<String, String>,
        start_at_ms: BTreeMap<String, u64>,
        faults: Vec<FaultSpec>,
        /// The hosts whose whole gossip view is recorded, if not every host (`[trace] views`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        views: Option<Vec<String>>,
        /// The members recorded in every host's view besides (`[trace] follow`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        follow: Vec<String>,
    },
    /// Fault `id` of the plan began.
    FaultStarted { id: usize, fault: FaultKind },
    /// Fault `id` of the plan was undone.
    FaultEnded { id: usize, fault: FaultKind },
    /// The host (the record's host) died with every process on it.
    HostCrashed,
    /// The host (the record's host) was powered on again after a crash.
    HostRestarted,
    /// Packets from every host of `from` to every host of `to` are now lost (TCP and UDP
    /// alike). Only links whose state changed are listed: one partition is one record per
    /// direction, however many hosts it cuts.
    LinkCut { from: Vec<String>, to: Vec<String> },
    /// Packets from every host of `from` to every host of `to` flow again.
    LinkRepaired { from: Vec<String>, to: Vec<String> },
    /// The gossip impairment now in force on the record's host's outgoing datagrams.
    GossipImpaired { loss_rate: f64, extra_latency_ms: u64 },
}

impl WorldEvent {
    /// What a plan step records at `phase`: the start or end of fault `id` (a repeat records
    /// nothing; the host records what it does).
    pub fn phase(id: usize, fault: &FaultKind, phase: crate::faults::Phase) -> Option<Self> {
        match phase {
            crate::faults::Phase::Start => Some(WorldEvent::FaultStarted { id, fault: fault.clone() }),
            crate::faults::Phase::End => Some(WorldEvent::FaultEnded { id, fault: fault.clone() }),
            crate::faults::Phase::Repeat => None,
        }
    }

    /// The record of a group of links cut (`cut`) or repaired.
    pub fn links(group: crate::links::LinkGroup, cut: bool) -> Self {
        let (from, to) = (group.from, group.to);
        if cut { WorldEvent::LinkCut { from, to } } else { WorldEvent::LinkRepaired { from, to } }
    }

    /// A plan with `roles` and nothing else: no faults, every host starting at 0 (for tests
    /// that build traces by hand).
    #[cfg(test)]
    pub(crate) fn bare_plan(duration_ms: u64, roles: BTreeMap<String, String>) -> Self {
        let (start_at_ms, faults, views, follow) = (BTreeMap::new(), Vec::new(), None, Vec::new());
        WorldEvent::Plan { duration_ms, roles, start_at_ms, faults, views, follow }
    }
}

/// A record's content: an event of the stack or of the world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    /// Something a host of the stack observed.
    Host(Event),
    /// Something the world did.
    World(WorldEvent),
}

/// One record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Simulated time in microseconds.
    pub t_us: u64,
    /// The host (or [`WORLD`]).
    pub host: String,
    /// What happened.
    pub event: Entry,
}

impl Record {
    /// Simulated time of the record.
    pub fn at(&self) -> Duration {
        Duration::from_micros(self.t_us)
    }
}

/// A whole run's records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// Records in the order they happened.
    pub records: Vec<Record>,
}

impl Trace {
    /// The trace as JSON Lines.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for record in &self.records {
            out.push_str(&serde_json::to_string(record).expect("records serialize"));
            out.push('\n');
        }
        out
    }

    /// BLAKE3 of the JSON Lines form, hex. Hashed record by record: at a thousand nodes the
    /// whole text would be close to a gigabyte.
    pub fn hash(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for record in &self.records {
            hasher.update(serde_json::to_string(record).expect("records serialize").as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().to_hex().to_string()
    }

    /// Writes the JSON Lines form atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        RealDisk.write_atomic(path, self.to_json_lines().as_bytes())
    }
}

/// Which entries of the hosts' gossip views a run records. Every host's view of every member
/// is nodes squared records (100 million at 10,000 nodes), so a large scenario records the
/// whole view of a few hosts, every host's view of a few members, and every host's own
/// entry. The invariants and figures that read views read only recorded entries, and the
/// report says so.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewScope {
    /// The hosts whose whole view is recorded; `None`: every host.
    pub observers: Option<BTreeSet<String>>,
    /// Members recorded in every host's view.
    pub followed: BTreeSet<String>,
    /// `[trace] balancer_loads = false`: the balancer's successful loads, each listing every
    /// server, are not recorded (its failed loads still are, on every engine).
    pub drops_balancer_loads: bool,
}

impl ViewScope {
    /// Whether `observer`'s view of `member` is recorded.
    pub fn records(&self, observer: &str, member: &str) -> bool {
        observer == member || self.records_all_of(observer) || self.followed.contains(member)
    }

    /// Whether `host`'s event is recorded: every event but view entries out of scope (and
    /// the balancer's loads, if dropped).
    pub fn keeps(&self, host: &str, event: &Event) -> bool {
        match event {
            Event::MemberState { member, .. } | Event::Member { member, .. } => self.records(host, member),
            Event::Reloaded { .. } => !self.drops_balancer_loads,
            _ => true,
        }
    }

    /// Whether every entry of every view is recorded.
    pub fn is_full(&self) -> bool {
        self.observers.is_none()
    }

    /// Whether `observer`'s whole view is recorded.
    pub fn records_all_of(&self, observer: &str) -> bool {
        self.observers.as_ref().is_none_or(|hosts| hosts.contains(observer))
    }
}

/// Most records one run's trace holds: a record is 160 bytes, and the limit stays under the
/// record vector's doubling at 2^23 records, so the trace takes at most 1.3 GB (at 10
/// million, growing past 2^23 asked for 2.7 GB at once). Past it the recorder keeps no more
/// and says so ([`Recorder::is_full`]); the engines then stop the run with an error, since a
/// verdict on a cut trace would be wrong. gossip-1k recording every view makes 6.5 million;
/// a `[trace]` section records fewer.
pub const TRACE_RECORDS_MAX: usize = 8_000_000;

/// Collects records from every host of a run.
#[derive(Clone)]
pub struct Recorder {
    records: Rc<RefCell<Vec<Record>>>,
    scope: Rc<ViewScope>,
    full: Rc<std::cell::Cell<bool>>,
    /// [`TRACE_RECORDS_MAX`]; smaller in tests.
    limit: usize,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::scoped(ViewScope::default())
    }
}

impl Recorder {
    /// A recorder that keeps the view entries of `scope` only.
    pub fn scoped(scope: ViewScope) -> Self {
        Self { records: Rc::default(), scope: Rc::new(scope), full: Rc::default(), limit: TRACE_RECORDS_MAX }
    }

    /// Whether `observer`'s view of `member` is recorded (an engine may skip the work for an
    /// entry that is not).
    pub fn records_view(&self, observer: &str, member: &str) -> bool {
        self.scope.records(observer, member)
    }

    /// Whether the balancer's successful loads are recorded.
    pub fn records_balancer_loads(&self) -> bool {
        !self.scope.drops_balancer_loads
    }

    /// Records something the world did to `host` (or [`WORLD`]).
    pub fn world(&self, at: Duration, host: &str, event: WorldEvent) {
        self.push(at, host, Entry::World(event));
    }

    fn push(&self, at: Duration, host: &str, event: Entry) {
        let t_us = at.as_micros() as u64;
        let mut records = self.records.borrow_mut();
        debug_assert!(records.last().is_none_or(|last| last.t_us <= t_us), "time never goes back");
        if records.len() >= self.limit {
            self.full.set(true);
            return;
        }
        records.push(Record { t_us, host: host.to_string(), event });
    }

    /// Whether a record was refused because the trace holds [`TRACE_RECORDS_MAX`].
    pub fn is_full(&self) -> bool {
        self.full.get()
    }

    /// How many records there are so far.
    pub fn len(&self) -> usize {
        self.records.borrow().len()
    }

    /// Whether no record was made yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a record from index `from` on matches.
    pub fn any_since(&self, from: usize, matches: impl Fn(&Record) -> bool) -> bool {
        self.records.borrow().get(from..).is_some_and(|records| records.iter().any(matches))
    }

    /// Takes the records collected so far.
    pub fn finish(&self) -> Trace {
        Trace { records: std::mem::take(&mut *self.records.borrow_mut()) }
    }
}

impl Observer for Recorder {
    fn record(&self, at: Duration, host: &str, event: Event) {
        if self.scope.keeps(host, &event) {
            self.push(at, host, Entry::Host(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_recorder_keeps_no_more_and_says_so() {
        let recorder = Recorder { limit: 3, ..Recorder::default() };
        for at in 0..3 {
            recorder.world(Duration::from_secs(at), WORLD, WorldEvent::bare_plan(1, BTreeMap::new()));
            assert!(!recorder.is_full());
        }
        recorder.world(Duration::from_secs(4), WORLD, WorldEvent::bare_plan(1, BTreeMap::new()));
        assert!(recorder.is_full());
        assert_eq!(recorder.finish().records.len(), 3);
    }
}
