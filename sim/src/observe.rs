//! The observation model: what the invariants may look at, rebuilt from the trace alone. The
//! trace starts with the plan (hosts, roles, faults) and holds every effective change the
//! engine made (links cut and repaired, hosts crashed and restarted, gossip impairments), so
//! any engine that writes the same trace gets the same verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rollcall::host::{Event, MemberChange, MemberStatus};
use rollcall::node::RENDERER_SERVICE;

use crate::faults::{FaultKind, FaultSpec};
use crate::trace::{Entry, Trace, WorldEvent};

/// A set of names that changes at known times (piecewise constant, starting empty).
#[derive(Clone, Debug, Default)]
pub struct SetTimeline {
    changes: Vec<(Duration, BTreeSet<String>)>,
}

impl SetTimeline {
    fn push(&mut self, at: Duration, set: BTreeSet<String>) {
        self.changes.push((at, set));
    }

    /// The set in force at `at`.
    pub fn at(&self, at: Duration) -> &BTreeSet<String> {
        static EMPTY: BTreeSet<String> = BTreeSet::new();
        let index = self.changes.partition_point(|(t, _)| *t <= at);
        if index == 0 { &EMPTY } else { &self.changes[index - 1].1 }
    }

    /// Change times within `(from, to]`.
    pub fn changes_within(&self, from: Duration, to: Duration) -> impl Iterator<Item = Duration> + '_ {
        self.changes.iter().map(|(t, _)| *t).filter(move |t| *t > from && *t <= to)
    }

    /// Every change, in order.
    pub fn changes(&self) -> &[(Duration, BTreeSet<String>)] {
        &self.changes
    }
}

/// Time a supervisor takes beyond its restart delay to start a service (a few ticks).
pub const AGENT_START_SLACK: Duration = Duration::from_millis(10);

/// A yes/no property over time, as half-open intervals where it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intervals(pub Vec<(Duration, Duration)>);

impl Intervals {
    /// Whether it holds at `at`.
    pub fn contains(&self, at: Duration) -> bool {
        self.0.iter().any(|(start, end)| *start <= at && at < *end)
    }

    /// Whether it holds at some instant of `[from, to]`.
    pub fn meets(&self, from: Duration, to: Duration) -> bool {
        self.0.iter().any(|(start, end)| *start <= to && from < *end)
    }

    /// The start of the interval holding `at`, if any.
    pub fn since(&self, at: Duration) -> Option<Duration> {
        self.0.iter().find(|(start, end)| *start <= at && at < *end).map(|(start, _)| *start)
    }

    /// The end of the interval holding `at`, if any.
    pub fn until(&self, at: Duration) -> Option<Duration> {
        self.0.iter().find(|(start, end)| *start <= at && at < *end).map(|(_, end)| *end)
    }

    /// Whether it holds throughout `[from, to)`.
    pub fn covers(&self, from: Duration, to: Duration) -> bool {
        self.0.iter().any(|(start, end)| *start <= from && to <= *end)
    }

    /// How long it holds within `[from, to)`.
    pub fn within(&self, from: Duration, to: Duration) -> Duration {
        let overlap = |(start, end): &(Duration, Duration)| (*end).min(to).saturating_sub((*start).max(from));
        self.0.iter().map(overlap).sum()
    }

    /// Every start and end, in order.
    pub fn boundaries(&self) -> impl Iterator<Item = Duration> + '_ {
        self.0.iter().flat_map(|(start, end)| [*start, *end])
    }
}

/// A client request and how it ended.
#[derive(Clone, Debug)]
pub struct RequestObservation {
    /// The client host.
    pub client: String,
    /// Request number.
    pub id: u64,
    /// Its `x-request-id`, unique in the run.
    pub request_id: String,
    /// Sent at.
    pub sent: Duration,
    /// Answered or failed at.
    pub done: Duration,
    /// HTTP status, if any.
    pub status: Option<u16>,
    /// The webapp that answered.
    pub served_by: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The server the balancer sent it to, if the balancer recorded an answer for it.
    pub routed_to: Option<String>,
    /// Whether the balancer recorded an answer for it at all.
    pub reached_balancer: bool,
}

impl RequestObservation {
    /// Whether a webapp answered 200.
    pub fn ok(&self) -> bool {
        self.status == Some(200) && self.served_by.is_some()
    }
}

/// A fault's window as the trace shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    /// Its id in the plan.
    pub id: usize,
    /// What it was.
    pub kind: FaultKind,
    /// When it began.
    pub start: Duration,
    /// When it was undone (`None`: it never was, or it is an instant).
    pub end: Option<Duration>,
}

/// When a run's faults stopped changing the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// There were no faults.
    NoFaults,
    /// The last one settled then.
    At(Duration),
    /// A partition, loss or latency lasts to the end of the run.
    Never,
}

/// One change of a host's gossip view.
#[derive(Clone, Debug, PartialEq)]
pub enum ViewChange {
    /// The agent (re)started or its host went down: the view is empty.
    Reset,
    /// A member's entry now reads so.
    Set { member: String, status: MemberStatus, incarnation: u32 },
    /// The member's entry is gone: a prune (`force-leave -prune`, or a leave intent that
    /// prunes) or the reaper erased it (the agent's `member-reap` event).
    Erase { member: String },
}

impl ViewChange {
    /// Applies the change to a view (member -> status, incarnation).
    pub fn apply(&self, view: &mut BTreeMap<String, (MemberStatus, u32)>) {
        match self {
            ViewChange::Reset => view.clear(),
            ViewChange::Set { member, status, incarnation } => {
                view.insert(member.clone(), (*status, *incarnation));
            }
            ViewChange::Erase { member } => {
                view.remove(member);
            }
        }
    }
}

