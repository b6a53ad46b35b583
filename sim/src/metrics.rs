//! Gossip timings of one run, read from its observations: the figures a user puts beside real
//! Serf's (../shared/reference/gossip.md) and beside another engine's.
//!
//! - join to converged: from the first start of the last agent to the first moment every
//!   running agent lists exactly the running agents as alive (the `views` condition);
//! - crash to failed everywhere: from a host crash to the moment the last running agent stops
//!   listing that host as alive or suspect;
//! - leave to left everywhere: from a graceful leave to the moment the last running agent
//!   lists the member as left;
//! - heal to merged: from the end of a partition to the first moment views are complete again;
//! - join spread: from a node's first start until 50 %, 99 % and 100 % of the agents already
//!   running then list it alive (an agent that never does and is gone at the end, left out).
//!
//! A timing that never completes within the run is counted as missing, not dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use rollcall::host::MemberStatus;
use serde::Serialize;

use crate::faults::FaultKind;
use crate::observe::{Observations, ViewChange};

/// One run's timings; each fault contributes one entry (`None`: it never completed).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Timings {
    /// From the last agent's first start until every view is complete.
    pub join_to_converged: Vec<Option<Duration>>,
    /// Per host crash: until no running agent lists the host as alive or suspect.
    pub crash_to_failed: Vec<Option<Duration>>,
    /// Per graceful leave: until every running agent lists the member as left.
    pub leave_to_left: Vec<Option<Duration>>,
    /// Per two-way partition that ends: from its end until every view is complete.
    pub heal_to_merged: Vec<Option<Duration>>,
    /// Per node: from its agent's first start until half the agents already running then
    /// list it alive (the dissemination of a join, as Serf's convergence model plots it),
    /// leaving out those that never did and are gone at the end. Under a partial `[trace]`,
    /// only the followed members.
    pub join_spread_half: Vec<Option<Duration>>,
    /// The same until 99 % of them do.
    pub join_spread_99: Vec<Option<Duration>>,
    /// The same until all of them do.
    pub join_spread_all: Vec<Option<Duration>>,
}

impl Timings {
    /// Measures one run.
    pub fn of(obs: &Observations) -> Self {
        let complete = complete_spans(obs);
        let first_complete_from = |from: Duration| {
            complete.iter().find(|(_, end)| *end > from).map(|(start, _)| (*start).max(from) - from)
        };
        let last_first_start =
            obs.nodes.iter().filter_map(|n| obs.service(n, "serf").0.first().map(|(start, _)| *start)).max();
        let mut timings = Timings {
            join_to_converged: last_first_start.map(first_complete_from).into_iter().collect(),
            ..Timings::default()
        };
        join_spread(obs, &mut timings);
        for fault in &obs.faults {
            match &fault.kind {
                FaultKind::HostCrash { host, .. } => {
                    timings.crash_to_failed.push(everywhere(obs, host, fault.start, |s| {
                        !matches!(s, Some(MemberStatus::Alive | MemberStatus::Suspect))
                    }))
                }
                FaultKind::Leave { host } => {
                    timings
                        .leave_to_left
                        .push(everywhere(obs, host, fault.start, |s| s == Some(MemberStatus::Left)))
                }
                FaultKind::Partition { oneway: false, .. } => {
                    if let Some(end) = fault.end.filter(|end| *end < obs.end) {
                        timings.heal_to_merged.push(first_complete_from(end));
                    }
                }
                _ => {}
            }
        }
        timings
    }
}

