//! Serf's coalescing of member events for handlers, sans-io: events gather until the
//! coalesce period since the first one has passed, or the quiescent period since the last
//! one; then, per member, the latest event wins, and one batch per kind of change goes out.
//! An event of the kind last delivered for that member is dropped (except member-update),
//! so a join followed by a failure within one window is delivered as one member-failed.

use std::collections::BTreeMap;
use std::time::Duration;

use super::codec::NodeState;
use super::core::{MemberChange, MemberEvent};

/// Serf agent's `coalesce_period` default.
pub const COALESCE_PERIOD_DEFAULT: Duration = Duration::from_secs(3);
/// Serf agent's `quiescent_period` default.
pub const QUIESCENT_PERIOD_DEFAULT: Duration = Duration::from_secs(1);

/// One handler invocation's worth: a kind of change and every member it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The change.
    pub change: MemberChange,
    /// The members, by name.
    pub members: Vec<NodeState>,
}

/// Gathers member events into batches.
#[derive(Debug)]
pub struct Coalescer {
    coalesce: Duration,
    quiescent: Duration,
    latest: BTreeMap<String, MemberEvent>,
    delivered: BTreeMap<String, MemberChange>,
    first_at: Option<Duration>,
    last_at: Duration,
}

impl Coalescer {
    /// A coalescer with these periods; a zero coalesce period delivers every event at once
    /// (Serf's library default).
    pub fn new(coalesce: Duration, quiescent: Duration) -> Self {
        Self {
            coalesce,
            quiescent,
            latest: BTreeMap::new(),
            delivered: BTreeMap::new(),
            first_at: None,
            last_at: Duration::ZERO,
        }
    }

    /// Takes an event in.
    pub fn push(&mut self, event: MemberEvent, now: Duration) {
        self.first_at.get_or_insert(now);
        self.last_at = now;
        self.latest.insert(event.member.name.to_string(), event);
    }

    /// When the pending events are due, if there are any.
    pub fn due(&self) -> Option<Duration> {
        let first = self.first_at?;
        if self.coalesce.is_zero() {
            return Some(first);
        }
        Some((first + self.coalesce).min(self.last_at + self.quiescent))
    }

    /// The batches due at `now`, ordered by kind of change; nothing before they are due.
    pub fn flush(&mut self, now: Duration) -> Vec<Batch> {
        if self.due().is_none_or(|due| due > now) {
            return Vec::new();
        }
        self.first_at = None;
        let mut batches: BTreeMap<u8, Batch> = BTreeMap::new();
        for (name, event) in std::mem::take(&mut self.latest) {
            let previous = self.delivered.get(&name).copied();
            if previous == Some(event.change) && event.change != MemberChange::Update {
                continue;
            }
            if event.change == MemberChange::Reap {
                // Forgotten: a later event about the name starts afresh.
                self.delivered.remove(&name);
            } else {
                self.delivered.insert(name, event.change);
            }
            let batch = batches
                .entry(order(event.change))
                .or_insert_with(|| Batch { change: event.change, members: Vec::new() });
            batch.members.push(event.member);
        }
        batches.into_values().collect()
    }
}

/// Serf's order of event types (join, leave, failed, update, reap).
fn order(change: MemberChange) -> u8 {
    match change {
        MemberChange::Join => 0,
        MemberChange::Leave => 1,
        MemberChange::Failed => 2,
        MemberChange::Update => 3,
        MemberChange::Reap => 4,
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::gossip::Status;

    fn event(change: MemberChange, name: &str) -> MemberEvent {
        let member = NodeState {
            name: name.into(),
            addr: ([10, 0, 0, 1], 7946).into(),
            incarnation: 0,
            status: Status::Alive,
            tags: Default::default(),
        };
        MemberEvent { change, member }
    }

    fn names(batch: &Batch) -> Vec<&str> {
        batch.members.iter().map(|m| &*m.name).collect()
    }

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_burst_of_joins_is_one_batch_after_the_quiescent_period() {
        let mut c = Coalescer::new(COALESCE_PERIOD_DEFAULT, QUIESCENT_PERIOD_DEFAULT);
        for (i, name) in ["s1", "s2", "s3", "ha", "s4"].iter().enumerate() {
            c.push(event(MemberChange::Join, name), s(0.1 * i as f64));
        }
        assert_eq!(c.due(), Some(s(1.4)));
        assert!(c.flush(s(1.3)).is_empty(), "not yet");
        let batches = c.flush(s(1.4));
        assert_eq!(batches.len(), 1);
        assert_eq!(
            (batches[0].change, names(&batches[0])),
            (MemberChange::Join, vec!["ha", "s1", "s2", "s3", "s4"])
        );
        assert_eq!(c.due(), None);
    }

    #[test]
    fn steady_churn_is_flushed_at_the_coalesce_period() {
        let mut c = Coalescer::new(COALESCE_PERIOD_DEFAULT, QUIESCENT_PERIOD_DEFAULT);
        for i in 0..10 {
            c.push(event(MemberChange::Join, &format!("n{i}")), s(0.5 * f64::from(i)));
        }
        assert_eq!(c.due(), Some(s(3.0)), "the quiescent period never passes");
        assert_eq!(c.flush(s(3.0))[0].members.len(), 10);
    }

    #[test]
    fn the_latest_event_per_member_wins_and_repeats_are_dropped() {
        let mut c = Coalescer::new(COALESCE_PERIOD_DEFAULT, QUIESCENT_PERIOD_DEFAULT);
        c.push(event(MemberChange::Join, "s1"), s(0.0));
        c.push(event(MemberChange::Failed, "s1"), s(0.2));
        c.push(event(MemberChange::Join, "s2"), s(0.3));
        let batches = c.flush(s(2.0));
        let summary: Vec<(MemberChange, Vec<&str>)> = batches.iter().map(|b| (b.change, names(b))).collect();
        assert_eq!(summary, [(MemberChange::Join, vec!["s2"]), (MemberChange::Failed, vec!["s1"])]);
        c.push(event(MemberChange::Join, "s2"), s(3.0));
        c.push(event(MemberChange::Update, "s3"), s(3.0));
        let batches = c.flush(s(5.0));
        assert_eq!(batches.len(), 1, "s2's second join is a repeat: {batches:?}");
        c.push(event(MemberChange::Update, "s3"), s(6.0));
        assert_eq!(c.flush(s(8.0)).len(), 1, "updates are never repeats");
    }

    #[test]
    fn without_a_coalesce_period_every_event_goes_at_once() {
        let mut c = Coalescer::new(Duration::ZERO, QUIESCENT_PERIOD_DEFAULT);
        c.push(event(MemberChange::Join, "s1"), s(1.0));
        assert_eq!(c.due(), Some(s(1.0)));
        assert_eq!(c.flush(s(1.0)).len(), 1);
    }
}