/// One entry of a host's supervision record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Supervision {
    /// The host booted: a new supervisor.
    Booted,
    /// The host crashed or halted: every run ended.
    Down,
    /// A run of the service started.
    Started(String),
    /// A run of the service ended.
    Exited(String),
    /// The service's finish script ended (or was killed).
    Finished(String),
    /// The node's shutdown began.
    Shutdown,
}

/// A `member-failed` event: `observer` declared `member` dead.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedEvent {
    /// When.
    pub at: Duration,
    /// Who declared it.
    pub observer: String,
    /// Who was declared dead.
    pub member: String,
}

/// Everything the invariants read.
#[derive(Debug, Default)]
pub struct Observations {
    /// The balancer host.
    pub balancer: String,
    /// Every set of tags the balancer's agent saw each member carry (what its renderer
    /// could render), in the order first seen.
    pub balancer_tags: BTreeMap<String, Vec<BTreeMap<String, String>>>,
    /// The webapp hosts.
    pub webapps: Vec<String>,
    /// The gossip members: the balancer and the webapps.
    pub nodes: Vec<String>,
    /// Each node's place in `nodes`: found by a search, a 10,000-node run's checks during a
    /// cut would cost nodes squared.
    node_index: BTreeMap<String, usize>,
    /// The request host(s).
    pub clients: Vec<String>,
    /// End of the run.
    pub end: Duration,
    /// The planned faults, by id.
    pub planned: Vec<FaultSpec>,
    /// Fault windows as they happened.
    pub faults: Vec<FaultWindow>,
    /// The balancer's rendered backend list over time.
    pub rendered: SetTimeline,
    /// The servers the balancer has loaded over time.
    pub loaded: SetTimeline,
    /// Loads of a configuration the balancer failed, with the error.
    pub load_failures: Vec<(Duration, String)>,
    /// The balancer processes accepting connections, over time (none while its host is down).
    pub accepting: Vec<(Duration, Vec<u32>)>,
    /// When each host was running.
    pub host_up: BTreeMap<String, Intervals>,
    /// When each service of each host was running (its host up and the service started).
    pub service_up: BTreeMap<(String, String), Intervals>,
    /// Cut links over the run, as the engine recorded them (in groups).
    links: crate::links::LinkTimeline,
    /// When any link is cut.
    any_cut: Intervals,
    /// Times at which gossip's connectivity may change (a link or an agent starts or stops),
    /// in order.
    topology_points: Vec<Duration>,
    /// [`Observations::change_points`], computed when first asked for.
    change_points: std::cell::OnceCell<Vec<Duration>>,
    /// Each node's gossip component at a topology point, computed when first asked for.
    components: std::cell::RefCell<BTreeMap<Duration, std::rc::Rc<Vec<Option<usize>>>>>,
    /// Which view entries the trace holds (the run's `[trace]` section).
    pub scope: crate::trace::ViewScope,
    /// Each node's gossip view changes, in order: only the entries `scope` records.
    pub views: BTreeMap<String, Vec<(Duration, ViewChange)>>,
    /// When each node's agent became synced (`true`) or started over unsynced (`false`: the
    /// agent started, or its host went down), in order.
    pub synced: BTreeMap<String, Vec<(Duration, bool)>>,
    /// Each node's gossip health score changes (Lifeguard), in order; a restarted agent
    /// starts healthy.
    pub health: BTreeMap<String, Vec<(Duration, u32)>>,
    /// Per limit, per host: the limit's bound and the largest count recorded (the records
    /// are log-spaced, so the count is at least half the true one at the run's end).
    pub limits: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
    /// Every `member-failed` event.
    pub failed_events: Vec<FailedEvent>,
    /// Graceful leaves: when each agent finished its leave and stopped.
    pub left: Vec<(Duration, String)>,
    /// Graceful leaves: when each agent began its leave.
    pub leaving: Vec<(Duration, String)>,
    /// Each host's supervision record, in order.
    pub supervision: BTreeMap<String, Vec<(Duration, Supervision)>>,
    /// Client requests in completion order.
    pub requests: Vec<RequestObservation>,
    /// What attacker hosts sent, and which of their frames agents refused.
    pub attacks: crate::outsiders::Attacks,
}

/// `(host, service)` event lists while the trace is read.
type Toggles = BTreeMap<(String, String), Vec<(Duration, bool)>>;

/// Requests the balancer recorded: (time, request id, the server it picked if any).
type Proxied = Vec<(Duration, String, Option<String>)>;

#[derive(Default)]
struct Reading {
    host_events: BTreeMap<String, Vec<(Duration, bool)>>,
    services: Toggles,
    proxied: Proxied,
    open_faults: BTreeMap<usize, usize>,
    /// Balancer server name -> its `ip:port`.
    server_addrs: BTreeMap<String, String>,
    /// Gossip member -> its gossip `ip:port`.
    member_addrs: BTreeMap<String, String>,
}

impl Observations {
    /// Builds the model of one run from its trace.
    pub fn new(trace: &Trace) -> Self {
        let mut obs = Observations::default();
        let mut reading = Reading::default();
        for record in &trace.records {
            let at = record.at();
            match &record.event {
                Entry::World(event) => obs.read_world(&mut reading, at, &record.host, event),
                Entry::Host(event) => obs.read_host(&mut reading, at, &record.host, event),
            }
        }
        obs.finish(reading);
        obs.attacks = crate::outsiders::Attacks::new(trace);
        obs
    }

