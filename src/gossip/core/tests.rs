//! Scripted tests of the agent: inputs in, actions checked, no network.

use std::collections::{BTreeMap, VecDeque};

use rand::SeedableRng;

use super::*;
use crate::gossip::codec::StatusTime;

fn addr(host: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, host], 7946))
}

fn config(name: &str, host: u8, seeds: &[u8]) -> GossipConfig {
    let mut config = GossipConfig::lan(name, addr(host));
    config.seeds = seeds.iter().map(|h| addr(*h)).collect();
    std::sync::Arc::make_mut(&mut config.tags).insert("role".into(), "backend".into());
    config
}

fn agent(config: GossipConfig) -> Agent {
    Agent::new(config, ChaCha8Rng::seed_from_u64(7))
}

fn sends(out: &[Action]) -> Vec<(SocketAddr, Vec<Message>)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send { to, bytes } => Some((*to, codec::decode(bytes).unwrap())),
            _ => None,
        })
        .collect()
}

fn streams(out: &[Action]) -> Vec<(SocketAddr, Vec<u8>)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Stream { to, bytes } => Some((*to, bytes.clone())),
            _ => None,
        })
        .collect()
}

fn events(out: &[Action]) -> Vec<(MemberChange, String)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some((e.change, e.member.name.to_string())),
            _ => None,
        })
        .collect()
}

/// A tiny discrete-event network: delivers every send after 1 ms and fires timers in time
/// order, so whole-protocol behaviour can be scripted without sockets.
struct Cluster {
    agents: BTreeMap<SocketAddr, Agent>,
    now: Duration,
    timers: Vec<(Duration, u64, SocketAddr, Timer)>,
    in_flight: VecDeque<(Duration, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Push-pulls in flight: (due, from, to, frame, is an answer).
    streams: VecDeque<(Duration, SocketAddr, SocketAddr, Vec<u8>, bool)>,
    cut: Vec<SocketAddr>,
    /// Links cut in both directions, one pair at a time.
    cut_links: Vec<(SocketAddr, SocketAddr)>,
    /// Nodes whose datagrams are all lost, both ways; their streams go through.
    udp_cut: Vec<SocketAddr>,
    events: Vec<(SocketAddr, MemberChange, String)>,
    order: u64,
}

impl Cluster {
    fn new(agents: Vec<Agent>) -> Self {
        let mut cluster = Cluster {
            agents: BTreeMap::new(),
            now: Duration::ZERO,
            timers: Vec::new(),
            in_flight: VecDeque::new(),
            streams: VecDeque::new(),
            cut: Vec::new(),
            cut_links: Vec::new(),
            udp_cut: Vec::new(),
            events: Vec::new(),
            order: 0,
        };
        for mut agent in agents {
            let mut out = Vec::new();
            agent.start(Duration::ZERO, &mut out);
            let at = agent.config.addr;
            cluster.agents.insert(at, agent);
            cluster.apply(at, out);
        }
        cluster
    }

    fn apply(&mut self, at: SocketAddr, out: Vec<Action>) {
        for action in out {
            match action {
                Action::Send { to, bytes }
                    if !self.blocked(at, to)
                        && !self.udp_cut.contains(&at)
                        && !self.udp_cut.contains(&to) =>
                {
                    self.in_flight.push_back((self.now + Duration::from_millis(1), at, to, bytes));
                }
                Action::Stream { to, bytes } if !self.blocked(at, to) => {
                    self.streams.push_back((self.now + Duration::from_millis(1), at, to, bytes, false));
                }
                Action::SetTimer { timer, after } => {
                    self.order += 1;
                    self.timers.push((self.now + after, self.order, at, timer));
                }
                Action::Event(e) => self.events.push((at, e.change, e.member.name.to_string())),
                // The agent stops: it hears nothing more and its timers do nothing.
                Action::Left => {
                    self.agents.remove(&at);
                }
                _ => {}
            }
        }
    }

    fn blocked(&self, from: SocketAddr, to: SocketAddr) -> bool {
        self.cut.contains(&from) != self.cut.contains(&to)
            || self.cut_links.iter().any(|&(a, b)| (a, b) == (from, to) || (b, a) == (from, to))
    }

    /// Delivers a push-pull; the answer travels back 1 ms later, unless the link broke.
    fn deliver_stream(&mut self) {
        let (_, from, to, bytes, is_answer) = self.streams.pop_front().unwrap();
        if self.blocked(from, to) {
            return;
        }
        let mut out = Vec::new();
        let Some(agent) = self.agents.get_mut(&to) else { return };
        // An answer is handed over as coming from the peer we connected to.
        let answer = agent.handle_stream(from, &bytes, is_answer, self.now, &mut out).unwrap();
        self.apply(to, out);
        if let (Some(answer), false) = (answer, is_answer) {
            self.streams.push_back((self.now + Duration::from_millis(1), to, from, answer, true));
        }
    }

