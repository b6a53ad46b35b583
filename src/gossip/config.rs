//! Gossip agent settings, with memberlist's LAN defaults.

use std::net::SocketAddr;
use std::time::Duration;

/// How often failed members are checked for reaping (Serf's `ReapInterval`).
pub const REAP_INTERVAL: Duration = Duration::from_secs(15);

/// Default of [`GossipConfig::members_max`].
pub const MEMBERS_MAX_DEFAULT: usize = 16_384;

/// memberlist's configuration profiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// `DefaultLANConfig`: the defaults Serf runs with.
    #[default]
    Lan,
    /// `DefaultLocalConfig`: a loopback or single-host cluster, faster to detect and
    /// converge (tests, and real runs that must stay short).
    Local,
    /// `DefaultWANConfig`: links with high latency and loss, slower to detect.
    Wan,
}

/// How the agent joins the cluster at start.
#[derive(Clone, Debug, PartialEq)]
pub enum JoinMode {
    /// Serf's `-join`: one attempt; if no seed answers within the timeout the agent gives up.
    Once { timeout: Duration },
    /// Serf's `-retry-join`: an attempt every `interval`, at most `max` attempts (0 = forever).
    Retry { interval: Duration, max: u32 },
}

/// Settings of one agent.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipConfig {
    /// This node's unique name.
    pub name: String,
    /// The address peers reach this node at.
    pub addr: SocketAddr,
    /// Serf tags.
    pub tags: super::codec::Tags,
    /// Addresses to join through; empty means start a new cluster.
    pub seeds: Vec<SocketAddr>,
    /// Members a snapshot remembers (Serf's `-rejoin`): pushed and pulled at start besides
    /// the seeds; no answer from them is not a failed join.
    pub rejoin: Vec<SocketAddr>,
    /// Join behaviour.
    pub join: JoinMode,
    /// One failure-detector probe per interval (a "round").
    pub probe_interval: Duration,
    /// Wait for a direct ack before asking helpers to ping the target.
    pub probe_timeout: Duration,
    /// Helpers asked to ping a target that missed a direct ping (memberlist's `IndirectChecks`).
    pub indirect_checks: usize,
    /// Shortest suspicion timeout = mult x max(1, log10(n)) x probe interval.
    pub suspicion_mult: u32,
    /// A suspicion nobody confirms lasts this many times the shortest (Lifeguard).
    pub suspicion_max_timeout_mult: u32,
    /// Local health stretches the probe interval and timeout up to this many times (Lifeguard).
    pub awareness_max_multiplier: u32,
    /// Dedicated gossip tick.
    pub gossip_interval: Duration,
    /// Fan-out per gossip tick.
    pub gossip_nodes: usize,
    /// Each broadcast is sent mult x ceil(log10(n + 1)) times.
    pub retransmit_mult: u32,
    /// Dead members still receive gossip this long, so they can refute.
    pub gossip_to_the_dead: Duration,
    /// Full state exchange with one random member, over a stream.
    pub push_pull_interval: Duration,
    /// memberlist's TCP ping fallback (`DisableTcpPings` false): a target that misses the
    /// direct ping is also pinged over TCP, and one that answers there is not suspected.
    pub tcp_pings: bool,
    /// Bound on each stream operation (connect, send, answer), memberlist's `TCPTimeout`.
    pub tcp_timeout: Duration,
    /// Most members in the table (this node included): a new name beyond it is refused, and
    /// a push-pull listing more is rejected. Bounds memory and the size of a push-pull.
    pub members_max: usize,
    /// Serf's reconnect loop: a push-pull with one random failed member.
    pub reconnect_interval: Duration,
    /// A member failed this long is forgotten (Serf's `reconnect_timeout`, 24 h), checked
    /// every [`REAP_INTERVAL`]: the table does not grow with churn for ever.
    pub reconnect_timeout: Duration,
    /// A member that left is forgotten after this long (Serf's `tombstone_timeout`, 24 h),
    /// checked every [`REAP_INTERVAL`].
    pub tombstone_timeout: Duration,
    /// A bug planted for the simulator's mutation tests (`node::PlantedBugs`): the agent
    /// never refutes an accusation of itself.
    pub never_refutes: bool,
    /// A bug planted for the simulator's tests: the agent sends one join and, if no seed
    /// answers, neither retries nor gives up; it lives on alone (a `serf join` run once by a
    /// start script, where `-retry-join` was meant).
    pub joins_once: bool,
    /// A bug planted for the same tests: the agent never counts itself synced.
    pub never_syncs: bool,
    /// A bug planted for the same tests: the agent records accusations of itself (suspect,
    /// dead) in its own entry instead of refuting them.
    pub believes_accusations: bool,
    /// A bug planted for the same tests: a graceful leave broadcasts nothing.
    pub leaves_silently: bool,
    /// The label and keyring every frame is sealed and opened with (Serf's `-encrypt`,
    /// `-keyring-file`; memberlist's `Label`): plain by default.
    pub wire: super::keyring::Wire,
}