    fn read_world(&mut self, reading: &mut Reading, at: Duration, host: &str, event: &WorldEvent) {
        match event {
            WorldEvent::Plan { duration_ms, roles, faults, views, follow, .. } => {
                self.scope = crate::trace::ViewScope {
                    observers: views.as_ref().map(|hosts| hosts.iter().cloned().collect()),
                    followed: follow.iter().cloned().collect(),
                    // What is read of the balancer's loads is what was recorded.
                    drops_balancer_loads: false,
                };
                self.end = Duration::from_millis(*duration_ms);
                let with_role = |role: &str| -> Vec<String> {
                    roles.iter().filter(|(_, r)| r.as_str() == role).map(|(h, _)| h.clone()).collect()
                };
                self.balancer = with_role("balancer").into_iter().next().unwrap_or_default();
                self.webapps = with_role("backend");
                self.clients = with_role("client");
                self.nodes = std::iter::once(self.balancer.clone()).chain(self.webapps.clone()).collect();
                self.node_index = self.nodes.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
                self.planned = faults.clone();
                for name in roles.keys() {
                    self.host_up.insert(name.clone(), Intervals::default());
                }
                self.links = crate::links::LinkTimeline::new(roles.keys());
            }
            WorldEvent::FaultStarted { id, fault } => {
                reading.open_faults.insert(*id, self.faults.len());
                self.faults.push(FaultWindow { id: *id, kind: fault.clone(), start: at, end: None });
            }
            WorldEvent::FaultEnded { id, .. } => {
                if let Some(index) = reading.open_faults.remove(id) {
                    self.faults[index].end = Some(at);
                }
            }
            WorldEvent::HostCrashed => self.host_down(reading, at, host),
            WorldEvent::HostRestarted | WorldEvent::GossipImpaired { .. } => {}
            WorldEvent::LinkCut { from, to } => self.links.record(at, true, from, to),
            WorldEvent::LinkRepaired { from, to } => self.links.record(at, false, from, to),
        }
    }

    fn supervised(&mut self, at: Duration, host: &str, entry: Supervision) {
        self.supervision.entry(host.to_string()).or_default().push((at, entry));
    }

    fn host_down(&mut self, reading: &mut Reading, at: Duration, host: &str) {
        self.supervised(at, host, Supervision::Down);
        reading.host_events.entry(host.to_string()).or_default().push((at, false));
        for ((service_host, _), events) in reading.services.iter_mut() {
            if service_host == host {
                events.push((at, false));
            }
        }
        self.views.entry(host.to_string()).or_default().push((at, ViewChange::Reset));
        self.synced.entry(host.to_string()).or_default().push((at, false));
        if host == self.balancer && self.accepting.last().is_some_and(|(_, pids)| !pids.is_empty()) {
            self.accepting.push((at, Vec::new()));
        }
    }

    /// Each reader takes its own kinds of event and ignores the rest.
    fn read_host(&mut self, reading: &mut Reading, at: Duration, host: &str, event: &Event) {
        self.read_supervision(reading, at, host, event);
        self.read_gossip(reading, at, host, event);
        // Only the balancer's pipeline is checked; other hosts' records of it are ignored.
        if host == self.balancer {
            self.read_balancer(reading, at, event);
        }
        self.read_request(at, host, event);
    }

    /// Boots, halts and the services' lives on `host`.
    fn read_supervision(&mut self, reading: &mut Reading, at: Duration, host: &str, event: &Event) {
        let service_event = |service: &str| (host.to_string(), service.to_string());
        match event {
            Event::HostBooted { .. } => {
                self.supervised(at, host, Supervision::Booted);
                reading.host_events.entry(host.to_string()).or_default().push((at, true))
            }
            Event::ServiceFinished { service, .. } => {
                self.supervised(at, host, Supervision::Finished(service.clone()))
            }
            Event::NodeShutdown { .. } => self.supervised(at, host, Supervision::Shutdown),
            Event::HostHalted { .. } => self.host_down(reading, at, host),
            Event::ServiceStarted { service } => {
                self.supervised(at, host, Supervision::Started(service.clone()));
                reading.services.entry(service_event(service)).or_default().push((at, true));
                if service == "serf" {
                    self.views.entry(host.to_string()).or_default().push((at, ViewChange::Reset));
                    self.synced.entry(host.to_string()).or_default().push((at, false));
                    self.health.entry(host.to_string()).or_default().push((at, 0));
                }
            }
            // A stopped service answers nothing until it is continued: not running meanwhile.
            Event::ServiceStopped { service, stopped } => {
                reading.services.entry(service_event(service)).or_default().push((at, !stopped))
            }
            Event::ServiceExited { service, .. } => {
                self.supervised(at, host, Supervision::Exited(service.clone()));
                reading.services.entry(service_event(service)).or_default().push((at, false))
            }
            _ => {}
        }
    }