    fn run_until(&mut self, end: Duration) {
        loop {
            self.timers.sort();
            let next_timer = self.timers.first().map(|t| t.0);
            let next_stream = self.streams.front().map(|p| p.0);
            let next_packet = self.in_flight.front().map(|p| p.0).into_iter().chain(next_stream).min();
            let next = match (next_timer, next_packet) {
                (Some(t), Some(p)) => t.min(p),
                (Some(t), None) => t,
                (None, Some(p)) => p,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = next;
            let mut out = Vec::new();
            if next_stream == Some(next) {
                self.deliver_stream();
            } else if next_packet == Some(next) {
                let (_, from, to, bytes) = self.in_flight.pop_front().unwrap();
                if let Some(agent) = self.agents.get_mut(&to) {
                    agent.handle_datagram(from, &bytes, self.now, &mut out).unwrap();
                    self.apply(to, out);
                }
            } else {
                let (_, _, at, timer) = self.timers.remove(0);
                if let Some(agent) = self.agents.get_mut(&at) {
                    agent.handle_timer(timer, self.now, &mut out);
                    self.apply(at, out);
                }
            }
        }
        self.now = end;
        self.check_deadlines();
    }

    /// Every agent holds one deadline per member under suspicion: none left behind by a
    /// suspicion that ended (refuted, dead, left, reaped), none missing.
    fn check_deadlines(&self) {
        for (at, agent) in &self.agents {
            let suspected = agent.members.iter().filter(|member| member.suspicion.is_some()).count();
            assert_eq!(agent.deadlines.len(), suspected, "{at}: deadlines held for {suspected} suspicions");
        }
    }

    /// Starts `agent` now (a new node, or a restart of a stopped one).
    fn boot(&mut self, mut agent: Agent) {
        let mut out = Vec::new();
        agent.start(self.now, &mut out);
        let at = agent.config.addr;
        self.agents.insert(at, agent);
        self.apply(at, out);
    }

    /// Runs `f` on the agent at `host` now, and carries out what it asks.
    fn act(&mut self, host: u8, f: impl FnOnce(&mut Agent, Duration, &mut Vec<Action>)) {
        let mut out = Vec::new();
        f(self.agents.get_mut(&addr(host)).unwrap(), self.now, &mut out);
        self.apply(addr(host), out);
    }

    fn status(&self, observer: u8, subject: &str) -> Option<Status> {
        self.agents[&addr(observer)].members().find(|m| &*m.name == subject).map(|m| m.status)
    }
}

#[test]
fn a_lone_agent_announces_itself_and_arms_its_timers() {
    let mut agent = agent(config("ha", 1, &[]));
    let mut out = Vec::new();
    agent.start(Duration::ZERO, &mut out);
    assert_eq!(events(&out), vec![(MemberChange::Join, "ha".into())]);
    assert!(agent.is_joined());
    let timers: Vec<&Timer> = out
        .iter()
        .filter_map(|a| if let Action::SetTimer { timer, .. } = a { Some(timer) } else { None })
        .collect();
    assert!(timers.contains(&&Timer::Probe) && timers.contains(&&Timer::Gossip));
    assert!(sends(&out).is_empty(), "nobody to talk to");
}

#[test]
fn a_started_agent_announces_its_own_alive_in_its_first_gossip() {
    let mut agent = agent(config("s1", 2, &[]));
    let mut out = Vec::new();
    agent.start(Duration::ZERO, &mut out);
    agent.handle_datagram(addr(1), &alive("ha", 1, 0), Duration::from_millis(10), &mut out).unwrap();
    out.clear();
    agent.handle_timer(Timer::Gossip, Duration::from_millis(200), &mut out);
    let sent = sends(&out);
    assert_eq!(sent.len(), 1, "one peer known: {sent:?}");
    let own = |m: &Message| matches!(m, Message::Alive(state) if &*state.name == "s1");
    assert!(sent[0].1.iter().any(own), "memberlist's setAlive: {sent:?}");
}

#[test]
fn a_gossip_tick_sends_nothing_more_once_the_queues_run_dry() {
    let mut agent = agent(GossipConfig { retransmit_mult: 1, ..config("s1", 2, &[]) });
    let mut out = Vec::new();
    agent.start(Duration::ZERO, &mut out);
    for (name, host) in [("ha", 1), ("s3", 3), ("s4", 4)] {
        agent
            .handle_datagram(addr(host), &alive(name, host, 0), Duration::from_millis(10), &mut out)
            .unwrap();
    }
    out.clear();
    // Each broadcast goes once (a limit of 1 x ceil(log10(5))), so the first of the three
    // peers takes them all and the others get no datagram, empty or not.
    agent.handle_timer(Timer::Gossip, Duration::from_millis(200), &mut out);
    assert_eq!(sends(&out).len(), 1, "{:?}", sends(&out));
}

#[test]
fn join_sends_push_pull_to_each_seed_and_a_reply_completes_it() {
    let mut joiner = agent(config("s1", 2, &[1]));
    let mut out = Vec::new();
    joiner.start(Duration::ZERO, &mut out);
    assert!(!joiner.is_joined());
    assert!(sends(&out).is_empty(), "no push-pull in a datagram");
    let streams = streams(&out);
    assert_eq!(streams.len(), 1);
    let (to, push) = &streams[0];
    assert_eq!(*to, addr(1));
    assert!(matches!(
        codec::decode_stream(push, 10).unwrap(),
        Message::PushPull { join: true, reply: false, .. }
    ));

    let mut seed = agent(config("ha", 1, &[]));
    let mut seed_out = Vec::new();
    seed.start(Duration::ZERO, &mut seed_out);
    seed_out.clear();
    let answer =
        seed.handle_stream(addr(2), push, false, Duration::from_millis(1), &mut seed_out).unwrap().unwrap();
    assert_eq!(events(&seed_out), vec![(MemberChange::Join, "s1".into())]);

    let mut out = Vec::new();
    assert_eq!(joiner.handle_stream(addr(1), &answer, true, Duration::from_millis(2), &mut out), Ok(None));
    assert!(joiner.is_joined());
    assert!(out.contains(&Action::Joined { via: addr(1) }));
    assert_eq!(events(&out), vec![(MemberChange::Join, "ha".into())]);
    assert_eq!(joiner.members().count(), 2);
}

#[test]
fn a_one_shot_join_gives_up_and_retry_join_gives_up_after_max() {
    let mut once = agent(config("s1", 2, &[1]));
    let mut out = Vec::new();
    once.start(Duration::ZERO, &mut out);
    let mut out = Vec::new();
    once.handle_timer(Timer::JoinTimeout { attempt: 1 }, Duration::from_secs(1), &mut out);
    assert_eq!(out, vec![Action::GaveUp { attempts: 1 }]);

    let mut retry_config = config("s1", 2, &[1]);
    retry_config.join = JoinMode::Retry { interval: Duration::from_secs(2), max: 2 };
    let mut retry = agent(retry_config);
    let mut out = Vec::new();
    retry.start(Duration::ZERO, &mut out);
    assert!(out.contains(&Action::SetTimer {
        timer: Timer::RetryJoin { attempt: 2 },
        after: Duration::from_secs(2)
    }));
    let mut out = Vec::new();
    retry.handle_timer(Timer::RetryJoin { attempt: 2 }, Duration::from_secs(2), &mut out);
    assert!(out.contains(&Action::JoinAttempt { attempt: 2 }));
    let mut out = Vec::new();
    retry.handle_timer(Timer::RetryJoin { attempt: 3 }, Duration::from_secs(4), &mut out);
    assert_eq!(out, vec![Action::GaveUp { attempts: 2 }]);
}

#[test]
fn a_ping_for_us_is_acked_and_a_ping_for_someone_else_is_not() {
    let mut node = agent(config("s1", 2, &[]));
    node.start(Duration::ZERO, &mut Vec::new());
    let ping = codec::encode(&[Message::Ping { seq: 9, target: "s1".into() }]).unwrap();
    let mut out = Vec::new();
    node.handle_datagram(addr(1), &ping, Duration::ZERO, &mut out).unwrap();
    let acked = sends(&out);
    assert_eq!(acked.len(), 1);
    assert_eq!(
        (acked[0].0, &acked[0].1[0]),
        (addr(1), &Message::Ack { seq: 9 }),
        "pending news piggybacks after it"
    );
    let stale = codec::encode(&[Message::Ping { seq: 9, target: "old".into() }]).unwrap();
    let mut out = Vec::new();
    node.handle_datagram(addr(1), &stale, Duration::ZERO, &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn suspicion_of_ourselves_is_refuted_with_a_higher_incarnation() {
    let mut node = agent(config("s1", 2, &[]));
    node.start(Duration::ZERO, &mut Vec::new());
    let accusation =
        codec::encode(&[Message::Suspect { name: "s1".into(), incarnation: 4, from: "ha".into() }]).unwrap();
    node.handle_datagram(addr(1), &accusation, Duration::ZERO, &mut Vec::new()).unwrap();
    assert_eq!(node.incarnation(), 5);
    let me = node.members().find(|m| &*m.name == "s1").unwrap();
    assert_eq!((me.status, me.incarnation), (Status::Alive, 5));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut node = agent(config("s1", 2, &[]));
    node.start(Duration::ZERO, &mut Vec::new());
    assert!(node.handle_datagram(addr(1), b"\x05\xff\xff", Duration::ZERO, &mut Vec::new()).is_err());
}

#[test]
fn a_cut_off_node_is_suspected_then_failed_and_rejoins_after_the_heal() {
    let mut cluster = Cluster::new(vec![
        agent(config("ha", 1, &[])),
        agent(config("s1", 2, &[1])),
        agent(config("s2", 3, &[1])),
    ]);
    cluster.run_until(Duration::from_secs(3));
    for observer in 1..=3 {
        for subject in ["ha", "s1", "s2"] {
            assert_eq!(cluster.status(observer, subject), Some(Status::Alive), "{observer} sees {subject}");
        }
    }
    cluster.cut = vec![addr(2)];
    cluster.run_until(Duration::from_secs(15));
    assert_eq!(cluster.status(1, "s1"), Some(Status::Dead));
    assert_eq!(cluster.status(3, "s1"), Some(Status::Dead));
    assert!(cluster.events.contains(&(addr(1), MemberChange::Failed, "s1".into())));
    cluster.cut.clear();
    cluster.run_until(Duration::from_secs(40));
    for observer in 1..=3 {
        for subject in ["ha", "s1", "s2"] {
            assert_eq!(
                cluster.status(observer, subject),
                Some(Status::Alive),
                "{observer} sees {subject} after heal"
            );
        }
    }
    let rejoins = cluster.events.iter().filter(|e| **e == (addr(1), MemberChange::Join, "s1".into())).count();
    assert_eq!(rejoins, 2, "ha saw s1 join, fail, and join again");
}

fn alive(name: &str, host: u8, incarnation: u32) -> Vec<u8> {
    let state = NodeState {
        name: name.into(),
        addr: addr(host),
        incarnation,
        status: Status::Alive,
        tags: Default::default(),
    };
    codec::encode(&[Message::Alive(state)]).unwrap()
}

#[test]
fn a_probe_of_a_suspect_tells_it_that_it_is_suspected() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    ha.handle_datagram(addr(2), &alive("s1", 2, 0), Duration::ZERO, &mut Vec::new()).unwrap();
    let mut out = Vec::new();
    ha.handle_timer(Timer::Probe, Duration::from_secs(1), &mut out);
    let (_, first) = sends(&out).remove(0);
    let Message::Ping { seq, .. } = first[0] else { panic!("{first:?}") };
    assert!(!first.iter().any(|m| matches!(m, Message::Suspect { .. })), "not suspect yet");
    ha.handle_timer(Timer::ProbeTimeout { seq }, Duration::from_millis(1500), &mut Vec::new());
    assert_eq!(
        ha.members().find(|m| &*m.name == "s1").unwrap().status,
        Status::Alive,
        "the round is not over"
    );
    ha.handle_timer(Timer::ProbeRoundEnd { seq }, Duration::from_secs(2), &mut Vec::new());
    assert_eq!(ha.members().find(|m| &*m.name == "s1").unwrap().status, Status::Suspect);
    let mut out = Vec::new();
    ha.handle_timer(Timer::Probe, Duration::from_secs(2), &mut out);
    let (to, packet) = sends(&out).remove(0);
    assert_eq!(to, addr(2));
    assert!(matches!(packet[0], Message::Ping { .. }));
    let nudge = Message::Suspect { name: "s1".into(), incarnation: 0, from: "ha".into() };
    assert!(packet.contains(&nudge), "{packet:?}");
}

#[test]
fn a_stale_accusation_makes_the_node_announce_itself_again_on_its_next_ack() {
    let mut s1 = agent(config("s1", 2, &[]));
    s1.start(Duration::ZERO, &mut Vec::new());
    s1.handle_datagram(addr(1), &alive("ha", 1, 0), Duration::ZERO, &mut Vec::new()).unwrap();
    let accusation =
        codec::encode(&[Message::Suspect { name: "s1".into(), incarnation: 0, from: "ha".into() }]).unwrap();
    s1.handle_datagram(addr(1), &accusation, Duration::ZERO, &mut Vec::new()).unwrap();
    assert_eq!(s1.incarnation(), 1);
    // Spend the refutation's retransmits, as if every copy had been lost.
    for tick in 1..=8 {
        s1.handle_timer(Timer::Gossip, Duration::from_millis(200 * tick), &mut Vec::new());
    }
    let ping = |s1: &mut Agent, seq| {
        let bytes = codec::encode(&[Message::Ping { seq, target: "s1".into() }]).unwrap();
        let mut out = Vec::new();
        s1.handle_datagram(addr(1), &bytes, Duration::from_secs(3), &mut out).unwrap();
        sends(&out).remove(0).1
    };
    assert_eq!(ping(&mut s1, 1), vec![Message::Ack { seq: 1 }], "nothing left to piggyback");
    s1.handle_datagram(addr(1), &accusation, Duration::from_secs(3), &mut Vec::new()).unwrap();
    assert_eq!(s1.incarnation(), 1, "a stale accusation does not bump the incarnation");
    let ack = ping(&mut s1, 2);
    assert_eq!(ack[0], Message::Ack { seq: 2 });
    assert!(
        matches!(&ack[1], Message::Alive(state) if &*state.name == "s1" && state.incarnation == 1),
        "{ack:?}"
    );
}

fn datagram(messages: &[Message]) -> Vec<u8> {
    codec::encode(messages).unwrap()
}

fn state(name: &str, host: u8, incarnation: u32, status: Status) -> NodeState {
    NodeState { name: name.into(), addr: addr(host), incarnation, status, tags: Default::default() }
}

/// The `index`-th of many members: `n{index}`, alive at incarnation 1, at an address of its own.
fn numbered_member(index: usize) -> NodeState {
    let addr = SocketAddr::from(([10, 1, (index / 250) as u8, (index % 250) as u8 + 1], 7946));
    NodeState { addr, ..state(&format!("n{index}"), 0, 1, Status::Alive) }
}

/// An `Alive` message carrying another status is a peer's error: rejected, never a panic.
#[test]
fn an_alive_message_with_another_status_is_rejected_not_a_panic() {
    let mut node = agent(config("ha", 1, &[]));
    node.start(Duration::ZERO, &mut Vec::new());
    for status in [Status::Suspect, Status::Dead] {
        let bad = datagram(&[Message::Alive(state("s1", 2, 0, status))]);
        assert!(node.handle_datagram(addr(2), &bad, Duration::ZERO, &mut Vec::new()).is_err());
    }
    assert!(node.members().all(|m| &*m.name != "s1"));
}

/// An accusation at the largest incarnation cannot be out-refuted; it must not overflow.
#[test]
fn an_accusation_at_the_largest_incarnation_does_not_overflow() {
    let mut node = agent(config("s1", 2, &[]));
    node.start(Duration::ZERO, &mut Vec::new());
    let accusation =
        datagram(&[Message::Suspect { name: "s1".into(), incarnation: u32::MAX, from: "ha".into() }]);
    node.handle_datagram(addr(1), &accusation, Duration::ZERO, &mut Vec::new()).unwrap();
    assert_eq!(node.incarnation(), u32::MAX);
}

/// A dead member learns a newer incarnation of its death, so an older `Alive` still in
/// flight cannot bring it back.
#[test]
fn a_newer_death_is_kept_so_a_stale_alive_does_not_resurrect() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    let at = Duration::ZERO;
    ha.handle_datagram(addr(2), &alive("s1", 2, 0), at, &mut Vec::new()).unwrap();
    let dead = |incarnation| datagram(&[Message::Dead { name: "s1".into(), incarnation, from: "s2".into() }]);
    ha.handle_datagram(addr(3), &dead(1), at, &mut Vec::new()).unwrap();
    ha.handle_datagram(addr(3), &dead(3), at, &mut Vec::new()).unwrap();
    let mut out = Vec::new();
    ha.handle_datagram(addr(2), &alive("s1", 2, 2), at, &mut out).unwrap();
    assert!(events(&out).is_empty(), "{:?}", events(&out));
    let s1 = ha.members().find(|m| &*m.name == "s1").unwrap();
    assert_eq!((s1.status, s1.incarnation), (Status::Dead, 3));
}

/// A full state with members we never knew as suspect or dead does not add them (memberlist
/// drops them), so a rebooted node does not route to dead webapps.
#[test]
fn a_merge_does_not_add_unknown_suspect_or_dead_members() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    let states = vec![
        state("s1", 2, 0, Status::Alive),
        state("s2", 3, 4, Status::Dead),
        state("s3", 4, 1, Status::Suspect),
    ];
    let mut out = Vec::new();
    let push = codec::encode_stream(&Message::PushPull {
        join: false,
        reply: true,
        ltime: 0,
        states,
        intents: vec![],
    })
    .unwrap();
    ha.handle_stream(addr(2), &push, true, Duration::ZERO, &mut out).unwrap();
    assert_eq!(events(&out), [(MemberChange::Join, "s1".to_string())]);
    let names: Vec<String> = ha.members().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["ha", "s1"]);
}

