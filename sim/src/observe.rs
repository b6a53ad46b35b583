//! The observation model: what the invariants may look at, rebuilt from the trace and the
//! fault plan. It never touches an engine: any engine that writes the same trace gets the
//! same verdicts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rollcall::host::Event;

use crate::faults::{FaultAction, Plan};
use crate::trace::Trace;
use crate::world::World;

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
    pub fn at(&self, at: Duration) -> BTreeSet<String> {
        let index = self.changes.partition_point(|(t, _)| *t <= at);
        if index == 0 { BTreeSet::new() } else { self.changes[index - 1].1.clone() }
    }

    /// Change times within `(from, to]`.
    pub fn changes_within(&self, from: Duration, to: Duration) -> impl Iterator<Item = Duration> + '_ {
        self.changes.iter().map(|(t, _)| *t).filter(move |t| *t > from && *t <= to)
    }
}

/// A yes/no property over time, as half-open intervals where it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intervals(pub Vec<(Duration, Duration)>);

impl Intervals {
    /// Whether it holds at `at`.
    pub fn contains(&self, at: Duration) -> bool {
        self.0.iter().any(|(start, end)| *start <= at && at < *end)
    }

    fn boundaries(&self) -> impl Iterator<Item = Duration> + '_ {
        self.0.iter().flat_map(|(start, end)| [*start, *end])
    }
}

/// A client request and how it ended.
#[derive(Clone, Debug)]
pub struct RequestObservation {
    /// Request number.
    pub id: u64,
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
}

/// A partition window between two groups of hosts.
#[derive(Clone, Debug)]
struct Cut {
    start: Duration,
    end: Duration,
    a: Vec<String>,
    b: Vec<String>,
    /// Only traffic from `a` to `b` is lost.
    oneway: bool,
}

impl Cut {
    fn separates(&self, a: &str, b: &str, at: Duration) -> bool {
        let member = |list: &[String], name: &str| list.iter().any(|x| x == name);
        let between =
            (member(&self.a, a) && member(&self.b, b)) || (member(&self.a, b) && member(&self.b, a));
        self.start <= at && at < self.end && between
    }
}

/// Everything the invariants read.
pub struct Observations {
    /// The balancer host.
    pub balancer: String,
    /// The webapp hosts.
    pub webapps: Vec<String>,
    /// The request host(s).
    pub clients: Vec<String>,
    /// End of the run.
    pub end: Duration,
    /// The balancer's rendered backend list over time.
    pub rendered: SetTimeline,
    /// The servers the balancer has loaded over time.
    pub loaded: SetTimeline,
    /// When each host was running.
    pub host_up: BTreeMap<String, Intervals>,
    /// When each webapp service was running.
    pub webapp_up: BTreeMap<String, Intervals>,
    /// Partitions, with their windows.
    cuts: Vec<Cut>,
    /// Client requests in completion order.
    pub requests: Vec<RequestObservation>,
}

impl Observations {
    /// Builds the model of one run.
    pub fn new(world: &World, plan: &Plan, trace: &Trace) -> Self {
        let balancer = world.balancer().to_string();
        let end = world.duration;
        let mut rendered = SetTimeline::default();
        let mut loaded = SetTimeline::default();
        let mut requests = Vec::new();
        let mut service_starts: BTreeMap<String, Vec<(Duration, bool)>> = BTreeMap::new();
        let mut host_events: BTreeMap<String, Vec<(Duration, bool)>> = BTreeMap::new();
        for record in &trace.records {
            let at = record.at();
            match &record.event {
                Event::Rendered { backends, .. } if record.host == balancer => {
                    rendered.push(at, backends.iter().cloned().collect());
                }
                Event::Reloaded { servers, .. } if record.host == balancer => {
                    loaded.push(at, servers.iter().cloned().collect());
                }
                Event::HostBooted { .. } => {
                    host_events.entry(record.host.clone()).or_default().push((at, true))
                }
                Event::HostHalted { .. } => {
                    host_events.entry(record.host.clone()).or_default().push((at, false))
                }
                Event::ServiceStarted { service } if service == "webapp" => {
                    service_starts.entry(record.host.clone()).or_default().push((at, true));
                }
                Event::ServiceExited { service, .. } if service == "webapp" => {
                    service_starts.entry(record.host.clone()).or_default().push((at, false));
                }
                Event::Request { id, sent_at_us, status, served_by, error } => {
                    requests.push(RequestObservation {
                        id: *id,
                        sent: Duration::from_micros(*sent_at_us),
                        done: at,
                        status: *status,
                        served_by: served_by.clone(),
                        error: error.clone(),
                    })
                }
                _ => {}
            }
        }
        let mut cuts = Vec::new();
        let mut open_cuts: Vec<Cut> = Vec::new();
        let mut crash_depth: BTreeMap<String, u32> = BTreeMap::new();
        for step in &plan.steps {
            match &step.action {
                FaultAction::Crash { host } => {
                    // Only the first of overlapping crashes takes the host down; the boot
                    // that ends them all is in the trace.
                    let depth = crash_depth.entry(host.clone()).or_insert(0u32);
                    if *depth == 0 {
                        host_events.entry(host.clone()).or_default().push((step.at, false));
                    }
                    *depth += 1;
                }
                FaultAction::Restart { host } => {
                    let depth = crash_depth.entry(host.clone()).or_insert(0u32);
                    *depth = depth.saturating_sub(1);
                }
                FaultAction::Partition { a, b, oneway } => {
                    open_cuts.push(Cut { start: step.at, end, a: a.clone(), b: b.clone(), oneway: *oneway })
                }
                FaultAction::Repair { a, b, oneway } => {
                    let same = |cut: &Cut| cut.a == *a && cut.b == *b && cut.oneway == *oneway;
                    if let Some(i) = open_cuts.iter().position(same) {
                        let cut = open_cuts.remove(i);
                        cuts.push(Cut { end: step.at, ..cut });
                    }
                }
                _ => {}
            }
        }
        cuts.extend(open_cuts);
        // Trace events and plan events were gathered apart: put each host's in time order.
        for events in host_events.values_mut() {
            events.sort_by_key(|(at, _)| *at);
        }
        let host_up: BTreeMap<String, Intervals> = world
            .hosts
            .iter()
            .map(|h| (h.name.clone(), intervals(host_events.remove(&h.name).unwrap_or_default(), end)))
            .collect();
        // A webapp runs only while its service is up and its host is up.
        let webapp_up = world
            .webapps()
            .into_iter()
            .map(|name| {
                let mut events = service_starts.remove(&name).unwrap_or_default();
                events.extend(host_up[&name].0.iter().map(|(_, host_end)| (*host_end, false)));
                events.sort_by_key(|(at, _)| *at);
                (name, intervals(events, end))
            })
            .collect();
        let clients = world.hosts.iter().filter(|h| matches!(h.kind, crate::world::HostKind::Client(_)));
        Observations {
            balancer,
            webapps: world.webapps(),
            clients: clients.map(|h| h.name.clone()).collect(),
            end,
            rendered,
            loaded,
            host_up,
            webapp_up,
            cuts,
            requests,
        }
    }

