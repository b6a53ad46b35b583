//! Gossip's own promises, read from every agent's recorded view.
//!
//! - `views`: once the last fault has settled and the bound (push-pull interval + suspicion
//!   timeout) has passed, every running agent lists exactly the running agents as alive.
//! - `incarnation`: the incarnation a peer records for a member never goes down, unless that
//!   member's agent restarted in between (a restarted agent starts from zero, as memberlist
//!   does).
//! - `no-self-death`: a running agent never records itself dead.
//!
//! False failures (a member declared failed while its agent ran and a gossip path to it
//! existed) are counted as a figure, not a verdict: loss makes some of them unavoidable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rollcall::host::MemberStatus;

use super::bounds::Window;
use super::{Verdict, secs};
use crate::observe::{Observations, ViewChange};

/// When the world last changed: a fault settled, or an agent started or stopped.
fn settled_at(obs: &Observations) -> Duration {
    let agent_changes = obs
        .nodes
        .iter()
        .flat_map(|n| obs.service(n, "serf").0)
        .flat_map(|(start, end)| [start, end])
        .filter(|t| *t < obs.end);
    agent_changes.chain(obs.last_fault_settled()).max().unwrap_or_default()
}

/// Checks `views`.
pub fn views(obs: &Observations, bound: &Window) -> Verdict {
    let rule = format!(
        "from {} after the world settles, every running agent lists exactly the running agents, all alive",
        secs(bound.duration())
    );
    let mut verdict = Verdict::new("views", rule);
    let from = settled_at(obs) + bound.duration();
    if from >= obs.end {
        return verdict;
    }
    for observer in &obs.nodes {
        let mut points: BTreeSet<Duration> = BTreeSet::from([from]);
        let changes = obs.views.get(observer).into_iter().flatten().map(|(t, _)| *t);
        points.extend(changes.filter(|t| *t > from && *t < obs.end));
        let mut checked = false;
        for at in points {
            if !obs.agent_runs(observer, at) {
                continue;
            }
            checked = true;
            if let Some(wrong) = view_error(obs, observer, at) {
                verdict.fail(&[observer], format!("{observer}'s view at {}: {wrong}", secs(at)));
                break;
            }
        }
        verdict.checked += u32::from(checked);
    }
    verdict
}

fn view_error(obs: &Observations, observer: &str, at: Duration) -> Option<String> {
    let view = obs.view_at(observer, at);
    let mut wrong = Vec::new();
    for node in &obs.nodes {
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
    let strangers = view.keys().filter(|name| !obs.nodes.contains(name));
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
            let ViewChange::Set { member, incarnation, .. } = change else {
                last.clear();
                continue;
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
                    &[observer],
                    format!("{observer} recorded itself dead at incarnation {incarnation} at {}", secs(*at)),
                );
            }
        }
    }
    verdict
}

/// Members declared failed while their agent ran and a gossip path to them existed.
pub fn false_failures(obs: &Observations) -> u32 {
    let is_false = |e: &&crate::observe::FailedEvent| {
        obs.agent_runs(&e.member, e.at) && obs.gossip_path(&e.observer, &e.member, e.at)
    };
    obs.failed_events.iter().filter(is_false).count() as u32
}
