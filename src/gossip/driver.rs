//! Runs an [`Agent`] on a host: one UDP socket, a timer queue, and the seeded loss model.
//! Everything protocol-related happens in the core; this loop only moves bytes and time.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;

use super::codec::{DATAGRAM_BYTES_MAX, NodeState, Status};
use super::config::GossipConfig;
use super::core::{Action, Agent, Timer};
use crate::host::{Event, HostEnv, MemberStatus};
use crate::net::Net;
use crate::net::lossy::{Delivery, LinkFaults, LossyUdp};

/// Pause after a failed receive, so a socket that keeps failing does not spin.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The member table, published to the host's other services (the renderer) on every change.
pub type View = Vec<NodeState>;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The gossip socket could not be bound.
    #[error("cannot bind gossip socket {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    /// No seed answered (Serf's `-join` exits the same way).
    #[error("failed to join the cluster after {attempts} attempt(s)")]
    JoinFailed { attempts: u32 },
    /// The socket failed.
    #[error("gossip socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the agent until it gives up joining or its socket fails.
pub async fn run<N: Net>(
    env: HostEnv<N>,
    config: GossipConfig,
    faults: Rc<Cell<LinkFaults>>,
    view: Rc<watch::Sender<View>>,
) -> Result<(), GossipError> {
    let addr = config.addr;
    let seeds: Vec<String> = config.seeds.iter().map(ToString::to_string).collect();
    let socket = env.net.bind_udp(addr).await.map_err(|source| GossipError::Bind { addr, source })?;
    let socket = LossyUdp::new(socket, faults, env.rng("gossip-loss"));
    let mut agent = Agent::new(config, env.rng("gossip-agent"));
    let mut timers = TimerQueue::default();
    let mut published = None;
    let mut health = 0;
    let mut published_states = BTreeMap::new();
    let mut out = Vec::new();
    agent.start(env.now(), &mut out);
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    loop {
        for action in out.drain(..) {
            perform(&env, &socket, &mut timers, &seeds, action).await?;
        }
        if published != Some(agent.version()) {
            published = Some(agent.version());
            let members: View = agent.members().cloned().collect();
            record_state_changes(&env, &mut published_states, &members);
            view.send_replace(members);
        }
        if agent.health_score() != health {
            health = agent.health_score();
            env.observe(Event::HealthScore { score: health });
        }
        let due = timers.next_due().unwrap_or(env.now() + Duration::from_secs(3600));
        let wait = due.saturating_sub(env.now());
        tokio::select! {
            biased;
            () = tokio::time::sleep(wait) => {
                for timer in timers.pop_due(env.now()) {
                    env.observe(Event::Timer { name: timer.name() });
                    agent.handle_timer(timer, env.now(), &mut out);
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (len, from) = match received {
                    Ok(received) => received,
                    // A receive error (an ICMP unreachable reported on the socket, say) is not
                    // the agent's end: restarting would lose its table and incarnation.
                    Err(error) => {
                        tracing::warn!(host = %env.name, %error, "gossip receive failed");
                        tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                        continue;
                    }
                };
                env.observe(Event::DatagramReceived { from: from.to_string(), bytes: len as u32 });
                if let Err(error) = agent.handle_datagram(from, &buf[..len], env.now(), &mut out) {
                    env.observe(Event::DatagramRejected { from: from.to_string(), error: error.to_string() });
                }
            }
        }
    }
}

/// Records every member whose status or incarnation differs from the last published view,
/// so that the trace holds each host's view over time without a copy per change.
fn record_state_changes<N: Net>(
    env: &HostEnv<N>,
    published: &mut BTreeMap<String, (Status, u32)>,
    members: &[NodeState],
) {
    for member in members {
        let state = (member.status, member.incarnation);
        if published.get(&member.name) == Some(&state) {
            continue;
        }
        published.insert(member.name.clone(), state);
        let status = match member.status {
            Status::Alive => MemberStatus::Alive,
            Status::Suspect => MemberStatus::Suspect,
            Status::Dead => MemberStatus::Dead,
        };
        env.observe(Event::MemberState {
            member: member.name.clone(),
            status,
            incarnation: member.incarnation,
        });
    }
}

async fn perform<N: Net>(
    env: &HostEnv<N>,
    socket: &LossyUdp<N::Udp>,
    timers: &mut TimerQueue,
    seeds: &[String],
    action: Action,
) -> Result<(), GossipError> {
    match action {
        Action::Send { to, bytes } => {
            let size = bytes.len() as u32;
            match socket.send_to(&bytes, to).await {
                Ok(Delivery::Sent) => env.observe(Event::DatagramSent { to: to.to_string(), bytes: size }),
                Ok(Delivery::Dropped) => {
                    env.observe(Event::DatagramDropped { to: to.to_string(), bytes: size })
                }
                // A datagram that cannot be sent is lost, as on the wire; the agent goes on.
                Err(error) => tracing::warn!(host = %env.name, %to, %error, "gossip send failed"),
            }
        }
        Action::SetTimer { timer, after } => timers.push(env.now() + after, timer),
        Action::Event(event) => env.observe(Event::Member {
            change: event.change,
            member: event.member.name,
            addr: event.member.addr.to_string(),
            tags: event.member.tags,
        }),
        Action::JoinAttempt { attempt } => env.observe(Event::JoinAttempt { attempt, seeds: seeds.to_vec() }),
        Action::Joined { via } => env.observe(Event::Joined { via: via.to_string() }),
        Action::GaveUp { attempts } => {
            env.observe(Event::JoinGaveUp { attempts });
            return Err(GossipError::JoinFailed { attempts });
        }
    }
    Ok(())
}

/// Timers in due order; equal due times fire in the order they were set.
#[derive(Default)]
struct TimerQueue {
    queue: BTreeMap<(Duration, u64), Timer>,
    order: u64,
}

impl TimerQueue {
    fn push(&mut self, due: Duration, timer: Timer) {
        self.order += 1;
        self.queue.insert((due, self.order), timer);
    }

    fn next_due(&self) -> Option<Duration> {
        self.queue.keys().next().map(|(due, _)| *due)
    }

    fn pop_due(&mut self, now: Duration) -> Vec<Timer> {
        let later = self.queue.split_off(&(now, u64::MAX));
        std::mem::replace(&mut self.queue, later).into_values().collect()
    }
}
