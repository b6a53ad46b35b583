//! Runs an [`Agent`] on a host: one UDP socket, a TCP listener for push-pulls on the same
//! port ([`super::stream`]), a timer queue, and the seeded loss model (datagrams only: TCP
//! retransmits). Everything protocol-related happens in the core; this loop only moves bytes
//! and time.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use super::codec::{DATAGRAM_BYTES_MAX, NodeState, Status};
use super::config::GossipConfig;
use super::core::{Action, Agent, MemberEvent, Timer};
use super::keyring::{Key, KeyOp, Keyring};
use super::snapshot;
use super::stream::{Incoming, Streams};
use crate::host::{Event, HostEnv, MemberStatus};
use crate::net::Net;
use crate::net::lossy::{Delivery, LinkFaults, LossyUdp};

/// Pause after a failed receive, so a socket that keeps failing does not spin.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The member table, published to the host's other services (the renderer) on every change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct View {
    /// Every member, ordered by name.
    pub members: Vec<NodeState>,
    /// Whether the agent has heard what the cluster knows ([`crate::gossip::core::Agent::is_synced`]).
    pub synced: bool,
}

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
    /// The keyring file is not a JSON list of base64 keys (Serf refuses to start too).
    #[error("keyring file {path}: {error}")]
    KeyringFile { path: PathBuf, error: String },
}

/// What the agent shares with the rest of its host.
pub struct Links {
    /// The loss model's faults, set by the simulator.
    pub faults: Rc<Cell<LinkFaults>>,
    /// Where the member table is published.
    pub view: Rc<watch::Sender<View>>,
    /// Commands from outside the agent.
    pub control: Rc<AgentControl>,
    /// Where member events go besides the trace (the event handlers), if anywhere.
    pub events: Option<mpsc::Sender<MemberEvent>>,
}

/// A command to a running agent (what Serf takes over RPC or as a signal).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Leave gracefully and stop (`serf leave`, SIGINT).
    Leave,
    /// Force a failed member out (`serf force-leave [-prune] NAME`).
    ForceLeave { name: String, prune: bool },
    /// Change this node's tags (`serf tags -set K=V -delete K`).
    Tags { set: BTreeMap<String, String>, delete: Vec<String> },
    /// Change this node's keyring (`serf keys -install|-use|-remove KEY`, base64).
    Keys { op: KeyOp, key: String },
}

/// Most commands waiting for the agent; more are refused.
pub const COMMANDS_MAX: usize = 64;

/// The way into a running agent: commands in, "left" out. It outlives the agent's runs; a
/// new run drops what an earlier one left unread.
#[derive(Debug, Default)]
pub struct AgentControl {
    queue: RefCell<VecDeque<Command>>,
    wake: Notify,
    left: Notify,
    /// Agent runs started so far: each run draws its own random stream (its nonces above all).
    runs: Cell<u32>,
}

impl AgentControl {
    /// Queues `command`; `false` when [`COMMANDS_MAX`] are already waiting.
    pub fn send(&self, command: Command) -> bool {
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= COMMANDS_MAX {
            return false;
        }
        queue.push_back(command);
        self.wake.notify_one();
        true
    }

    /// Resolves once the agent has finished a graceful leave.
    pub async fn left(&self) {
        self.left.notified().await;
    }

    fn take(&self) -> Option<Command> {
        self.queue.borrow_mut().pop_front()
    }
}

/// Whether the loop goes on after an action.
enum Next {
    Continue,
    Stop,
}