/// Fills the join-spread timings: for each node, the agents running when its own agent first
/// started, and when each of them first listed it alive (after a restart of its own, if it
/// took one). An agent that never learned and is not running at the end (a host crashed for
/// good) could not learn any more: it is left out of the shares, as Serf's model counts the
/// nodes still there, rather than holding "all" back for ever.
fn join_spread(obs: &Observations, timings: &mut Timings) {
    let mut first_alive: BTreeMap<(&str, &str), Duration> = BTreeMap::new();
    for (observer, changes) in &obs.views {
        for (at, change) in changes {
            if let ViewChange::Set { member, status: MemberStatus::Alive, .. } = change {
                first_alive.entry((observer.as_str(), member.as_str())).or_insert(*at);
            }
        }
    }
    // A spread is a share of every agent: measured only for members every view records
    // (all of them, unless `[trace]` follows a few).
    let recorded_everywhere = |node: &String| obs.scope.is_full() || obs.scope.followed.contains(node);
    for node in obs.nodes.iter().filter(|node| recorded_everywhere(node)) {
        let Some(start) = obs.service(node, "serf").0.first().map(|(start, _)| *start) else { continue };
        let mut learned: Vec<Option<Duration>> = obs
            .nodes
            .iter()
            .filter(|observer| *observer != node && obs.agent_runs(observer, start))
            .filter(|observer| obs.scope.records(observer, node))
            .filter_map(|observer| match first_alive.get(&(observer.as_str(), node.as_str())) {
                Some(at) => Some(Some(at.saturating_sub(start))),
                None if obs.agent_runs_at_end(observer) => Some(None),
                None => None,
            })
            .collect();
        if learned.is_empty() {
            continue;
        }
        // Those that never learned sort last.
        learned.sort_by_key(|t| t.unwrap_or(Duration::MAX));
        let share =
            |q: f64| learned[((learned.len() as f64 * q).ceil() as usize).clamp(1, learned.len()) - 1];
        timings.join_spread_half.push(share(0.5));
        timings.join_spread_99.push(share(0.99));
        timings.join_spread_all.push(share(1.0));
    }
}

/// How long after `from` every agent that runs throughout sees `member`'s status satisfy
/// `holds`, and keeps seeing it until the member's host is back. `None` if that never happens
/// before the member's host runs again or the run ends.
fn everywhere(
    obs: &Observations,
    member: &str,
    from: Duration,
    holds: impl Fn(Option<MemberStatus>) -> bool,
) -> Option<Duration> {
    let back = obs
        .service(member, "serf")
        .0
        .iter()
        .map(|(start, _)| *start)
        .find(|start| *start > from)
        .unwrap_or(obs.end);
    let mut latest = from;
    for observer in obs.nodes.iter().filter(|n| n.as_str() != member && obs.scope.records(n, member)) {
        if !obs.service(observer, "serf").covers(from, back) {
            continue;
        }
        let changes = obs.views.get(observer).map_or(&[][..], Vec::as_slice);
        let mut status = obs.view_at(observer, from).get(member).map(|(s, _)| *s);
        let mut since = holds(status).then_some(from);
        for (at, change) in changes.iter().filter(|(at, _)| *at > from && *at < back) {
            match change {
                ViewChange::Reset => status = None,
                ViewChange::Set { member: m, status: s, .. } if m == member => status = Some(*s),
                ViewChange::Erase { member: m } if m == member => status = None,
                ViewChange::Set { .. } | ViewChange::Erase { .. } => continue,
            }
            since = match (holds(status), since) {
                (true, None) => Some(*at),
                (true, kept) => kept,
                (false, _) => None,
            };
        }
        latest = latest.max(since?);
    }
    Some(latest - from)
}

/// The spans of the run during which every running agent lists exactly the running agents as
/// alive. Kept incrementally: a count of wrong (observer, member) entries, recounted in full
/// only when the set of running agents changes.
fn complete_spans(obs: &Observations) -> Vec<(Duration, Duration)> {
    let boundaries = agent_boundaries(obs);
    let changes = view_changes_in_time_order(obs);
    let mut views: BTreeMap<&str, BTreeMap<String, MemberStatus>> = BTreeMap::new();
    let mut running: BTreeMap<&str, bool> = obs.nodes.iter().map(|n| (n.as_str(), false)).collect();
    let mut wrong = 0usize;
    let mut spans = Vec::new();
    let mut open: Option<Duration> = None;
    let (mut next_change, mut next_boundary) = (0, 0);
    loop {
        let at = match (changes.get(next_change), boundaries.get(next_boundary)) {
            (Some((c, _, _)), Some(b)) => (*c).min(*b),
            (Some((c, _, _)), None) => *c,
            (None, Some(b)) => *b,
            (None, None) => break,
        };
        if at >= obs.end {
            break;
        }
        while let Some((_, observer, change)) = changes.get(next_change).filter(|(t, _, _)| *t == at) {
            if !running.contains_key(observer) {
                // A client host's crash resets a view it never had.
                next_change += 1;
                continue;
            }
            let view = views.entry(observer).or_default();
            if running[observer] {
                wrong -= count_wrong(obs, &running, observer, view, change);
            }
            match change {
                ViewChange::Reset => view.clear(),
                ViewChange::Set { member, status, .. } => {
                    view.insert(member.clone(), *status);
                }
                ViewChange::Erase { member } => {
                    view.remove(member);
                }
            }
            if running[observer] {
                wrong += count_wrong(obs, &running, observer, view, change);
            }
            next_change += 1;
        }
        if boundaries.get(next_boundary) == Some(&at) {
            for node in &obs.nodes {
                let runs = obs.agent_runs(node, at);
                if running[node.as_str()] != runs {
                    wrong -= wrong_about(obs, &running, &views, node);
                    running.insert(node.as_str(), runs);
                    wrong += wrong_about(obs, &running, &views, node);
                }
            }
            next_boundary += 1;
        }
        match (wrong == 0 && running.values().any(|r| *r), open) {
            (true, None) => open = Some(at),
            (false, Some(start)) => {
                spans.push((start, at));
                open = None;
            }
            _ => {}
        }
    }
    spans.extend(open.map(|start| (start, obs.end)));
    spans
}

