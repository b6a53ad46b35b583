//! The sans-io gossip agent: inputs are datagrams, timers and the current time; outputs are
//! [`Action`]s. No sockets, clocks or tasks in here; randomness comes from an injected RNG.
//!
//! Protocol, after SWIM as memberlist implements it: one probe per interval in a shuffled
//! round-robin; a direct ping, then, if no ack came within the probe timeout, ping-reqs
//! through `indirect_checks` helpers that answer with the target's ack or a nack; only a
//! probe round that ends without any ack makes the target suspect. Lifeguard
//! ([`super::lifeguard`]) scales the probe interval by local health and lets a suspicion
//! shrink from max to min as independent accusers confirm it; an unrefuted suspicion becomes
//! dead; a node that hears it is suspected refutes with a higher incarnation. State changes
//! are broadcast on a gossip tick, a bounded number of times each. Push-pull exchanges full
//! state at join, periodically, and with failed members (Serf's reconnect), which heals
//! partitions.
//!
//! Serf's layer ([`super::serf`]) rides in the same packets, from a queue of its own: join
//! and leave intents
//! stamped with a Lamport time, so that a graceful leave ends as "left" everywhere (not
//! "failed"), a stale leave cannot undo a later rejoin, and a failed member can be
//! force-left. Left members are forgotten after the tombstone timeout, failed ones after the
//! reconnect timeout.
//!
//! Not yet here (later work): the TCP ping fallback.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::broadcasts::{BROADCASTS_MAX, BroadcastQueue, News};
use super::codec::{
    self, CodecError, DATAGRAM_BYTES_MAX, Message, MessageRef, Name, NodeState, NodeStateRef, PushPullRef,
    Status, StatusTimeRef, Tags,
};
use super::config::{GossipConfig, JoinMode, REAP_INTERVAL};
use super::deadlines::SuspicionDeadlines;
use super::intern::Interner;
use super::keyring::{Key, KeyOp, Keyring, KeyringError, Nonce12, ReplayWindow};
use super::lifeguard::{self, Awareness, Suspicion};
use super::limits::{Limit, LimitCounts};
use super::serf::{
    BROADCAST_TIMEOUT, IntentKind, LEAVE_PROPAGATE_DELAY, LamportClock, LeavePhase, RecentIntents,
};
use super::snapshot;
use super::table::{Named, Table};

/// A timer the agent asked for. Stale timers are ignored when they fire, never cancelled.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Start the next probe.
    Probe,
    /// The probe with this sequence number got no direct ack in time: ask helpers.
    ProbeTimeout { seq: u32 },
    /// The probe round with this sequence number ends: no ack at all makes the target suspect.
    ProbeRoundEnd { seq: u32 },
    /// An indirect ping made for another node (our sequence number) got no ack in time.
    RelayTimeout { seq: u32 },
    /// The earliest suspicion held may have run out ([`SuspicionDeadlines`]).
    Suspicions,
    /// Send pending broadcasts.
    Gossip,
    /// The random wait before the periodic full-state exchanges is over: they start.
    PushPullStart,
    /// Periodic full-state exchange.
    PushPull,
    /// The join and rejoin push-pulls had a TCP timeout to answer: the table is as synced as
    /// it will get without them.
    SyncDeadline,
    /// Try to reach a failed member.
    Reconnect,
    /// Forget members failed for longer than the reconnect timeout.
    Reap,
    /// The join attempt with this number got no answer.
    JoinTimeout { attempt: u32 },
    /// Make join attempt number `attempt`.
    RetryJoin { attempt: u32 },
    /// See whether a graceful leave can take its next step.
    Leave,
}

impl Timer {
    /// A short name for traces.
    pub fn name(&self) -> String {
        match self {
            Timer::Probe => "probe".into(),
            Timer::ProbeTimeout { seq } => format!("probe-timeout#{seq}"),
            Timer::ProbeRoundEnd { seq } => format!("probe-round-end#{seq}"),
            Timer::RelayTimeout { seq } => format!("relay-timeout#{seq}"),
            Timer::Suspicions => "suspicions".into(),
            Timer::Gossip => "gossip".into(),
            Timer::PushPullStart => "push-pull-start".into(),
            Timer::PushPull => "push-pull".into(),
            Timer::SyncDeadline => "sync-deadline".into(),
            Timer::Reconnect => "reconnect".into(),
            Timer::Reap => "reap".into(),
            Timer::JoinTimeout { attempt } => format!("join-timeout#{attempt}"),
            Timer::RetryJoin { attempt } => format!("retry-join#{attempt}"),
            Timer::Leave => "leave".into(),
        }
    }
}

/// A membership change as the agent reports it (Serf's member events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberChange {
    /// A member became alive (first contact, or back after a failure).
    Join,
    /// A member's tags changed.
    Update,
    /// A member was declared dead after its suspicion timed out.
    Failed,
    /// A member left gracefully, or a failed one was force-left (Serf's member-leave).
    Leave,
    /// A failed member was forgotten after the reconnect timeout, a left one after the
    /// tombstone timeout, or a force-leave pruned it (Serf's member-reap).
    Reap,
}

/// A member event (Serf's member-join, member-update, member-failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEvent {
    /// What changed.
    pub change: MemberChange,
    /// The member's state after the change.
    pub member: NodeState,
}

/// What the agent asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send a datagram.
    Send { to: SocketAddr, bytes: Vec<u8> },
    /// Open a stream to `to`, send `bytes` (a push-pull) and hand the answer to
    /// [`Agent::handle_stream`] with `to` as its sender.
    Stream { to: SocketAddr, bytes: Vec<u8> },
    /// Fire `timer` after `after`.
    SetTimer { timer: Timer, after: Duration },
    /// Report a member event.
    Event(MemberEvent),
    /// A join attempt went out to the seeds.
    JoinAttempt { attempt: u32 },
    /// A seed (or the first peer) answered the join.
    Joined { via: SocketAddr },
    /// Joining failed for good: like Serf, the agent stops.
    GaveUp { attempts: u32 },
    /// A graceful leave is complete: the agent stops.
    Left,
    /// `limit` (at most `max`) has now refused something `count` times: reported at counts
    /// 1, 2, 4, 8, ... ([`super::limits`]).
    LimitReached { limit: Limit, max: usize, count: u64 },
}

/// What an agent holds, counted ([`Agent::footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Entries in its member table, the dead and left included.
    pub members: usize,
    /// Members under suspicion.
    pub suspicions: usize,
    /// Broadcasts queued: memberlist's and Serf's intents.
    pub broadcasts: usize,
    /// Intents about members not met yet, buffered (Serf's recent intents).
    pub recent_intents: usize,
    /// Members whose entry changed since the driver last took them.
    pub changed: usize,
}

impl std::ops::AddAssign for Footprint {
    fn add_assign(&mut self, other: Self) {
        self.members += other.members;
        self.suspicions += other.suspicions;
        self.broadcasts += other.broadcasts;
        self.recent_intents += other.recent_intents;
        self.changed += other.changed;
    }
}

#[derive(Clone, Debug)]
struct Member {
    /// Shared with every other table that holds the same state (see [`Interner`]).
    state: Arc<NodeState>,
    /// When the member last changed status, and whether it is leaving.
    since: Since,
    /// While it is suspect: who accused it and how long the suspicion lasts.
    suspicion: Option<Box<Suspicion>>,
    /// Lamport time of the last join or leave intent applied for it (Serf's statusLTime).
    status_ltime: u64,
}

// 10,000 simulated nodes hold 100 million members: keep the entry at four words.
const _: () = assert!(std::mem::size_of::<Member>() <= 32);

/// Ends `member`'s suspicion, if it has one, and drops its deadline.
fn end_suspicion(deadlines: &mut SuspicionDeadlines, member: &mut Member) {
    if let Some(suspicion) = member.suspicion.take() {
        deadlines.remove(suspicion.deadline(), &member.state.name);
    }
}

/// The top bit of a [`Since`]: the member is leaving.
const LEAVING_BIT: u64 = 1 << 63;

/// When a member last changed status (for gossip-to-the-dead), and whether a leave intent
/// came while it was alive (Serf's "leaving": its own announcement, or its failure, will
/// follow, or a join intent cancels it). One word, where a `Duration` and a flag take three:
/// a simulation holds one per member per table, 100 million at 10,000 nodes. Nanoseconds of
/// agent time in the low 63 bits (292 years), the flag in the top bit.
#[derive(Clone, Copy, Debug)]
struct Since(u64);

