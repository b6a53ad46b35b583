//! What an outsider sends, as a sans-io state machine: each tick one move in turn (a forged
//! alive, suspect, dead or leave about the victim, a replay of a captured datagram, or a
//! flood of push-pull requests), aimed at the targets in turn. It learns the victim's
//! incarnation and the cluster's Lamport time from whatever push-pull answers it can read, so
//! that its forgeries outbid the truth where nothing stops them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use rollcall::gossip::codec::{self, Message, NodeState, PushPullRef, Status};
use rollcall::gossip::keyring::Wire;

/// Captured datagrams kept for replay; older ones make room.
pub const CAPTURED_MAX: usize = 64;
/// Push-pull requests one flood move opens at once.
pub const FLOOD_STREAMS: usize = 8;
/// Members an answer may list for the attacker to read it (the agents' own default limit).
const MEMBERS_READ_MAX: usize = rollcall::gossip::config::MEMBERS_MAX_DEFAULT;

/// One move, in the order the attacker plays them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    /// An alive message for the victim at a higher incarnation, with the attacker's address.
    Alive,
    /// A suspicion of the victim at its incarnation.
    Suspect,
    /// A death of the victim at its incarnation.
    Dead,
    /// Serf's leave intent for the victim at a later Lamport time.
    Leave,
    /// A datagram captured on the wire, sent again as it was.
    Replay,
    /// [`FLOOD_STREAMS`] push-pull requests at once, each asking for a member's full state.
    Flood,
}

impl Forgery {
    /// The flood's answers teach the incarnation the death that follows it needs; the hijack
    /// (a higher incarnation) comes last, as it makes the victim refute.
    const ROUND: [Forgery; 6] =
        [Forgery::Flood, Forgery::Dead, Forgery::Suspect, Forgery::Leave, Forgery::Replay, Forgery::Alive];

    /// The name a trace record gives it.
    pub fn name(self) -> &'static str {
        match self {
            Forgery::Alive => "forged-alive",
            Forgery::Suspect => "forged-suspect",
            Forgery::Dead => "forged-dead",
            Forgery::Leave => "forged-leave",
            Forgery::Replay => "replay",
            Forgery::Flood => "push-pull-flood",
        }
    }
}

/// What the attacker asks its driver to send.
#[derive(Clone, Debug, PartialEq)]
pub enum Send {
    Datagram { to: SocketAddr, bytes: Vec<u8>, what: Forgery },
    Stream { to: SocketAddr, bytes: Vec<u8>, what: Forgery },
}

/// Who attacks whom, from where.
#[derive(Clone, Debug)]
pub struct Aim {
    /// The attacker's host name (the `from` of its accusations).
    pub name: String,
    /// Its own address, which its hijacking alive messages carry.
    pub addr: SocketAddr,
    /// The member its forgeries are about.
    pub victim: String,
    /// Where its moves go, one target per round.
    pub targets: Vec<SocketAddr>,
}

/// The attacker's state.
pub struct Forger {
    aim: Aim,
    /// How its frames look: plain, or sealed with a key it guessed.
    wire: Wire,
    rng: ChaCha8Rng,
    moves: u64,
    /// The victim as the last readable push-pull answer listed it.
    learned: Option<NodeState>,
    ltime: u64,
    captured: VecDeque<Vec<u8>>,
}

impl Forger {
    /// An attacker with `aim`, framing as `wire` says.
    pub fn new(aim: Aim, wire: Wire, rng: ChaCha8Rng) -> Self {
        assert!(!aim.targets.is_empty(), "an attacker needs a target");
        Self { aim, wire, rng, moves: 0, learned: None, ltime: 0, captured: VecDeque::new() }
    }

    /// The next move.
    pub fn tick(&mut self) -> Vec<Send> {
        let what = Forgery::ROUND[(self.moves % Forgery::ROUND.len() as u64) as usize];
        let to =
            self.aim.targets[(self.moves / Forgery::ROUND.len() as u64) as usize % self.aim.targets.len()];
        self.moves += 1;
        let (incarnation, ltime) = (self.learned.as_ref().map_or(0, |s| s.incarnation), self.ltime);
        let message = match what {
            Forgery::Alive => Message::Alive(self.hijacked(incarnation.saturating_add(1))),
            Forgery::Suspect => {
                Message::Suspect { name: self.aim.victim.clone(), incarnation, from: self.aim.name.clone() }
            }
            Forgery::Dead => {
                Message::Dead { name: self.aim.victim.clone(), incarnation, from: self.aim.name.clone() }
            }
            Forgery::Leave => Message::LeaveIntent {
                name: self.aim.victim.clone(),
                ltime: ltime.saturating_add(1),
                prune: false,
            },
            Forgery::Replay => {
                let Some(bytes) = self.pick_captured() else { return Vec::new() };
                return vec![Send::Datagram { to, bytes, what }];
            }
            Forgery::Flood => return (0..FLOOD_STREAMS).map(|_| self.push_pull(to)).collect(),
        };
        let Ok(bytes) = codec::encode(&[message]) else { return Vec::new() };
        vec![Send::Datagram { to, bytes: self.seal(bytes, to), what }]
    }

    /// The victim's state with the attacker's address: probes for the victim come here.
    fn hijacked(&self, incarnation: u32) -> NodeState {
        let tags = self.learned.as_ref().map(|s| s.tags.clone()).unwrap_or_default();
        NodeState {
            name: Arc::from(self.aim.victim.as_str()),
            addr: self.aim.addr,
            incarnation,
            status: Status::Alive,
            tags,
        }
    }