    /// What `host`'s gossip agent records: its view, health, limits, leaves and failures.
    fn read_gossip(&mut self, reading: &mut Reading, at: Duration, host: &str, event: &Event) {
        match event {
            Event::HealthScore { score } => {
                self.health.entry(host.to_string()).or_default().push((at, *score))
            }
            Event::LimitReached { limit, max, count } => {
                let hosts = self.limits.entry(limit.clone()).or_default();
                let entry = hosts.entry(host.to_string()).or_insert((*max, 0));
                *entry = (*max, entry.1.max(*count));
            }
            Event::MemberState { member, status, incarnation } => {
                let change =
                    ViewChange::Set { member: member.clone(), status: *status, incarnation: *incarnation };
                self.views.entry(host.to_string()).or_default().push((at, change));
            }
            Event::Left => self.left.push((at, host.to_string())),
            Event::Leaving => self.leaving.push((at, host.to_string())),
            Event::GossipSynced => self.synced.entry(host.to_string()).or_default().push((at, true)),
            Event::Member { change: MemberChange::Reap, member, addr, .. } => {
                reading.member_addrs.insert(member.clone(), addr.clone());
                let change = ViewChange::Erase { member: member.clone() };
                self.views.entry(host.to_string()).or_default().push((at, change));
            }
            Event::Member { change: MemberChange::Failed, member, .. } => self
                .failed_events
                .push(FailedEvent { at, observer: host.to_string(), member: member.clone() }),
            Event::Member { member, addr, tags, .. } => {
                reading.member_addrs.insert(member.clone(), addr.clone());
                if host == self.balancer {
                    let seen = self.balancer_tags.entry(member.clone()).or_default();
                    if !seen.contains(tags) {
                        seen.push(tags.clone());
                    }
                }
            }
            _ => {}
        }
    }

    /// The balancer's renders, loads, listeners and the requests it proxied.
    fn read_balancer(&mut self, reading: &mut Reading, at: Duration, event: &Event) {
        match event {
            Event::Rendered { backends, .. } => self.rendered.push(at, backends.iter().cloned().collect()),
            Event::Reloaded { servers, .. } => self.loaded.push(at, servers.iter().cloned().collect()),
            Event::ReloadFailed { error } => self.load_failures.push((at, error.clone())),
            Event::Accepting { pids, .. } => self.accepting.push((at, pids.clone())),
            Event::Forwarding { request: Some(id), server, addr } => {
                reading.proxied.push((at, id.clone(), Some(server.clone())));
                reading.server_addrs.insert(server.clone(), addr.clone());
            }
            Event::Proxied { request: Some(id), server: None, .. } => {
                reading.proxied.push((at, id.clone(), None))
            }
            _ => {}
        }
    }

    /// A client's request, as the client saw it end.
    fn read_request(&mut self, at: Duration, host: &str, event: &Event) {
        if let Event::Request { id, request_id, sent_at_us, status, served_by, error } = event {
            self.requests.push(RequestObservation {
                client: host.to_string(),
                id: *id,
                request_id: request_id.clone(),
                sent: Duration::from_micros(*sent_at_us),
                done: at,
                status: *status,
                served_by: served_by.clone(),
                error: error.clone(),
                routed_to: None,
                reached_balancer: false,
            })
        }
    }

    fn finish(&mut self, reading: Reading) {
        let end = self.end;
        let webapp_of = webapp_by_address(&reading, &self.webapps);
        for (host, events) in reading.host_events {
            self.host_up.insert(host, intervals(events, end));
        }
        for (key, events) in reading.services {
            self.service_up.insert(key, intervals(events, end));
        }
        self.any_cut = intervals(self.links.any_cut_steps(), end);
        let agents = self.nodes.iter().filter_map(|n| self.service_up.get(&(n.clone(), "serf".to_string())));
        let mut points: Vec<Duration> = agents.chain([&self.any_cut]).flat_map(|i| i.boundaries()).collect();
        points.extend(self.links.change_times().filter(|t| *t < end));
        points.sort();
        points.dedup();
        self.topology_points = points;
        // The balancer may answer after the client gave up: match by id, not by time. A retry
        // redispatched elsewhere is recorded later, so the last server picked wins.
        let mut answers: BTreeMap<&str, &Option<String>> = BTreeMap::new();
        for (_, id, server) in &reading.proxied {
            let entry = answers.entry(id.as_str()).or_insert(server);
            if server.is_some() {
                *entry = server;
            }
        }
        for request in &mut self.requests {
            if let Some(server) = answers.get(request.request_id.as_str()) {
                request.reached_balancer = true;
                // The template names servers; the address says which webapp it is.
                request.routed_to =
                    server.as_ref().map(|s| webapp_of.get(s).cloned().unwrap_or_else(|| s.clone()));
            }
        }
    }

    /// The first time the balancer's rendered backends list every webapp.
    pub fn converged_at(&self) -> Option<Duration> {
        let all: BTreeSet<String> = self.webapps.iter().cloned().collect();
        self.rendered.changes.iter().find(|(_, set)| set.is_superset(&all)).map(|(at, _)| *at)
    }

    /// When `service` ran on `host`.
    pub fn service(&self, host: &str, service: &str) -> Intervals {
        self.service_runs(host, service).cloned().unwrap_or_default()
    }

    /// [`Observations::service`] without a copy.
    fn service_runs(&self, host: &str, service: &str) -> Option<&Intervals> {
        self.service_up.get(&(host.to_string(), service.to_string()))
    }