/// Same name, another address: the known live member keeps its address, and an agent does
/// not refute a claim of its name from another address (no refutation war).
#[test]
fn a_name_claimed_from_another_address_is_a_conflict_not_a_takeover() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    ha.handle_datagram(addr(2), &alive("s1", 2, 0), Duration::ZERO, &mut Vec::new()).unwrap();
    ha.handle_datagram(addr(9), &alive("s1", 9, 5), Duration::ZERO, &mut Vec::new()).unwrap();
    let s1 = ha.members().find(|m| &*m.name == "s1").unwrap();
    assert_eq!((s1.addr, s1.incarnation), (addr(2), 0));
    // Once the known one is dead, the new address may take the name.
    let dead = datagram(&[Message::Dead { name: "s1".into(), incarnation: 0, from: "s2".into() }]);
    ha.handle_datagram(addr(3), &dead, Duration::ZERO, &mut Vec::new()).unwrap();
    ha.handle_datagram(addr(9), &alive("s1", 9, 6), Duration::ZERO, &mut Vec::new()).unwrap();
    assert_eq!(ha.members().find(|m| &*m.name == "s1").unwrap().addr, addr(9));
    // A claim of our own name from elsewhere is not refuted.
    ha.handle_datagram(addr(9), &alive("ha", 9, 7), Duration::ZERO, &mut Vec::new()).unwrap();
    assert_eq!(ha.incarnation(), 0);
}

fn cluster_of(size: u8) -> Cluster {
    let names = ["ha", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];
    let agents = (1..=size).map(|host| agent(config(names[usize::from(host) - 1], host, &[1]))).collect();
    Cluster::new(agents)
}

/// ha cannot reach s1 but s2 and s3 can: the ping-reqs through them carry s1's acks, so s1
/// is never suspected (it never had to refute: its incarnation stays 0) and ha stays healthy.
#[test]
fn an_indirect_probe_saves_a_node_that_a_direct_ping_misses() {
    let mut cluster = cluster_of(4);
    cluster.run_until(Duration::from_secs(3));
    cluster.cut_links.push((addr(1), addr(2)));
    cluster.run_until(Duration::from_secs(60));
    let s1 = cluster.agents[&addr(1)].members().find(|m| &*m.name == "s1").cloned().unwrap();
    assert_eq!((s1.status, s1.incarnation), (Status::Alive, 0), "{s1:?}");
    assert_eq!(cluster.agents[&addr(2)].incarnation(), 0);
    assert_eq!(cluster.agents[&addr(1)].health_score(), 0);
}

