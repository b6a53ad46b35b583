//! The queue of pending broadcasts (memberlist's TransmitLimitedQueue): least-sent first and,
//! among equals, newest first; a newer broadcast about the same subject replaces the older;
//! each one is dropped after the retransmit limit. Ordered by key, so taking the next few and
//! replacing one cost a logarithm of the queue, not a pass over it: during a join storm of
//! thousands of nodes the queue holds thousands of broadcasts.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most broadcasts queued at once: Serf's `MaxQueueDepth` (4,096). Serf prunes its own queue
/// to it, dropping the most sent (then the oldest); memberlist's queue has no bound, but a
/// node that learns of thousands of members at once (a join storm of 10,000 nodes) cannot
/// send them all within their retransmit limit anyway, and push-pull carries what a dropped
/// broadcast would have.
pub const BROADCASTS_MAX: usize = 4096;

/// A broadcast's place: times sent, then newest first (ids only grow).
type Place = (u32, Reverse<u64>);

/// Pending broadcasts, each about one subject, each an encoded message (shared: the same
/// news queued by many agents of one process is one allocation).
#[derive(Clone, Debug)]
pub struct BroadcastQueue<S: Ord + Clone> {
    order: BTreeMap<Place, (S, Arc<[u8]>)>,
    /// Where each subject's broadcast was queued: its sends may have grown since (a send
    /// does not look the subject up, which would compare names).
    by_subject: BTreeMap<S, Place>,
    next_id: u64,
}

impl<S: Ord + Clone> Default for BroadcastQueue<S> {
    fn default() -> Self {
        Self { order: BTreeMap::new(), by_subject: BTreeMap::new(), next_id: 0 }
    }
}

impl<S: Ord + Clone> BroadcastQueue<S> {
    /// Queues `message` about `subject`, replacing what was queued about it; past
    /// [`BROADCASTS_MAX`] the most sent (then oldest) broadcast is dropped. Returns how many were dropped.
    pub fn push(&mut self, subject: S, message: Arc<[u8]>) -> usize {
        self.next_id += 1;
        let place = (0, Reverse(self.next_id));
        if let Some(queued) = self.by_subject.insert(subject.clone(), place) {
            self.remove_queued(queued);
        }
        self.order.insert(place, (subject, message));
        // memberlist's Prune, as Serf calls it: drop from the end of the queue order, the
        // most sent first and, among equals, the oldest.
        let mut dropped = 0;
        while self.order.len() > BROADCASTS_MAX {
            let Some((_, (subject, _))) = self.order.pop_last() else { break };
            self.by_subject.remove(&subject);
            dropped += 1;
        }
        dropped
    }

    /// Removes the broadcast queued at `queued`, sent as often or more since.
    fn remove_queued(&mut self, queued: Place) {
        let most_sent = self.order.last_key_value().map_or(0, |(place, _)| place.0);
        for sent in queued.0..=most_sent {
            if self.order.remove(&(sent, queued.1)).is_some() {
                return;
            }
        }
    }

    /// Whether something about `subject` is still queued.
    pub fn contains(&self, subject: &S) -> bool {
        self.by_subject.contains_key(subject)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// How many broadcasts are queued.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Takes broadcasts in queue order while `fits` accepts them (it stops at the first it
    /// refuses); each taken one counts as sent once more and is dropped at `limit` sends.
    pub fn take(&mut self, limit: u32, mut fits: impl FnMut(&[u8]) -> bool) -> Vec<Arc<[u8]>> {
        let places: Vec<Place> = self
            .order
            .iter()
            .take_while(|(_, (_, message))| fits(message))
            .map(|(place, _)| *place)
            .collect();
        let mut taken = Vec::with_capacity(places.len());
        for place in places {
            let Some((subject, message)) = self.order.remove(&place) else { continue };
            taken.push(message.clone());
            let next = (place.0 + 1, place.1);
            if next.0 < limit {
                self.order.insert(next, (subject, message));
            } else {
                self.by_subject.remove(&subject);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::gossip::codec::{self, Message};

    fn intent(name: &str, ltime: u64) -> Arc<[u8]> {
        Arc::from(codec::encode_message(&Message::JoinIntent { name: name.into(), ltime }).unwrap())
    }

    #[test]
    fn least_sent_then_newest_first_and_a_newer_broadcast_replaces_the_older() {
        let mut queue = BroadcastQueue::default();
        queue.push("a", intent("a", 1));
        queue.push("b", intent("b", 1));
        assert_eq!(queue.take(3, |_| true), vec![intent("b", 1), intent("a", 1)]);
        queue.push("a", intent("a", 2));
        assert_eq!(queue.len(), 2);
        // The replaced one starts again at zero sends: it goes first.
        assert_eq!(queue.take(3, |_| true), vec![intent("a", 2), intent("b", 1)]);
    }

    #[test]
    fn past_the_limit_the_most_sent_then_the_oldest_broadcast_is_dropped() {
        let mut queue = BroadcastQueue::default();
        for i in 0..BROADCASTS_MAX as u64 - 1 {
            assert_eq!(queue.push(i, intent("n", i)), 0);
        }
        // The newest is sent once: it is the most sent, so it goes first.
        assert_eq!(queue.push(u64::MAX - 1, intent("sent", 0)), 0);
        let mut first = true;
        assert_eq!(queue.take(10, |_| std::mem::take(&mut first)), vec![intent("sent", 0)]);
        assert_eq!(queue.push(u64::MAX, intent("last", 0)), 1);
        assert!(!queue.contains(&(u64::MAX - 1)) && queue.contains(&0) && queue.contains(&u64::MAX));
        // All sent as often: the oldest goes.
        assert_eq!(queue.push(u64::MAX - 2, intent("later", 0)), 1);
        assert_eq!(queue.len(), BROADCASTS_MAX);
        assert!(!queue.contains(&0) && queue.contains(&1) && queue.contains(&(u64::MAX - 2)));
    }

    #[test]
    fn taking_stops_at_the_first_that_does_not_fit_and_drops_at_the_limit() {
        let mut queue = BroadcastQueue::default();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            queue.push(name, intent(name, i as u64));
        }
        let mut room = 2;
        let taken = queue.take(2, |_| {
            room -= 1;
            room >= 0
        });
        assert_eq!(taken, vec![intent("c", 2), intent("b", 1)]);
        assert!(queue.contains(&"c"));
        assert_eq!(queue.take(2, |_| true).len(), 3);
        // c and b reached their second send and are gone; a has one more.
        assert!(!queue.contains(&"c") && !queue.contains(&"b") && queue.contains(&"a"));
        assert_eq!(queue.take(2, |_| true), vec![intent("a", 0)]);
        assert!(queue.is_empty());
    }
}