    /// Whether `service` on `host` is down at `at` because the world stopped it: a
    /// `service-crash` fault hit its last run and s6's restart delay (and 10 ms) has not
    /// passed since, or a `stall` holds it. A service that stopped on its own, or that s6
    /// does not restart in time (a finish script that exits 125), is the stack's failure,
    /// and excuses nothing.
    pub fn stopped_by_fault(&self, host: &str, service: &str, at: Duration) -> bool {
        let none = Intervals::default();
        let runs = self.service_up.get(&(host.to_string(), service.to_string())).unwrap_or(&none);
        if runs.contains(at) {
            return false;
        }
        // A run stopped the instant it started (a stall at boot) leaves no interval.
        let last_run = runs.0.iter().rev().find(|(_, end)| *end <= at).copied();
        self.faults.iter().any(|fault| match &fault.kind {
            FaultKind::ServiceCrash { host: h, service: s } if h == host && s == service => {
                let slack = rollcall::supervisor::core::RESTART_DELAY + AGENT_START_SLACK;
                last_run.is_some_and(|(started, stopped)| {
                    started <= fault.start && fault.start <= stopped && at < stopped + slack
                })
            }
            FaultKind::Stall { host: h, service: s } if h == host && s == service => {
                fault.start <= at && self.hold_end(host, fault).is_none_or(|end| at < end)
            }
            _ => false,
        })
    }

    /// The highest gossip health score `host` had at any time within `from..=to`.
    pub fn worst_health(&self, host: &str, from: Duration, to: Duration) -> u32 {
        let changes = self.health.get(host).map_or(&[][..], Vec::as_slice);
        let before = changes.iter().rev().find(|(t, _)| *t <= from).map_or(0, |(_, score)| *score);
        let within = changes.iter().filter(|(t, _)| from < *t && *t <= to).map(|(_, score)| *score);
        within.fold(before, u32::max)
    }

    /// Whether `host` runs at `at`.
    pub fn is_up(&self, host: &str, at: Duration) -> bool {
        self.host_up.get(host).is_some_and(|i| i.contains(at))
    }

    /// Whether `webapp`'s web service runs at `at`.
    pub fn webapp_runs(&self, webapp: &str, at: Duration) -> bool {
        self.service_runs(webapp, "webapp").is_some_and(|runs| runs.contains(at))
    }

    /// Whether `node`'s gossip agent runs at `at`.
    pub fn agent_runs(&self, node: &str, at: Duration) -> bool {
        self.service_runs(node, "serf").is_some_and(|runs| runs.contains(at))
    }

    /// Whether `node`'s gossip agent is still running when the run ends.
    pub fn agent_runs_at_end(&self, node: &str) -> bool {
        self.service_runs(node, "serf")
            .and_then(|runs| runs.0.last())
            .is_some_and(|(_, end)| *end >= self.end)
    }

    /// Whether packets from `from` to `to` are lost at `at`.
    pub fn is_cut_oneway(&self, from: &str, to: &str, at: Duration) -> bool {
        self.links.is_cut(from, to, at)
    }

    /// Whether traffic between `a` and `b` is cut in either direction at `at` (a TCP
    /// exchange needs both directions).
    pub fn is_cut(&self, a: &str, b: &str, at: Duration) -> bool {
        self.is_cut_oneway(a, b, at) || self.is_cut_oneway(b, a, at)
    }

    /// Whether `name` is one of the gossip members (the balancer or a webapp).
    pub fn is_node(&self, name: &str) -> bool {
        self.node_index.contains_key(name)
    }

    /// Whether gossip can get from `from` to `to` at `at`, directly or relayed by nodes whose
    /// agents run, over links that work both ways. A node cut off from one peer but not from
    /// a relay refutes its suspicion through the relay, so gossip keeps it.
    pub fn gossip_path(&self, from: &str, to: &str, at: Duration) -> bool {
        // Without a cut link, every running agent is one hop away: no search needed (it
        // would cost nodes squared at every point the oracle samples).
        if !self.any_cut.contains(at) {
            return from == to || self.agent_runs(to, at);
        }
        let index = |name: &str| self.node_index.get(name).copied();
        if let (true, Some(f), Some(t)) = (self.agent_runs(from, at), index(from), index(to)) {
            let components = self.components_at(at);
            return f == t || (components[f].is_some() && components[f] == components[t]);
        }
        // `from` relays nothing: it reaches whatever component a running node linked with it
        // both ways belongs to.
        let components = self.components_at(at);
        let Some(t) = index(to).filter(|t| components[*t].is_some()) else { return from == to };
        self.nodes.iter().enumerate().any(|(i, node)| {
            components[i].is_some() && components[i] == components[t] && !self.is_cut(from, node, at)
        })
    }

    /// The gossip component of each node (by index in `nodes`; `None` if its agent does not
    /// run) at `at`: running agents joined by links that work both ways. Constant between
    /// topology points, so computed once per point, over classes of hosts that the link
    /// records treat alike (a partition of thousands of hosts is two classes).
    fn components_at(&self, at: Duration) -> std::rc::Rc<Vec<Option<usize>>> {
        let point = match self.topology_points.partition_point(|p| *p <= at) {
            0 => Duration::ZERO,
            i => self.topology_points[i - 1],
        };
        if let Some(known) = self.components.borrow().get(&point) {
            return known.clone();
        }
        let classes = self.links.classes_at(point);
        let class_of = |node: &String| self.links.host_index(node).map(|i| classes.class_of[i]);
        let node_class: Vec<Option<usize>> =
            self.nodes.iter().map(|n| class_of(n).filter(|_| self.agent_runs(n, point))).collect();
        // Classes with a running agent, joined when linked both ways.
        let mut parent: Vec<usize> = (0..classes.count()).collect();
        let populated: BTreeSet<usize> = node_class.iter().flatten().copied().collect();
        for &a in &populated {
            for &b in populated.range(a + 1..) {
                if classes.linked(a, b) {
                    let (root_a, root_b) = (find(&mut parent, a), find(&mut parent, b));
                    parent[root_b] = root_a;
                }
            }
        }
        // Hosts of one class reach each other, directly or, if the class is cut from itself,
        // through another class they are linked with; without one, each is alone.
        let relayed =
            |class: usize| populated.iter().any(|&other| other != class && classes.linked(class, other));
        let mut singles = classes.count();
        let components: Vec<Option<usize>> = node_class
            .iter()
            .map(|class| {
                let class = (*class)?;
                if classes.is_cut(class, class) && !relayed(class) {
                    singles += 1;
                    return Some(singles);
                }
                Some(find(&mut parent, class))
            })
            .collect();
        let components = std::rc::Rc::new(components);
        self.components.borrow_mut().insert(point, components.clone());
        components
    }

