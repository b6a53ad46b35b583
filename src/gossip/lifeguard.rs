//! Lifeguard (memberlist's extensions to SWIM), sans-io: local health awareness, which slows
//! a node that cannot keep up so that it stops accusing healthy peers, and suspicion timeouts
//! that start long and shrink as independent accusers confirm the suspicion.

use std::time::Duration;

use smallvec::SmallVec;

/// Local health: 0 is healthy; the probe interval and timeout are scaled by `score + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Awareness {
    score: u32,
    /// memberlist's `AwarenessMaxMultiplier`: the score stays below it.
    max_multiplier: u32,
}

impl Awareness {
    /// Healthy, with the score capped at `max_multiplier - 1`.
    pub fn new(max_multiplier: u32) -> Self {
        Self { score: 0, max_multiplier: max_multiplier.max(1) }
    }

    /// Moves the score by `delta`, within `[0, max_multiplier - 1]`.
    pub fn apply(&mut self, delta: i32) {
        let moved = i64::from(self.score) + i64::from(delta);
        self.score = moved.clamp(0, i64::from(self.max_multiplier - 1)) as u32;
    }

    /// The current score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// `timeout` stretched by local health.
    pub fn scale(&self, timeout: Duration) -> Duration {
        timeout * (self.score + 1)
    }
}

/// The change in awareness after a probe round: -1 on an ack; on a failure, +1 for each
/// nack that should have come and did not, or +1 when none were expected (memberlist's
/// `probeNode`).
pub fn probe_delta(acked: bool, expected_nacks: u32, nacks: u32) -> i32 {
    match (acked, expected_nacks) {
        (true, _) => -1,
        (false, 0) => 1,
        (false, expected) => expected.saturating_sub(nacks) as i32,
    }
}

/// The shortest suspicion timeout for a cluster of `nodes` (dead ones not yet reaped
/// included): `mult` x max(1, log10 nodes) x `interval`.
pub fn suspicion_min(nodes: usize, mult: u32, interval: Duration) -> Duration {
    let scale = (nodes.max(1) as f64).log10().max(1.0);
    interval.mul_f64(f64::from(mult) * scale)
}

/// The suspicion timeout's bounds for a cluster of `nodes`: [`suspicion_min`] and `max_mult`
/// times it.
pub fn suspicion_bounds(nodes: usize, mult: u32, max_mult: u32, interval: Duration) -> (Duration, Duration) {
    let min = suspicion_min(nodes, mult, interval);
    (min, Duration::from_nanos(longest(nanos(min), max_mult)))
}

/// The longest timeout, in nanoseconds, for the shortest `min`: `max_mult` (at least 1)
/// times it, saturating.
fn longest(min: u64, max_mult: u32) -> u64 {
    min.saturating_mul(u64::from(max_mult.max(1)))
}

/// Accusers a suspicion holds inline: the first plus memberlist's default two confirmations
/// (`SuspicionMult` 4 wants 4 - 2), and one more, which the same 24 bytes hold; a larger
/// multiplier spills to the heap.
const ACCUSERS_INLINE: usize = 4;

/// One running suspicion of a member. Kept small: a partition of 10,000 simulated nodes into
/// halves makes 50 million of them at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspicion {
    /// When it started and the shortest timeout, in nanoseconds (a `Duration` takes two
    /// words).
    since: u64,
    min: u64,
    /// The longest timeout over the shortest: 4 bytes where the longest itself took 8, which
    /// makes a suspicion 48 bytes instead of 56.
    max_mult: u32,
    /// Independent confirmations wanted for the shortest timeout (0: the timeout is min).
    wanted: u32,
    /// Every node that has accused, the first one included (at most `wanted + 1`), by a
    /// 32-bit hash of its name: a collision (one in 4 billion pairs) only costs one
    /// confirmation, a longer timeout.
    accusers: SmallVec<[u32; ACCUSERS_INLINE]>,
}

impl Suspicion {
    /// A suspicion started at `since` by `accuser`, in a cluster of `nodes`, lasting from
    /// `min` to `max_mult` times `min` ([`suspicion_bounds`]; just `min` when no
    /// confirmations are wanted). memberlist wants `mult - 2` confirmations, and none when
    /// the cluster has too few other nodes to give them.
    pub fn new(
        since: Duration,
        accuser: &str,
        nodes: usize,
        mult: u32,
        min: Duration,
        max_mult: u32,
    ) -> Self {
        let wanted = mult.saturating_sub(2);
        let wanted = if (nodes as u32).saturating_sub(2) < wanted { 0 } else { wanted };
        let max_mult = if wanted == 0 { 1 } else { max_mult.max(1) };
        let mut accusers = SmallVec::new();
        accusers.push(accuser_id(accuser));
        Self { since: nanos(since), min: nanos(min), max_mult, wanted, accusers }
    }