/// A helper pings the target for the requester, forwards its ack with the requester's
/// sequence number, or sends a nack when none comes.
#[test]
fn a_helper_forwards_the_ack_or_sends_a_nack() {
    let mut helper = agent(config("s2", 3, &[]));
    helper.start(Duration::ZERO, &mut Vec::new());
    let request = |seq| datagram(&[Message::PingReq { seq, target: "s1".into(), addr: addr(2), nack: true }]);
    let mut out = Vec::new();
    helper.handle_datagram(addr(1), &request(40), Duration::ZERO, &mut out).unwrap();
    let (to, ping) = sends(&out).remove(0);
    let Message::Ping { seq: relayed, ref target } = ping[0] else { panic!("{ping:?}") };
    assert_eq!((to, target.as_str()), (addr(2), "s1"));
    let mut out = Vec::new();
    helper
        .handle_datagram(
            addr(2),
            &datagram(&[Message::Ack { seq: relayed }]),
            Duration::from_millis(3),
            &mut out,
        )
        .unwrap();
    assert_eq!(sends(&out), vec![(addr(1), vec![Message::Ack { seq: 40 }])]);
    let mut out = Vec::new();
    helper.handle_datagram(addr(1), &request(41), Duration::from_secs(1), &mut out).unwrap();
    let Message::Ping { seq: relayed, .. } = sends(&out)[0].1[0] else { panic!() };
    let mut out = Vec::new();
    helper.handle_timer(Timer::RelayTimeout { seq: relayed }, Duration::from_millis(1500), &mut out);
    assert_eq!(sends(&out), vec![(addr(1), vec![Message::Nack { seq: 41 }])]);
}

/// `ha` (host 1), started, knowing n2 to n`last` (hosts 2 to `last`) as alive.
fn ha_knowing(last: u8) -> Agent {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    for host in 2..=last {
        ha.handle_datagram(addr(host), &alive(&format!("n{host}"), host, 0), Duration::ZERO, &mut Vec::new())
            .unwrap();
    }
    ha
}

/// In a cluster of 10, a suspicion from one accuser lasts 6 x the minimum (24 s); a second
/// accuser shortens it to 11.381 s from its start, a third to the minimum (4 s). The agent asks
/// to be woken at the earliest deadline it holds, and again only when a deadline comes earlier.
#[test]
fn confirmations_from_other_accusers_shorten_a_suspicion() {
    let mut ha = ha_knowing(10);
    let suspect =
        |from: &str| datagram(&[Message::Suspect { name: "n2".into(), incarnation: 0, from: from.into() }]);
    let timer_after = |out: &[Action]| {
        out.iter().find_map(|a| match a {
            Action::SetTimer { timer: Timer::Suspicions, after } => Some(*after),
            _ => None,
        })
    };
    let t0 = Duration::from_secs(10);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut out = Vec::new();
    ha.handle_datagram(addr(3), &suspect("n3"), t0, &mut out).unwrap();
    assert_eq!(timer_after(&out), Some(Duration::from_secs(24)), "one accuser: the longest timeout");
    let mut out = Vec::new();
    ha.handle_datagram(addr(3), &suspect("n3"), at(1000), &mut out).unwrap();
    assert!(out.is_empty(), "the same accuser again confirms nothing");
    let mut out = Vec::new();
    ha.handle_datagram(addr(4), &suspect("n4"), at(1000), &mut out).unwrap();
    // One confirmation of the two wanted: 24 - 20 x ln 2 / ln 3 = 11.381 s after the start.
    assert_eq!(timer_after(&out).map(|d| d.as_millis()), Some(10_381), "an earlier deadline: woken earlier");
    let status = |ha: &Agent| ha.members().find(|m| &*m.name == "n2").unwrap().status;
    let fire = |ha: &mut Agent, now: Duration| {
        let mut out = Vec::new();
        ha.handle_timer(Timer::Suspicions, now, &mut out);
        timer_after(&out)
    };
    assert_eq!(fire(&mut ha, at(4000)), None, "nothing due: the wake-up at the deadline stands");
    assert_eq!(fire(&mut ha, at(11_380)), None, "a millisecond early");
    assert_eq!(status(&ha), Status::Suspect);
    // The second confirmation brings the deadline to the minimum, which has passed, so the
    // agent asks to be woken at once.
    let mut out = Vec::new();
    ha.handle_datagram(addr(5), &suspect("n5"), at(11_380), &mut out).unwrap();
    assert_eq!(timer_after(&out), Some(Duration::ZERO));
    assert_eq!(fire(&mut ha, at(11_380)), None, "nothing left to wake for");
    assert_eq!(status(&ha), Status::Dead);
    assert_eq!(ha.footprint().suspicions, 0);
}

/// A refuted suspicion leaves nothing behind: no deadline held, and the wake-up asked for it
/// declares nobody dead.
#[test]
fn a_refuted_suspicion_drops_its_deadline() {
    let mut ha = ha_knowing(3);
    let suspect = datagram(&[Message::Suspect { name: "n2".into(), incarnation: 0, from: "n3".into() }]);
    ha.handle_datagram(addr(3), &suspect, Duration::from_secs(1), &mut Vec::new()).unwrap();
    assert_eq!(ha.footprint().suspicions, 1);
    ha.handle_datagram(addr(2), &alive("n2", 2, 1), Duration::from_secs(2), &mut Vec::new()).unwrap();
    assert_eq!(ha.footprint().suspicions, 0);
    let mut out = Vec::new();
    ha.handle_timer(Timer::Suspicions, Duration::from_secs(600), &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(ha.members().find(|m| &*m.name == "n2").unwrap().status, Status::Alive);
}

/// s1 is cut off from everyone: its probes fail with no nack, so its health score climbs and
/// it probes (and accuses) more slowly; ha, whose helpers answer with nacks, stays healthy.
#[test]
fn lifeguard_slows_a_node_that_hears_nothing() {
    let mut cluster = cluster_of(4);
    cluster.run_until(Duration::from_secs(3));
    cluster.cut = vec![addr(2)];
    cluster.run_until(Duration::from_secs(40));
    assert_eq!(cluster.agents[&addr(2)].health_score(), 7);
    assert_eq!(cluster.agents[&addr(1)].health_score(), 0);
}

/// With the lab's tags, about 50 short names overflowed the 1,400-byte push-pull datagram;
/// over a stream a joiner gets the whole table (120 members here).
#[test]
fn a_joiner_gets_every_member_of_a_large_cluster() {
    let mut seed = agent(config("ha", 1, &[]));
    seed.start(Duration::ZERO, &mut Vec::new());
    for i in 0..120u8 {
        let state = state(&format!("web-{i:03}"), 10 + i, 0, Status::Alive);
        seed.handle_datagram(
            state.addr,
            &datagram(&[Message::Alive(state)]),
            Duration::ZERO,
            &mut Vec::new(),
        )
        .unwrap();
    }
    let mut joiner = agent(config("new", 200, &[1]));
    let mut out = Vec::new();
    joiner.start(Duration::ZERO, &mut out);
    let (_, push) = streams(&out).remove(0);
    let answer = seed
        .handle_stream(addr(200), &push, false, Duration::from_millis(1), &mut Vec::new())
        .unwrap()
        .unwrap();
    assert!(answer.len() > codec::DATAGRAM_BYTES_MAX, "{} bytes", answer.len());
    joiner.handle_stream(addr(1), &answer, true, Duration::from_millis(2), &mut Vec::new()).unwrap();
    assert_eq!(joiner.members().count(), 122);
}

/// A restarted agent with a snapshot push-pulls with the members it remembers, besides its
/// seeds, without making a failed rejoin a failed join.
#[test]
fn a_snapshot_makes_a_restarted_agent_push_pull_with_the_members_it_knew() {
    let mut config = config("ha", 1, &[]);
    config.rejoin = vec![addr(2), addr(3), addr(1)];
    let mut ha = agent(config);
    let mut out = Vec::new();
    ha.start(Duration::ZERO, &mut out);
    let mut to: Vec<SocketAddr> = streams(&out).into_iter().map(|(to, _)| to).collect();
    to.sort();
    assert_eq!(to, [addr(2), addr(3)], "not itself");
    assert!(ha.is_joined(), "no seeds: a new cluster, whatever the rejoin gives");
}

/// A member failed for longer than the reconnect timeout is forgotten (member-reap); one
/// failed more recently is kept, and so are live ones.
#[test]
fn failed_members_are_reaped_after_the_reconnect_timeout() {
    let mut config = config("ha", 1, &[]);
    config.reconnect_timeout = Duration::from_secs(60);
    let mut ha = agent(config);
    ha.start(Duration::ZERO, &mut Vec::new());
    for (name, host) in [("s1", 2), ("s2", 3), ("s3", 4)] {
        ha.handle_datagram(addr(host), &alive(name, host, 0), Duration::ZERO, &mut Vec::new()).unwrap();
    }
    let dead =
        |name: &str| datagram(&[Message::Dead { name: name.into(), incarnation: 0, from: "x".into() }]);
    ha.handle_datagram(addr(5), &dead("s1"), Duration::from_secs(10), &mut Vec::new()).unwrap();
    ha.handle_datagram(addr(5), &dead("s2"), Duration::from_secs(50), &mut Vec::new()).unwrap();
    let mut out = Vec::new();
    ha.handle_timer(Timer::Reap, Duration::from_secs(75), &mut out);
    assert_eq!(events(&out), [(MemberChange::Reap, "s1".to_string())]);
    let names: Vec<String> = ha.members().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["ha", "s2", "s3"]);
    assert!(out.contains(&Action::SetTimer { timer: Timer::Reap, after: REAP_INTERVAL }));
}