    /// Whether the world keeps `node`'s gossip agent from running at `at`: a stall or a
    /// service crash holds it, or it left on purpose and was not started again (a stall or
    /// a leave only until the host's next crash). An agent that died on its own is the
    /// stack's failure and is not held.
    pub fn agent_held(&self, node: &str, at: Duration) -> bool {
        if self.agent_runs(node, at) {
            return false;
        }
        // Held only as long as the world's fault explains: s6 restarts a killed agent within
        // its restart delay, and starts a left one again when the leave is undone.
        let slack = rollcall::supervisor::core::RESTART_DELAY + AGENT_START_SLACK;
        let holds = |fault: &FaultWindow| match &fault.kind {
            FaultKind::Stall { host, service } if host == node && service == "serf" => {
                fault.start <= at && self.hold_end(node, fault).is_none_or(|end| at < end)
            }
            FaultKind::ServiceCrash { host, service } if host == node && service == "serf" => {
                fault.start <= at && at < fault.start + slack
            }
            FaultKind::Leave { host } if host == node => {
                fault.start <= at && self.hold_end(node, fault).is_none_or(|end| at < end + AGENT_START_SLACK)
            }
            _ => false,
        };
        self.faults.iter().any(holds)
    }

    /// When a stall or a leave of `host` stops holding it, as the engines apply them: at its
    /// end, or at the host's next crash if that comes first (a rebooted host runs its
    /// services afresh); at its start if the host was down then (it reached nothing).
    fn hold_end(&self, host: &str, window: &FaultWindow) -> Option<Duration> {
        let crashes = self
            .faults
            .iter()
            .filter(|f| matches!(&f.kind, FaultKind::HostCrash { host: h, .. } if h == host));
        let mut end = window.end;
        for crash in crashes {
            if crash.start <= window.start && crash.end.is_none_or(|back| window.start < back) {
                return Some(window.start);
            }
            if crash.start > window.start {
                end = Some(end.map_or(crash.start, |end| end.min(crash.start)));
            }
        }
        end
    }

    /// Whether `node`'s running agent has not yet heard what the cluster knows: it started,
    /// made no `gossip-synced` record since, and has run for less than `wait` (its own
    /// deadline, which counts only while it runs, plus 10 ms) since it started.
    pub fn agent_unsynced(&self, node: &str, at: Duration, wait: Duration) -> bool {
        let changes = self.synced.get(node).map_or(&[][..], Vec::as_slice);
        let index = changes.partition_point(|(t, _)| *t <= at);
        if !(self.agent_runs(node, at) && index > 0 && !changes[index - 1].1) {
            return false;
        }
        let started = changes[index - 1].0;
        let runs = self.service_runs(node, "serf");
        runs.and_then(|runs| sync_deadline(runs, started, wait)).is_none_or(|deadline| at < deadline)
    }

    /// Time from `from` to `to` as `host`'s gossip agent counts it: Lifeguard stretches its
    /// probe interval (and so its rounds) to `score + 1` times while its health score is
    /// raised, so a second at score 2 counts a third.
    pub fn agent_time(&self, host: &str, from: Duration, to: Duration) -> Duration {
        let changes = self.health.get(host).map_or(&[][..], Vec::as_slice);
        let mut score = changes.iter().rev().find(|(t, _)| *t <= from).map_or(0, |(_, s)| *s);
        let (mut at, mut counted) = (from, Duration::ZERO);
        for (t, next) in changes.iter().filter(|(t, _)| from < *t && *t < to) {
            counted += (*t - at) / (score + 1);
            (at, score) = (*t, *next);
        }
        counted + to.saturating_sub(at) / (score + 1)
    }

    /// Whether `webapp` serves, has not left the cluster on purpose, and the balancer can
    /// reach it over TCP at `at`. A webapp whose agent died (or gave up joining) is still
    /// expected in the backends: that is the failure a user sees as a healthy server that
    /// gets no traffic. Only a graceful leave takes it out of what `converge` expects.
    pub fn is_reachable(&self, webapp: &str, at: Duration) -> bool {
        self.is_up(&self.balancer, at)
            && self.webapp_runs(webapp, at)
            && !self.has_left(webapp, at)
            && !self.is_cut(&self.balancer, webapp, at)
    }

    /// Whether `node` is out of the cluster on purpose at `at`: its agent began a graceful
    /// leave (the operator's `s6-svc -d serf`; peers drop it as soon as they hear of it), and
    /// has not started again since.
    pub fn has_left(&self, node: &str, at: Duration) -> bool {
        let last_leave = self.leaving.iter().filter(|(t, n)| n == node && *t <= at).map(|(t, _)| *t).max();
        let Some(left_at) = last_leave else { return false };
        !self.service(node, "serf").0.iter().any(|(start, _)| *start > left_at && *start <= at)
    }