/// The instants some agent starts or stops, in order, each once.
fn agent_boundaries(obs: &Observations) -> Vec<Duration> {
    let mut boundaries: Vec<Duration> =
        obs.nodes.iter().flat_map(|n| obs.service(n, "serf").boundaries().collect::<Vec<_>>()).collect();
    boundaries.sort();
    boundaries.dedup();
    boundaries
}

/// Every view change of every observer, in time order (a stable sort: an observer's changes
/// at one instant keep their recorded order).
fn view_changes_in_time_order(obs: &Observations) -> Vec<(Duration, &str, &ViewChange)> {
    let mut changes: Vec<(Duration, &str, &ViewChange)> = obs
        .views
        .iter()
        .flat_map(|(observer, list)| list.iter().map(move |(at, change)| (*at, observer.as_str(), change)))
        .collect();
    changes.sort_by_key(|(at, _, _)| *at);
    changes
}

/// Wrong entries of one view that a change touches: the member it sets, or every node for a
/// reset.
fn count_wrong(
    obs: &Observations,
    running: &BTreeMap<&str, bool>,
    observer: &str,
    view: &BTreeMap<String, MemberStatus>,
    change: &ViewChange,
) -> usize {
    let wrong = |member: &str| obs.scope.records(observer, member) && is_wrong(running, view, member);
    match change {
        ViewChange::Reset => obs.nodes.iter().filter(|n| wrong(n)).count(),
        ViewChange::Set { member, .. } | ViewChange::Erase { member } => usize::from(wrong(member)),
    }
}

/// The wrong entries that depend on whether `node` runs: every running agent's entry for it,
/// and, if it runs, its own view.
fn wrong_about(
    obs: &Observations,
    running: &BTreeMap<&str, bool>,
    views: &BTreeMap<&str, BTreeMap<String, MemberStatus>>,
    node: &str,
) -> usize {
    let empty = BTreeMap::new();
    let view_of = |observer: &str| views.get(observer).unwrap_or(&empty);
    let others = obs
        .nodes
        .iter()
        .filter(|observer| observer.as_str() != node && running[observer.as_str()])
        .filter(|observer| obs.scope.records(observer, node))
        .filter(|observer| is_wrong(running, view_of(observer), node))
        .count();
    let own = if running[node] {
        let recorded = |member: &&String| obs.scope.records(node, member);
        obs.nodes.iter().filter(recorded).filter(|member| is_wrong(running, view_of(node), member)).count()
    } else {
        0
    };
    others + own
}

/// Whether a view is wrong about `member`: not alive while it runs, alive or suspect while it
/// does not. Names that are no node of the world are not counted here (`views` reports them).
fn is_wrong(running: &BTreeMap<&str, bool>, view: &BTreeMap<String, MemberStatus>, member: &str) -> bool {
    let Some(member_runs) = running.get(member) else { return false };
    let status = view.get(member);
    if *member_runs {
        status != Some(&MemberStatus::Alive)
    } else {
        matches!(status, Some(MemberStatus::Alive | MemberStatus::Suspect))
    }
}

