//! The queue of pending broadcasts (memberlist's TransmitLimitedQueue): least-sent first and,
//! among equals, newest first; a newer broadcast about the same subject replaces the older;
//! each one is dropped after the retransmit limit. Ordered by key, so taking the next few and
//! replacing one cost a logarithm of the queue, not a pass over it: during a join storm of
//! thousands of nodes the queue holds thousands of broadcasts.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::codec::Message;

/// Most broadcasts queued at once: Serf's `MaxQueueDepth` (4,096). Serf prunes its own queue
/// to it, dropping the oldest; memberlist's queue has no bound, but a node that learns of
/// thousands of members at once (a join storm of 10,000 nodes) cannot send them all within
/// their retransmit limit anyway, and push-pull carries what a dropped broadcast would have.
pub const BROADCASTS_MAX: usize = 4096;

/// A broadcast's place: times sent, then newest first.
type Place = (u32, Reverse<u64>);

/// Pending broadcasts, each about one subject.
#[derive(Clone, Debug)]
pub struct BroadcastQueue<S: Ord + Clone> {
    order: BTreeMap<Place, (S, Message)>,
    /// Each subject's broadcast, by id; its sends are in `sent` (integer keys, so a send
    /// does not compare subjects).
    by_subject: BTreeMap<S, u64>,
    sent: BTreeMap<u64, u32>,
    next_id: u64,
}

impl<S: Ord + Clone> Default for BroadcastQueue<S> {
    fn default() -> Self {
        Self { order: BTreeMap::new(), by_subject: BTreeMap::new(), sent: BTreeMap::new(), next_id: 0 }
    }
}

impl<S: Ord + Clone> BroadcastQueue<S> {
    /// Queues `message` about `subject`, replacing what was queued about it; past
    /// [`BROADCASTS_MAX`] the oldest broadcast is dropped. Returns how many were dropped.
    pub fn push(&mut self, subject: S, message: Message) -> usize {
        self.next_id += 1;
        let id = self.next_id;
        if let Some(old) = self.by_subject.insert(subject.clone(), id) {
            let sent = self.sent.remove(&old).unwrap_or_default();
            self.order.remove(&(sent, Reverse(old)));
        }
        self.sent.insert(id, 0);
        self.order.insert((0, Reverse(id)), (subject, message));
        let mut dropped = 0;
        while self.order.len() > BROADCASTS_MAX {
            let Some((oldest, sent)) = self.sent.pop_first() else { break };
            if let Some((subject, _)) = self.order.remove(&(sent, Reverse(oldest))) {
                self.by_subject.remove(&subject);
            }
            dropped += 1;
        }
        dropped
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
    pub fn take(&mut self, limit: u32, mut fits: impl FnMut(&Message) -> bool) -> Vec<Message> {
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
            let (sent, id) = (place.0 + 1, place.1);
            if sent < limit {
                self.sent.insert(id.0, sent);
                self.order.insert((sent, id), (subject, message));
            } else {
                self.sent.remove(&id.0);
                self.by_subject.remove(&subject);
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(name: &str, ltime: u64) -> Message {
        Message::JoinIntent { name: name.into(), ltime }
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
    fn past_the_limit_the_oldest_broadcast_is_dropped() {
        let mut queue = BroadcastQueue::default();
        for i in 0..BROADCASTS_MAX as u64 {
            assert_eq!(queue.push(i, intent("n", i)), 0);
        }
        assert_eq!(queue.push(u64::MAX, intent("last", 0)), 1);
        assert_eq!(queue.len(), BROADCASTS_MAX);
        assert!(!queue.contains(&0) && queue.contains(&1) && queue.contains(&u64::MAX));
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