impl Since {
    /// Changed status at `now`, not leaving.
    fn new(now: Duration) -> Self {
        Self(Self::nanos(now))
    }

    fn nanos(at: Duration) -> u64 {
        u64::try_from(at.as_nanos()).unwrap_or(u64::MAX).min(!LEAVING_BIT)
    }

    /// The status changed at `now`; leaving or not stays as it was.
    fn restart(&mut self, now: Duration) {
        self.0 = (self.0 & LEAVING_BIT) | Self::nanos(now);
    }

    /// The time from the last change to `now` (zero if `now` is earlier).
    fn until(self, now: Duration) -> Duration {
        now.saturating_sub(Duration::from_nanos(self.0 & !LEAVING_BIT))
    }

    fn leaving(self) -> bool {
        self.0 & LEAVING_BIT != 0
    }

    fn set_leaving(&mut self, leaving: bool) {
        self.0 = (self.0 & !LEAVING_BIT) | if leaving { LEAVING_BIT } else { 0 };
    }
}

impl Named for Member {
    fn name(&self) -> &str {
        &self.state.name
    }
}

impl Member {
    fn new(state: Arc<NodeState>, now: Duration) -> Self {
        Self { state, since: Since::new(now), suspicion: None, status_ltime: 0 }
    }

    /// Changes the state: states are shared, so this makes a new one and shares it.
    fn update(&mut self, interner: &Interner, change: impl FnOnce(&mut NodeState)) {
        let mut state = NodeState::clone(&self.state);
        change(&mut state);
        self.state = interner.shared_state(state);
    }
}

/// What a broadcast is about, and so which queue it joins: memberlist's messages about a
/// member, or Serf's intents about it. A newer one about the same subject replaces it.
#[derive(Debug)]
enum Subject {
    Member(Name),
    Intent(Name),
}

/// A join or leave intent to apply: Serf's message, whoever sent it.
#[derive(Clone, Copy, Debug)]
struct Intent {
    kind: IntentKind,
    ltime: u64,
    /// A leave that members erase at once.
    prune: bool,
}

/// Whether an intent applied is broadcast again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spread {
    Yes,
    No,
}

/// Indirect pings we make for other nodes at once; more ping-reqs are dropped.
pub const RELAYS_MAX: usize = 64;
/// Without a keyring a datagram from an address no member has is unverified: the acks to its
/// pings carry broadcasts of at most this many times its size in all (bare acks always go),
/// so a forged source gains little.
pub const AMPLIFICATION_MAX: usize = 4;
/// Broadcasts the acks to one datagram may carry whatever its size: room for an alive
/// message about this node with short tags, which answers a stale accusation at once
/// (memberlist's way).
pub const REPLY_BYTES_MIN: usize = 64;

/// The probe round under way.
#[derive(Clone, Debug)]
struct Probe {
    seq: u32,
    target: String,
    acked: bool,
    /// Helpers asked for a nack, and nacks received (Lifeguard tells from them whether the
    /// target or this node is the slow one).
    expected_nacks: u32,
    nacks: u32,
    /// Helpers whose nack has not come yet: one nack per helper counts, and none from
    /// anyone else (a spoofed nack must not cancel the awareness penalty).
    awaiting_nacks: Vec<SocketAddr>,
    /// The TCP ping fallback got an ack: the target lives though UDP failed.
    stream_acked: bool,
}

/// An indirect ping we make for another node.
#[derive(Clone, Copy, Debug)]
struct Relay {
    requester: SocketAddr,
    seq: u32,
    nack: bool,
}

/// The gossip agent of one node.
pub struct Agent {
    config: GossipConfig,
    incarnation: u32,
    /// In the order members were added: random peers are drawn from it by index.
    members: Table<Member>,
    /// memberlist's queue: alive, suspect and dead messages, one per member.
    broadcasts: BroadcastQueue<Name>,
    /// Serf's queue: join and leave intents, pruned to [`BROADCASTS_MAX`] as Serf prunes.
    intents: BroadcastQueue<Name>,
    /// What each limit refused (dropped broadcasts as Serf counts its pruned messages).
    limits: LimitCounts,
    /// Shares names, tags, member states and news with other tables.
    interner: Interner,
    rng: ChaCha8Rng,
    next_seq: u32,
    /// Members still to probe this round, by their position in `members` (4 bytes each:
    /// 10,000 simulated agents list 10,000 members each), last first.
    probe_queue: Vec<u32>,
    /// When the suspicions held run out.
    deadlines: SuspicionDeadlines,
    probe: Option<Probe>,
    /// Indirect pings in flight for other nodes, by our sequence number.
    relays: BTreeMap<u32, Relay>,
    awareness: Awareness,
    joined: bool,
    /// Whether the table holds what the cluster knows, as far as this node can tell: a
    /// push-pull merged, nobody to ask, the join given up, or one TCP timeout passed.
    /// Until then a restarted node's table is only itself.
    synced: bool,
    join_attempts: u32,
    clock: LamportClock,
    recent_intents: RecentIntents,
    /// A graceful leave under way.
    leave: Option<LeavePhase>,
    /// Bumped on every change to the member table, so drivers publish views only on change.
    version: u64,
    /// Members whose entry changed since the driver last took them (at most the table and
    /// the members erased since).
    changed: BTreeSet<Name>,
    /// Bytes of broadcasts the replies to the datagram being handled may still carry
    /// ([`AMPLIFICATION_MAX`]).
    reply_budget: usize,
    /// Nonces of the sealed frames opened last (empty without a keyring).
    replays: ReplayWindow,
}

/// Marks `name`'s entry as changed.
fn touch(version: &mut u64, changed: &mut BTreeSet<Name>, name: &str) {
    *version += 1;
    if !changed.contains(name) {
        changed.insert(name.into());
    }
}

impl Agent {
    /// A new agent; call [`Agent::start`] before anything else.
    pub fn new(config: GossipConfig, rng: ChaCha8Rng) -> Self {
        assert!(config.probe_timeout < config.probe_interval, "probe timeout within the interval");
        assert!(config.gossip_nodes > 0);
        assert!(!config.name.is_empty() && config.name.len() <= codec::NAME_BYTES_MAX);
        let awareness_max = config.awareness_max_multiplier;
        let members_max = config.members_max;
        Self {
            config,
            incarnation: 0,
            members: Table::default(),
            broadcasts: BroadcastQueue::with_cap(members_max),
            intents: BroadcastQueue::with_cap(BROADCASTS_MAX),
            limits: LimitCounts::default(),
            interner: Interner::default(),
            rng,
            next_seq: 0,
            probe_queue: Vec::new(),
            deadlines: SuspicionDeadlines::default(),
            probe: None,
            relays: BTreeMap::new(),
            awareness: Awareness::new(awareness_max),
            joined: false,
            synced: false,
            join_attempts: 0,
            clock: LamportClock::default(),
            recent_intents: RecentIntents::default(),
            leave: None,
            version: 0,
            changed: BTreeSet::new(),
            reply_budget: usize::MAX,
            replays: ReplayWindow::default(),
        }
    }

    /// Shares names, tags, member states and news with the other tables of `interner`
    /// (agents of one process).
    pub fn share_interner(&mut self, interner: Interner) {
        self.interner = interner;
    }