    /// Whether the balancer runs while `webapp`'s host is down, it has left, it is isolated
    /// from the balancer, or neither its agent nor its webapp runs. A webapp whose own agent
    /// died while its host runs and is linked is not lost: it still serves (`converge`
    /// expects it in the backends).
    pub fn is_lost(&self, webapp: &str, at: Duration) -> bool {
        let gone = !self.agent_runs(webapp, at) && !self.webapp_runs(webapp, at);
        self.is_up(&self.balancer, at)
            && (!self.is_up(webapp, at) || gone || self.has_left(webapp, at) || self.is_isolated(webapp, at))
    }

    /// Whether no gossip path links the balancer and `webapp`'s host at `at`: no link both
    /// ways between them, nor through a node whose agent runs and that the balancer's gossip
    /// reaches. Whether `webapp`'s own agent runs does not matter.
    fn is_isolated(&self, webapp: &str, at: Duration) -> bool {
        if !self.any_cut.contains(at) {
            return false;
        }
        if self.agent_runs(webapp, at) {
            return !self.gossip_path(&self.balancer, webapp, at);
        }
        let relays = |node: &String| {
            node != webapp
                && self.agent_runs(node, at)
                && !self.is_cut(node, webapp, at)
                && self.gossip_path(&self.balancer, node, at)
        };
        self.is_cut(&self.balancer, webapp, at) && !self.nodes.iter().any(relays)
    }

    /// Whether the world holds the balancer's renderer at `at` (a stall, or a service crash
    /// until s6 restarts it): it renders nothing meanwhile.
    pub fn renderer_held(&self, at: Duration) -> bool {
        self.stopped_by_fault(&self.balancer, RENDERER_SERVICE, at)
    }

    /// `observer`'s gossip view at `at`: member -> (status, incarnation).
    pub fn view_at(&self, observer: &str, at: Duration) -> BTreeMap<String, (MemberStatus, u32)> {
        let mut view = BTreeMap::new();
        for (t, change) in self.views.get(observer).into_iter().flatten() {
            if *t > at {
                break;
            }
            change.apply(&mut view);
        }
        view
    }

    /// When the faults left the world in a settled state: the last end of a fault, or the
    /// start of an instant (a service crash) or of a host crash never undone (the host is
    /// simply gone).
    pub fn faults_settled(&self) -> Settled {
        let mut last = None;
        for fault in &self.faults {
            let settled = match (&fault.kind, fault.end) {
                (_, Some(end)) => end,
                // A leave never undone ends when the agent stops, which the callers count.
                (
                    FaultKind::ServiceCrash { .. }
                    | FaultKind::HostCrash { .. }
                    | FaultKind::Leave { .. }
                    | FaultKind::ForceLeave { .. }
                    | FaultKind::Tags { .. }
                    | FaultKind::Keys { .. }
                    | FaultKind::Stop { .. },
                    None,
                ) => fault.start,
                (_, None) => return Settled::Never,
            };
            last = last.max(Some(settled));
        }
        last.map_or(Settled::NoFaults, Settled::At)
    }

    /// Every time at which some fact of the model changes, in order (computed once: with
    /// a partition of many hosts it reads hundreds of thousands of links).
    pub fn change_points(&self) -> &[Duration] {
        self.change_points.get_or_init(|| self.compute_change_points())
    }

    fn compute_change_points(&self) -> Vec<Duration> {
        let mut points: BTreeSet<Duration> = BTreeSet::new();
        points.insert(Duration::ZERO);
        for intervals in self.host_up.values().chain(self.service_up.values()) {
            points.extend(intervals.boundaries());
        }
        points.extend(self.links.change_times());
        points.extend(self.rendered.changes_within(Duration::ZERO, self.end));
        points.extend(self.loaded.changes_within(Duration::ZERO, self.end));
        // Where an agent's hold or sync may begin or end.
        let slack = rollcall::supervisor::core::RESTART_DELAY + AGENT_START_SLACK;
        for fault in &self.faults {
            points.extend([fault.start, fault.start + slack]);
            points.extend(fault.end.iter().flat_map(|end| [*end, *end + AGENT_START_SLACK]));
        }
        points.extend(self.leaving.iter().map(|(t, _)| *t));
        points.extend(self.synced.values().flatten().map(|(t, _)| *t));
        points.extend(self.sync_deadlines(&self.balancer));
        points.into_iter().filter(|p| *p <= self.end).collect()
    }

    /// Where `node`'s agent runs reach their sync deadline (see [`Self::agent_unsynced`]),
    /// for each TCP timeout a profile may give them: the oracle's own end of their unsynced
    /// spans, whatever they recorded.
    fn sync_deadlines(&self, node: &str) -> Vec<Duration> {
        let Some(runs) = self.service_runs(node, "serf") else { return Vec::new() };
        let starts = self.synced.get(node).into_iter().flatten().filter(|(_, synced)| !synced);
        let deadlines = starts.flat_map(|(start, _)| {
            profile_tcp_timeouts().into_iter().filter_map(move |wait| sync_deadline(runs, *start, wait))
        });
        deadlines.collect()
    }

    /// Maximal intervals within the run where `holds` is true, sampled at change points.
    pub fn spans(&self, holds: impl Fn(Duration) -> bool) -> Intervals {
        self.spans_over(self.change_points(), holds)
    }

    /// [`Observations::spans`] over change points computed once by the caller.
    pub fn spans_over(&self, points: &[Duration], holds: impl Fn(Duration) -> bool) -> Intervals {
        intervals(points.iter().map(|point| (*point, holds(*point))), self.end)
    }
}