proptest::proptest! {
    /// Valid but hostile messages in any order (huge incarnations, accusations of ourselves
    /// and of strangers, push-pulls with every status), with timers in between: the agent
    /// never panics and always keeps itself alive in its own table.
    #[test]
    fn hostile_messages_never_panic_an_agent(
        messages in proptest::collection::vec(codec::arbitrary::message(), 1..24),
    ) {
        let mut ha = agent(config("ha", 1, &[]));
        ha.start(Duration::ZERO, &mut Vec::new());
        for (i, message) in messages.into_iter().enumerate() {
            let now = Duration::from_millis(100 * i as u64);
            let mut out = Vec::new();
            match &message {
                Message::PushPull { .. } => {
                    let bytes = codec::encode_stream(&message).unwrap();
                    ha.handle_stream(addr(2), &bytes, i % 2 == 0, now, &mut out).unwrap();
                }
                _ => ha.handle_datagram(addr(2), &datagram(std::slice::from_ref(&message)), now, &mut out).unwrap(),
            }
            let timers = [Timer::Probe, Timer::Gossip, Timer::PushPullStart, Timer::PushPull, Timer::Reconnect, Timer::Reap];
            for timer in timers {
                ha.handle_timer(timer, now, &mut out);
            }
            let me = ha.members().find(|m| &*m.name == "ha").unwrap();
            proptest::prop_assert_eq!(me.status, Status::Alive);
        }
    }
}

/// A graceful leave: the intent and then the node's own announcement go out, the agent stops
/// about a second later, and every other member records it as left with one member-leave,
/// never as failed.
#[test]
fn a_graceful_leave_ends_as_left_everywhere_not_failed() {
    let mut cluster = cluster_of(5);
    cluster.run_until(Duration::from_secs(10));
    cluster.act(4, Agent::leave);
    let began = cluster.now;
    cluster.run_until(began + Duration::from_secs(3));
    assert!(!cluster.agents.contains_key(&addr(4)), "the agent stopped after its leave");
    for observer in [1, 2, 3, 5] {
        assert_eq!(cluster.status(observer, "s3"), Some(Status::Left), "seen from {observer}");
    }
    let about_s3: Vec<MemberChange> =
        cluster.events.iter().filter(|(_, _, m)| m == "s3").map(|(_, c, _)| *c).skip(5).collect();
    assert_eq!(about_s3, [MemberChange::Leave; 4], "one member-leave per observer, no member-failed");
    cluster.run_until(began + Duration::from_secs(60));
    assert!([1, 2, 3, 5].iter().all(|o| cluster.status(*o, "s3") == Some(Status::Left)), "it stays left");
}

/// A node that left and starts again is a member again: its new life out-refutes the
/// "left" record everyone holds, and a member-join follows.
#[test]
fn a_node_that_left_can_join_again() {
    let mut cluster = cluster_of(4);
    cluster.run_until(Duration::from_secs(5));
    cluster.act(3, Agent::leave);
    cluster.run_until(Duration::from_secs(10));
    assert_eq!(cluster.status(1, "s2"), Some(Status::Left));
    cluster.boot(agent(config("s2", 3, &[1])));
    cluster.run_until(Duration::from_secs(20));
    for observer in [1, 2, 4] {
        assert_eq!(cluster.status(observer, "s2"), Some(Status::Alive), "seen from {observer}");
    }
    let last = cluster.events.iter().rev().find(|(at, _, m)| m == "s2" && *at == addr(1)).unwrap();
    assert_eq!(last.1, MemberChange::Join);
}

/// Leave intents apply only when newer (Lamport time) than the last intent applied for that
/// member: an old one cannot turn a failed member into a left one; a newer one (a
/// force-leave) does, once, with a member-leave.
#[test]
fn a_stale_leave_intent_is_ignored_and_a_newer_one_force_leaves_a_failed_member() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    let at = Duration::ZERO;
    ha.handle_datagram(addr(2), &alive("s1", 2, 0), at, &mut Vec::new()).unwrap();
    let intent = |message| datagram(&[message]);
    ha.handle_datagram(
        addr(2),
        &intent(Message::JoinIntent { name: "s1".into(), ltime: 5 }),
        at,
        &mut Vec::new(),
    )
    .unwrap();
    let dead = datagram(&[Message::Dead { name: "s1".into(), incarnation: 0, from: "s2".into() }]);
    ha.handle_datagram(addr(3), &dead, at, &mut Vec::new()).unwrap();
    let leave = |ltime| intent(Message::LeaveIntent { name: "s1".into(), ltime, prune: false });
    let mut out = Vec::new();
    ha.handle_datagram(addr(3), &leave(4), at, &mut out).unwrap();
    ha.handle_datagram(addr(3), &leave(5), at, &mut out).unwrap();
    assert!(events(&out).is_empty(), "older than or as old as the join intent");
    assert_eq!(ha.members().find(|m| &*m.name == "s1").unwrap().status, Status::Dead);
    ha.handle_datagram(addr(3), &leave(6), at, &mut out).unwrap();
    ha.handle_datagram(addr(3), &leave(7), at, &mut out).unwrap();
    assert_eq!(events(&out), [(MemberChange::Leave, "s1".to_string())]);
    assert_eq!(ha.members().find(|m| &*m.name == "s1").unwrap().status, Status::Left);
}

/// A leave intent about a node that runs (stale, or a force-leave by mistake) is refuted
/// with a newer join intent, so peers cancel its "leaving".
#[test]
fn a_leave_intent_about_a_running_node_is_refuted_with_a_newer_join_intent() {
    let mut s1 = agent(config("s1", 2, &[]));
    s1.start(Duration::ZERO, &mut Vec::new());
    s1.handle_datagram(addr(1), &alive("ha", 1, 0), Duration::ZERO, &mut Vec::new()).unwrap();
    let leave = datagram(&[Message::LeaveIntent { name: "s1".into(), ltime: 40, prune: false }]);
    s1.handle_datagram(addr(1), &leave, Duration::ZERO, &mut Vec::new()).unwrap();
    let mut out = Vec::new();
    s1.handle_timer(Timer::Gossip, Duration::from_millis(200), &mut out);
    let gossiped: Vec<Message> = sends(&out).into_iter().flat_map(|(_, m)| m).collect();
    let refuted = gossiped
        .iter()
        .any(|m| matches!(m, Message::JoinIntent { name, ltime } if name == "s1" && *ltime > 40));
    assert!(refuted, "{gossiped:?}");
    assert!(!s1.is_leaving());
}

/// Force-leave of a failed member spreads: every member records it left; with `prune` it is
/// erased at once (member-reap) instead of waiting for the tombstone timeout.
#[test]
fn force_leave_spreads_and_prune_erases() {
    for prune in [false, true] {
        let mut cluster = cluster_of(4);
        cluster.run_until(Duration::from_secs(5));
        cluster.agents.remove(&addr(4));
        cluster.run_until(Duration::from_secs(40));
        assert_eq!(cluster.status(1, "s3"), Some(Status::Dead));
        cluster.act(2, |agent, now, out| agent.force_leave("s3", prune, now, out));
        cluster.run_until(Duration::from_secs(45));
        for observer in [1, 2, 3] {
            let expected = if prune { None } else { Some(Status::Left) };
            assert_eq!(cluster.status(observer, "s3"), expected, "seen from {observer}, prune {prune}");
        }
    }
}

