//! Coverage: which fault kinds fired and which protocol states and transitions each core
//! reached in a run, read from the trace alone. Summed over an exploration, it tells a user
//! what thousands of seeds did not reach: every item below is listed, reached or not.

use std::collections::BTreeMap;

use crate::faults::FaultKind;
use crate::trace::{Entry, Trace, WorldEvent};
use rollcall::host::{Event, MemberStatus};

/// Every item a run can reach, by area, in table order.
pub const ITEMS: &[(&str, &[&str])] = &[
    (
        "fault",
        &[
            "partition",
            "partition-oneway",
            "loss",
            "latency",
            "host-crash",
            "host-crash-mid-render",
            "service-crash",
            "stall",
            "leave",
            "stop",
            "force-leave",
            "tags",
            "keys",
            "reload",
        ],
    ),
    ("join", &["attempt", "joined", "gave-up", "leaving", "left"]),
    (
        "gossip",
        &[
            "new->alive",
            "new->suspect",
            "new->dead",
            "new->left",
            "alive->suspect",
            "alive->dead",
            "alive->left",
            "suspect->alive",
            "suspect->dead",
            "suspect->left",
            "dead->alive",
            "dead->suspect",
            "dead->left",
            "left->alive",
            "left->suspect",
            "left->dead",
            "health-score-raised",
        ],
    ),
    (
        "supervisor",
        &[
            "started",
            "ready",
            "exited",
            "paused",
            "continued",
            "finish-ran",
            "finish-killed",
            "down",
            "shutdown",
            "halted",
        ],
    ),
    ("render", &["rendered", "render-started", "failed", "rejected"]),
    ("balancer", &["reloaded", "reload-failed", "handover"]),
    ("health", &["up->down", "down->up"]),
    ("request", &["200", "non-200", "error"]),
];

/// Items a run reached, with how often: (area, item) -> count.
pub type Reached = BTreeMap<String, u64>;

/// The items `trace` reached, keyed `area:item`.
pub fn of(trace: &Trace) -> Reached {
    let mut reached = Reached::new();
    let mut hit = |area: &str, item: &str| *reached.entry(format!("{area}:{item}")).or_default() += 1;
    let mut views: BTreeMap<(&str, &str), MemberStatus> = BTreeMap::new();
    for record in &trace.records {
        match &record.event {
            Entry::World(WorldEvent::FaultStarted { fault, .. }) => hit("fault", fault_item(fault)),
            Entry::World(_) => {}
            Entry::Host(event) => {
                if let Event::MemberState { member, status, .. } = event {
                    let before = views.insert((&record.host, member), *status);
                    if before != Some(*status) {
                        let from = before.map_or("new", status_name);
                        hit("gossip", &format!("{from}->{}", status_name(*status)));
                    }
                } else if matches!(event, Event::HostBooted { .. })
                    || matches!(event, Event::ServiceStarted { service } if service == "serf")
                {
                    // A new agent starts from an empty table.
                    views.retain(|(host, _), _| *host != record.host);
                }
                if let Some((area, item)) = host_item(event) {
                    hit(area, item);
                }
            }
        }
    }
    reached
}

fn fault_item(fault: &FaultKind) -> &'static str {
    match fault {
        FaultKind::Partition { oneway: false, .. } => "partition",
        FaultKind::Partition { oneway: true, .. } => "partition-oneway",
        FaultKind::Loss { .. } => "loss",
        FaultKind::Latency { .. } => "latency",
        FaultKind::HostCrash { mid_render: false, .. } => "host-crash",
        FaultKind::HostCrash { mid_render: true, .. } => "host-crash-mid-render",
        FaultKind::ServiceCrash { .. } => "service-crash",
        FaultKind::Stall { .. } => "stall",
        FaultKind::Leave { .. } => "leave",
        FaultKind::Stop { .. } => "stop",
        FaultKind::ForceLeave { .. } => "force-leave",
        FaultKind::Tags { .. } => "tags",
        FaultKind::Keys { .. } => "keys",
        FaultKind::Reload { .. } => "reload",
    }
}

fn status_name(status: MemberStatus) -> &'static str {
    match status {
        MemberStatus::Alive => "alive",
        MemberStatus::Suspect => "suspect",
        MemberStatus::Dead => "dead",
        MemberStatus::Left => "left",
    }
}

fn host_item(event: &Event) -> Option<(&'static str, &'static str)> {
    Some(match event {
        Event::JoinAttempt { .. } => ("join", "attempt"),
        Event::Joined { .. } => ("join", "joined"),
        Event::JoinGaveUp { .. } => ("join", "gave-up"),
        Event::Leaving => ("join", "leaving"),
        Event::Left => ("join", "left"),
        Event::HealthScore { score } if *score > 0 => ("gossip", "health-score-raised"),
        Event::ServiceStarted { .. } => ("supervisor", "started"),
        Event::ServiceReady { .. } => ("supervisor", "ready"),
        Event::ServiceExited { .. } => ("supervisor", "exited"),
        Event::ServiceStopped { stopped: true, .. } => ("supervisor", "paused"),
        Event::ServiceStopped { stopped: false, .. } => ("supervisor", "continued"),
        Event::ServiceFinished { code: Some(_), .. } => ("supervisor", "finish-ran"),
        Event::ServiceFinished { code: None, .. } => ("supervisor", "finish-killed"),
        Event::ServiceDown { .. } => ("supervisor", "down"),
        Event::NodeShutdown { .. } => ("supervisor", "shutdown"),
        Event::HostHalted { .. } => ("supervisor", "halted"),
        Event::Rendered { .. } => ("render", "rendered"),
        Event::RenderStarted { .. } => ("render", "render-started"),
        Event::RenderFailed { .. } => ("render", "failed"),
        Event::RenderRejected { .. } => ("render", "rejected"),
        Event::Reloaded { .. } => ("balancer", "reloaded"),
        Event::ReloadFailed { .. } => ("balancer", "reload-failed"),
        Event::Accepting { pids, .. } if pids.len() > 1 => ("balancer", "handover"),
        Event::ServerState { up: false, .. } => ("health", "up->down"),
        Event::ServerState { up: true, .. } => ("health", "down->up"),
        Event::Request { status: Some(200), .. } => ("request", "200"),
        Event::Request { status: Some(_), .. } => ("request", "non-200"),
        Event::Request { status: None, .. } => ("request", "error"),
        _ => return None,
    })
}
