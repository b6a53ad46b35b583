//! The agent's limits that peers can reach: each time one refuses something it is counted,
//! and reported as an action when its count reaches 1, 2, 4, 8, ... A storm can hit a limit
//! millions of times across a large cluster; log-spaced reports keep that to a few dozen
//! records per agent while the count stays exact.

/// A limit of the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    /// Serf's broadcast queue (join and leave intents) was full: its most sent, then oldest,
    /// intent was dropped ([`super::broadcasts::BROADCASTS_MAX`]).
    Intents,
    /// memberlist's broadcast queue (one message per member) held as many as the member
    /// table may: its most sent, then oldest, message was dropped
    /// ([`super::config::GossipConfig::members_max`]).
    MemberBroadcasts,
    /// The member table was full: a new member was refused
    /// ([`super::config::GossipConfig::members_max`]).
    Members,
    /// Too many indirect probes were in flight for others: a ping request was dropped
    /// ([`super::core::RELAYS_MAX`]).
    Relays,
    /// A push-pull frame announced more bytes than `members_max` members take: its
    /// connection was closed ([`super::codec::stream_bytes_max`]).
    StreamBytes,
    /// Push-pulls already waited for the agent: the connection was closed
    /// ([`super::stream::PENDING_MAX`]).
    PendingStreams,
}

impl Limit {
    /// Every limit, in report order.
    pub const ALL: [Limit; 6] = [
        Limit::Intents,
        Limit::MemberBroadcasts,
        Limit::Members,
        Limit::Relays,
        Limit::StreamBytes,
        Limit::PendingStreams,
    ];

    /// Its name in traces and reports.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Intents => "gossip-intents",
            Limit::MemberBroadcasts => "gossip-member-broadcasts",
            Limit::Members => "gossip-members",
            Limit::Relays => "gossip-relays",
            Limit::StreamBytes => "gossip-push-pull-bytes",
            Limit::PendingStreams => "gossip-pending-push-pulls",
        }
    }

    /// Its bound for an agent whose table holds at most `members_max` members.
    pub fn max(self, members_max: usize) -> usize {
        match self {
            Limit::Intents => super::broadcasts::BROADCASTS_MAX,
            Limit::MemberBroadcasts | Limit::Members => members_max,
            Limit::Relays => super::core::RELAYS_MAX,
            Limit::StreamBytes => super::codec::stream_bytes_max(members_max),
            Limit::PendingStreams => super::stream::PENDING_MAX,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How often each limit refused something, and how far that was reported.
#[derive(Clone, Debug, Default)]
pub struct LimitCounts {
    counts: [u64; Limit::ALL.len()],
    reported: [u64; Limit::ALL.len()],
}

impl LimitCounts {
    /// `limit` refused `times` more things.
    pub fn hit(&mut self, limit: Limit, times: u64) {
        let count = &mut self.counts[limit.index()];
        *count = count.saturating_add(times);
    }

    /// How often `limit` refused something so far.
    pub fn count(&self, limit: Limit) -> u64 {
        self.counts[limit.index()]
    }

    /// The limits whose count reached a new power of two since the last call, with their
    /// counts.
    pub fn due(&mut self) -> Vec<(Limit, u64)> {
        let bits = |count: u64| u64::BITS - count.leading_zeros();
        let mut due = Vec::new();
        for limit in Limit::ALL {
            let (count, reported) = (self.counts[limit.index()], &mut self.reported[limit.index()]);
            if bits(count) > bits(*reported) {
                *reported = count;
                due.push((limit, count));
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_and_reports_log_spaced() {
        let mut counts = LimitCounts::default();
        assert!(counts.due().is_empty());
        let mut reported = Vec::new();
        for _ in 0..1000 {
            counts.hit(Limit::Intents, 1);
            reported.extend(counts.due().into_iter().map(|(_, count)| count));
        }
        assert_eq!(reported, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert_eq!(counts.count(Limit::Intents), 1000);
        // Many at once: one report, with the count reached.
        counts.hit(Limit::Members, 5);
        assert_eq!(counts.due(), [(Limit::Members, 5)]);
        counts.hit(Limit::Members, 2);
        assert!(counts.due().is_empty(), "7 is not past 8");
        assert_eq!(counts.count(Limit::Relays), 0);
    }
}