/// Left members are forgotten after the tombstone timeout, failed ones after the reconnect
/// timeout, each on its own clock.
#[test]
fn left_members_are_reaped_after_the_tombstone_timeout() {
    let mut config = config("ha", 1, &[]);
    config.reconnect_timeout = Duration::from_secs(600);
    config.tombstone_timeout = Duration::from_secs(60);
    let mut ha = agent(config);
    ha.start(Duration::ZERO, &mut Vec::new());
    for (name, host) in [("s1", 2), ("s2", 3)] {
        ha.handle_datagram(addr(host), &alive(name, host, 0), Duration::ZERO, &mut Vec::new()).unwrap();
    }
    let gone = |name: &str, from: &str| {
        datagram(&[Message::Dead { name: name.into(), incarnation: 0, from: from.into() }])
    };
    ha.handle_datagram(addr(2), &gone("s1", "s1"), Duration::from_secs(1), &mut Vec::new()).unwrap();
    ha.handle_datagram(addr(4), &gone("s2", "s3"), Duration::from_secs(1), &mut Vec::new()).unwrap();
    let mut out = Vec::new();
    ha.handle_timer(Timer::Reap, Duration::from_secs(75), &mut out);
    assert_eq!(events(&out), [(MemberChange::Reap, "s1".to_string())]);
    let names: Vec<String> = ha.members().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["ha", "s2"]);
}

/// A member whose leave intent arrived but whose own announcement was lost is found dead by
/// probing: it left, it did not fail (Serf's leaving -> left).
#[test]
fn a_leaving_member_found_dead_is_left_not_failed() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    ha.handle_datagram(addr(2), &alive("s1", 2, 0), Duration::ZERO, &mut Vec::new()).unwrap();
    let leave = datagram(&[Message::LeaveIntent { name: "s1".into(), ltime: 3, prune: false }]);
    ha.handle_datagram(addr(2), &leave, Duration::ZERO, &mut Vec::new()).unwrap();
    assert_eq!(ha.members().find(|m| &*m.name == "s1").unwrap().status, Status::Alive, "leaving is not gone");
    let dead = datagram(&[Message::Dead { name: "s1".into(), incarnation: 0, from: "s2".into() }]);
    let mut out = Vec::new();
    ha.handle_datagram(addr(3), &dead, Duration::ZERO, &mut out).unwrap();
    assert_eq!(events(&out), [(MemberChange::Leave, "s1".to_string())]);
    assert_eq!(ha.members().find(|m| &*m.name == "s1").unwrap().status, Status::Left);
}

/// Tags changed at run time travel with a new incarnation: every peer emits member-update
/// and lists the new tags; tags over the wire limit are refused and change nothing.
#[test]
fn tags_set_at_run_time_reach_every_peer_as_member_update() {
    let mut cluster = cluster_of(4);
    cluster.run_until(Duration::from_secs(5));
    let tags = BTreeMap::from([("role".to_string(), "backend".to_string()), ("weight".into(), "5".into())]);
    let set = tags.clone();
    cluster.act(2, |agent, now, out| agent.set_tags(set, now, out).unwrap());
    cluster.run_until(Duration::from_secs(8));
    for observer in [1, 3, 4] {
        let s1 = cluster.agents[&addr(observer)].members().find(|m| &*m.name == "s1").unwrap().clone();
        assert_eq!(((*s1.tags).clone(), s1.incarnation), (tags.clone(), 1), "seen from {observer}");
        assert!(cluster.events.contains(&(addr(observer), MemberChange::Update, "s1".to_string())));
    }
    let huge = BTreeMap::from([("k".to_string(), "v".repeat(600))]);
    cluster.act(2, |agent, now, out| assert!(agent.set_tags(huge, now, out).is_err()));
    assert_eq!(cluster.agents[&addr(2)].incarnation(), 1);
}

/// A node whose datagrams are all lost but whose TCP works is pinged over TCP when the
/// direct ping fails, and is never suspected (memberlist's fallback); without the fallback
/// it is suspected over and over.
#[test]
fn the_tcp_ping_fallback_keeps_a_node_whose_udp_is_blocked() {
    for tcp_pings in [true, false] {
        let names = ["ha", "s1", "s2"];
        let agents = (1..=3u8)
            .map(|host| {
                let mut config = config(names[usize::from(host) - 1], host, &[1]);
                config.tcp_pings = tcp_pings;
                agent(config)
            })
            .collect();
        let mut cluster = Cluster::new(agents);
        cluster.run_until(Duration::from_secs(5));
        cluster.udp_cut.push(addr(2));
        cluster.run_until(Duration::from_secs(60));
        let s1 = &cluster.agents[&addr(2)];
        if tcp_pings {
            assert_eq!(cluster.status(1, "s1"), Some(Status::Alive));
            assert_eq!(cluster.status(3, "s1"), Some(Status::Alive));
            assert_eq!(s1.incarnation(), 0, "never suspected, never had to refute");
        } else {
            // Suspected, then dead or refuted over push-pull (TCP), again and again.
            assert!(s1.incarnation() > 0 || cluster.status(1, "s1") == Some(Status::Dead));
        }
    }
}

/// The intents a gossip round sends.
fn gossiped_intents(node: &mut Agent, now: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    node.handle_timer(Timer::Gossip, now, &mut out);
    let mut intents: Vec<Message> = sends(&out)
        .into_iter()
        .flat_map(|(_, messages)| messages)
        // The node's own join intent aside.
        .filter(|m| matches!(m, Message::JoinIntent { name, .. } | Message::LeaveIntent { name, .. } if name != "ha"))
        .collect();
    intents.dedup();
    intents
}

/// As Serf: intents a push-pull carries are applied but not gossiped again (the push-pull
/// is the news); a gossiped intent is, also about a member not known yet, once per news.
#[test]
fn intents_from_a_push_pull_are_not_gossiped_again_and_gossiped_ones_are() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    let at = Duration::from_secs(1);
    ha.handle_datagram(addr(2), &alive("s1", 2, 0), at, &mut Vec::new()).unwrap();
    let intent = |name: &str, ltime| StatusTime { name: name.into(), ltime };
    let push = codec::encode_stream(&Message::PushPull {
        join: false,
        reply: true,
        ltime: 9,
        states: vec![state("s1", 2, 0, Status::Alive)],
        intents: vec![intent("s1", 5)],
    })
    .unwrap();
    ha.handle_stream(addr(2), &push, true, at, &mut Vec::new()).unwrap();
    // Drain what the alive message queued: only intents are looked at.
    assert!(gossiped_intents(&mut ha, at).is_empty());
    let join = |name: &str, ltime| Message::JoinIntent { name: name.into(), ltime };
    // Not newer than the push-pull's: nothing to spread.
    ha.handle_datagram(addr(2), &datagram(&[join("s1", 5)]), at, &mut Vec::new()).unwrap();
    assert!(gossiped_intents(&mut ha, at).is_empty());
    ha.handle_datagram(addr(2), &datagram(&[join("s1", 6), join("s9", 3)]), at, &mut Vec::new()).unwrap();
    let mut spread = gossiped_intents(&mut ha, at);
    spread.sort_by_key(|m| format!("{m:?}"));
    assert_eq!(spread, [join("s1", 6), join("s9", 3)]);
    // The same news about the unknown member again is not news.
    for _ in 0..32 {
        gossiped_intents(&mut ha, at);
    }
    ha.handle_datagram(addr(2), &datagram(&[join("s9", 3)]), at, &mut Vec::new()).unwrap();
    assert!(gossiped_intents(&mut ha, at).is_empty());
}

fn timer_after(out: &[Action], wanted: &Timer) -> Option<Duration> {
    out.iter().find_map(|action| match action {
        Action::SetTimer { timer, after } if timer == wanted => Some(*after),
        _ => None,
    })
}

/// memberlist's pushPullTrigger: a random stagger within one interval, then one interval
/// scaled to the table's size at that moment before the first push-pull.
#[test]
fn periodic_push_pulls_start_after_a_random_stagger_and_one_scaled_interval() {
    let mut staggers = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let settings = config("a", 1, &[]);
        let interval = settings.push_pull_interval;
        let mut a = Agent::new(settings, ChaCha8Rng::seed_from_u64(seed));
        let mut out = Vec::new();
        a.start(Duration::ZERO, &mut out);
        assert!(timer_after(&out, &Timer::PushPull).is_none(), "no push-pull timer before the stagger");
        let stagger = timer_after(&out, &Timer::PushPullStart).expect("a stagger");
        assert!(stagger < interval);
        staggers.insert(stagger);
        // 99 more members by the time the stagger ends: the first wait is scaled to 100.
        let states = (2..=100u8).map(|host| NodeState {
            name: format!("n{host}").into(),
            addr: addr(host),
            incarnation: 0,
            status: Status::Alive,
            tags: Arc::new(BTreeMap::new()),
        });
        let push = codec::encode_stream(&Message::PushPull {
            join: false,
            reply: false,
            ltime: 0,
            states: states.collect(),
            intents: Vec::new(),
        })
        .unwrap();
        a.handle_stream(addr(2), &push, false, stagger, &mut Vec::new()).unwrap();
        let mut out = Vec::new();
        a.handle_timer(Timer::PushPullStart, stagger, &mut out);
        assert!(streams(&out).is_empty(), "the stagger's end sends nothing");
        let every = a.config.push_pull_every(100);
        assert!(every > interval);
        assert_eq!(timer_after(&out, &Timer::PushPull), Some(every));
    }
    assert!(staggers.len() > 1, "seeds draw different staggers: {staggers:?}");
}