    /// Starts the agent: announces itself, arms the periodic timers and starts joining.
    pub fn start(&mut self, now: Duration, out: &mut Vec<Action>) {
        assert!(self.members.is_empty(), "start is called once");
        let me = self.own_state();
        let mut member = Member::new(self.interner.shared_state(me.clone()), now);
        // Serf announces a join intent at start: it cancels a leave older than this life.
        member.status_ltime = self.clock.increment();
        let intent = Message::JoinIntent { name: me.name.to_string(), ltime: member.status_ltime };
        self.insert_member(member);
        // memberlist's setAlive broadcasts our own alive (aliveNode while bootstrapping), so
        // a joiner announces itself in its first gossip, not only through its seed's copy:
        // without it a peer that no holder of the seed's copy picked heard of the joiner
        // only at its next push-pull.
        self.enqueue(Subject::Member, &me.name, Message::Alive(me.clone()));
        self.enqueue(Subject::Intent, &me.name, intent);
        touch(&mut self.version, &mut self.changed, &me.name);
        out.push(Action::Event(MemberEvent { change: MemberChange::Join, member: me }));
        // Spread the first probe over one interval so that nodes started together do not
        // probe in lockstep.
        let first_probe = self.random_fraction(self.config.probe_interval);
        out.push(Action::SetTimer { timer: Timer::Probe, after: first_probe });
        out.push(Action::SetTimer { timer: Timer::Gossip, after: self.config.gossip_interval });
        // memberlist waits a random part of the interval before the periodic push-pulls
        // start, then one scaled interval before the first: nodes started together would
        // otherwise all send their full state in the same instant.
        let stagger = self.random_fraction(self.config.push_pull_interval);
        out.push(Action::SetTimer { timer: Timer::PushPullStart, after: stagger });
        out.push(Action::SetTimer { timer: Timer::Reconnect, after: self.config.reconnect_interval });
        out.push(Action::SetTimer { timer: Timer::Reap, after: REAP_INTERVAL });
        if self.config.seeds.is_empty() {
            self.joined = true;
        } else {
            self.attempt_join(out);
        }
        let (me, seeds) = (self.config.addr, &self.config.seeds);
        let mut rejoin: Vec<SocketAddr> =
            self.config.rejoin.iter().copied().filter(|a| *a != me && !seeds.contains(a)).collect();
        rejoin.shuffle(&mut self.rng);
        rejoin.truncate(snapshot::REJOIN_MAX);
        if self.config.seeds.is_empty() && rejoin.is_empty() {
            self.mark_synced();
        } else {
            out.push(Action::SetTimer { timer: Timer::SyncDeadline, after: self.config.tcp_timeout });
        }
        for addr in rejoin {
            self.send_push_pull(addr, true, out);
        }
    }

    /// The member table as this node sees it, ordered by name.
    pub fn members(&self) -> impl Iterator<Item = &NodeState> {
        self.members.by_name().into_iter().map(|member| &*member.state)
    }