    /// Counts `accuser`; true when it is a new one that shortens the timeout (the suspicion
    /// is then gossiped again).
    pub fn confirm(&mut self, accuser: &str) -> bool {
        let id = accuser_id(accuser);
        if self.confirmations() >= self.wanted || self.accusers.contains(&id) {
            return false;
        }
        self.accusers.push(id);
        true
    }

    /// Confirmations so far (accusers after the first).
    pub fn confirmations(&self) -> u32 {
        (self.accusers.len() as u32).saturating_sub(1)
    }

    /// How long the suspicion lasts with the confirmations so far:
    /// max - (max - min) x ln(c + 1) / ln(wanted + 1), never below min.
    pub fn timeout(&self) -> Duration {
        let max = Duration::from_nanos(longest(self.min, self.max_mult));
        let min = Duration::from_nanos(self.min);
        if self.wanted == 0 {
            return min;
        }
        let fraction = f64::from(self.confirmations() + 1).ln() / f64::from(self.wanted + 1).ln();
        let shrink = (max - min).mul_f64(fraction.clamp(0.0, 1.0));
        (max - shrink).max(min)
    }

    /// When the member is declared dead, unless it refutes first.
    pub fn deadline(&self) -> Duration {
        Duration::from_nanos(self.since) + self.timeout()
    }
}

/// Most bytes a suspicion takes (50 million of them at 10,000 nodes).
const SUSPICION_BYTES_MAX: usize = 48;
const _: () = assert!(std::mem::size_of::<Suspicion>() <= SUSPICION_BYTES_MAX);

/// `at` in nanoseconds; 584 years fit.
fn nanos(at: Duration) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

fn accuser_id(name: &str) -> u32 {
    // The low half of a 64-bit hash.
    crate::host::stable_hash(name.as_bytes()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awareness_stays_within_its_bounds_and_scales_timeouts() {
        let mut awareness = Awareness::new(8);
        awareness.apply(-1);
        assert_eq!(awareness.score(), 0);
        for _ in 0..20 {
            awareness.apply(1);
        }
        assert_eq!(awareness.score(), 7);
        assert_eq!(awareness.scale(Duration::from_millis(500)), Duration::from_secs(4));
        assert_eq!(probe_delta(true, 3, 0), -1);
        assert_eq!(probe_delta(false, 0, 0), 1);
        assert_eq!(probe_delta(false, 3, 1), 2);
        assert_eq!(probe_delta(false, 3, 3), 0, "every helper answered: the target is gone, not us");
    }

    #[test]
    fn confirmations_shrink_the_timeout_from_max_to_min() {
        let bounds = suspicion_bounds(10, 4, 6, Duration::from_secs(1));
        assert_eq!(bounds, (Duration::from_secs(4), Duration::from_secs(24)));
        let mut suspicion = Suspicion::new(Duration::from_secs(100), "a", 10, 4, bounds.0, 6);
        assert_eq!(suspicion.timeout(), Duration::from_secs(24), "a lone accuser waits the longest");
        assert!(!suspicion.confirm("a"), "the first accuser does not confirm itself");
        assert!(suspicion.confirm("b"));
        assert!(!suspicion.confirm("b"), "one confirmation per accuser");
        // 24 - 20 x ln 2 / ln 3 = 11.381 s
        assert_eq!(suspicion.timeout().as_millis(), 11_381);
        assert!(suspicion.confirm("c"));
        assert_eq!(suspicion.timeout(), Duration::from_secs(4));
        assert!(!suspicion.confirm("d"), "beyond the wanted confirmations nothing changes");
        assert_eq!(suspicion.deadline(), Duration::from_secs(104));
    }

    #[test]
    fn a_small_cluster_uses_the_minimum_at_once() {
        let bounds = suspicion_bounds(3, 4, 6, Duration::from_secs(1));
        let suspicion = Suspicion::new(Duration::ZERO, "a", 3, 4, bounds.0, 6);
        assert_eq!(suspicion.timeout(), Duration::from_secs(4));
    }
}