/// Serf's reconnect tries a failed member with probability #failed / #alive: one failed
/// member among 20 alive (this node included) is tried about one tick in 20; a node whose
/// every peer failed tries at every tick.
#[test]
fn reconnect_tries_a_failed_member_with_probability_failed_over_alive() {
    let dead =
        |name: &str| datagram(&[Message::Dead { name: name.into(), incarnation: 0, from: "x".into() }]);
    let attempts = |ha: &mut Agent| {
        (0..400)
            .filter(|_| {
                let mut out = Vec::new();
                ha.handle_timer(Timer::Reconnect, Duration::from_secs(1), &mut out);
                !streams(&out).is_empty()
            })
            .count()
    };
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    for host in 2..=21u8 {
        let name = format!("s{host}");
        ha.handle_datagram(addr(host), &alive(&name, host, 0), Duration::ZERO, &mut Vec::new()).unwrap();
    }
    ha.handle_datagram(addr(30), &dead("s21"), Duration::ZERO, &mut Vec::new()).unwrap();
    let some = attempts(&mut ha);
    assert!((5..=45).contains(&some), "about 20 of 400 ticks, got {some}");
    for host in 2..=20u8 {
        ha.handle_datagram(addr(30), &dead(&format!("s{host}")), Duration::ZERO, &mut Vec::new()).unwrap();
    }
    assert_eq!(attempts(&mut ha), 400, "alone, every tick");
}

fn limits_reached(out: &[Action]) -> Vec<(Limit, usize, u64)> {
    out.iter()
        .filter_map(|a| match a {
            Action::LimitReached { limit, max, count } => Some((*limit, *max, *count)),
            _ => None,
        })
        .collect()
}

/// A full member table refuses newcomers, counts each, and says so at counts 1, 2, 4...
#[test]
fn a_full_member_table_refuses_newcomers_counted_and_reported() {
    let mut config = config("ha", 1, &[]);
    config.members_max = 3;
    let mut ha = agent(config);
    ha.start(Duration::ZERO, &mut Vec::new());
    let mut reported = Vec::new();
    for host in 2..10u8 {
        let mut out = Vec::new();
        ha.handle_datagram(addr(host), &alive(&format!("s{host}"), host, 1), Duration::ZERO, &mut out)
            .unwrap();
        reported.extend(limits_reached(&out));
    }
    // ha, s2 and s3 fit; s4 to s9 are six refusals.
    assert_eq!(ha.members().count(), 3);
    assert_eq!(ha.limit_count(Limit::Members), 6);
    let counts: Vec<u64> = reported.iter().map(|(_, _, count)| *count).collect();
    assert_eq!(counts, [1, 2, 4]);
    assert!(reported.iter().all(|(limit, max, _)| *limit == Limit::Members && *max == 3));
}

/// Ping requests beyond the relays in flight are dropped, counted and reported.
#[test]
fn ping_requests_beyond_the_relays_in_flight_are_counted() {
    let mut helper = agent(config("s2", 3, &[]));
    helper.start(Duration::ZERO, &mut Vec::new());
    let mut reported = Vec::new();
    for seq in 0..RELAYS_MAX as u32 + 2 {
        let request = datagram(&[Message::PingReq { seq, target: "s1".into(), addr: addr(2), nack: true }]);
        let mut out = Vec::new();
        helper.handle_datagram(addr(1), &request, Duration::ZERO, &mut out).unwrap();
        reported.extend(limits_reached(&out));
    }
    assert_eq!(helper.limit_count(Limit::Relays), 2);
    assert_eq!(reported, [(Limit::Relays, RELAYS_MAX, 1), (Limit::Relays, RELAYS_MAX, 2)]);
}

/// More join intents than Serf's queue holds: it drops the excess (most sent, then oldest),
/// counted and reported; memberlist's own queue, one message per member, drops nothing.
#[test]
fn a_full_intent_queue_is_counted_and_reported() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    let mut reported = Vec::new();
    let joiners = crate::gossip::broadcasts::BROADCASTS_MAX + 100;
    for index in 0..joiners {
        let state = numbered_member(index);
        let intent = Message::JoinIntent { name: state.name.to_string(), ltime: 1 };
        let mut out = Vec::new();
        let bytes = codec::encode(&[Message::Alive(state), intent]).unwrap();
        ha.handle_datagram(addr(2), &bytes, Duration::ZERO, &mut out).unwrap();
        reported.extend(limits_reached(&out));
    }
    assert_eq!(ha.limit_count(Limit::MemberBroadcasts), 0, "one alive per member always fits");
    let dropped = ha.limit_count(Limit::Intents);
    assert!(dropped >= 100, "{dropped} intents dropped");
    let last = reported.last().copied().expect("reported");
    assert_eq!((last.0, last.1), (Limit::Intents, crate::gossip::broadcasts::BROADCASTS_MAX));
    assert!(last.2 > dropped / 2 && last.2 <= dropped, "log-spaced: {reported:?}");
}

/// On its way out an agent does not refute even a same-incarnation view of itself with other
/// tags: a refutation's alive message would replace its own goodbye in the queue.
#[test]
fn a_leaving_agent_does_not_refute_a_view_with_other_tags() {
    let mut ha = agent(config("ha", 1, &[]));
    ha.start(Duration::ZERO, &mut Vec::new());
    ha.leave(Duration::ZERO, &mut Vec::new());
    let before = ha.incarnation;
    let mut tags = BTreeMap::new();
    tags.insert("role".to_string(), "other".to_string());
    let state = NodeState {
        name: "ha".into(),
        addr: addr(1),
        incarnation: before,
        status: Status::Alive,
        tags: tags.into(),
    };
    let bytes = codec::encode(&[Message::Alive(state)]).unwrap();
    ha.handle_datagram(addr(2), &bytes, Duration::from_millis(10), &mut Vec::new()).unwrap();
    assert_eq!(ha.incarnation, before, "no refutation while leaving");
}

/// Agents sharing a key form a cluster over sealed frames; an outsider's plain or wrongly
/// sealed forgery of a member's death is refused, and changes nothing.
#[test]
fn an_encrypted_cluster_forms_and_refuses_forgeries() {
    use crate::gossip::keyring::{Key, Keyring, KeyringError, Wire};
    let wire = |byte: u8| {
        Wire::new(None, Some(Keyring::new(vec![Key::from_bytes(vec![byte; 32]).unwrap()]).unwrap())).unwrap()
    };
    let sealed = |host: u8, seeds: &[u8]| {
        let mut config = config(&format!("n{host}"), host, seeds);
        config.wire = wire(1);
        // Each agent its own random stream, as every engine gives it: nonces differ.
        Agent::new(config, ChaCha8Rng::seed_from_u64(u64::from(host)))
    };
    let mut cluster = Cluster::new(vec![sealed(1, &[]), sealed(2, &[1]), sealed(3, &[1])]);
    cluster.run_until(Duration::from_secs(5));
    for observer in 1..=3 {
        for subject in ["n1", "n2", "n3"] {
            assert_eq!(cluster.status(observer, subject), Some(Status::Alive), "{observer} sees {subject}");
        }
    }
    let forged =
        codec::encode(&[Message::Dead { name: "n2".into(), incarnation: 9, from: "n9".into() }]).unwrap();
    let now = cluster.now;
    let target = cluster.agents.get_mut(&addr(1)).unwrap();
    let mut out = Vec::new();
    let plain = target.handle_datagram(addr(9), &forged, now, &mut out);
    assert!(matches!(plain, Err(CodecError::Refused(_))), "{plain:?}");
    let guessed = wire(2).seal(forged.clone(), Some(addr(1)), &mut ChaCha8Rng::seed_from_u64(1));
    let wrong_key = target.handle_datagram(addr(9), &guessed, now, &mut out);
    assert_eq!(wrong_key, Err(CodecError::Refused(KeyringError::NoKeyOpens)));
    let stream = target.handle_stream(addr(9), &guessed, false, now, &mut out);
    assert_eq!(stream, Err(CodecError::Refused(KeyringError::NoKeyOpens)));
    assert!(out.is_empty(), "a refused frame does nothing: {out:?}");
    // A frame sealed with the cluster's key for n1 opens once at n1, and never at n2.
    let sealed = wire(1).seal(forged.clone(), Some(addr(1)), &mut ChaCha8Rng::seed_from_u64(2));
    let other = cluster.agents.get_mut(&addr(2)).unwrap().handle_datagram(addr(9), &sealed, now, &mut out);
    assert_eq!(other, Err(CodecError::Refused(KeyringError::NoKeyOpens)));
    let target = cluster.agents.get_mut(&addr(1)).unwrap();
    assert!(target.handle_datagram(addr(9), &sealed, now, &mut out).is_ok());
    let replayed = target.handle_datagram(addr(9), &sealed, now, &mut out);
    assert_eq!(replayed, Err(CodecError::Refused(KeyringError::Replayed)));
    out.clear();
    // The one forgery sealed with the cluster's key (an insider's) was applied once: n2 refutes.
    assert_ne!(cluster.status(1, "n2"), None);
    // Every frame the agents sent was sealed: none decodes as plain.
    let mut out = Vec::new();
    cluster.agents.get_mut(&addr(1)).unwrap().handle_timer(Timer::Probe, now, &mut out);
    for action in &out {
        if let Action::Send { bytes, .. } | Action::Stream { bytes, .. } = action {
            assert!(codec::decode(bytes).is_err() && bytes.len() <= DATAGRAM_BYTES_MAX);
        }
    }
}