/// Summary statistics of one timing over many runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Distribution {
    /// Measurements that completed.
    pub samples: usize,
    /// Measurements that never completed within their run.
    pub missing: usize,
    /// Smallest, in milliseconds.
    pub min_ms: f64,
    /// Median (nearest rank), in milliseconds.
    pub median_ms: f64,
    /// 90th percentile (nearest rank), in milliseconds.
    pub p90_ms: f64,
    /// Largest, in milliseconds.
    pub max_ms: f64,
}

impl Distribution {
    /// The distribution of some measurements; `None` when none completed.
    pub fn of(values: &[Option<Duration>]) -> Option<Self> {
        let mut done: Vec<Duration> = values.iter().flatten().copied().collect();
        done.sort();
        let last = done.len().checked_sub(1)?;
        let at = |q: f64| done[(last as f64 * q).round() as usize].as_secs_f64() * 1000.0;
        Some(Distribution {
            samples: done.len(),
            missing: values.len() - done.len(),
            min_ms: at(0.0),
            median_ms: at(0.5),
            p90_ms: at(0.9),
            max_ms: at(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rollcall::host::Event;

    use super::*;
    use crate::trace::{Entry, Record, Trace, WorldEvent};

    const NODES: [&str; 3] = ["ha", "s1", "s2"];

    /// Three nodes whose agents start at 0 s, 1 s and 2 s, then `events` at whole seconds.
    fn observe(events: &[(u64, &str, Entry)]) -> Observations {
        let roles =
            NODES.iter().map(|n| (n.to_string(), if *n == "ha" { "balancer" } else { "backend" }.into()));
        let plan = WorldEvent::bare_plan(60_000, roles.collect::<BTreeMap<String, String>>());
        let mut records = vec![Record { t_us: 0, host: "world".into(), event: Entry::World(plan) }];
        for (i, host) in NODES.iter().enumerate() {
            for event in [Event::HostBooted { boot: 1 }, Event::ServiceStarted { service: "serf".into() }] {
                records.push(Record {
                    t_us: i as u64 * 1_000_000,
                    host: host.to_string(),
                    event: Entry::Host(event),
                });
            }
        }
        for (t_s, host, event) in events {
            records.push(Record { t_us: t_s * 1_000_000, host: host.to_string(), event: event.clone() });
        }
        Observations::new(&Trace { records })
    }

    fn state(member: &str, status: MemberStatus) -> Entry {
        Entry::Host(Event::MemberState { member: member.into(), status, incarnation: 0 })
    }

    /// Every view lists every node alive by `at` seconds, each learning at a different time.
    fn all_alive(at: u64) -> Vec<(u64, &'static str, Entry)> {
        let mut events = Vec::new();
        for (i, observer) in NODES.iter().enumerate() {
            for member in NODES {
                events.push((at - (i as u64 % 2), *observer, state(member, MemberStatus::Alive)));
            }
        }
        events.sort_by_key(|(t, _, _)| *t);
        events
    }

    fn crash(at: u64, host: &'static str) -> Vec<(u64, &'static str, Entry)> {
        let fault = FaultKind::HostCrash { host: host.into(), mid_render: false };
        vec![
            (at, "world", Entry::World(WorldEvent::FaultStarted { id: 0, fault })),
            (at, host, Entry::World(WorldEvent::HostCrashed)),
        ]
    }

    #[test]
    fn join_to_converged_counts_from_the_last_agents_start_to_the_last_view() {
        let timings = Timings::of(&observe(&all_alive(5)));
        assert_eq!(timings.join_to_converged, vec![Some(Duration::from_secs(3))]);
    }

    #[test]
    fn join_spread_counts_the_agents_running_at_the_joiners_start() {
        let timings = Timings::of(&observe(&all_alive(5)));
        // ha started alone: nobody to tell. s1: ha learns it at 5 s. s2: s1 at 4 s, ha at 5 s.
        assert_eq!(timings.join_spread_half, secs(&[4, 2]));
        assert_eq!(timings.join_spread_99, secs(&[4, 3]));
        assert_eq!(timings.join_spread_all, secs(&[4, 3]));
    }

    fn secs(values: &[u64]) -> Vec<Option<Duration>> {
        values.iter().map(|s| Some(Duration::from_secs(*s))).collect()
    }

    /// `all_alive(5)` but ha, which crashes at 3 s, before it would have learned s1 and s2.
    fn ha_crashed_at_3_before_learning() -> Vec<(u64, &'static str, Entry)> {
        let mut events: Vec<_> =
            all_alive(5).into_iter().filter(|(_, observer, _)| *observer != "ha").collect();
        events.extend(crash(3, "ha"));
        events
    }

    #[test]
    fn join_spread_leaves_out_an_agent_gone_for_good_before_it_learned() {
        let mut events = ha_crashed_at_3_before_learning();
        events.sort_by_key(|(t, _, _)| *t);
        let timings = Timings::of(&observe(&events));
        // s1: only ha ran at its start, and ha is gone: no share to measure. s2: s1 at 4 s.
        assert_eq!(timings.join_spread_all, secs(&[2]));
        // An agent that runs to the end and never learns still holds "all" back.
        let mut events: Vec<_> = all_alive(5)
            .into_iter()
            .filter(|(_, observer, entry)| !(*observer == "ha" && *entry == state("s2", MemberStatus::Alive)))
            .collect();
        events.extend(crash(30, "s1"));
        let timings = Timings::of(&observe(&events));
        assert_eq!(timings.join_spread_all, vec![Some(Duration::from_secs(4)), None]);
        // ha boots again at 6 s and learns both at 8 s: counted, late.
        let mut events = ha_crashed_at_3_before_learning();
        for event in [Event::HostBooted { boot: 2 }, Event::ServiceStarted { service: "serf".into() }] {
            events.push((6, "ha", Entry::Host(event)));
        }
        events.extend(["ha", "s1", "s2"].map(|member| (8, "ha", state(member, MemberStatus::Alive))));
        events.sort_by_key(|(t, _, _)| *t);
        let timings = Timings::of(&observe(&events));
        assert_eq!(timings.join_spread_all, secs(&[7, 6]));
    }

    #[test]
    fn a_view_never_complete_is_missing_not_dropped() {
        let mut events = all_alive(5);
        events.retain(|(_, observer, entry)| {
            !(*observer == "s2" && *entry == state("s1", MemberStatus::Alive))
        });
        let timings = Timings::of(&observe(&events));
        assert_eq!(timings.join_to_converged, vec![None]);
    }

    #[test]
    fn crash_to_failed_waits_for_the_last_observer_and_restarts_on_a_relapse() {
        let mut events = all_alive(5);
        events.extend(crash(10, "s2"));
        events.push((14, "ha", state("s2", MemberStatus::Suspect)));
        events.push((16, "ha", state("s2", MemberStatus::Dead)));
        events.push((15, "s1", state("s2", MemberStatus::Dead)));
        // A stale alive brings s2 back in s1's view for a while.
        events.push((17, "s1", state("s2", MemberStatus::Alive)));
        events.push((19, "s1", state("s2", MemberStatus::Dead)));
        events.sort_by_key(|(t, _, _)| *t);
        let timings = Timings::of(&observe(&events));
        assert_eq!(timings.crash_to_failed, vec![Some(Duration::from_secs(9))]);
        // The views are complete once both survivors dropped s2: the crashed agent is not
        // expected anywhere.
        assert_eq!(timings.join_to_converged, vec![Some(Duration::from_secs(3))]);
    }

    #[test]
    fn crash_never_noticed_is_missing() {
        let mut events = all_alive(5);
        events.extend(crash(10, "s2"));
        events.push((15, "s1", state("s2", MemberStatus::Dead)));
        let timings = Timings::of(&observe(&events));
        assert_eq!(timings.crash_to_failed, vec![None]);
    }

    #[test]
    fn distribution_uses_nearest_ranks_and_counts_the_missing() {
        let ms = |v: u64| Some(Duration::from_millis(v));
        let values = [ms(30), None, ms(10), ms(20), ms(40), ms(50)];
        let d = Distribution::of(&values).expect("some completed");
        assert_eq!((d.samples, d.missing), (5, 1));
        assert_eq!((d.min_ms, d.median_ms, d.p90_ms, d.max_ms), (10.0, 30.0, 50.0, 50.0));
        assert_eq!(Distribution::of(&[None]), None);
    }
}