/// When an agent run started at `start` has run (its `runs`, stops excluded) for `wait` and
/// 10 ms: its sync deadline, a timer that counts only while it runs. `None` if it never has.
fn sync_deadline(runs: &Intervals, start: Duration, wait: Duration) -> Option<Duration> {
    let mut left = wait + AGENT_START_SLACK;
    for (from, to) in runs.0.iter().filter(|(_, to)| *to > start) {
        let from = (*from).max(start);
        if *to - from >= left {
            return Some(from + left);
        }
        left -= *to - from;
    }
    None
}

/// The TCP timeout of each memberlist profile: an agent counts itself synced at the latest
/// one of them after it starts.
fn profile_tcp_timeouts() -> [Duration; 3] {
    use rollcall::gossip::{GossipConfig, Profile};
    let addr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
    [Profile::Lan, Profile::Local, Profile::Wan]
        .map(|profile| GossipConfig::of(profile, "", addr).tcp_timeout)
}

/// Balancer server name -> the webapp at that server's IP, as gossip announced it.
fn webapp_by_address(reading: &Reading, webapps: &[String]) -> BTreeMap<String, String> {
    let ip = |addr: &str| addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip());
    let mut map = BTreeMap::new();
    for (server, addr) in &reading.server_addrs {
        let webapp = webapps.iter().find(|w| {
            let member = reading.member_addrs.get(*w).and_then(|a| ip(a));
            member.is_some() && member == ip(addr)
        });
        if let Some(webapp) = webapp {
            map.insert(server.clone(), webapp.clone());
        }
    }
    map
}

/// The root of `item`'s set (union-find with path halving).
fn find(parent: &mut [usize], mut item: usize) -> usize {
    while parent[item] != item {
        parent[item] = parent[parent[item]];
        item = parent[item];
    }
    item
}

/// Intervals from time-ordered samples of a property: `(t, holds)` says whether it holds from
/// `t` until the next sample. Intervals are cut at `end`; empty ones are dropped.
pub fn intervals(samples: impl IntoIterator<Item = (Duration, bool)>, end: Duration) -> Intervals {
    let mut spans = Vec::new();
    let mut open: Option<Duration> = None;
    for (at, holds) in samples.into_iter().chain([(end, false)]) {
        let holds = holds && at < end;
        match (open, holds) {
            (None, true) => open = Some(at),
            (Some(start), false) => {
                if at.min(end) > start {
                    spans.push((start, at.min(end)));
                }
                open = None;
            }
            _ => {}
        }
    }
    Intervals(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn intervals_pair_up_and_down_events() {
        let i = intervals(vec![(s(1), true), (s(3), false), (s(5), true)], s(10));
        assert_eq!(i, Intervals(vec![(s(1), s(3)), (s(5), s(10))]));
        assert!(i.contains(s(1)) && !i.contains(s(3)) && i.contains(s(9)));
        assert_eq!(i.since(s(6)), Some(s(5)));
        assert!(i.meets(s(3), s(5)) && !i.meets(s(3), s(4)));
    }

    #[test]
    fn set_timeline_answers_the_set_in_force() {
        let mut t = SetTimeline::default();
        t.push(s(2), BTreeSet::from(["s1".to_string()]));
        t.push(s(4), BTreeSet::new());
        assert!(t.at(s(1)).is_empty());
        assert!(t.at(s(2)).contains("s1"));
        assert!(t.at(s(4)).is_empty());
        assert_eq!(t.changes_within(s(2), s(4)).collect::<Vec<_>>(), vec![s(4)]);
    }

    /// ha, s1, s2 and s3 with their agents running from 0 s, then `cuts` (from, to) at 1 s.
    fn cut_world(cuts: &[(&[&str], &[&str])]) -> Observations {
        use crate::trace::{Entry, Record, Trace, WorldEvent};
        use rollcall::host::Event;
        let hosts = ["ha", "s1", "s2", "s3"];
        let role = |h: &str| if h == "ha" { "balancer" } else { "backend" };
        let roles = hosts.iter().map(|h| (h.to_string(), role(h).to_string())).collect();
        let world = |t_us, event| Record { t_us, host: "world".into(), event: Entry::World(event) };
        let mut records = vec![world(0, WorldEvent::bare_plan(60_000, roles))];
        for host in hosts {
            for event in [Event::HostBooted { boot: 1 }, Event::ServiceStarted { service: "serf".into() }] {
                records.push(Record { t_us: 0, host: host.into(), event: Entry::Host(event) });
            }
        }
        let names = |list: &[&str]| list.iter().map(|h| h.to_string()).collect();
        for (from, to) in cuts {
            records.push(world(1_000_000, WorldEvent::LinkCut { from: names(from), to: names(to) }));
        }
        Observations::new(&Trace { records })
    }

    #[test]
    fn gossip_goes_around_a_cut_through_a_relay_and_not_when_everyone_is_cut() {
        let pair: &[&str] = &["s1", "s2"];
        let relayed = cut_world(&[(pair, pair)]);
        assert!(relayed.is_cut("s1", "s2", s(2)) && !relayed.is_cut("s1", "s3", s(2)));
        assert!(relayed.gossip_path("s1", "s2", s(2)), "s1 and s2 still gossip through ha and s3");
        let all: &[&str] = &["ha", "s1", "s2", "s3"];
        let alone = cut_world(&[(all, all)]);
        assert!(!alone.gossip_path("s1", "s2", s(2)) && !alone.gossip_path("ha", "s3", s(2)));
        assert!(alone.gossip_path("s1", "s2", s(0)), "before the cut");
    }
}