/// Runs the agent until it gives up joining, its socket fails, or it has left gracefully
/// (then it returns `Ok`).
pub async fn run<N: Net>(
    env: HostEnv<N>,
    mut config: GossipConfig,
    links: Links,
    files: AgentFiles,
) -> Result<(), GossipError> {
    let Links { faults, view, control, events } = links;
    control.queue.borrow_mut().clear();
    let mut snapshotted = read_files(&env, &files, &mut config)?;
    let AgentFiles { snapshot, keyring } = files;
    let me = config.name.clone();
    let addr = config.addr;
    let seeds: Vec<String> = config.seeds.iter().map(ToString::to_string).collect();
    let socket = env.net.bind_udp(addr).await.map_err(|source| GossipError::Bind { addr, source })?;
    let socket = LossyUdp::new(socket, faults, env.rng("gossip-loss"));
    let listener = env.net.bind_tcp(addr).await.map_err(|source| GossipError::Bind { addr, source })?;
    let (streams, mut incoming) = Streams::new(env.net.clone(), config.tcp_timeout, config.members_max);
    let _serving = streams.serve(listener);
    let members_max = config.members_max;
    let mut agent = Agent::new(config, agent_rng(&env, &control));
    let mut timers = TimerQueue::default();
    let mut published = None;
    let mut synced = false;
    let mut health = 0;
    let mut published_states = BTreeMap::new();
    let mut out = Vec::new();
    agent.start(env.now(), &mut out);
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    loop {
        for action in out.drain(..) {
            if let Next::Stop =
                perform(&env, &socket, &streams, &mut timers, &seeds, events.as_ref(), action).await?
            {
                control.left.notify_one();
                return Ok(());
            }
        }
        if published != Some(agent.version()) {
            published = Some(agent.version());
            let changed = agent.take_changed();
            let changed = changed.iter().filter_map(|name| agent.member(name));
            record_state_changes(&env, &mut published_states, changed);
            let members: Vec<NodeState> = agent.members().cloned().collect();
            if let Some(path) = &snapshot {
                save_snapshot(&env, path, &members, &me, &mut snapshotted);
            }
            if agent.is_synced() && !synced {
                synced = true;
                env.observe(Event::GossipSynced);
            }
            view.send_replace(View { members, synced });
        }
        for (limit, count) in streams.limits_due() {
            env.observe(limit_event(limit, limit.max(members_max), count));
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
            () = control.wake.notified() => {
                while let Some(command) = control.take() {
                    obey(&env, &mut agent, command, keyring.as_deref(), &mut out);
                }
            }
            Some(stream) = incoming.recv() => receive_stream(&env, &mut agent, stream, &mut out),
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

/// Records every changed member whose status or incarnation differs from the last published
/// view, so that the trace holds each host's view over time without a copy per change.
fn record_state_changes<'a, N: Net>(
    env: &HostEnv<N>,
    published: &mut BTreeMap<super::codec::Name, (Status, u32)>,
    changed: impl Iterator<Item = &'a NodeState>,
) {
    for event in state_changes(published, changed) {
        env.observe(event);
    }
}

/// The `member-state` records for the changed members whose status or incarnation differs
/// from `published`, which is brought up to date. Every engine records views this way.
pub fn state_changes<'a>(
    published: &mut BTreeMap<super::codec::Name, (Status, u32)>,
    changed: impl Iterator<Item = &'a NodeState>,
) -> Vec<Event> {
    let mut events = Vec::new();
    for member in changed {
        let state = (member.status, member.incarnation);
        if published.get(&member.name) == Some(&state) {
            continue;
        }
        published.insert(member.name.clone(), state);
        let status = match member.status {
            Status::Alive => MemberStatus::Alive,
            Status::Suspect => MemberStatus::Suspect,
            Status::Dead => MemberStatus::Dead,
            Status::Left => MemberStatus::Left,
        };
        events.push(Event::MemberState {
            member: member.name.to_string(),
            status,
            incarnation: member.incarnation,
        });
    }
    events
}

/// Rewrites the snapshot when the alive members changed; a failed write is logged (the next
/// change tries again) and never stops the agent.
/// The trace event of a limit the agent reached (every engine records it so).
pub fn limit_event(limit: super::limits::Limit, max: usize, count: u64) -> Event {
    Event::LimitReached { limit: limit.name().to_string(), max: max as u64, count }
}

fn save_snapshot<N: Net>(env: &HostEnv<N>, path: &Path, members: &[NodeState], me: &str, last: &mut String) {
    let text = snapshot::render(members, me);
    // A table with no one else (a start, before any rejoin answer) must not wipe the members
    // a previous life knew: the file keeps the last non-empty list, as Serf's log would.
    if text == *last || text.is_empty() {
        return;
    }
    match env.disk().write_atomic(path, text.as_bytes()) {
        Ok(()) => *last = text,
        Err(error) => {
            tracing::warn!(host = %env.name, path = %path.display(), %error, "snapshot not written")
        }
    }
}

fn obey<N: Net>(
    env: &HostEnv<N>,
    agent: &mut Agent,
    command: Command,
    keyring_file: Option<&Path>,
    out: &mut Vec<Action>,
) {
    match command {
        Command::Leave if !agent.is_leaving() => {
            env.observe(Event::Leaving);
            agent.leave(env.now(), out);
        }
        Command::Leave => {}
        Command::ForceLeave { name, prune } => agent.force_leave(&name, prune, env.now(), out),
        Command::Tags { set, delete } => {
            let mut tags = agent.tags().clone();
            tags.retain(|key, _| !delete.contains(key));
            tags.extend(set);
            if let Err(error) = agent.set_tags(tags, env.now(), out) {
                tracing::warn!(host = %env.name, %error, "tags not changed");
            }
        }
        Command::Keys { op, key } => change_keyring(env, agent, op, &key, keyring_file),
    }
}

/// The random stream of the agent's next run on this host: a restarted agent (s6 restarts
/// serf within one boot) must not draw its first run's nonces again under the same key.
fn agent_rng<N: Net>(env: &HostEnv<N>, control: &AgentControl) -> rand_chacha::ChaCha8Rng {
    let run = control.runs.get();
    control.runs.set(run.saturating_add(1));
    match run {
        0 => env.rng("gossip-agent"),
        run => env.rng(&format!("gossip-agent-run-{run}")),
    }
}

/// The files an agent keeps on its host's disk.
#[derive(Clone, Debug, Default)]
pub struct AgentFiles {
    /// Serf's `-snapshot`: the members it knows, to rejoin them after a restart.
    pub snapshot: Option<PathBuf>,
    /// Serf's `-keyring-file`: the keys, primary first, as a JSON list of base64 strings.
    /// Read at start (over the configured keys) and rewritten on every change, so a
    /// restarted agent keeps a rotation.
    pub keyring: Option<PathBuf>,
}

/// Reads the agent's files before it starts: the keyring over the configured keys, then the
/// snapshot's members to rejoin. Returns the snapshot's text, which later writes compare with.
fn read_files<N: Net>(
    env: &HostEnv<N>,
    files: &AgentFiles,
    config: &mut GossipConfig,
) -> Result<String, GossipError> {
    if let Some(path) = &files.keyring {
        load_keyring(env, path, config)?;
    }
    let Some(path) = &files.snapshot else { return Ok(String::new()) };
    // No snapshot yet (a first boot) is normal; the seeds still apply.
    let Ok(bytes) = env.disk().read(path) else { return Ok(String::new()) };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    config.rejoin = snapshot::parse(path, &text);
    Ok(text)
}

fn load_keyring<N: Net>(env: &HostEnv<N>, path: &Path, config: &mut GossipConfig) -> Result<(), GossipError> {
    let failed = |error: String| GossipError::KeyringFile { path: path.to_path_buf(), error };
    // No file yet (a first boot) keeps the configured keys; the first change writes it. A file
    // that cannot be read is an error: starting with fewer keys, or none, would downgrade.
    let bytes = match env.disk().read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(failed(error.to_string())),
    };
    let keys: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))?;
    config.wire.keyring = Some(Keyring::parse(&keys).map_err(|e| failed(e.to_string()))?);
    Ok(())
}