/// Without a keyring anyone can claim a ping's source: to an address no member has, the ack
/// carries broadcasts only up to AMPLIFICATION_MAX times the ping's size (REPLY_BYTES_MIN at
/// least), where a large ping, or any ping from a member, still gets a full packet.
#[test]
fn an_ack_to_a_small_ping_is_a_small_multiple_of_it() {
    let mut s1 = agent(config("s1", 2, &[]));
    s1.start(Duration::ZERO, &mut Vec::new());
    for host in 10..60 {
        s1.handle_datagram(
            addr(host),
            &alive(&format!("member-with-a-long-name-{host}"), host, 1),
            Duration::ZERO,
            &mut Vec::new(),
        )
        .unwrap();
    }
    let ack_bytes_from = |s1: &mut Agent, from: SocketAddr, ping: &[u8]| {
        let mut out = Vec::new();
        s1.handle_datagram(from, ping, Duration::from_secs(1), &mut out).unwrap();
        out.iter().find_map(|a| match a {
            Action::Send { to, bytes } if *to == from => Some(bytes.len()),
            _ => None,
        })
    };
    let ack_bytes = |s1: &mut Agent, ping: &[u8]| ack_bytes_from(s1, addr(99), ping);
    let small = codec::encode(&[Message::Ping { seq: 1, target: "s1".into() }]).unwrap();
    let member = ack_bytes_from(&mut s1, addr(10), &small).unwrap();
    assert!(member > 1000, "a member's ping gets a full ack, not {member} bytes");
    let reply = ack_bytes(&mut s1, &small).unwrap();
    assert!(
        reply <= (small.len() * AMPLIFICATION_MAX).max(REPLY_BYTES_MIN),
        "{reply} bytes for {}",
        small.len()
    );
    // A ping carrying as much as the broadcasts (as a member's pings do) gets them all.
    let filler = |i: u32| Message::Suspect {
        name: format!("{i}{}", "x".repeat(100)),
        incarnation: 0,
        from: "y".repeat(100),
    };
    let mut large = vec![Message::Ping { seq: 2, target: "s1".into() }];
    large.extend((0..2).map(filler));
    let large = codec::encode(&large).unwrap();
    let reply = ack_bytes(&mut s1, &large).unwrap();
    assert!(reply > 1000, "a {}-byte ping gets a full ack, not {reply} bytes", large.len());
}

/// The probe round lists members by their place in the table: a member reaped mid-round
/// (by the reap timer or a pruning leave intent) leaves the round, every later member moves
/// up one place, and every earlier one keeps its place.
#[test]
fn a_member_reaped_mid_round_leaves_the_probe_round_and_the_rest_stay_in_it() {
    let mut cluster = cluster_of(7);
    cluster.run_until(Duration::from_secs(5));
    let ha = cluster.agents.get_mut(&addr(1)).unwrap();
    assert_eq!(ha.members().count(), 7);
    ha.probe_queue.clear();
    let first = ha.next_probe_target().unwrap();
    // Reap the member in the middle of the table among those still to probe, so that
    // places below and above it are queued.
    let mut queued = ha.probe_queue.clone();
    queued.sort_unstable();
    let reaped_place = queued[queued.len() / 2];
    assert!(queued.first() < Some(&reaped_place) && queued.last() > Some(&reaped_place));
    let reaped = ha.members.at(reaped_place as usize).state.name.to_string();
    let names_left: Vec<String> = ha
        .probe_queue
        .iter()
        .filter(|&&p| p != reaped_place)
        .map(|&p| ha.members.at(p as usize).state.name.to_string())
        .collect();
    ha.erase(&reaped, &mut Vec::new());
    let names_after: Vec<String> =
        ha.probe_queue.iter().map(|&p| ha.members.at(p as usize).state.name.to_string()).collect();
    assert_eq!(names_after, names_left, "the same members, in the same order, without {reaped}");
    let mut round: Vec<String> = std::iter::once(first).collect();
    round.extend((0..4).map(|_| ha.next_probe_target().unwrap()));
    round.sort();
    let expected: Vec<String> = ["s1", "s2", "s3", "s4", "s5", "s6"]
        .into_iter()
        .filter(|&name| name != reaped)
        .map(String::from)
        .collect();
    assert_eq!(round, expected, "reaped {reaped}");
    assert!(ha.probe_queue.is_empty(), "the next probe starts a new round");
}

/// The longest label and a key leave a datagram the least room. Every gossip datagram still
/// fits on the wire (one that did not would not be sent at all), and each is full: member
/// news first, then Serf's intents in what they leave, until the room left (the header's
/// spare bytes aside) is shorter than any intent still queued.
#[test]
fn a_sealed_labelled_datagram_fits_and_is_filled_with_member_news_then_intents() {
    use crate::gossip::keyring::{Key, Keyring, LABEL_BYTES_MAX, Wire};
    let key = Key::from_bytes(vec![1; 32]).unwrap();
    let wire = Wire::new(Some("l".repeat(LABEL_BYTES_MAX)), Some(Keyring::new(vec![key]).unwrap())).unwrap();
    let mut ha = agent(GossipConfig { wire: wire.clone(), ..config("ha", 1, &[]) });
    ha.start(Duration::ZERO, &mut Vec::new());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for index in 0..300usize {
        let tags: BTreeMap<String, String> = [("role".to_string(), "x".repeat(index % 50))].into();
        let state = NodeState { tags: tags.into(), ..numbered_member(index) };
        let intent = Message::JoinIntent { name: state.name.to_string(), ltime: 1 };
        let sealed = wire.seal(datagram(&[Message::Alive(state), intent]), Some(addr(1)), &mut rng);
        ha.handle_datagram(addr(2), &sealed, Duration::ZERO, &mut Vec::new()).unwrap();
    }
    let mut out = Vec::new();
    ha.handle_timer(Timer::Gossip, Duration::from_millis(200), &mut out);
    let shortest_intent = codec::encoded_len(&Message::JoinIntent { name: "n0".into(), ltime: 1 });
    let mut intents_sent = 0;
    for action in &out {
        let Action::Send { to, bytes } = action else { continue };
        assert!(bytes.len() <= DATAGRAM_BYTES_MAX, "{} bytes on the wire", bytes.len());
        let (frame, _) = wire.open(bytes, Some(*to)).unwrap();
        let messages = codec::decode(&frame).unwrap();
        let is_intent = |m: &Message| matches!(m, Message::JoinIntent { .. });
        let intents = messages.iter().filter(|m| is_intent(m)).count();
        assert!(messages.iter().take(messages.len() - intents).all(|m| matches!(m, Message::Alive(_))));
        assert!(messages.iter().skip(messages.len() - intents).all(is_intent), "member news first");
        intents_sent += intents;
        // piggyback reserves 8 bytes for the compound's header, of which a version byte and
        // a count under 128 take 2: at least 6 are left, and less than another intent more.
        assert!(messages.len() < 128, "a one-byte count");
        let left = DATAGRAM_BYTES_MAX - bytes.len();
        assert!(
            (6..6 + shortest_intent).contains(&left),
            "{left} bytes left unused: {} messages",
            messages.len()
        );
    }
    let datagrams = out.iter().filter(|a| matches!(a, Action::Send { .. })).count();
    assert_eq!(datagrams, 3, "one datagram to each of gossip_nodes peers");
    assert!(intents_sent > 0, "intents fill what member news leaves");
}