    /// A join push-pull listing nobody, so the attacker never becomes a member to probe.
    fn push_pull(&mut self, to: SocketAddr) -> Send {
        let request = PushPullRef {
            join: true,
            reply: false,
            ltime: self.ltime,
            states: Vec::new(),
            intents: Vec::new(),
        };
        let bytes = codec::encode_push_pull(&request).unwrap_or_default();
        Send::Stream { to, bytes: self.seal(bytes, to), what: Forgery::Flood }
    }

    fn pick_captured(&mut self) -> Option<Vec<u8>> {
        if self.captured.is_empty() {
            return None;
        }
        let at = self.rng.random_range(0..self.captured.len());
        self.captured.get(at).cloned()
    }

    /// Sealed as an agent would seal for `to`, with the key it guessed.
    fn seal(&mut self, frame: Vec<u8>, to: SocketAddr) -> Vec<u8> {
        self.wire.seal(frame, Some(to), &mut self.rng)
    }

    /// A datagram seen on the wire or sent to the attacker: kept for replay.
    pub fn capture(&mut self, bytes: Vec<u8>) {
        if self.captured.len() == CAPTURED_MAX {
            self.captured.pop_front();
        }
        self.captured.push_back(bytes);
    }

    /// An answer to one of its push-pulls: read what it can (nothing, when sealed with a key
    /// it lacks).
    pub fn answered(&mut self, bytes: &[u8]) {
        let Ok((frame, _)) = self.wire.open(bytes, None) else { return };
        let Ok(Message::PushPull { ltime, states, .. }) = codec::decode_stream(&frame, MEMBERS_READ_MAX)
        else {
            return;
        };
        self.ltime = self.ltime.max(ltime);
        if let Some(victim) = states.into_iter().find(|s| *s.name == *self.aim.victim) {
            self.learned = Some(victim);
        }
    }

    /// The victim's incarnation as last learned, if any answer was readable.
    pub fn learned_incarnation(&self) -> Option<u32> {
        self.learned.as_ref().map(|s| s.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn forger(targets: usize) -> Forger {
        let targets = (1..=targets as u8).map(|h| SocketAddr::from(([10, 0, 0, h], 7946))).collect();
        let me = SocketAddr::from(([10, 0, 0, 99], 7946));
        let aim = Aim { name: "mallory".into(), addr: me, victim: "s1".into(), targets };
        Forger::new(aim, Wire::default(), ChaCha8Rng::seed_from_u64(1))
    }

    #[test]
    fn it_plays_every_move_in_turn_and_learns_from_answers() {
        let mut attacker = forger(2);
        let victim = NodeState {
            name: "s1".into(),
            addr: SocketAddr::from(([10, 0, 0, 2], 7946)),
            incarnation: 6,
            status: Status::Alive,
            tags: Default::default(),
        };
        let answer =
            PushPullRef { join: false, reply: true, ltime: 41, states: vec![&victim], intents: Vec::new() };
        attacker.answered(&codec::encode_push_pull(&answer).unwrap());
        assert_eq!(attacker.learned_incarnation(), Some(6));
        let first: Vec<Send> = (0..6).flat_map(|_| attacker.tick()).collect();
        let decoded = |send: &Send| match send {
            Send::Datagram { bytes, .. } => codec::decode(bytes).unwrap(),
            Send::Stream { .. } => Vec::new(),
        };
        // The flood first, then dead, suspect and leave; nothing captured yet, so no replay;
        // the hijack last.
        assert_eq!(first.len(), FLOOD_STREAMS + 4);
        assert!(
            first[..FLOOD_STREAMS].iter().all(|s| matches!(s, Send::Stream { what: Forgery::Flood, .. }))
        );
        let rest: Vec<Message> = first[FLOOD_STREAMS..].iter().map(|send| decoded(send).remove(0)).collect();
        assert!(matches!(&rest[0], Message::Dead { incarnation: 6, .. }), "{rest:?}");
        assert!(matches!(&rest[1], Message::Suspect { incarnation: 6, .. }), "{rest:?}");
        assert!(matches!(&rest[2], Message::LeaveIntent { ltime: 42, .. }), "{rest:?}");
        let me = SocketAddr::from(([10, 0, 0, 99], 7946));
        assert!(matches!(&rest[3], Message::Alive(s) if s.incarnation == 7 && s.addr == me), "{rest:?}");
        // The second round goes to the second target, and replays what it captured.
        attacker.capture(b"captured".to_vec());
        let second: Vec<Send> = (0..6).flat_map(|_| attacker.tick()).collect();
        assert!(second.iter().all(|s| matches!(s, Send::Datagram { to, .. } | Send::Stream { to, .. } if to.ip().to_string() == "10.0.0.2")));
        assert!(second.contains(&Send::Datagram {
            to: SocketAddr::from(([10, 0, 0, 2], 7946)),
            bytes: b"captured".to_vec(),
            what: Forgery::Replay
        }));
    }

    #[test]
    fn captures_are_bounded_and_unreadable_answers_teach_nothing() {
        let mut attacker = forger(1);
        for i in 0..CAPTURED_MAX + 10 {
            attacker.capture(vec![i as u8]);
        }
        assert_eq!(attacker.captured.len(), CAPTURED_MAX);
        assert_eq!(attacker.captured.front(), Some(&vec![10u8]));
        attacker.answered(b"\x01sealed with a key the attacker lacks");
        assert_eq!(attacker.learned_incarnation(), None);
    }
}
