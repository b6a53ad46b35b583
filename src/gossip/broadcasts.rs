//! The queue of pending broadcasts (memberlist's TransmitLimitedQueue): least-sent first,
//! then longest first, then newest first; a newer broadcast about the same subject replaces
//! the older; each one is dropped after the retransmit limit. A take fills the room it is
//! given as memberlist's GetBroadcasts does: tier by tier (times sent), the longest broadcast
//! that still fits, so a datagram's last bytes go to shorter news rather than stay empty.
//! Ordered by a one-word key and found by a hash of its subject, so taking the next few costs
//! a logarithm of the queue and replacing one a lookup, not a pass over it: during a join
//! storm of thousands of nodes the queue holds thousands of broadcasts.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use hashbrown::HashTable;

use super::table::hash;

/// Most of Serf's own broadcasts (join and leave intents) queued at once: its
/// `MaxQueueDepth` (4,096), to which Serf prunes its queue, dropping the most sent (then the
/// shortest, then the oldest: the end of the order). memberlist's own queue (alive, suspect,
/// dead) has no such bound: a newer message about a member replaces the older, so it holds
/// one per member, and the agent bounds it by its member table.
pub const BROADCASTS_MAX: usize = 4096;

/// Ids are this many bits: one id per push, so 2^44 pushes (17 trillion: years at any real
/// rate).
const ID_BITS: u32 = 44;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
/// Message lengths the order tells apart, in the bits above the id. A datagram is smaller,
/// so a longer message (it can never be sent) only sorts as if it were this long.
const LEN_BITS: u32 = 12;
const LEN_MAX: usize = (1 << LEN_BITS) - 1;
// Every room a take is given is a datagram's, so the order tells apart every length that fits.
const _: () = assert!(super::codec::DATAGRAM_BYTES_MAX <= LEN_MAX);
/// Times sent are counted in the bits above the length.
const SENT_SHIFT: u32 = ID_BITS + LEN_BITS;
/// Sends a broadcast can count; a larger retransmit limit (only a configuration could ask
/// for one) stops at this.
const SENT_MAX: u32 = (1 << (64 - SENT_SHIFT)) - 1;

/// A broadcast's place in the queue order: times sent in the high bits, then its length's
/// complement (longest first), then newest first (ids only grow, so the low bits hold the
/// id's complement). One word: 10,000 simulated nodes queue 100 million broadcasts.
fn place(sent: u32, len: usize, id: u64) -> u64 {
    debug_assert!(sent <= SENT_MAX, "times sent fit in their bits");
    let shortness = (LEN_MAX - len.min(LEN_MAX)) as u64;
    (u64::from(sent) << SENT_SHIFT) | (shortness << ID_BITS) | (ID_MASK - (id & ID_MASK))
}

/// The first place of the tier of broadcasts sent `sent` times.
fn tier_start(sent: u32) -> u64 {
    place(sent, LEN_MAX, ID_MASK)
}

fn times_sent(place: u64) -> u32 {
    (place >> SENT_SHIFT) as u32
}

/// Where the broadcast at `at` goes once sent again, or none once that makes `limit` sends
/// or more (the limit follows the member count, so it can shrink below what was sent).
fn next_place(at: u64, limit: u32) -> Option<u64> {
    // Below the limit, which is at most SENT_MAX, one more send stays within its bits.
    (times_sent(at) + 1 < limit).then(|| at + (1 << SENT_SHIFT))
}

/// One piece of news: an encoded message and the subject it is about. Shared: the same news
/// queued by many agents of one process is allocated once, and a queue entry is one pointer
/// to it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct News<S> {
    /// What it is about: a newer piece about the same subject replaces it.
    pub subject: S,
    /// The message, encoded on its own.
    pub message: Box<[u8]>,
}

