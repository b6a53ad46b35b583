//! An outsider on the network (`role = "attacker"`): a host that runs no agent, sends forged
//! gossip about a victim, replays datagrams it captured on the wire and floods push-pull
//! requests ([`forge`]). With a keyring, none of it opens; without one, the report and the
//! invariants show what it achieved.
//!
//! The capture is a tap on the simulated wire ([`Tap`]): the engine copies datagrams in
//! flight between other hosts into it, as a host on the same segment could sniff them.

pub mod forge;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use forge::{Aim, CAPTURED_MAX, Forger, Send};
use rollcall::gossip::config::MEMBERS_MAX_DEFAULT;
use rollcall::gossip::keyring::Wire;
use rollcall::gossip::stream::Streams;
use rollcall::host::{Event, HostEnv};
use rollcall::net::{Datagram, Net};
use rollcall::node::GOSSIP_PORT;

/// Default time between two moves.
pub const EVERY_MS_DEFAULT: u64 = 500;
/// How long the attacker waits on one of its push-pulls.
const STREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// An attacker host's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackerSpec {
    /// The member its forgeries are about.
    pub victim: String,
    /// The hosts it sends to, in turn.
    pub targets: Vec<String>,
    /// Time between two moves.
    pub every: Duration,
    /// How it frames what it sends: plain, or sealed with a key it guessed.
    pub wire: Wire,
}

/// Datagrams captured on the wire for one attacker, the newest [`CAPTURED_MAX`].
#[derive(Clone, Debug, Default)]
pub struct Tap(Rc<RefCell<VecDeque<Vec<u8>>>>);

impl Tap {
    /// Keeps a copy of a datagram seen in flight, once: the engine shows it again at every
    /// step until it lands.
    pub fn capture(&self, bytes: &[u8]) {
        let mut captured = self.0.borrow_mut();
        if captured.iter().any(|seen| seen.as_slice() == bytes) {
            return;
        }
        if captured.len() == CAPTURED_MAX {
            captured.pop_front();
        }
        captured.push_back(bytes.to_vec());
    }

    fn drain(&self) -> Vec<Vec<u8>> {
        self.0.borrow_mut().drain(..).collect()
    }
}

/// Attacks until the engine stops the run.
pub async fn run<N: Net>(env: HostEnv<N>, spec: AttackerSpec, tap: Tap) {
    let me = SocketAddr::new(env.net.local_ip(), GOSSIP_PORT);
    let targets: Vec<SocketAddr> = spec
        .targets
        .iter()
        .filter_map(|name| env.net.resolve(name).ok())
        .map(|ip| SocketAddr::new(ip, GOSSIP_PORT))
        .collect();
    let Ok(socket) = env.net.bind_udp(me).await else { return };
    if targets.is_empty() {
        return;
    }
    let (streams, mut answers) = Streams::new(env.net.clone(), STREAM_TIMEOUT, MEMBERS_MAX_DEFAULT);
    let rng = env.rng("attacker");
    let aim = Aim { name: env.name.clone(), addr: me, victim: spec.victim.clone(), targets };
    let mut forger = Forger::new(aim, spec.wire.clone(), rng);
    let mut buf = vec![0u8; rollcall::gossip::codec::DATAGRAM_BYTES_MAX + 1];
    let mut next = env.now();
    loop {
        tokio::select! {
            biased;
            () = tokio::time::sleep(next.saturating_sub(env.now())) => {
                next += spec.every;
                tap.drain().into_iter().for_each(|bytes| forger.capture(bytes));
                for send in forger.tick() {
                    attack(&env, me, &socket, &streams, send).await;
                }
            }
            Some(answer) = answers.recv() => forger.answered(&answer.bytes),
            // Whatever members send here (probes for a hijacked victim) is captured too.
            Ok((len, _)) = socket.recv_from(&mut buf) => forger.capture(buf[..len].to_vec()),
        }
    }
}

/// Sends one move from `me`, and records it.
async fn attack<N: Net>(env: &HostEnv<N>, me: SocketAddr, socket: &N::Udp, streams: &Streams<N>, send: Send) {
    let (to, bytes, what, stream) = match send {
        Send::Datagram { to, bytes, what } => (to, bytes, what, false),
        Send::Stream { to, bytes, what } => (to, bytes, what, true),
    };
    let (what, from, bytes_sent) = (what.name().to_string(), me.to_string(), bytes.len() as u32);
    env.observe(Event::AttackSent { what, from, to: to.to_string(), bytes: bytes_sent, stream });
    if stream {
        streams.push_pull(to, bytes);
    } else if let Err(error) = socket.send_to(&bytes, to).await {
        tracing::debug!(host = %env.name, %to, %error, "attack datagram not sent");
    }
}
