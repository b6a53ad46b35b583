//! Serf's layer above memberlist, sans-io: the Lamport clock that orders join and leave
//! intents, the buffer of intents about members not met yet, and the steps of a graceful
//! leave.
//!
//! memberlist alone cannot tell "left" from "failed" once its own message is missed, nor
//! order a leave against a later rejoin; Serf stamps every join and leave intent with a
//! Lamport time, and a member applies an intent only if it is newer than the last one it
//! applied for that member.

use std::collections::BTreeMap;
use std::time::Duration;

/// How long a leave waits for each of its broadcasts to go out (Serf's `BroadcastTimeout`).
pub const BROADCAST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after the last leave broadcast before the agent stops (Serf's `LeavePropagateDelay`).
pub const LEAVE_PROPAGATE_DELAY: Duration = Duration::from_secs(1);
/// How long an intent about a member not known yet is kept (Serf's `RecentIntentTimeout`).
pub const RECENT_INTENT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Most intents buffered about members not known yet; the oldest goes first.
pub const RECENT_INTENTS_MAX: usize = 1024;

/// A Lamport clock (Serf's membership clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LamportClock(u64);

impl LamportClock {
    /// The current time.
    pub fn time(self) -> u64 {
        self.0
    }

    /// Moves to the next time and returns it.
    pub fn increment(&mut self) -> u64 {
        self.0 = self.0.saturating_add(1);
        self.0
    }

    /// Sees a time from a peer: the clock moves past it.
    pub fn witness(&mut self, seen: u64) {
        if seen >= self.0 {
            self.0 = seen.saturating_add(1);
        }
    }
}

/// A join or a leave intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentKind {
    /// The member is (back) in the cluster.
    Join,
    /// The member leaves.
    Leave,
}

/// Intents about members this node has not met yet, applied when they show up.
#[derive(Clone, Debug, Default)]
pub struct RecentIntents {
    by_name: BTreeMap<String, (IntentKind, u64, Duration)>,
}

impl RecentIntents {
    /// Keeps the intent if it is the newest about `name` (then true: Serf spreads it again);
    /// when full, the oldest recorded intent is dropped to make room.
    pub fn record(&mut self, name: &str, kind: IntentKind, ltime: u64, now: Duration) -> bool {
        if self.by_name.get(name).is_some_and(|(_, known, _)| *known >= ltime) {
            return false;
        }
        if !self.by_name.contains_key(name) && self.by_name.len() >= RECENT_INTENTS_MAX {
            let oldest = self.by_name.iter().min_by_key(|(_, (_, _, at))| *at).map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                self.by_name.remove(&oldest);
            }
        }
        self.by_name.insert(name.to_string(), (kind, ltime, now));
        true
    }

    /// The buffered intent about `name`, if it is recent enough; it is removed either way.
    pub fn take(&mut self, name: &str, now: Duration) -> Option<(IntentKind, u64)> {
        let (kind, ltime, at) = self.by_name.remove(name)?;
        (now.saturating_sub(at) < RECENT_INTENT_TIMEOUT).then_some((kind, ltime))
    }

    /// How many intents are buffered.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Where a graceful leave stands (Serf's `Leave`, in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeavePhase {
    /// The leave intent is being broadcast, until it has gone out or `until`.
    Intent { until: Duration },
    /// memberlist's own leave (a death announced by the node itself) is being broadcast.
    Announce { until: Duration },
    /// Both went out; the agent stops after the propagate delay.
    Propagating,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_past_what_it_witnesses() {
        let mut clock = LamportClock::default();
        assert_eq!(clock.increment(), 1);
        clock.witness(7);
        assert_eq!(clock.time(), 8);
        clock.witness(3);
        assert_eq!(clock.time(), 8, "an older time does not move it");
        clock.witness(u64::MAX);
        assert_eq!(clock.increment(), u64::MAX, "saturates instead of wrapping to 0");
    }

    #[test]
    fn recent_intents_keep_the_newest_expire_and_stay_bounded() {
        let mut intents = RecentIntents::default();
        let t = Duration::from_secs;
        intents.record("s1", IntentKind::Leave, 5, t(0));
        intents.record("s1", IntentKind::Join, 4, t(1));
        assert_eq!(intents.take("s1", t(2)), Some((IntentKind::Leave, 5)), "the older join is ignored");
        assert_eq!(intents.take("s1", t(2)), None, "taken once");
        intents.record("s2", IntentKind::Join, 1, t(0));
        assert_eq!(intents.take("s2", RECENT_INTENT_TIMEOUT), None, "expired");
        for i in 0..RECENT_INTENTS_MAX + 10 {
            intents.record(&format!("n{i}"), IntentKind::Join, 1, t(i as u64));
        }
        assert_eq!(intents.len(), RECENT_INTENTS_MAX);
        assert_eq!(intents.take("n0", t(20)), None, "the oldest went first");
        assert!(
            intents.take(&format!("n{}", RECENT_INTENTS_MAX + 9), t(RECENT_INTENTS_MAX as u64)).is_some()
        );
    }
}
