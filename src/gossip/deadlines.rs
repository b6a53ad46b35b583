//! When the suspicions an agent holds run out, earliest first, and the one timer that wakes it
//! for them. memberlist starts a timer per suspicion and never stops one a refutation made
//! pointless; at 10,000 simulated nodes a partition raises tens of millions of suspicions, and a
//! timer each (most refuted long before they fire) took gigabytes of the simulator's queue.
//! Here a suspicion holds one entry, moved when a confirmation shortens it and dropped when it
//! ends, and the agent asks its driver for a [`Timer::Suspicions`](super::Timer) only when the
//! earliest deadline moves earlier than every wake-up already asked (those it replaces fire
//! later and find nothing due).

use std::collections::BTreeSet;
use std::time::Duration;

use super::codec::Name;

/// The deadlines of the suspicions held, and the earliest wake-up asked of the driver.
#[derive(Clone, Debug, Default)]
pub struct SuspicionDeadlines {
    /// (deadline in nanoseconds, member): one entry per suspicion, so bounded by the member
    /// table.
    by_time: BTreeSet<(u64, Name)>,
    /// The earliest wake-up asked for that has not come yet, in nanoseconds. Later ones may be
    /// outstanding too: waking with nothing due costs nothing.
    armed: Option<u64>,
}

fn nanos(at: Duration) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

impl SuspicionDeadlines {
    /// How many suspicions are held.
    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }

    /// `name`'s suspicion runs out at `deadline`.
    pub fn insert(&mut self, deadline: Duration, name: Name) {
        self.by_time.insert((nanos(deadline), name));
    }

    /// `name`'s suspicion, due at `deadline`, ended (refuted, confirmed dead, or moved).
    pub fn remove(&mut self, deadline: Duration, name: &Name) {
        self.by_time.remove(&(nanos(deadline), name.clone()));
    }

    /// `name`'s suspicion now runs out at `to`, not `from`.
    pub fn reschedule(&mut self, from: Duration, to: Duration, name: &Name) {
        if from != to {
            self.remove(from, name);
            self.insert(to, name.clone());
        }
    }

    /// Takes the members whose suspicion is due at `now`, earliest first, and notes that a
    /// wake-up asked for `now` or earlier has come.
    pub fn take_due(&mut self, now: Duration) -> Vec<Name> {
        let now = nanos(now);
        if self.armed.is_some_and(|at| at <= now) {
            self.armed = None;
        }
        let mut due = Vec::new();
        while self.by_time.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, name)) = self.by_time.pop_first() {
                due.push(name);
            }
        }
        due
    }

    /// How long from `now` the driver should wake the agent, if the earliest deadline comes
    /// before every wake-up already asked for.
    pub fn wake_up(&mut self, now: Duration) -> Option<Duration> {
        let (first, _) = self.by_time.first()?;
        if self.armed.is_some_and(|at| at <= *first) {
            return None;
        }
        self.armed = Some(*first);
        Some(Duration::from_nanos(*first).saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn name(n: &str) -> Name {
        n.into()
    }

    #[test]
    fn due_suspicions_come_out_earliest_first_and_only_when_due() {
        let mut deadlines = SuspicionDeadlines::default();
        deadlines.insert(at(3000), name("b"));
        deadlines.insert(at(1000), name("a"));
        deadlines.insert(at(5000), name("c"));
        assert!(deadlines.take_due(at(999)).is_empty());
        assert_eq!(deadlines.take_due(at(3000)), vec![name("a"), name("b")]);
        assert_eq!(deadlines.len(), 1);
    }

    #[test]
    fn a_shortened_suspicion_moves_and_an_ended_one_leaves() {
        let mut deadlines = SuspicionDeadlines::default();
        deadlines.insert(at(9000), name("a"));
        deadlines.insert(at(8000), name("b"));
        deadlines.reschedule(at(9000), at(4000), &name("a"));
        deadlines.remove(at(8000), &name("b"));
        assert_eq!(deadlines.take_due(at(8000)), vec![name("a")]);
        assert!(deadlines.is_empty());
    }

    #[test]
    fn the_driver_is_woken_only_for_a_deadline_earlier_than_every_wake_up_asked() {
        let mut deadlines = SuspicionDeadlines::default();
        assert_eq!(deadlines.wake_up(at(0)), None, "nothing held");
        deadlines.insert(at(5000), name("a"));
        assert_eq!(deadlines.wake_up(at(1000)), Some(at(4000)));
        deadlines.insert(at(7000), name("b"));
        assert_eq!(deadlines.wake_up(at(1000)), None, "the wake-up at 5 s comes first");
        deadlines.insert(at(2000), name("c"));
        assert_eq!(deadlines.wake_up(at(1000)), Some(at(1000)), "an earlier deadline");
        assert_eq!(deadlines.take_due(at(2000)), vec![name("c")]);
        // The wake-up at 5 s is still outstanding, but forgotten: asking again is harmless.
        assert_eq!(deadlines.wake_up(at(2000)), Some(at(3000)));
        assert_eq!(deadlines.take_due(at(5000)), vec![name("a")]);
        assert_eq!(deadlines.wake_up(at(5000)), Some(at(2000)));
        assert_eq!(deadlines.take_due(at(7000)), vec![name("b")]);
        assert_eq!(deadlines.wake_up(at(7000)), None);
    }
}
