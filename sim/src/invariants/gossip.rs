//! Gossip's own promises, read from every agent's recorded view.
//!
//! - `views`: once the last fault has settled and the bound (push-pull interval + suspicion
//!   timeout) has passed, every running agent lists exactly the running agents as alive.
//! - `incarnation`: the incarnation a peer records for a member never goes down, unless that
//!   member's agent restarted in between (a restarted agent starts from zero, as memberlist
//!   does) or the peer erased it (a member met again is learnt afresh).
//! - `no-self-death`: a running agent never records itself dead.
//! - `left`: once the world settles and the same bound as `views` has passed, every running
//!   agent that lists a member which left (gracefully, or force-left while its agent was
//!   down) lists it as left (not failed, not alive), until that member starts again.
//!
//! False failures (a member declared failed while its agent ran and a gossip path to it
//! existed) are counted as a figure: loss makes some of them unavoidable. A scenario where
//! nothing excuses one (a key rotation, forged messages) makes it a verdict:
//! `no-false-failure`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rollcall::host::MemberStatus;

use super::bounds::Window;
use super::{Verdict, secs};
use crate::faults::FaultKind;
use crate::observe::{FailedEvent, Observations, Settled, ViewChange};

/// When the world last changed: a fault settled, or an agent started or stopped. `None`: a
/// partition, loss or latency lasts to the end, so the world never settles.
fn settled_at(obs: &Observations) -> Option<Duration> {
    let faults = match obs.faults_settled() {
        Settled::Never => return None,
        Settled::NoFaults => None,
        Settled::At(at) => Some(at),
    };
    let agent_changes = obs
        .nodes
        .iter()
        .flat_map(|n| obs.service(n, "serf").0)
        .flat_map(|(start, end)| [start, end])
        .filter(|t| *t < obs.end);
    Some(agent_changes.chain(faults).max().unwrap_or_default())
}

/// Checks `views`.
pub fn views(obs: &Observations, bound: &Window) -> Verdict {
    let rule = format!(
        "from {} after the world settles, every running agent lists exactly the running agents, all alive",
        secs(bound.duration())
    );
    let mut verdict = Verdict::new("views", rule);
    let Some(settled) = settled_at(obs) else { return verdict };
    let from = settled + bound.duration();
    if from >= obs.end {
        return verdict;
    }
    for observer in &obs.nodes {
        let changes: &[(Duration, ViewChange)] = obs.views.get(observer).map_or(&[], Vec::as_slice);
        let mut points: BTreeSet<Duration> = BTreeSet::from([from]);
        points.extend(changes.iter().map(|(t, _)| *t).filter(|t| *t > from && *t < obs.end));
        // The view is replayed once, forward, as the points advance.
        let mut view = BTreeMap::new();
        let mut applied = 0;
        let mut checked = false;
        for at in points {
            while let Some((_, change)) = changes.get(applied).filter(|(t, _)| *t <= at) {
                change.apply(&mut view);
                applied += 1;
            }
            if !obs.agent_runs(observer, at) {
                continue;
            }
            checked = true;
            if let Some(wrong) = view_error(obs, observer, &view, at) {
                verdict.fail(at, &[observer], format!("{observer}'s view at {}: {wrong}", secs(at)));
                break;
            }
        }
        verdict.checked += u32::from(checked);
    }
    verdict
}