/// Pending broadcasts, each a piece of news about one subject. Ordered by place, found by
/// subject through a hash index of places that is only looked up, never walked. An entry is
/// the news's pointer beside its place in the order's nodes, and a place in the index: at
/// 10,000 simulated nodes the queues hold a hundred million, and a table of slots beside the
/// order took half as much again.
#[derive(Clone, Debug)]
pub struct BroadcastQueue<S> {
    /// Most broadcasts it holds; past it the end of the order (the most sent, then the
    /// shortest, then the oldest) is dropped.
    cap: usize,
    /// The news queued, by place.
    order: BTreeMap<u64, Arc<News<S>>>,
    /// Places by their news's subject hash.
    by_subject: HashTable<u64>,
    next_id: u64,
}

impl<S> Default for BroadcastQueue<S> {
    fn default() -> Self {
        Self::with_cap(BROADCASTS_MAX)
    }
}

impl<S> BroadcastQueue<S> {
    /// An empty queue of at most `cap` broadcasts (at least one).
    pub fn with_cap(cap: usize) -> Self {
        Self { cap: cap.max(1), order: BTreeMap::new(), by_subject: HashTable::new(), next_id: 0 }
    }
}

impl<S: Hash + Eq> BroadcastQueue<S> {
    fn place_of(&self, subject: &S) -> Option<u64> {
        let order = &self.order;
        let about = |place: &u64| order.get(place).is_some_and(|news| news.subject == *subject);
        self.by_subject.find(hash(subject), about).copied()
    }

    /// Drops the broadcast at `place` from the order and the index.
    fn remove_place(&mut self, place: u64) {
        let Some(news) = self.order.remove(&place) else { return };
        if let Ok(entry) = self.by_subject.find_entry(hash(&news.subject), |&p| p == place) {
            entry.remove();
        }
    }

    /// Drops what is queued about `subject`, hashed as `hashed`. Each place the index offers
    /// is taken out of the order to be compared, and put back if its news is about another
    /// subject (rare: the index's candidates are nearly always the subject's own entry): one
    /// descent of the order where a lookup and then a removal took two.
    fn remove_subject(&mut self, hashed: u64, subject: &S) {
        let order = &mut self.order;
        let found = self.by_subject.find_entry(hashed, |&place| match order.remove(&place) {
            Some(news) if news.subject == *subject => true,
            Some(news) => {
                order.insert(place, news);
                false
            }
            None => false,
        });
        if let Ok(entry) = found {
            entry.remove();
        }
    }

    /// Queues `news`, replacing what was queued about its subject; past the queue's cap the
    /// end of the order is dropped (the most sent, then the shortest, then the oldest: the new
    /// one itself if it is the shortest of all unsent). Returns how many were dropped.
    pub fn push(&mut self, news: Arc<News<S>>) -> usize {
        self.next_id += 1;
        // Past 2^44 pushes ids would wrap and collide: years of pushes at any real rate.
        assert!(self.next_id <= ID_MASK, "broadcast ids fit in {ID_BITS} bits");
        let hashed = hash(&news.subject);
        self.remove_subject(hashed, &news.subject);
        let place = place(0, news.message.len(), self.next_id);
        self.order.insert(place, news);
        let order = &self.order;
        let rehash = |p: &u64| hash(&order.get(p).expect("indexed places are queued").subject);
        self.by_subject.insert_unique(hashed, place, rehash);
        // memberlist's Prune, as Serf calls it: drop from the end of the queue order. After
        // the insert, as Prune runs on the queue as it stands: a short new broadcast can be
        // the end.
        let mut dropped = 0;
        while self.order.len() > self.cap {
            let Some((&last, _)) = self.order.last_key_value() else { break };
            self.remove_place(last);
            dropped += 1;
        }
        debug_assert_eq!(self.by_subject.len(), self.order.len(), "every queued place is indexed");
        dropped
    }