/// Applies a `serf keys` change, records it, and keeps the keyring file in step.
fn change_keyring<N: Net>(env: &HostEnv<N>, agent: &mut Agent, op: KeyOp, key: &str, file: Option<&Path>) {
    let event = keyring_change(agent, op, key);
    let refused = matches!(event, Event::KeyringRefused { .. });
    if let Event::KeyringRefused { error, .. } = &event {
        tracing::warn!(host = %env.name, op = op.name(), %error, "keyring not changed");
    }
    env.observe(event);
    let Some(ring) = agent.keyring().filter(|_| !refused) else { return };
    if let Some(path) = file {
        let text = serde_json::to_vec(&ring.encoded()).expect("a list of strings serializes");
        if let Err(error) = env.disk().write_atomic(path, &text) {
            tracing::warn!(host = %env.name, path = %path.display(), %error, "keyring file not written");
        }
    }
}

/// Applies `serf keys -OP KEY` to `agent`: the trace event of the change, or of its refusal
/// (every engine records it so).
pub fn keyring_change(agent: &mut Agent, op: KeyOp, key: &str) -> Event {
    match Key::parse(key).and_then(|key| agent.change_keyring(op, key)) {
        Ok(()) => {
            let keys = agent.keyring().map_or(0, |ring| ring.encoded().len() as u32);
            Event::KeyringChanged { op: op.name().to_string(), keys }
        }
        Err(error) => Event::KeyringRefused { op: op.name().to_string(), error: error.to_string() },
    }
}