    /// How much this agent holds: what a simulation of thousands of agents reports to show
    /// where its memory goes.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            members: self.members.len(),
            suspicions: self.deadlines.len(),
            broadcasts: self.broadcasts.len() + self.intents.len(),
            recent_intents: self.recent_intents.len(),
            changed: self.changed.len(),
        }
    }

    /// Changes whenever the member table changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The members whose entry changed (or that were erased) since the last call, by name:
    /// a driver records a view's changes without comparing the whole table.
    pub fn take_changed(&mut self) -> BTreeSet<Name> {
        std::mem::take(&mut self.changed)
    }

    /// One member's current entry.
    pub fn member(&self, name: &str) -> Option<&NodeState> {
        self.members.get(name).map(|member| &*member.state)
    }

    /// Whether a seed has answered (or there were no seeds).
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Whether the table is worth acting on (see the field): a renderer that already wrote
    /// a file keeps it until then, as consul-template waits for its data.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    fn mark_synced(&mut self) {
        if !self.synced && !self.config.never_syncs {
            self.synced = true;
            // Drivers publish on a new version: the flag is part of what they publish.
            self.version += 1;
        }
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// Local health: 0 when healthy, up to `awareness_max_multiplier - 1`.
    pub fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    /// Handles one datagram from `from`.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Duration,
        out: &mut Vec<Action>,
    ) -> Result<(), CodecError> {
        let (frame, nonce) = self.config.wire.open(bytes, Some(self.config.addr))?;
        self.refuse_replay(nonce)?;
        // A keyring proves the sender holds a key; without one, anyone can claim any source
        // address, so what the replies to one datagram from an unknown address piggyback is
        // bounded by its size.
        self.reply_budget = match self.config.wire.keyring {
            Some(_) => usize::MAX,
            None => bytes.len().saturating_mul(AMPLIFICATION_MAX).max(REPLY_BYTES_MIN),
        };
        let messages = codec::decode_borrowed(&frame)?;
        self.warm_members(&messages);
        for message in messages {
            self.handle_message(from, message, now, out);
        }
        self.report_limits(out);
        Ok(())
    }

    /// Looks up the member each alive, suspect, dead or intent message is about, as handling
    /// it will, before any is handled (an accuser, `from`, is only recorded, never looked
    /// up). The lookups do not depend on one another, so their cache misses overlap, and
    /// handling then finds the entries cached: in a join storm a datagram names tens of
    /// members, each a miss in a table of thousands, where handled one by one each miss
    /// waited alone. Only speed depends on it (about 3 % of a 3,000-node join storm).
    fn warm_members(&self, messages: &[MessageRef<'_>]) {
        for name in messages.iter().filter_map(MessageRef::about) {
            // Kept from being optimised away: the lookup's effect is the cache it fills.
            std::hint::black_box(self.members.position(name));
        }
    }

    /// Reports the limits whose counts reached a new power of two. Called after each
    /// datagram, stream and timer, so a limit reached elsewhere (a leave, new tags) is
    /// reported by the next of those, within a probe interval.
    fn report_limits(&mut self, out: &mut Vec<Action>) {
        let reports: Vec<Action> = self
            .limits
            .due()
            .into_iter()
            .map(|(limit, count)| Action::LimitReached {
                limit,
                max: limit.max(self.config.members_max),
                count,
            })
            .collect();
        // Before the agent's last word: a driver stops at `Left` or `GaveUp`.
        let last = out.iter().position(|action| matches!(action, Action::Left | Action::GaveUp { .. }));
        let at = last.unwrap_or(out.len());
        out.splice(at..at, reports);
    }

    /// Handles a push-pull that came over a stream from `from`: merges it, and returns the
    /// answer to write back on the same stream. `is_answer` says the frame answers our own
    /// push-pull (the driver knows; the peer's `reply` flag is not trusted for that): it
    /// completes a join and is not answered.
    pub fn handle_stream(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        is_answer: bool,
        now: Duration,
        out: &mut Vec<Action>,
    ) -> Result<Option<Vec<u8>>, CodecError> {
        // Our own push-pull's answer rides the connection we opened: it is bound to nothing.
        let me = (!is_answer).then_some(self.config.addr);
        let (opened, nonce) = self.config.wire.open(bytes, me)?;
        self.refuse_replay(nonce)?;
        let frame = codec::decode_stream_borrowed(&opened, self.config.members_max)?;
        let answer = self.answer_stream(from, frame, is_answer, now, out);
        self.report_limits(out);
        Ok(answer?.map(|answer| self.seal(answer, None)))
    }

    /// What a decoded frame from `from` asks for, and its answer.
    fn answer_stream(
        &mut self,
        from: SocketAddr,
        frame: MessageRef<'_>,
        is_answer: bool,
        now: Duration,
        out: &mut Vec<Action>,
    ) -> Result<Option<Vec<u8>>, CodecError> {
        match frame {
            MessageRef::PushPull { join, ltime, states, intents, .. } => {
                self.merge_push_pull(ltime, &states, &intents, now, out);
                self.mark_synced();
                if is_answer {
                    // Only a seed's answer ends the join, as Serf's retry-join counts only its
                    // own addresses: a rejoin through the snapshot alone keeps retrying them,
                    // so a seed cut off at the time hears of us once it is back.
                    if !self.joined && self.config.seeds.contains(&from) {
                        self.joined = true;
                        out.push(Action::Joined { via: from });
                    }
                    return Ok(None);
                }
                codec::encode_push_pull(&self.push_pull(join, true)).map(Some)
            }
            // memberlist's TCP ping fallback: answered like a ping, if it is for us.
            MessageRef::Ping { seq, target } if !is_answer && target == &*self.config.name => {
                codec::encode_stream(&Message::Ack { seq }).map(Some)
            }
            MessageRef::Ack { seq } if is_answer => {
                if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    probe.stream_acked = true;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Merges a peer's full state, then Serf's part of it: a left member's time is a leave
    /// intent, anyone else's a join intent.
    fn merge_push_pull(
        &mut self,
        ltime: u64,
        states: &[NodeStateRef<'_>],
        intents: &[StatusTimeRef<'_>],
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        self.clock.witness(ltime);
        let left: BTreeSet<&str> =
            states.iter().filter(|s| s.status == Status::Left).map(|s| s.name).collect();
        self.merge(states, now, out);
        for intent in intents {
            let kind = if left.contains(intent.name) { IntentKind::Leave } else { IntentKind::Join };
            // Serf's MergeRemoteState applies the intents without broadcasting them again: the
            // push-pull is the news, and a join storm would otherwise queue every member twice.
            self.apply_intent(
                intent.name,
                Intent { kind, ltime: intent.ltime, prune: false },
                Spread::No,
                now,
                out,
            );
        }
    }

    /// Handles a timer that fired.
    pub fn handle_timer(&mut self, timer: Timer, now: Duration, out: &mut Vec<Action>) {
        self.fire(timer, now, out);
        self.report_limits(out);
    }

    fn fire(&mut self, timer: Timer, now: Duration, out: &mut Vec<Action>) {
        match timer {
            Timer::Probe => self.start_probe(now, out),
            Timer::ProbeTimeout { seq } => self.ask_helpers(seq, now, out),
            Timer::ProbeRoundEnd { seq } => {
                if self.probe.as_ref().is_some_and(|p| p.seq == seq) {
                    self.finish_probe(now, out);
                }
            }
            Timer::RelayTimeout { seq } => {
                if let Some(relay) = self.relays.remove(&seq).filter(|r| r.nack) {
                    self.send(relay.requester, &[Message::Nack { seq: relay.seq }], out);
                }
            }
            Timer::Suspicions => self.suspicions_ran_out(now, out),
            Timer::Gossip => self.gossip(now, out),
            Timer::SyncDeadline => self.mark_synced(),
            Timer::PushPullStart => {
                let every = self.config.push_pull_every(self.members.len());
                out.push(Action::SetTimer { timer: Timer::PushPull, after: every });
            }
            Timer::PushPull => {
                let every = self.config.push_pull_every(self.members.len());
                out.push(Action::SetTimer { timer: Timer::PushPull, after: every });
                if let Some(peer) = self.random_peers(1, now, |s| s.status == Status::Alive).pop() {
                    self.send_push_pull(peer, false, out);
                }
            }
            Timer::Reap => self.reap(now, out),
            Timer::Reconnect => {
                out.push(Action::SetTimer { timer: Timer::Reconnect, after: self.config.reconnect_interval });
                self.reconnect(out);
            }
            Timer::JoinTimeout { attempt } => {
                if !self.joined && attempt == self.join_attempts {
                    self.mark_synced();
                    out.push(Action::GaveUp { attempts: attempt });
                }
            }
            Timer::Leave => self.leave_step(now, out),
            Timer::RetryJoin { attempt } => {
                if self.joined {
                    return;
                }
                // Only retry mode arms this timer; a stray one in once mode is ignored.
                let JoinMode::Retry { max, .. } = self.config.join else { return };
                if max != 0 && attempt > max {
                    self.mark_synced();
                    out.push(Action::GaveUp { attempts: max });
                } else {
                    self.attempt_join(out);
                }
            }
        }
    }

    /// Leaves the cluster gracefully, as Serf does: a leave intent, then memberlist's own
    /// announcement of the node's death, each broadcast until it went out (or
    /// [`BROADCAST_TIMEOUT`]), then [`LEAVE_PROPAGATE_DELAY`]; [`Action::Left`] says it is done.
    pub fn leave(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.leave.is_some() {
            return;
        }
        if self.config.leaves_silently {
            self.leave = Some(LeavePhase::Propagating);
            out.push(Action::SetTimer { timer: Timer::Leave, after: LEAVE_PROPAGATE_DELAY });
            return;
        }
        let name = self.config.name.clone();
        let ltime = self.clock.increment();
        if let Some(me) = self.members.get_mut(name.as_str()) {
            me.status_ltime = ltime;
            me.since.set_leaving(true);
        }
        self.enqueue(Subject::Intent, &name.clone(), Message::LeaveIntent { name, ltime, prune: false });
        self.leave = Some(LeavePhase::Intent { until: now + BROADCAST_TIMEOUT });
        out.push(Action::SetTimer { timer: Timer::Leave, after: self.config.gossip_interval });
    }

    /// Changes this node's tags at run time (`serf tags -set/-delete`): a new incarnation
    /// carries them, and peers emit member-update. Tags over the wire limit are refused.
    pub fn set_tags(
        &mut self,
        tags: BTreeMap<String, String>,
        now: Duration,
        out: &mut Vec<Action>,
    ) -> Result<(), CodecError> {
        let mut next = self.own_state();
        next.tags = Tags::new(tags);
        codec::check_state(&next)?;
        if next.tags == self.config.tags || self.leave.is_some() {
            return Ok(());
        }
        self.config.tags = next.tags;
        self.incarnation = self.incarnation.saturating_add(1);
        let me = self.own_state();
        let member = self.members.get_mut(&me.name).expect("self is always a member");
        member.state = self.interner.shared_state(me.clone());
        member.since.restart(now);
        touch(&mut self.version, &mut self.changed, &me.name);
        self.enqueue(Subject::Member, &me.name, Message::Alive(me.clone()));
        out.push(Action::Event(MemberEvent { change: MemberChange::Update, member: me }));
        Ok(())
    }

    /// This node's tags.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.config.tags
    }

    /// Whether a graceful leave is under way.
    pub fn is_leaving(&self) -> bool {
        self.leave.is_some()
    }

    /// How long its driver waits for each step of a push-pull (its TCP timeout).
    pub fn tcp_timeout(&self) -> Duration {
        self.config.tcp_timeout
    }

    /// Serf's force-leave: a failed member becomes one that left, everywhere (with `prune`,
    /// it is erased at once). About a running member it is only a leave intent, which that
    /// member refutes. An unknown name changes nothing.
    pub fn force_leave(&mut self, name: &str, prune: bool, now: Duration, out: &mut Vec<Action>) {
        if name == self.config.name || !self.members.contains(name) {
            return;
        }
        let ltime = self.clock.increment();
        self.apply_intent(name, Intent { kind: IntentKind::Leave, ltime, prune }, Spread::Yes, now, out);
    }

    /// Moves a graceful leave on once the current broadcast went out (or timed out).
    fn leave_step(&mut self, now: Duration, out: &mut Vec<Action>) {
        let Some(phase) = self.leave else { return };
        let name = self.config.name.clone();
        let pending = |agent: &Self, subject: &Subject| {
            let has_peers = agent.members.iter().any(|m| *m.state.name != *name && !m.state.status.is_gone());
            has_peers && agent.is_queued(subject)
        };
        let again = Action::SetTimer { timer: Timer::Leave, after: self.config.gossip_interval };
        match phase {
            LeavePhase::Intent { until }
                if now < until && pending(self, &Subject::Intent(Name::from(name.as_str()))) =>
            {
                out.push(again)
            }
            LeavePhase::Intent { .. } => {
                let me = self.members.get_mut(name.as_str()).expect("self is always a member");
                me.update(&self.interner, |s| s.status = Status::Left);
                me.since.restart(now);
                let incarnation = me.state.incarnation;
                touch(&mut self.version, &mut self.changed, &name);
                let message = Message::Dead { name: name.clone(), incarnation, from: name.clone() };
                self.enqueue(Subject::Member, &name, message);
                self.leave = Some(LeavePhase::Announce { until: now + BROADCAST_TIMEOUT });
                out.push(again);
            }
            LeavePhase::Announce { until }
                if now < until && pending(self, &Subject::Member(Name::from(name.as_str()))) =>
            {
                out.push(again)
            }
            LeavePhase::Announce { .. } => {
                self.leave = Some(LeavePhase::Propagating);
                out.push(Action::SetTimer { timer: Timer::Leave, after: LEAVE_PROPAGATE_DELAY });
            }
            LeavePhase::Propagating => out.push(Action::Left),
        }
    }

    /// Serf's reconnect: a push-pull with one random failed member, tried with probability
    /// #failed / #alive (neither failed nor left, this node included), so that the cluster
    /// makes about one attempt per failed member per interval, not one per node: 100 crashed
    /// nodes in 10,000 cost 100 full-state exchanges an interval, not 10,000.
    fn reconnect(&mut self, out: &mut Vec<Action>) {
        let (mut failed, mut left) = (0, 0);
        for member in self.members.iter() {
            match member.state.status {
                Status::Dead => failed += 1,
                Status::Left => left += 1,
                Status::Alive | Status::Suspect => {}
            }
        }
        if failed == 0 {
            return;
        }
        let alive = self.members.len().saturating_sub(failed + left).max(1);
        // Drawn before the failed ones are listed: most ticks of a large table try nobody.
        if self.rng.random::<f64>() >= failed as f64 / alive as f64 {
            return;
        }
        let failed: Vec<SocketAddr> = self
            .members
            .by_name_where(|m| m.state.status == Status::Dead)
            .into_iter()
            .map(|m| m.state.addr)
            .collect();
        let peer = failed[self.rng.random_range(0..failed.len())];
        self.send_push_pull(peer, true, out);
    }

    /// Forgets members failed for longer than the reconnect timeout, and members that left
    /// longer ago than the tombstone timeout.
    fn reap(&mut self, now: Duration, out: &mut Vec<Action>) {
        out.push(Action::SetTimer { timer: Timer::Reap, after: REAP_INTERVAL });
        let (failed, left) = (self.config.reconnect_timeout, self.config.tombstone_timeout);
        let expired: Vec<Name> = self
            .members
            .by_name_where(|m| match m.state.status {
                Status::Dead => m.since.until(now) >= failed,
                Status::Left => m.since.until(now) >= left,
                Status::Alive | Status::Suspect => false,
            })
            .into_iter()
            .map(|m| m.state.name.clone())
            .collect::<Vec<Name>>();
        for name in expired {
            self.erase(&name, out);
        }
    }

    /// Removes a member from the table (Serf's member-reap).
    fn erase(&mut self, name: &str, out: &mut Vec<Action>) {
        if name == self.config.name {
            return;
        }
        let Some(position) = self.members.position(name) else { return };
        // Later members move up one place: so do their places in the probe round. A member
        // met again after this (a pruned one may rejoin within seconds) waits for the next
        // round; memberlist's reap takes it out of the list its probes walk, too.
        let position = position as u32;
        self.probe_queue.retain(|&p| p != position);
        for p in &mut self.probe_queue {
            if *p > position {
                *p -= 1;
            }
        }
        if let Some(mut member) = self.members.remove(name) {
            end_suspicion(&mut self.deadlines, &mut member);
            touch(&mut self.version, &mut self.changed, name);
            out.push(Action::Event(MemberEvent {
                change: MemberChange::Reap,
                member: NodeState::clone(&member.state),
            }));
        }
    }

    fn own_state(&self) -> NodeState {
        NodeState {
            name: self.config.name.as_str().into(),
            addr: self.config.addr,
            incarnation: self.incarnation,
            status: Status::Alive,
            tags: self.config.tags.clone(),
        }
    }

    fn random_fraction(&mut self, span: Duration) -> Duration {
        let millis = span.as_millis().max(1) as u64;
        Duration::from_millis(self.rng.random_range(0..millis))
    }

    fn attempt_join(&mut self, out: &mut Vec<Action>) {
        self.join_attempts += 1;
        let attempt = self.join_attempts;
        out.push(Action::JoinAttempt { attempt });
        for seed in self.config.seeds.clone() {
            self.send_push_pull(seed, true, out);
        }
        if self.config.joins_once {
            return;
        }
        match self.config.join {
            JoinMode::Once { timeout } => {
                out.push(Action::SetTimer { timer: Timer::JoinTimeout { attempt }, after: timeout });
            }
            JoinMode::Retry { interval, .. } => {
                out.push(Action::SetTimer {
                    timer: Timer::RetryJoin { attempt: attempt + 1 },
                    after: interval,
                });
            }
        }
    }

    fn handle_message(
        &mut self,
        from: SocketAddr,
        message: MessageRef<'_>,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        match message {
            MessageRef::Ping { seq, target } => {
                // A ping meant for a previous owner of this address is not ours to answer.
                if target == &*self.config.name {
                    let packet = [Message::Ack { seq }];
                    let bytes_max = self.reply_bytes_max(from);
                    let broadcasts = self.piggyback_within(&packet, bytes_max);
                    // A bare ack always goes; the broadcasts spend the datagram's budget.
                    let spent: usize = broadcasts.iter().map(|news| news.message.len()).sum();
                    self.reply_budget = self.reply_budget.saturating_sub(spent);
                    self.send_with(from, &packet, &broadcasts, out);
                }
            }
            MessageRef::Ack { seq } => match self.probe.as_mut() {
                Some(probe) if probe.seq == seq => probe.acked = true,
                _ => {
                    if let Some(relay) = self.relays.remove(&seq) {
                        self.send(relay.requester, &[Message::Ack { seq: relay.seq }], out);
                    }
                }
            },
            MessageRef::Nack { seq } => {
                if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    if let Some(at) = probe.awaiting_nacks.iter().position(|helper| *helper == from) {
                        probe.awaiting_nacks.swap_remove(at);
                        probe.nacks += 1;
                    }
                }
            }
            MessageRef::PingReq { seq, target, addr, nack } => {
                self.relay_ping(from, seq, target.to_string(), addr, nack, out)
            }
            // Gossip repeats most alive messages many times over: one about a member at an
            // incarnation already known changes nothing and costs no copy.
            MessageRef::Alive(state) if self.knows(&state) => {}
            MessageRef::Alive(state) => self.apply_alive(state.to_state(), now, out),
            MessageRef::Suspect { name, incarnation, from } => {
                self.apply_suspect(name, incarnation, from, now, out)
            }
            MessageRef::Dead { name, incarnation, from } if name == from => {
                self.apply_left(name, incarnation, now, out)
            }
            MessageRef::Dead { name, incarnation, from } => {
                self.apply_dead(name, incarnation, from, now, out)
            }
            MessageRef::JoinIntent { name, ltime } => {
                let intent = Intent { kind: IntentKind::Join, ltime, prune: false };
                self.gossiped_intent(name, intent, now, out);
            }
            MessageRef::LeaveIntent { name, ltime, prune } => {
                self.gossiped_intent(name, Intent { kind: IntentKind::Leave, ltime, prune }, now, out);
            }
            // The codec refuses a push-pull in a datagram; streams go to `handle_stream`.
            MessageRef::PushPull { .. } => {}
        }
    }

    /// A join or leave intent that came by gossip: it moves our Lamport clock, and is spread
    /// on if it is news.
    fn gossiped_intent(&mut self, name: &str, intent: Intent, now: Duration, out: &mut Vec<Action>) {
        self.clock.witness(intent.ltime);
        self.apply_intent(name, intent, Spread::Yes, now, out);
    }

    /// Whether an alive message about `state` is one the table already holds: the member at
    /// that address, at the same or a newer incarnation (`apply_alive` would drop it).
    fn knows(&self, state: &NodeStateRef<'_>) -> bool {
        state.name != &*self.config.name
            && self.members.get(state.name).is_some_and(|known| {
                state.incarnation <= known.state.incarnation && known.state.addr == state.addr
            })
    }

    /// Merges a peer's full state. A remote "dead" only counts as a suspicion: a full sync
    /// never kills a node outright (memberlist does the same).
    fn merge(&mut self, states: &[NodeStateRef<'_>], now: Duration, out: &mut Vec<Action>) {
        let before = self.members.len();
        self.members.reserve(states.len().saturating_sub(before));
        for state in states {
            match state.status {
                // What the table holds already is dropped before anything is copied.
                Status::Alive if self.knows(state) => {}
                Status::Alive => self.apply_alive(state.to_state(), now, out),
                // memberlist applies a remote "left" as the node's own announcement.
                Status::Left => self.apply_left(state.name, state.incarnation, now, out),
                Status::Suspect | Status::Dead => {
                    // A node we never knew, reported suspect or dead, is not added (memberlist
                    // drops it): a rebooted node must not route to dead webapps.
                    if !self.members.contains(state.name) && state.name != &*self.config.name {
                        continue;
                    }
                    let from = self.config.name.clone();
                    self.apply_suspect(state.name, state.incarnation, &from, now, out);
                }
            }
        }
    }

    fn apply_alive(&mut self, state: NodeState, now: Duration, out: &mut Vec<Action>) {
        // The codec rejects alive messages with another status; merges pass only alive ones.
        if state.status != Status::Alive {
            return;
        }
        if *state.name == *self.config.name {
            if state.addr != self.config.addr {
                // Another process claims our name: out-refuting it would go on for ever
                // (memberlist reports the conflict to its delegate and does not refute).
                tracing::warn!(name = %state.name, ours = %self.config.addr, theirs = %state.addr, "name conflict");
                return;
            }
            // Someone gossips an old or foreign view of us: make sure ours wins (unless we are
            // on our way out).
            let stale = state.incarnation > self.incarnation
                || (state.incarnation == self.incarnation && state.tags != self.config.tags);
            if self.leave.is_none() && stale {
                self.refute(state.incarnation, now);
            }
            return;
        }
        let known = self.members.get(&state.name);
        if known.is_some_and(|k| k.state.addr != state.addr && !k.state.status.is_gone()) {
            // Same name, another address, while the one we know lives: keep it (memberlist
            // does the same until the known one is dead).
            tracing::warn!(name = %state.name, theirs = %state.addr, "name conflict: address kept");
            return;
        }
        if known.is_none() && self.members.len() >= self.config.members_max {
            tracing::warn!(name = %state.name, max = self.config.members_max, "member table full: new member refused");
            self.limits.hit(Limit::Members, 1);
            return;
        }
        let change = match known {
            None => Some(MemberChange::Join),
            Some(known) if state.incarnation <= known.state.incarnation => return,
            Some(known) if known.state.status.is_gone() => Some(MemberChange::Join),
            Some(known) if known.state.tags != state.tags => Some(MemberChange::Update),
            Some(_) => None,
        };
        let state = self.interner.state(state);
        match self.members.get_mut(&state.name) {
            Some(known) => {
                if known.state.status != Status::Alive {
                    known.since.restart(now);
                }
                known.state = self.interner.shared_state(state.clone());
                end_suspicion(&mut self.deadlines, known);
            }
            None => {
                let member = self.first_sight(state.clone(), now);
                self.insert_member(member);
            }
        }
        touch(&mut self.version, &mut self.changed, &state.name);
        self.enqueue(Subject::Member, &state.name, Message::Alive(state.clone()));
        if let Some(change) = change {
            out.push(Action::Event(MemberEvent { change, member: state }));
        }
    }

    /// A member met for the first time, with any intent about it that came before it did.
    fn first_sight(&mut self, state: NodeState, now: Duration) -> Member {
        let mut member = Member::new(self.interner.shared_state(state), now);
        if let Some((kind, ltime)) = self.recent_intents.take(&member.state.name, now) {
            member.status_ltime = ltime;
            member.since.set_leaving(kind == IntentKind::Leave);
        }
        member
    }

    /// A join or leave intent about `name` at Lamport time `ltime` (Serf's
    /// handleNodeJoinIntent and handleNodeLeaveIntent): applied only if newer than the last
    /// one applied for that member, and then spread further.
    fn apply_intent(
        &mut self,
        name: &str,
        intent: Intent,
        spread: Spread,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let Intent { kind, ltime, prune } = intent;
        if name == self.config.name {
            self.intent_about_us(kind, ltime);
            return;
        }
        let message = || match kind {
            IntentKind::Join => Message::JoinIntent { name: name.to_string(), ltime },
            IntentKind::Leave => Message::LeaveIntent { name: name.to_string(), ltime, prune },
        };
        let Some(member) = self.members.get_mut(name) else {
            // Serf spreads an intent about a member it does not know yet if it is news.
            if self.recent_intents.record(name, kind, ltime, now) && spread == Spread::Yes {
                self.enqueue(Subject::Intent, name, message());
            }
            return;
        };
        if ltime <= member.status_ltime {
            return;
        }
        member.status_ltime = ltime;
        member.since.set_leaving(kind == IntentKind::Leave && !member.state.status.is_gone());
        // A force-leave: a failed member is now one that left.
        if kind == IntentKind::Leave && member.state.status == Status::Dead {
            member.update(&self.interner, |s| s.status = Status::Left);
            member.since.restart(now);
            let state = NodeState::clone(&member.state);
            touch(&mut self.version, &mut self.changed, name);
            out.push(Action::Event(MemberEvent { change: MemberChange::Leave, member: state }));
        }
        let left = member.state.status == Status::Left;
        if spread == Spread::Yes {
            self.enqueue(Subject::Intent, name, message());
        }
        if kind == IntentKind::Leave && prune && left {
            self.erase(name, out);
        }
    }

    /// An intent about ourselves: a leave we did not ask for (stale, or a force-leave of a
    /// node that is in fact running) is refuted with a newer join intent, as Serf does.
    fn intent_about_us(&mut self, kind: IntentKind, ltime: u64) {
        if kind == IntentKind::Join || self.leave.is_some() {
            return;
        }
        self.clock.witness(ltime);
        let ltime = self.clock.increment();
        let name = self.config.name.clone();
        if let Some(me) = self.members.get_mut(name.as_str()) {
            me.status_ltime = ltime;
        }
        self.enqueue(Subject::Intent, &name.clone(), Message::JoinIntent { name, ltime });
    }

    /// `name` announced its own death: it left (memberlist's "left"). Serf would call it
    /// failed if its leave intent had not arrived first; memberlist's own record says it
    /// left, and we keep that.
    fn apply_left(&mut self, name: &str, incarnation: u32, now: Duration, out: &mut Vec<Action>) {
        if name == self.config.name {
            if self.leave.is_none() {
                self.accused(Status::Dead, incarnation, now);
            }
            return;
        }
        let Some(member) = self.members.get_mut(name) else { return };
        if incarnation < member.state.incarnation || member.state.status == Status::Left {
            return;
        }
        member.update(&self.interner, |s| {
            s.incarnation = incarnation;
            s.status = Status::Left;
        });
        member.since.restart(now);
        end_suspicion(&mut self.deadlines, member);
        member.since.set_leaving(false);
        let state = NodeState::clone(&member.state);
        touch(&mut self.version, &mut self.changed, name);
        let message = Message::Dead { name: name.to_string(), incarnation, from: name.to_string() };
        self.enqueue(Subject::Member, name, message);
        out.push(Action::Event(MemberEvent { change: MemberChange::Leave, member: state }));
    }

    fn apply_suspect(
        &mut self,
        name: &str,
        incarnation: u32,
        from: &str,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        if name == self.config.name {
            self.accused(Status::Suspect, incarnation, now);
            return;
        }
        let nodes = self.members.len();
        let min = self.suspicion_min();
        let (mult, max_mult) = (self.config.suspicion_mult, self.config.suspicion_max_timeout_mult);
        let Some(member) = self.members.get_mut(name) else { return };
        if incarnation < member.state.incarnation {
            return;
        }
        match (member.state.status, member.suspicion.as_mut()) {
            (Status::Alive, _) => {}
            // Already suspect: a new accuser confirms it, shortens it and spreads it again.
            (Status::Suspect, Some(suspicion)) => {
                let before = suspicion.deadline();
                if suspicion.confirm(from) {
                    let incarnation = member.state.incarnation;
                    self.deadlines.reschedule(before, suspicion.deadline(), &member.state.name);
                    self.arm_suspicions(now, out);
                    let message =
                        Message::Suspect { name: name.to_string(), incarnation, from: from.to_string() };
                    self.enqueue(Subject::Member, name, message);
                }
                return;
            }
            _ => return,
        }
        let suspicion = Suspicion::new(now, from, nodes, mult, min, max_mult);
        member.update(&self.interner, |s| {
            s.incarnation = incarnation;
            s.status = Status::Suspect;
        });
        member.since.restart(now);
        end_suspicion(&mut self.deadlines, member);
        self.deadlines.insert(suspicion.deadline(), member.state.name.clone());
        member.suspicion = Some(Box::new(suspicion));
        touch(&mut self.version, &mut self.changed, name);
        let message = Message::Suspect { name: name.to_string(), incarnation, from: from.to_string() };
        self.enqueue(Subject::Member, name, message);
        self.arm_suspicions(now, out);
    }

    fn apply_dead(&mut self, name: &str, incarnation: u32, from: &str, now: Duration, out: &mut Vec<Action>) {
        if name == self.config.name {
            self.accused(Status::Dead, incarnation, now);
            return;
        }
        let Some(member) = self.members.get_mut(name) else { return };
        if incarnation < member.state.incarnation {
            return;
        }
        if member.state.status.is_gone() {
            // Already dead or left: keep the newest incarnation, so that an older alive cannot
            // resurrect it (memberlist's deadNode does the same).
            if incarnation > member.state.incarnation {
                member.update(&self.interner, |s| s.incarnation = incarnation);
                touch(&mut self.version, &mut self.changed, name);
            }
            return;
        }
        // A member whose leave intent came first did not fail, it left (Serf's
        // handleNodeLeave: leaving becomes left, alive becomes failed).
        let (status, change) = if member.since.leaving() {
            (Status::Left, MemberChange::Leave)
        } else {
            (Status::Dead, MemberChange::Failed)
        };
        member.update(&self.interner, |s| {
            s.incarnation = incarnation;
            s.status = status;
        });
        member.since.restart(now);
        end_suspicion(&mut self.deadlines, member);
        member.since.set_leaving(false);
        let state = NodeState::clone(&member.state);
        touch(&mut self.version, &mut self.changed, name);
        let message = Message::Dead { name: name.to_string(), incarnation, from: from.to_string() };
        self.enqueue(Subject::Member, name, message);
        out.push(Action::Event(MemberEvent { change, member: state }));
    }

    /// An accusation of ourselves arrived: refute it, unless the planted bug
    /// `believes_accusations` makes the agent record it.
    fn accused(&mut self, status: Status, incarnation: u32, now: Duration) {
        if self.leave.is_some() {
            // memberlist does not refute while it leaves.
            return;
        }
        if !self.config.believes_accusations {
            self.refute(incarnation, now);
            return;
        }
        let name = self.config.name.clone();
        let member = self.members.get_mut(name.as_str()).expect("self is always a member");
        if member.state.status != status && incarnation >= member.state.incarnation {
            member.update(&self.interner, |s| {
                s.status = status;
                s.incarnation = incarnation;
            });
            member.since.restart(now);
            touch(&mut self.version, &mut self.changed, &name);
        }
    }

    /// Answers an accusation about ourselves with an incarnation above it.
    fn refute(&mut self, accused_incarnation: u32, now: Duration) {
        if self.config.never_refutes {
            return;
        }
        if accused_incarnation < self.incarnation {
            // The accuser missed our refutation (it ran out of retransmits while the
            // accuser's copies were lost): announce our incarnation again. memberlist ignores
            // such stale accusations, and a refutation lost to loss then ends in a false death.
            let me = self.own_state();
            self.enqueue(Subject::Member, &me.name.clone(), Message::Alive(me));
            return;
        }
        // At the largest incarnation the accusation cannot be out-bid; stay there rather than
        // wrap to 0, which every peer would ignore.
        self.incarnation = accused_incarnation.saturating_add(1);
        // Being accused may mean we are the slow one (Lifeguard).
        self.awareness.apply(1);
        let me = self.own_state();
        let member = self.members.get_mut(&me.name).expect("self is always a member");
        member.state = self.interner.shared_state(me.clone());
        member.since.restart(now);
        touch(&mut self.version, &mut self.changed, &me.name);
        self.enqueue(Subject::Member, &me.name.clone(), Message::Alive(me));
    }

    /// The shortest suspicion timeout at the cluster's size now.
    fn suspicion_min(&self) -> Duration {
        let config = &self.config;
        lifeguard::suspicion_min(self.members.len(), config.suspicion_mult, config.probe_interval)
    }

    fn retransmit_limit(&self) -> u32 {
        let nodes = self.members.len() as f64;
        self.config.retransmit_mult * ((nodes + 1.0).log10().ceil() as u32).max(1)
    }

    fn start_probe(&mut self, now: Duration, out: &mut Vec<Action>) {
        // A round still open ends now (its end timer may fire after this start).
        self.finish_probe(now, out);
        let interval = self.awareness.scale(self.config.probe_interval);
        out.push(Action::SetTimer { timer: Timer::Probe, after: interval });
        let Some(target) = self.next_probe_target() else { return };
        self.next_seq = self.next_seq.wrapping_add(1);
        let seq = self.next_seq;
        let state = &self.members.get(&target).expect("probe targets are members").state;
        let (addr, status, incarnation) = (state.addr, state.status, state.incarnation);
        let probe = Probe {
            seq,
            target: target.clone(),
            acked: false,
            expected_nacks: 0,
            nacks: 0,
            awaiting_nacks: Vec::new(),
            stream_acked: false,
        };
        self.probe = Some(probe);
        let mut packet = vec![Message::Ping { seq, target: target.clone() }];
        if status == Status::Suspect {
            // Tell a suspect it is suspected, so that it refutes even if the gossip missed it.
            let from = self.config.name.clone();
            packet.push(Message::Suspect { name: target, incarnation, from });
        }
        let broadcasts = self.piggyback(&packet);
        self.send_with(addr, &packet, &broadcasts, out);
        // memberlist scales the interval by local health, not the direct-ping timeout.
        out.push(Action::SetTimer { timer: Timer::ProbeTimeout { seq }, after: self.config.probe_timeout });
        out.push(Action::SetTimer { timer: Timer::ProbeRoundEnd { seq }, after: interval });
    }

    /// No direct ack within the probe timeout: ask up to `indirect_checks` alive members to
    /// ping the target for us.
    fn ask_helpers(&mut self, seq: u32, now: Duration, out: &mut Vec<Action>) {
        let Some(probe) = self.probe.as_ref().filter(|p| p.seq == seq && !p.acked) else { return };
        let target = probe.target.clone();
        let Some(addr) = self.members.get(target.as_str()).map(|m| m.state.addr) else { return };
        let count = self.config.indirect_checks;
        let helpers = self.random_peers(count, now, |s| s.status == Status::Alive && *s.name != *target);
        let request = Message::PingReq { seq, target: target.clone(), addr, nack: true };
        for helper in &helpers {
            self.send(*helper, std::slice::from_ref(&request), out);
        }
        // memberlist's TCP fallback, at the same time: a target that answers over TCP is not
        // suspected even though UDP failed (a firewall that drops only datagrams).
        if self.config.tcp_pings {
            match codec::encode_stream(&Message::Ping { seq, target }) {
                Ok(bytes) => out.push(Action::Stream { to: addr, bytes: self.seal(bytes, Some(addr)) }),
                Err(error) => tracing::error!(%addr, %error, "TCP ping not sent"),
            }
        }
        if let Some(probe) = self.probe.as_mut() {
            probe.expected_nacks = helpers.len() as u32;
            probe.awaiting_nacks = helpers;
        }
    }

    /// Pings `target` for `requester`; its ack goes back with the requester's `seq`.
    fn relay_ping(
        &mut self,
        requester: SocketAddr,
        seq: u32,
        target: String,
        addr: SocketAddr,
        nack: bool,
        out: &mut Vec<Action>,
    ) {
        if self.relays.len() >= RELAYS_MAX {
            tracing::debug!(%requester, "indirect ping dropped: {RELAYS_MAX} already in flight");
            self.limits.hit(Limit::Relays, 1);
            return;
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        let own = self.next_seq;
        self.relays.insert(own, Relay { requester, seq, nack });
        self.send(addr, &[Message::Ping { seq: own, target }], out);
        out.push(Action::SetTimer {
            timer: Timer::RelayTimeout { seq: own },
            after: self.config.probe_timeout,
        });
    }

    /// Ends the probe round under way: local health moves (Lifeguard), and a target that
    /// answered neither directly nor through a helper becomes suspect.
    fn finish_probe(&mut self, now: Duration, out: &mut Vec<Action>) {
        let Some(probe) = self.probe.take() else { return };
        self.awareness.apply(lifeguard::probe_delta(probe.acked, probe.expected_nacks, probe.nacks));
        if probe.acked {
            return;
        }
        if probe.stream_acked {
            // Health still pays for the missed UDP acks, as in memberlist.
            tracing::warn!(target = %probe.target, "reached over TCP but not UDP: the network may drop datagrams");
            return;
        }
        let Some(incarnation) = self.members.get(probe.target.as_str()).map(|m| m.state.incarnation) else {
            return;
        };
        let me = self.config.name.clone();
        self.apply_suspect(&probe.target, incarnation, &me, now, out);
    }

    /// Round-robin over a shuffled list, reshuffled each round: every live member is probed
    /// at least once per N intervals.
    fn next_probe_target(&mut self) -> Option<String> {
        for _ in 0..2 {
            while let Some(position) = self.probe_queue.pop() {
                let member = self.members.at(position as usize);
                if !member.state.status.is_gone() {
                    return Some(member.state.name.to_string());
                }
            }
            self.probe_queue = self
                .members
                .positions_by_name_where(|m| *m.state.name != *self.config.name && !m.state.status.is_gone());
            self.probe_queue.shuffle(&mut self.rng);
        }
        None
    }

    /// Declares dead every member whose suspicion ran out by `now`, then asks to be woken for
    /// the next one.
    fn suspicions_ran_out(&mut self, now: Duration, out: &mut Vec<Action>) {
        for name in self.deadlines.take_due(now) {
            let member = self.members.get(&name);
            // Every way a suspicion ends drops its deadline (`end_suspicion`), so a due one
            // always has a suspect member behind it.
            debug_assert!(
                member.is_some_and(|m| m.suspicion.is_some() && m.state.status == Status::Suspect),
                "{name}: a deadline held without a suspicion"
            );
            let Some(member) = member else { continue };
            match member.suspicion.as_ref().map(|s| s.deadline()) {
                // A deadline is moved whenever its suspicion is shortened, so a due one is the
                // current one; were it not, it would wait for the one it has.
                Some(deadline) if deadline > now => self.deadlines.insert(deadline, name),
                Some(_) if member.state.status == Status::Suspect => {
                    let (incarnation, me) = (member.state.incarnation, self.config.name.clone());
                    self.apply_dead(&name, incarnation, &me, now, out);
                }
                _ => {}
            }
        }
        self.arm_suspicions(now, out);
    }

    /// Asks the driver to wake the agent at the earliest deadline, unless it already will.
    fn arm_suspicions(&mut self, now: Duration, out: &mut Vec<Action>) {
        if let Some(after) = self.deadlines.wake_up(now) {
            out.push(Action::SetTimer { timer: Timer::Suspicions, after });
        }
    }

    /// Peers to talk to, in random order: those whose status passes `wanted`, plus dead ones
    /// within the gossip-to-the-dead window when `wanted` accepts dead.
    fn random_peers(
        &mut self,
        count: usize,
        now: Duration,
        wanted: impl Fn(&NodeState) -> bool,
    ) -> Vec<SocketAddr> {
        // memberlist's kRandomNodes: random draws from the table, at most 3 per member, so a
        // pick costs the peers wanted, not the table.
        let to_the_dead = self.config.gossip_to_the_dead;
        let tries = 3 * self.members.len();
        let mut peers: Vec<SocketAddr> = Vec::with_capacity(count);
        for _ in 0..tries {
            if peers.len() >= count {
                break;
            }
            let member = self.members.at(self.rng.random_range(0..self.members.len()));
            let fresh = !member.state.status.is_gone() || member.since.until(now) < to_the_dead;
            let ours = *member.state.name == *self.config.name;
            if !ours && fresh && wanted(&member.state) && !peers.contains(&member.state.addr) {
                peers.push(member.state.addr);
            }
        }
        peers
    }

    fn gossip(&mut self, now: Duration, out: &mut Vec<Action>) {
        out.push(Action::SetTimer { timer: Timer::Gossip, after: self.config.gossip_interval });
        if self.broadcasts.is_empty() && self.intents.is_empty() {
            return;
        }
        for peer in self.random_peers(self.config.gossip_nodes, now, |_| true) {
            let broadcasts = self.piggyback(&[]);
            // As memberlist's gossip: once the queues run dry, the other peers get nothing
            // rather than an empty datagram.
            if broadcasts.is_empty() {
                return;
            }
            self.send_with(peer, &[], &broadcasts, out);
        }
    }

    /// How large an ack to `from` may be: a full datagram to a member's address (or with a
    /// keyring, which verifies every sender); to an address no member has, what is left of
    /// the datagram's budget ([`AMPLIFICATION_MAX`]), so a forged source gains little.
    fn reply_bytes_max(&self, from: SocketAddr) -> usize {
        if self.reply_budget >= DATAGRAM_BYTES_MAX {
            return DATAGRAM_BYTES_MAX;
        }
        // The table is searched only when there is news to piggyback: a quiet cluster pays
        // nothing, a storm one pass per ping.
        let news = !self.broadcasts.is_empty() || !self.intents.is_empty();
        if news && self.members.iter().any(|m| m.state.addr == from && !m.state.status.is_gone()) {
            return DATAGRAM_BYTES_MAX;
        }
        self.reply_budget
    }

    /// Pending broadcasts to send after `packet`, as far as the datagram size allows; each one
    /// counts as transmitted once. As memberlist fills a packet: its own queue first, then
    /// Serf's (the delegate's broadcasts) in the room left; each queue least-sent first, so
    /// new news goes out before old news.
    fn piggyback(&mut self, packet: &[Message]) -> Vec<Arc<News<Name>>> {
        self.piggyback_within(packet, DATAGRAM_BYTES_MAX)
    }

    /// [`Agent::piggyback`] into a datagram of at most `bytes_max` bytes on the wire.
    fn piggyback_within(&mut self, packet: &[Message], bytes_max: usize) -> Vec<Arc<News<Name>>> {
        let limit = self.retransmit_limit();
        let size = 8 + self.config.wire.overhead() + packet.iter().map(codec::encoded_len).sum::<usize>();
        let mut room = bytes_max.saturating_sub(size);
        // memberlist's own broadcasts first, then Serf's in what they leave.
        let mut taken = self.broadcasts.take(limit, &mut room);
        taken.extend(self.intents.take(limit, &mut room));
        taken
    }

    /// Whether a broadcast about `subject` is still queued.
    fn is_queued(&self, subject: &Subject) -> bool {
        match subject {
            Subject::Member(name) => self.broadcasts.contains(name),
            Subject::Intent(name) => self.intents.contains(name),
        }
    }

    /// Queues `message` about `name`; `subject` says which queue, and which of its
    /// broadcasts it replaces.
    fn enqueue(&mut self, subject: fn(Name) -> Subject, name: &str, message: Message) {
        let bytes = match codec::encode_message(&message) {
            Ok(bytes) => bytes,
            Err(error) => return tracing::error!(%error, "broadcast not queued"),
        };
        match subject(self.interner.name(name)) {
            Subject::Member(name) => {
                let dropped = self.broadcasts.push(self.interner.news(name, bytes));
                self.limits.hit(Limit::MemberBroadcasts, dropped as u64);
            }
            Subject::Intent(name) => {
                let dropped = self.intents.push(self.interner.news(name, bytes));
                self.limits.hit(Limit::Intents, dropped as u64);
            }
        }
    }

    /// How often `limit` refused something.
    pub fn limit_count(&self, limit: Limit) -> u64 {
        self.limits.count(limit)
    }

    /// Adds a member the table does not hold.
    fn insert_member(&mut self, member: Member) {
        self.members.insert(member);
    }

    /// Our full state: the member table and each member's intent time.
    fn push_pull(&self, join: bool, reply: bool) -> PushPullRef<'_> {
        let members = self.members.by_name();
        let states = members.iter().map(|m| &*m.state).collect();
        let intents = members
            .iter()
            .filter(|m| m.status_ltime > 0)
            .map(|m| StatusTimeRef { name: &m.state.name, ltime: m.status_ltime })
            .collect();
        PushPullRef { join, reply, ltime: self.clock.time(), states, intents }
    }

    fn send_push_pull(&mut self, to: SocketAddr, join: bool, out: &mut Vec<Action>) {
        match codec::encode_push_pull(&self.push_pull(join, false)) {
            Ok(bytes) => out.push(Action::Stream { to, bytes: self.seal(bytes, Some(to)) }),
            Err(error) => tracing::error!(%to, %error, "push-pull not sent"),
        }
    }

    fn send(&mut self, to: SocketAddr, messages: &[Message], out: &mut Vec<Action>) {
        self.send_with(to, messages, &[], out);
    }

    /// Sends `messages` and then `broadcasts` (already encoded) in one datagram.
    fn send_with(
        &mut self,
        to: SocketAddr,
        messages: &[Message],
        broadcasts: &[Arc<News<Name>>],
        out: &mut Vec<Action>,
    ) {
        let encoded = broadcasts.iter().map(|news| &*news.message);
        let sealed = codec::encode_compound(messages, encoded).map(|bytes| self.seal(bytes, Some(to)));
        match sealed {
            Ok(bytes) if bytes.len() <= DATAGRAM_BYTES_MAX => out.push(Action::Send { to, bytes }),
            // Only our own state can be this big; that is a configuration limit, not a peer's fault.
            Ok(bytes) => tracing::error!(%to, bytes = bytes.len(), "sealed gossip datagram too large"),
            Err(error) => tracing::error!(%to, %error, "gossip datagram not sent"),
        }
    }

    /// `frame` as it goes on the wire to `to`: labelled and sealed as configured.
    fn seal(&mut self, frame: Vec<u8>, to: Option<SocketAddr>) -> Vec<u8> {
        self.config.wire.seal(frame, to, &mut self.rng)
    }

    /// Refuses a sealed frame whose nonce this agent opened before.
    fn refuse_replay(&mut self, nonce: Option<Nonce12>) -> Result<(), KeyringError> {
        match nonce {
            Some(nonce) if !self.replays.first_sight(nonce) => Err(KeyringError::Replayed),
            _ => Ok(()),
        }
    }

    /// `serf keys -install|-use|-remove KEY` on this agent.
    pub fn change_keyring(&mut self, op: KeyOp, key: Key) -> Result<(), KeyringError> {
        let ring = self.config.wire.keyring.as_mut().ok_or(KeyringError::Disabled)?;
        ring.apply(op, key)
    }

    /// The keyring, if gossip is encrypted.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.config.wire.keyring.as_ref()
    }
}

#[cfg(test)]
mod tests;