/// Cluster size up to which push-pull runs at the configured interval (memberlist's
/// `pushPullScaleThreshold`).
pub const PUSH_PULL_SCALE_THRESHOLD: usize = 32;

impl GossipConfig {
    /// The push-pull interval for a table of `nodes` members: as configured up to 32, then
    /// times ceil(log2 n - log2 32) + 1, so that the cluster's total push-pull load grows
    /// slowly (memberlist: 90 s at 100 nodes, 180 s at 1,000).
    pub fn push_pull_every(&self, nodes: usize) -> Duration {
        if nodes <= PUSH_PULL_SCALE_THRESHOLD {
            return self.push_pull_interval;
        }
        let excess = (nodes as f64).log2() - (PUSH_PULL_SCALE_THRESHOLD as f64).log2();
        self.push_pull_interval * (excess.ceil() as u32 + 1)
    }

    /// The settings of `profile`.
    pub fn of(profile: Profile, name: impl Into<String>, addr: SocketAddr) -> Self {
        match profile {
            Profile::Lan => Self::lan(name, addr),
            Profile::Local => Self::local(name, addr),
            Profile::Wan => Self::wan(name, addr),
        }
    }

    /// memberlist `DefaultWANConfig` values (on top of the LAN ones): 5 s probe interval,
    /// 3 s probe timeout, suspicion multiplier 6, a 500 ms gossip tick to 4 nodes, push-pull
    /// every 60 s, gossip to the dead for 60 s, a 30 s TCP timeout.
    pub fn wan(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            push_pull_interval: Duration::from_secs(60),
            gossip_to_the_dead: Duration::from_secs(60),
            tcp_timeout: Duration::from_secs(30),
            ..Self::lan(name, addr)
        }
    }

    /// memberlist `DefaultLocalConfig` values (on top of the LAN ones): a 200 ms probe
    /// timeout, one indirect check, a 100 ms gossip tick, 2 retransmits per log10, suspicion
    /// multiplier 3, push-pull every 15 s, gossip to the dead for 15 s, a 1 s TCP timeout.
    pub fn local(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            probe_timeout: Duration::from_millis(200),
            indirect_checks: 1,
            gossip_interval: Duration::from_millis(100),
            retransmit_mult: 2,
            suspicion_mult: 3,
            push_pull_interval: Duration::from_secs(15),
            gossip_to_the_dead: Duration::from_secs(15),
            tcp_timeout: Duration::from_secs(1),
            ..Self::lan(name, addr)
        }
    }

    /// memberlist `DefaultLANConfig` values; reconnect is faster than Serf's 30 s so small
    /// simulated runs heal within a minute.
    pub fn lan(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            tags: Default::default(),
            seeds: Vec::new(),
            rejoin: Vec::new(),
            join: JoinMode::Once { timeout: Duration::from_secs(1) },
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            awareness_max_multiplier: 8,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            retransmit_mult: 4,
            gossip_to_the_dead: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            tcp_timeout: Duration::from_secs(10),
            tcp_pings: true,
            members_max: MEMBERS_MAX_DEFAULT,
            reconnect_interval: Duration::from_secs(5),
            reconnect_timeout: Duration::from_secs(24 * 3600),
            tombstone_timeout: Duration::from_secs(24 * 3600),
            never_refutes: false,
            joins_once: false,
            never_syncs: false,
            believes_accusations: false,
            leaves_silently: false,
            wire: super::keyring::Wire::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pull_slows_down_above_32_nodes_as_memberlist_does() {
        let config = GossipConfig::lan("a", ([10, 0, 0, 1], 7946).into());
        let every = |n| config.push_pull_every(n).as_secs();
        assert_eq!((every(1), every(32)), (30, 30));
        assert_eq!((every(33), every(64), every(100), every(1000)), (60, 60, 90, 180));
    }

    /// The profiles' timings are memberlist's (gossip.md A.1).
    #[test]
    fn profiles_carry_memberlist_defaults() {
        let addr = ([10, 0, 0, 1], 7946).into();
        let timings = |profile| {
            let c = GossipConfig::of(profile, "a", addr);
            let ms = |d: Duration| d.as_millis() as u64;
            (
                ms(c.probe_interval),
                ms(c.probe_timeout),
                c.indirect_checks,
                ms(c.gossip_interval),
                c.gossip_nodes,
            )
        };
        assert_eq!(timings(Profile::Lan), (1000, 500, 3, 200, 3));
        assert_eq!(timings(Profile::Local), (1000, 200, 1, 100, 3));
        assert_eq!(timings(Profile::Wan), (5000, 3000, 3, 500, 4));
        let wan = GossipConfig::of(Profile::Wan, "a", addr);
        assert_eq!(
            (wan.suspicion_mult, wan.push_pull_interval.as_secs(), wan.tcp_timeout.as_secs()),
            (6, 60, 30)
        );
    }
}