    /// The first time the balancer's rendered backends list every webapp.
    pub fn converged_at(&self) -> Option<Duration> {
        let all: BTreeSet<String> = self.webapps.iter().cloned().collect();
        self.rendered.changes.iter().find(|(_, set)| set.is_superset(&all)).map(|(at, _)| *at)
    }

    /// Whether traffic between `a` and `b` is cut in either direction at `at` (a request
    /// needs both directions).
    pub fn is_cut(&self, a: &str, b: &str, at: Duration) -> bool {
        self.cuts.iter().any(|cut| cut.separates(a, b, at))
    }

    /// Whether gossip can get from the balancer to `webapp` at `at`, directly or relayed by
    /// other running nodes, over links that work both ways. A node cut off from the balancer
    /// but not from a relay refutes its suspicion through the relay, so gossip keeps it: only
    /// isolation is a failure the agent must detect (a health check covers the rest).
    pub fn gossip_reaches(&self, webapp: &str, at: Duration) -> bool {
        let nodes: Vec<&String> = std::iter::once(&self.balancer)
            .chain(&self.webapps)
            .filter(|n| self.host_up[n.as_str()].contains(at))
            .collect();
        let mut reached: BTreeSet<&str> = BTreeSet::from([self.balancer.as_str()]);
        let mut frontier = vec![self.balancer.as_str()];
        while let Some(node) = frontier.pop() {
            for next in &nodes {
                if !reached.contains(next.as_str()) && !self.is_cut(node, next, at) {
                    reached.insert(next.as_str());
                    frontier.push(next.as_str());
                }
            }
        }
        reached.contains(webapp)
    }

    /// Whether `webapp` runs and the balancer can reach it at `at`.
    pub fn is_reachable(&self, webapp: &str, at: Duration) -> bool {
        self.host_up[&self.balancer].contains(at)
            && self.webapp_up[webapp].contains(at)
            && !self.is_cut(&self.balancer, webapp, at)
    }

    /// Whether the balancer runs while `webapp`'s host is down or isolated from it.
    pub fn is_lost(&self, webapp: &str, at: Duration) -> bool {
        self.host_up[&self.balancer].contains(at)
            && (!self.host_up[webapp].contains(at) || !self.gossip_reaches(webapp, at))
    }

    /// The webapps reachable at `at`.
    pub fn reachable_webapps(&self, at: Duration) -> BTreeSet<String> {
        self.webapps.iter().filter(|w| self.is_reachable(w, at)).cloned().collect()
    }

    /// Every time at which some fact of the model changes, in order.
    pub fn change_points(&self) -> Vec<Duration> {
        let mut points: BTreeSet<Duration> = BTreeSet::new();
        points.insert(Duration::ZERO);
        for intervals in self.host_up.values().chain(self.webapp_up.values()) {
            points.extend(intervals.boundaries());
        }
        for cut in &self.cuts {
            points.insert(cut.start);
            points.insert(cut.end);
        }
        points.extend(self.rendered.changes_within(Duration::ZERO, self.end));
        points.extend(self.loaded.changes_within(Duration::ZERO, self.end));
        points.into_iter().filter(|p| *p <= self.end).collect()
    }

    /// Maximal intervals within the run where `holds` is true, sampled at change points.
    pub fn spans(&self, holds: impl Fn(Duration) -> bool) -> Intervals {
        intervals(self.change_points().into_iter().map(|point| (point, holds(point))), self.end)
    }
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
}