fn view_error(
    obs: &Observations,
    observer: &str,
    view: &BTreeMap<String, (MemberStatus, u32)>,
    at: Duration,
) -> Option<String> {
    let mut wrong = Vec::new();
    // Only the entries the trace records (all, unless `[trace]` narrows them).
    for node in obs.nodes.iter().filter(|node| obs.scope.records(observer, node)) {
        let running = obs.agent_runs(node, at);
        match (running, view.get(node)) {
            (true, Some((MemberStatus::Alive, _))) => {}
            (true, Some((status, incarnation))) => {
                wrong.push(format!("{node} {status:?}@{incarnation} but running"))
            }
            (true, None) => wrong.push(format!("{node} missing but running")),
            (false, Some((MemberStatus::Alive | MemberStatus::Suspect, _))) => {
                wrong.push(format!("{node} listed but not running"))
            }
            (false, _) => {}
        }
    }
    let strangers = view.keys().filter(|name| !obs.is_node(name));
    wrong.extend(strangers.map(|name| format!("{name} is no node of this world")));
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

/// The times each node's agent started.
fn agent_starts(obs: &Observations) -> BTreeMap<&str, Vec<Duration>> {
    obs.nodes
        .iter()
        .map(|n| (n.as_str(), obs.service(n, "serf").0.iter().map(|(s, _)| *s).collect()))
        .collect()
}

/// Checks `incarnation`.
pub fn incarnation(obs: &Observations) -> Verdict {
    let rule = "a member's incarnation seen by a peer never decreases, except across its own restart".into();
    let mut verdict = Verdict::new("incarnation", rule);
    let starts = agent_starts(obs);
    for (observer, changes) in &obs.views {
        let mut last: BTreeMap<&str, (u32, Duration)> = BTreeMap::new();
        for (at, change) in changes {
            let (member, incarnation) = match change {
                ViewChange::Set { member, incarnation, .. } => (member, incarnation),
                ViewChange::Reset => {
                    last.clear();
                    continue;
                }
                // A member the peer erased is learnt afresh if it comes back.
                ViewChange::Erase { member } => {
                    last.remove(member.as_str());
                    continue;
                }
            };
            if member == observer {
                continue;
            }
            if let Some((before, seen_at)) = last.get(member.as_str()) {
                verdict.checked += 1;
                let restarted =
                    starts.get(member.as_str()).is_some_and(|s| s.iter().any(|t| t > seen_at && t <= at));
                if incarnation < before && !restarted {
                    verdict.fail(
                        *at,
                        &[member, observer],
                        format!(
                            "{observer} saw {member} go from incarnation {before} (at {}) to {incarnation} at {} without a restart",
                            secs(*seen_at),
                            secs(*at)
                        ),
                    );
                }
            }
            last.insert(member, (*incarnation, *at));
        }
    }
    verdict
}

/// Checks `no-self-death`.
pub fn no_self_death(obs: &Observations) -> Verdict {
    let mut verdict = Verdict::new("no-self-death", "a running agent never records itself dead".into());
    for (observer, changes) in &obs.views {
        for (at, change) in changes {
            let ViewChange::Set { member, status, incarnation } = change else { continue };
            if member != observer {
                continue;
            }
            verdict.checked += 1;
            if *status == MemberStatus::Dead && obs.agent_runs(observer, *at) {
                verdict.fail(
                    *at,
                    &[observer],
                    format!("{observer} recorded itself dead at incarnation {incarnation} at {}", secs(*at)),
                );
            }
        }
    }
    verdict
}

/// Checks `left`.
pub fn left(obs: &Observations, bound: &Window) -> Verdict {
    let rule = format!(
        "from {} after the world settles, every running agent that lists a member which left gracefully lists it as left",
        secs(bound.duration())
    );
    let mut verdict = Verdict::new("left", rule);
    let Some(settled) = settled_at(obs) else { return verdict };
    for (left_at, member) in departures(obs) {
        let (left_at, member) = (&left_at, &member);
        let due = settled.max(*left_at) + bound.duration();
        let back = obs.service(member, "serf").0.iter().map(|(start, _)| *start).find(|s| s > left_at);
        let until = back.unwrap_or(obs.end).min(obs.end);
        if due >= until {
            continue;
        }
        let recorded = |n: &&String| *n != member && obs.scope.records(n, member);
        for observer in obs.nodes.iter().filter(recorded) {
            let changes = obs.views.get(observer).map_or(&[][..], Vec::as_slice);
            let points = std::iter::once(due)
                .chain(changes.iter().map(|(t, _)| *t).filter(|t| *t > due && *t < until));
            for at in points.filter(|t| obs.agent_runs(observer, *t)) {
                verdict.checked += 1;
                if let Some((status, incarnation)) =
                    obs.view_at(observer, at).get(member).filter(|(s, _)| *s != MemberStatus::Left)
                {
                    let what = format!(
                        "{observer} lists {member} {status:?}@{incarnation} at {}, though it left at {}",
                        secs(at),
                        secs(*left_at)
                    );
                    verdict.fail(at, &[member, observer], what);
                    break;
                }
            }
        }
    }
    verdict
}

/// Members that left: graceful leaves, and force-leaves (from a running agent) of a member
/// whose agent had stopped. A force-leave of a running member is refuted, as in Serf.
fn departures(obs: &Observations) -> Vec<(Duration, String)> {
    let forced = obs.faults.iter().filter_map(|fault| match &fault.kind {
        FaultKind::ForceLeave { host, target, .. }
            if obs.agent_runs(host, fault.start) && !obs.agent_runs(target, fault.start) =>
        {
            Some((fault.start, target.clone()))
        }
        _ => None,
    });
    obs.left.iter().cloned().chain(forced).collect()
}

/// `member-failed` events about a member whose agent ran and to which a gossip path existed.
pub fn false_failure_events(obs: &Observations) -> Vec<&FailedEvent> {
    let is_false =
        |e: &&FailedEvent| obs.agent_runs(&e.member, e.at) && obs.gossip_path(&e.observer, &e.member, e.at);
    obs.failed_events.iter().filter(is_false).collect()
}

/// Checks `no-false-failure`: the false-failure figure as a verdict, for worlds where loss
/// cannot excuse one (a key rotation, outsiders with forged messages).
pub fn no_false_failure(obs: &Observations) -> Verdict {
    let rule = "no member is declared failed while its agent runs and a gossip path to it exists";
    let mut verdict = Verdict::new("no-false-failure", rule.into());
    // Every member is watched over the whole run, and every member-failed event checked.
    verdict.checked = (obs.nodes.len() + obs.failed_events.len()) as u32;
    for event in false_failure_events(obs) {
        let what = format!(
            "{} declared {} failed at {} while its agent ran",
            event.observer,
            event.member,
            secs(event.at)
        );
        verdict.fail(event.at, &[&event.member, &event.observer], what);
    }
    verdict
}

/// Checks `outsiders-refused`: every frame an attacker host got to an agent was refused.
pub fn outsiders_refused(obs: &Observations) -> Verdict {
    let rule = "every gossip frame an attacker host gets to an agent is refused";
    let mut verdict = Verdict::new("outsiders-refused", rule.into());
    for frame in &obs.attacks.frames {
        verdict.checked += 1;
        if !frame.refused {
            let kind = if frame.stream { "push-pull" } else { "datagram" };
            let what =
                format!("{} accepted a {kind} from {} at {}", frame.receiver, frame.attacker, secs(frame.at));
            verdict.fail(frame.at, &[&frame.receiver, &frame.attacker], what);
        }
    }
    verdict
}

/// How many members were declared failed while their agent ran and a path to them existed.
pub fn false_failures(obs: &Observations) -> u32 {
    false_failure_events(obs).len() as u32
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rollcall::host::Event;

    use super::*;
    use crate::trace::{Entry, Record, Trace, WorldEvent};

    /// A two-node world (ha, s1) whose agents start at 0 s, followed by `events`.
    fn trace(events: &[(u64, &str, Event)]) -> Trace {
        let roles =
            BTreeMap::from([("ha".to_string(), "balancer".to_string()), ("s1".into(), "backend".into())]);
        let plan = WorldEvent::bare_plan(60_000, roles);
        let mut records = vec![Record { t_us: 0, host: "world".into(), event: Entry::World(plan) }];
        for host in ["ha", "s1"] {
            for event in [Event::HostBooted { boot: 1 }, Event::ServiceStarted { service: "serf".into() }] {
                records.push(Record { t_us: 0, host: host.into(), event: Entry::Host(event) });
            }
        }
        for (t_s, host, event) in events {
            records.push(Record {
                t_us: t_s * 1_000_000,
                host: host.to_string(),
                event: Entry::Host(event.clone()),
            });
        }
        Trace { records }
    }

    fn state(member: &str, status: MemberStatus, incarnation: u32) -> Event {
        Event::MemberState { member: member.into(), status, incarnation }
    }

    #[test]
    fn incarnation_catches_a_decrease_without_a_restart() {
        let seen = |incarnations: &[u32]| -> Vec<(u64, &str, Event)> {
            incarnations
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u64 + 1, "ha", state("s1", MemberStatus::Alive, *n)))
                .collect()
        };
        let obs = Observations::new(&trace(&seen(&[0, 2, 3])));
        assert!(incarnation(&obs).holds());
        let obs = Observations::new(&trace(&seen(&[0, 2, 1])));
        let verdict = incarnation(&obs);
        assert_eq!(verdict.failed, 1, "{verdict:?}");
        assert!(verdict.violations[0].what.contains("from incarnation 2"), "{verdict:?}");
    }

    #[test]
    fn incarnation_allows_a_decrease_across_the_members_restart() {
        let mut events = vec![(1, "ha", state("s1", MemberStatus::Alive, 4))];
        events.push((2, "s1", Event::ServiceExited { service: "serf".into(), status: "killed".into() }));
        events.push((3, "s1", Event::ServiceStarted { service: "serf".into() }));
        events.push((4, "ha", state("s1", MemberStatus::Alive, 0)));
        let verdict = incarnation(&Observations::new(&trace(&events)));
        assert!(verdict.holds(), "{verdict:?}");
    }

    #[test]
    fn no_self_death_catches_a_running_agent_that_records_itself_dead() {
        let alive = [(1, "s1", state("s1", MemberStatus::Alive, 0))];
        assert!(no_self_death(&Observations::new(&trace(&alive))).holds());
        let dead =
            [(1, "s1", state("s1", MemberStatus::Alive, 0)), (2, "s1", state("s1", MemberStatus::Dead, 0))];
        let verdict = no_self_death(&Observations::new(&trace(&dead)));
        assert_eq!(verdict.failed, 1, "{verdict:?}");
        assert_eq!(verdict.hosts.iter().collect::<Vec<_>>(), ["s1"]);
    }

    #[test]
    fn views_catch_a_running_agent_listed_dead_after_the_bound() {
        let bound = Window { ms: 10_000, basis: String::new(), terms: vec![] };
        let healthy: Vec<(u64, &str, Event)> = ["ha", "s1"]
            .into_iter()
            .flat_map(|observer| {
                ["ha", "s1"].map(|member| (1, observer, state(member, MemberStatus::Alive, 0)))
            })
            .collect();
        let verdict = views(&Observations::new(&trace(&healthy)), &bound);
        assert_eq!(verdict.failed, 0, "{verdict:?}");
        let mut stale = healthy.clone();
        stale.push((5, "ha", state("s1", MemberStatus::Dead, 0)));
        let verdict = views(&Observations::new(&trace(&stale)), &bound);
        assert!(verdict.is_contradicted(), "{verdict:?}");
        assert!(verdict.violations[0].what.contains("s1 Dead@0 but running"), "{verdict:?}");
    }
}