/// Hands a push-pull (or the answer to ours) to the agent, and its answer to the stream.
fn receive_stream<N: Net>(env: &HostEnv<N>, agent: &mut Agent, stream: Incoming, out: &mut Vec<Action>) {
    let from = stream.from;
    env.observe(Event::StreamReceived { from: from.to_string(), bytes: stream.bytes.len() as u32 });
    match agent.handle_stream(from, &stream.bytes, stream.answer.is_none(), env.now(), out) {
        Ok(answer) => {
            if let (Some(answer), Some(reply)) = (answer, stream.answer) {
                let _ = reply.send(answer);
            }
        }
        Err(error) => env.observe(Event::StreamRejected { from: from.to_string(), error: error.to_string() }),
    }
}

async fn perform<N: Net>(
    env: &HostEnv<N>,
    socket: &LossyUdp<N::Udp>,
    streams: &Streams<N>,
    timers: &mut TimerQueue,
    seeds: &[String],
    events: Option<&mpsc::Sender<MemberEvent>>,
    action: Action,
) -> Result<Next, GossipError> {
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
        Action::Stream { to, bytes } => {
            env.observe(Event::StreamSent { to: to.to_string(), bytes: bytes.len() as u32 });
            streams.push_pull(to, bytes);
        }
        Action::SetTimer { timer, after } => timers.push(env.now() + after, timer),
        Action::Event(event) => {
            if let Some(handlers) = events {
                if handlers.try_send(event.clone()).is_err() {
                    tracing::warn!(host = %env.name, member = %event.member.name, "event handlers behind: event dropped");
                }
            }
            env.observe(Event::Member {
                change: event.change,
                member: event.member.name.to_string(),
                addr: event.member.addr.to_string(),
                tags: (*event.member.tags).clone(),
            })
        }
        Action::JoinAttempt { attempt } => env.observe(Event::JoinAttempt { attempt, seeds: seeds.to_vec() }),
        Action::LimitReached { limit, max, count } => env.observe(limit_event(limit, max, count)),
        Action::Joined { via } => env.observe(Event::Joined { via: via.to_string() }),
        Action::GaveUp { attempts } => {
            env.observe(Event::JoinGaveUp { attempts });
            return Err(GossipError::JoinFailed { attempts });
        }
        Action::Left => {
            env.observe(Event::Left);
            return Ok(Next::Stop);
        }
    }
    Ok(Next::Continue)
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