    /// Whether something about `subject` is still queued.
    pub fn contains(&self, subject: &S) -> bool {
        self.place_of(subject).is_some()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// How many broadcasts are queued.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Takes broadcasts that fit in `room` bytes, as memberlist's GetBroadcasts does, and
    /// takes what they use from it; each taken one counts as sent once more and is dropped at
    /// `limit` sends.
    pub fn take(&mut self, limit: u32, room: &mut usize) -> Vec<Arc<News<S>>> {
        let taken = self.take_fitting(room);
        let limit = limit.min(SENT_MAX);
        // The index first, for every taken broadcast, then the order: the index's probes
        // are independent of one another, so their cache misses overlap, where each one
        // between two B-tree inserts waited alone. Nothing here reads the order (the index
        // compares places and never rehashes), so the places missing from it meanwhile do not
        // matter.
        for (at, news) in &taken {
            let Ok(mut indexed) = self.by_subject.find_entry(hash(&news.subject), |&p| p == *at) else {
                continue;
            };
            match next_place(*at, limit) {
                Some(next) => *indexed.get_mut() = next,
                None => drop(indexed.remove()),
            }
        }
        let mut messages = Vec::with_capacity(taken.len());
        for (at, news) in taken {
            if let Some(next) = next_place(at, limit) {
                self.order.insert(next, news.clone());
            }
            messages.push(news);
        }
        debug_assert_eq!(self.by_subject.len(), self.order.len(), "every queued place is indexed");
        messages
    }

    /// Takes out of the order, tier by tier from the least sent, the longest broadcast that
    /// still fits in `room` (the newest among equals), until nothing more fits; none goes
    /// back to a later tier before the caller puts it there, so none is taken twice.
    fn take_fitting(&mut self, room: &mut usize) -> Vec<(u64, Arc<News<S>>)> {
        let mut taken = Vec::new();
        let (Some((&first, _)), Some((&last, _))) =
            (self.order.first_key_value(), self.order.last_key_value())
        else {
            return taken;
        };
        let (mut tier, last_tier) = (times_sent(first), times_sent(last));
        while *room > 0 && tier <= last_tier {
            let Some(at) = self.first_fitting(tier, *room) else {
                // On to the next tier that holds anything.
                match self.order.range(tier_start(tier + 1)..).next() {
                    Some((&next, _)) => tier = times_sent(next),
                    None => break,
                }
                continue;
            };
            // The first of the whole order is popped along the tree's first edges; another
            // is found by its key.
            let popped = match self.order.first_key_value() {
                Some((&first, _)) if first == at => self.order.pop_first(),
                _ => self.order.remove_entry(&at),
            };
            let Some((at, news)) = popped else { break };
            *room -= news.message.len();
            taken.push((at, news));
        }
        taken
    }

    /// The place of the first broadcast of `tier` that fits in `room` bytes. The tier's
    /// broadcasts longer than `room` come first in it, so the search starts past them.
    fn first_fitting(&self, tier: u32, room: usize) -> Option<u64> {
        let (from, to) = (place(tier, room, ID_MASK), tier_start(tier + 1));
        let fits = |news: &Arc<News<S>>| news.message.len() <= room;
        // Most often it is the first of the whole order (a join storm fills datagrams from
        // the front of tier 0): no descent.
        if let Some((&first, news)) = self.order.first_key_value()
            && (from..to).contains(&first)
            && fits(news)
        {
            return Some(first);
        }
        // Only a message longer than the order tells apart can be in range and not fit.
        self.order.range(from..to).find(|(_, news)| fits(news)).map(|(&at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::gossip::codec::{self, Message};

    fn intent(name: &str, ltime: u64) -> Box<[u8]> {
        codec::encode_message(&Message::JoinIntent { name: name.into(), ltime }).unwrap().into()
    }

    fn news<S>(subject: S, message: Box<[u8]>) -> Arc<News<S>> {
        Arc::new(News { subject, message })
    }

    /// The messages of what `take` took.
    fn sent<S>(taken: Vec<Arc<News<S>>>) -> Vec<Box<[u8]>> {
        taken.iter().map(|news| news.message.clone()).collect()
    }

    /// Room for everything.
    fn all() -> usize {
        usize::MAX
    }

    #[test]
    fn a_place_sent_again_moves_one_tier_down_and_keeps_its_length_and_id_until_the_limit() {
        assert_eq!(next_place(place(0, 40, 7), 2), Some(place(1, 40, 7)));
        assert_eq!(times_sent(place(1, 40, 7)), 1);
        assert_eq!(next_place(place(1, 40, 7), 2), None, "the second send is the last of two");
        assert_eq!(next_place(place(0, 40, 7), 0), None, "a limit of 0 still sends once");
        assert_eq!(next_place(place(5, 40, 7), 3), None, "a limit that shrank below what was sent");
        assert_eq!(next_place(place(SENT_MAX - 1, 40, 7), SENT_MAX), None, "the clamp");
        assert_eq!(next_place(place(SENT_MAX - 2, 40, 7), SENT_MAX), Some(place(SENT_MAX - 1, 40, 7)));
        assert!(place(1, 40, 8) < place(1, 40, 7), "newest first among equals");
        assert!(place(1, 41, 7) < place(1, 40, 8), "longest first within a tier");
        assert!(place(0, 1, 7) < place(1, LEN_MAX + 10, 8), "least sent first");
        assert_eq!(place(0, LEN_MAX + 10, 7), place(0, LEN_MAX, 7), "longer sorts as the longest told apart");
    }

    #[test]
    fn least_sent_then_newest_first_and_a_newer_broadcast_replaces_the_older() {
        let mut queue = BroadcastQueue::default();
        queue.push(news("a", intent("a", 1)));
        queue.push(news("b", intent("b", 1)));
        assert_eq!(sent(queue.take(3, &mut all())), vec![intent("b", 1), intent("a", 1)]);
        queue.push(news("a", intent("a", 2)));
        assert_eq!(queue.len(), 2);
        // The replaced one starts again at zero sends: it goes first.
        assert_eq!(sent(queue.take(3, &mut all())), vec![intent("a", 2), intent("b", 1)]);
    }

    #[test]
    fn past_the_limit_the_most_sent_then_the_shortest_then_the_oldest_is_dropped() {
        let mut queue = BroadcastQueue::default();
        for i in 0..BROADCASTS_MAX as u64 - 1 {
            assert_eq!(queue.push(news(i, intent("n", i))), 0);
        }
        // The newest is the longest of tier 0, so the first taken; sent once, it is the
        // most sent.
        let once = intent("sent", 0);
        assert_eq!(queue.push(news(u64::MAX - 1, once.clone())), 0);
        assert_eq!(sent(queue.take(10, &mut once.len())), vec![once]);
        assert_eq!(queue.push(news(u64::MAX, intent("last", 0))), 1);
        assert!(!queue.contains(&(u64::MAX - 1)) && queue.contains(&0) && queue.contains(&u64::MAX));
        // All sent as often: of the shortest (Lamport times under 128 take one byte), the
        // oldest goes.
        assert_eq!(queue.push(news(u64::MAX - 2, intent("later", 0))), 1);
        assert_eq!(queue.len(), BROADCASTS_MAX);
        assert!(!queue.contains(&0) && queue.contains(&1) && queue.contains(&200));
        assert!(queue.contains(&(u64::MAX - 2)));
    }

    #[test]
    fn a_take_fills_its_room_tier_by_tier_with_the_longest_that_fit_and_drops_at_the_limit() {
        let mut queue = BroadcastQueue::default();
        let (long, middle, short) = (intent("aaaaaaaa", 0), intent("bbbb", 0), intent("c", 0));
        queue.push(news("c", short.clone()));
        queue.push(news("b", middle.clone()));
        queue.push(news("a", long.clone()));
        // The middle one does not fit after the long one; the short one does.
        let mut room = long.len() + short.len() + 1;
        assert_eq!(sent(queue.take(2, &mut room)), vec![long.clone(), short.clone()]);
        assert_eq!(room, 1, "what the taken ones used is taken from the room");
        // Tier 0 first (the middle one), then tier 1 longest first; all but the middle one
        // reach their second send and are gone.
        assert_eq!(sent(queue.take(2, &mut all())), vec![middle.clone(), long, short]);
        assert!(queue.contains(&"b") && !queue.contains(&"a") && !queue.contains(&"c"));
        assert!(queue.take(2, &mut 0).is_empty(), "no room, nothing taken");
        assert_eq!(sent(queue.take(2, &mut all())), vec![middle]);
        assert!(queue.is_empty());
    }

    #[test]
    fn the_longest_goes_first_whatever_its_age_and_alone_when_only_it_fits() {
        let mut queue = BroadcastQueue::default();
        let (long, short) = (intent("aaaaaaaa", 0), intent("c", 0));
        queue.push(news("a", long.clone()));
        queue.push(news("c", short.clone()));
        assert_eq!(sent(queue.take(5, &mut long.len())), vec![long.clone()]);
        queue.push(news("a", long.clone()));
        assert_eq!(sent(queue.take(5, &mut all())), vec![long, short]);
    }

    #[test]
    fn a_take_skips_empty_tiers_and_stops_at_the_retransmit_ceiling() {
        let mut queue = BroadcastQueue::default();
        queue.push(news("a", intent("a", 0)));
        queue.take(10, &mut all());
        queue.take(10, &mut all());
        queue.push(news("b", intent("b", 0)));
        // b in tier 0, a in tier 2, nothing in tier 1.
        assert_eq!(sent(queue.take(10, &mut all())), vec![intent("b", 0), intent("a", 0)]);
        let mut queue = BroadcastQueue::default();
        queue.push(news("a", intent("a", 0)));
        let mut takes = 0;
        while !queue.is_empty() {
            assert_eq!(queue.take(u32::MAX, &mut all()).len(), 1);
            takes += 1;
        }
        assert_eq!(takes, SENT_MAX, "a limit past the ceiling sends as often as the ceiling");
    }

    #[test]
    fn pruning_drops_the_shortest_of_the_least_sent_before_the_oldest_even_the_newcomer() {
        let mut queue = BroadcastQueue::with_cap(3);
        queue.push(news("x", intent("xxxxxxxx", 0)));
        queue.push(news("y", intent("y", 0)));
        queue.push(news("z", intent("zzzzzzzz", 0)));
        assert_eq!(queue.push(news("w", intent("wwwwwwww", 0))), 1);
        assert!(!queue.contains(&"y") && queue.contains(&"x"), "the short one goes, not the oldest");
        assert_eq!(queue.push(news("v", intent("v", 0))), 1);
        assert!(!queue.contains(&"v") && queue.len() == 3, "the newcomer was the end of the order");
    }

    #[test]
    fn a_message_longer_than_the_order_tells_apart_is_taken_only_where_it_fits() {
        let mut queue = BroadcastQueue::default();
        let huge: Box<[u8]> = vec![7; LEN_MAX + 100].into();
        queue.push(news("small", intent("s", 0)));
        queue.push(news("huge", huge.clone()));
        assert_eq!(sent(queue.take(5, &mut { LEN_MAX })), vec![intent("s", 0)]);
        assert_eq!(sent(queue.take(5, &mut all())), vec![huge, intent("s", 0)]);
    }

    /// A subject whose hash is the same as every other's: the index offers each queued place.
    #[derive(Debug, PartialEq, Eq)]
    struct Colliding(&'static str);

    impl Hash for Colliding {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            0u8.hash(state);
        }
    }

    #[test]
    fn a_replacement_among_colliding_subjects_keeps_the_others() {
        let mut queue = BroadcastQueue::default();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            queue.push(news(Colliding(name), intent(name, i as u64)));
        }
        queue.push(news(Colliding("a"), intent("a", 9)));
        assert_eq!(queue.len(), 3);
        assert!(["a", "b", "c"].iter().all(|name| queue.contains(&Colliding(name))));
        assert_eq!(sent(queue.take(1, &mut all())), vec![intent("a", 9), intent("c", 2), intent("b", 1)]);
        assert!(queue.is_empty());
    }
}
