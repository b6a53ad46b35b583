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
use super::core::{Action, Agent, MemberChange, MemberEvent, Timer};
use super::keyring::{Key, KeyOp, Keyring};
use super::snapshot;
use super::stream::{Incoming, Streams};
use crate::host::{AbortOnDrop, Event, HostEnv, MemberStatus};
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

/// How records name a tags command.
const TAGS_COMMAND: &str = "tags";

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

impl Command {
    /// The command as `serf` is asked it, for records (a key is not shown).
    pub fn describe(&self) -> String {
        match self {
            Command::Leave => "leave".into(),
            Command::ForceLeave { name, prune: false } => format!("force-leave {name}"),
            Command::ForceLeave { name, prune: true } => format!("force-leave -prune {name}"),
            Command::Tags { .. } => TAGS_COMMAND.into(),
            Command::Keys { op, .. } => format!("keys -{}", op.name()),
        }
    }

    /// The record of this command finding no agent running.
    pub fn refused(&self) -> Event {
        Event::CommandRefused { command: self.describe(), error: "serf is not running".into() }
    }

    /// The record of this command waiting for a stopped agent that was killed before it
    /// took it: it changed nothing, as a `serf` command whose agent dies before answering fails.
    pub fn unserved(&self) -> Event {
        Event::CommandRefused {
            command: self.describe(),
            error: "serf ended before it took the command".into(),
        }
    }

    /// The record of this command finding [`COMMANDS_MAX`] commands waiting for a stopped
    /// agent: it is dropped, as a `serf` command that cannot reach its agent fails.
    pub fn queue_full(&self) -> Event {
        Event::CommandRefused {
            command: self.describe(),
            error: format!("serf does not answer: {COMMANDS_MAX} commands already wait for it"),
        }
    }
}

/// Most commands waiting for the agent; more are refused.
pub const COMMANDS_MAX: usize = 64;

/// The way into a running agent: commands in, "left" out. It outlives the agent's runs;
/// what a run leaves unread is kept as unserved for the engine to record.
#[derive(Debug, Default)]
pub struct AgentControl {
    queue: RefCell<VecDeque<Command>>,
    wake: Notify,
    left: Notify,
    /// Agent runs started so far: each run draws its own random stream (its nonces above all).
    runs: Cell<u32>,
    /// Whether a run is under way (stopped by SIGSTOP or not): commands reach only one.
    running: Cell<bool>,
    /// Commands a run ended before taking (a stopped serf killed): the engine records each as
    /// refused. At most [`COMMANDS_MAX`], as the queue they came from.
    unserved: RefCell<Vec<Command>>,
}

impl AgentControl {
    /// Whether an agent runs to take commands (a stopped one takes them when it continues).
    pub fn is_running(&self) -> bool {
        self.running.get()
    }

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

    /// The commands runs ended before taking, since the last call.
    pub fn take_unserved(&self) -> Vec<Command> {
        std::mem::take(&mut self.unserved.borrow_mut())
    }

    /// Resolves once the agent has finished a graceful leave.
    pub async fn left(&self) {
        self.left.notified().await;
    }

    fn take(&self) -> Option<Command> {
        self.queue.borrow_mut().pop_front()
    }
}

/// Marks the agent's control as running while the run lives, however it ends.
struct RunFlag(Rc<AgentControl>);

impl RunFlag {
    fn raise(control: Rc<AgentControl>) -> Self {
        control.running.set(true);
        Self(control)
    }
}

impl Drop for RunFlag {
    fn drop(&mut self) {
        self.0.running.set(false);
        let mut unserved = self.0.unserved.borrow_mut();
        // A leave is the agent's down signal, not a `serf` command: nothing to refuse.
        unserved.extend(self.0.queue.borrow_mut().drain(..).filter(|command| *command != Command::Leave));
        unserved.truncate(COMMANDS_MAX);
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
    config: GossipConfig,
    links: Links,
    files: AgentFiles,
) -> Result<(), GossipError> {
    let mut running = Running::start(env, config, links, files).await?;
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX + 1];
    loop {
        if let Next::Stop = running.perform_actions().await? {
            return Ok(());
        }
        running.publish_view();
        running.record_limits_and_health();
        let wait = running.until_next_timer();
        tokio::select! {
            biased;
            () = tokio::time::sleep(wait) => running.on_timers_due(),
            () = running.control.wake.notified() => running.on_commands(),
            Some(stream) = running.incoming.recv() => running.on_stream(stream),
            received = running.socket.recv_from(&mut buf) => running.on_datagram(received, &buf).await,
        }
    }
}

/// A started agent, its sockets and what it last published.
///
/// The fields drop in declaration order, which is the order the run's parts go when it
/// ends or is aborted: the agent's state, the stream server, the sockets, the channels to
/// the rest of the host, and the host last.
struct Running<N: Net> {
    out: Vec<Action>,
    published_states: BTreeMap<super::codec::Name, (Status, u32)>,
    health: u32,
    synced: bool,
    /// The agent version last published.
    published: Option<u64>,
    timers: TimerQueue,
    agent: Agent,
    members_max: usize,
    _serving: AbortOnDrop,
    _running: RunFlag,
    incoming: mpsc::Receiver<Incoming>,
    streams: Streams<N>,
    socket: LossyUdp<N::Udp>,
    seeds: Vec<String>,
    me: String,
    keyring: Option<PathBuf>,
    snapshot: Option<PathBuf>,
    /// The snapshot's text as last written (or read at start).
    snapshotted: String,
    events: Option<mpsc::Sender<MemberEvent>>,
    control: Rc<AgentControl>,
    view: Rc<watch::Sender<View>>,
    env: HostEnv<N>,
}

impl<N: Net> Running<N> {
    /// Reads the agent's files, binds its sockets and starts it.
    async fn start(
        env: HostEnv<N>,
        mut config: GossipConfig,
        links: Links,
        files: AgentFiles,
    ) -> Result<Self, GossipError> {
        let Links { faults, view, control, events } = links;
        // What an earlier run left unread went to `unserved` when it ended; what waits now
        // came for this run (a leave ordered as it was spawned, by its SIGINT).
        let snapshotted = read_files(&env, &files, &mut config)?;
        let AgentFiles { snapshot, keyring } = files;
        let me = config.name.clone();
        let addr = config.addr;
        let seeds: Vec<String> = config.seeds.iter().map(ToString::to_string).collect();
        let socket = env.net.bind_udp(addr).await.map_err(|source| GossipError::Bind { addr, source })?;
        let socket = LossyUdp::new(socket, faults, env.rng("gossip-loss"));
        let listener = env.net.bind_tcp(addr).await.map_err(|source| GossipError::Bind { addr, source })?;
        let (streams, incoming) = Streams::new(env.net.clone(), config.tcp_timeout, config.members_max);
        let _serving = streams.serve(listener);
        let members_max = config.members_max;
        let mut agent = Agent::new(config, agent_rng(&env, &control));
        let mut out = Vec::new();
        agent.start(env.now(), &mut out);
        let _running = RunFlag::raise(control.clone());
        Ok(Running {
            _running,
            out,
            published_states: BTreeMap::new(),
            health: 0,
            synced: false,
            published: None,
            timers: TimerQueue::default(),
            agent,
            members_max,
            _serving,
            incoming,
            streams,
            socket,
            seeds,
            me,
            keyring,
            snapshot,
            snapshotted,
            events,
            control,
            view,
            env,
        })
    }

    /// Carries out the agent's pending actions; `Stop` once it has left gracefully, when
    /// whoever waits for the leave is told.
    async fn perform_actions(&mut self) -> Result<Next, GossipError> {
        for action in self.out.drain(..) {
            forget_if_erased(&mut self.published_states, &action);
            let events = self.events.as_ref();
            let performed = perform(
                &self.env,
                &self.socket,
                &self.streams,
                &mut self.timers,
                &self.seeds,
                events,
                action,
            );
            if let Next::Stop = performed.await? {
                self.control.left.notify_one();
                return Ok(Next::Stop);
            }
        }
        Ok(Next::Continue)
    }

    /// Publishes the member table if it changed since last time: the changed members' state
    /// records, the snapshot, the first sync, and the view the host's other services read.
    fn publish_view(&mut self) {
        if self.published == Some(self.agent.version()) {
            return;
        }
        self.published = Some(self.agent.version());
        let changed = self.agent.take_changed();
        let agent = &self.agent;
        let changed = changed.iter().map(|name| (name, agent.member(name)));
        record_state_changes(&self.env, &mut self.published_states, changed);
        let members: Vec<NodeState> = self.agent.members().cloned().collect();
        if let Some(path) = &self.snapshot {
            save_snapshot(&self.env, path, &members, &self.me, &mut self.snapshotted);
        }
        if self.agent.is_synced() && !self.synced {
            self.synced = true;
            self.env.observe(Event::GossipSynced);
        }
        self.view.send_replace(View { members, synced: self.synced });
    }

    /// Records the stream limits reached since last time, and the health score if it changed.
    fn record_limits_and_health(&mut self) {
        for (limit, count) in self.streams.limits_due() {
            self.env.observe(limit_event(limit, limit.max(self.members_max), count));
        }
        if self.agent.health_score() != self.health {
            self.health = self.agent.health_score();
            self.env.observe(Event::HealthScore { score: self.health });
        }
    }

    /// How long until the next timer is due (an hour when none is set).
    fn until_next_timer(&self) -> Duration {
        let due = self.timers.next_due().unwrap_or(self.env.now() + Duration::from_secs(3600));
        due.saturating_sub(self.env.now())
    }

    fn on_timers_due(&mut self) {
        for timer in self.timers.pop_due(self.env.now()) {
            self.env.observe(Event::Timer { name: timer.name() });
            self.agent.handle_timer(timer, self.env.now(), &mut self.out);
        }
    }

    fn on_commands(&mut self) {
        while let Some(command) = self.control.take() {
            obey(&self.env, &mut self.agent, command, self.keyring.as_deref(), &mut self.out);
        }
    }

    fn on_stream(&mut self, stream: Incoming) {
        receive_stream(&self.env, &mut self.agent, stream, &mut self.out);
    }

    /// Hands a received datagram to the agent. A receive error (an ICMP unreachable
    /// reported on the socket, say) is not the agent's end: restarting would lose its table
    /// and incarnation. It pauses the loop briefly instead.
    async fn on_datagram(&mut self, received: std::io::Result<(usize, std::net::SocketAddr)>, buf: &[u8]) {
        let (len, from) = match received {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(host = %self.env.name, %error, "gossip receive failed");
                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                return;
            }
        };
        self.env.observe(Event::DatagramReceived { from: from.to_string(), bytes: len as u32 });
        if let Err(error) = self.agent.handle_datagram(from, &buf[..len], self.env.now(), &mut self.out) {
            self.env.observe(Event::DatagramRejected { from: from.to_string(), error: error.to_string() });
        }
    }
}

/// Records every changed member whose status or incarnation differs from the last published
/// view, so that the trace holds each host's view over time without a copy per change.
fn record_state_changes<'a, N: Net>(
    env: &HostEnv<N>,
    published: &mut BTreeMap<super::codec::Name, (Status, u32)>,
    changed: impl Iterator<Item = (&'a super::codec::Name, Option<&'a NodeState>)>,
) {
    for event in state_changes(published, changed) {
        env.observe(event);
    }
}

/// The `member-state` records for the changed members (each name with its entry, none if
/// the table erased it) whose status or incarnation differs from `published`, which is
/// brought up to date. An erased member is forgotten (its `member-reap` event is the
/// record), so that one met again is recorded afresh. Every engine records views this way.
pub fn state_changes<'a>(
    published: &mut BTreeMap<super::codec::Name, (Status, u32)>,
    changed: impl Iterator<Item = (&'a super::codec::Name, Option<&'a NodeState>)>,
) -> Vec<Event> {
    let mut events = Vec::new();
    for (name, member) in changed {
        let Some(member) = member else {
            published.remove(name);
            continue;
        };
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

/// Forgets what was published of a member the action says the table erased: its
/// `member-reap` record empties its entry in the recorded view, so an entry made again, even
/// within the same step and with the same status and incarnation, is recorded afresh.
pub fn forget_if_erased(published: &mut BTreeMap<super::codec::Name, (Status, u32)>, action: &Action) {
    if let Action::Event(MemberEvent { change: MemberChange::Reap, member }) = action {
        published.remove(&member.name);
    }
}

/// The trace event of a limit the agent reached (every engine records it so).
pub fn limit_event(limit: super::limits::Limit, max: usize, count: u64) -> Event {
    Event::LimitReached { limit: limit.name().to_string(), max: max as u64, count }
}

/// Rewrites the snapshot when the alive members changed; a failed write is logged (the next
/// change tries again) and never stops the agent.
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
            if let Err(refused) = change_tags(agent, set, &delete, env.now(), out) {
                tracing::warn!(host = %env.name, "tags not changed");
                env.observe(refused);
            }
        }
        Command::Keys { op, key } => change_keyring(env, agent, op, &key, keyring_file),
    }
}

/// `serf tags -set K=V -delete K` on `agent`. Tags over the limit are refused, as
/// `serf tags` fails on them and leaves the tags as they were: the error is the record of
/// the refusal.
pub fn change_tags(
    agent: &mut Agent,
    set: BTreeMap<String, String>,
    delete: &[String],
    now: Duration,
    out: &mut Vec<Action>,
) -> Result<(), Event> {
    // A leaving agent takes no new tags: refused, where it had vanished without a record.
    if agent.is_leaving() {
        return Err(Event::CommandRefused { command: TAGS_COMMAND.into(), error: "serf is leaving".into() });
    }
    let mut tags = agent.tags().clone();
    tags.retain(|key, _| !delete.contains(key));
    tags.extend(set);
    agent
        .set_tags(tags, now, out)
        .map_err(|error| Event::CommandRefused { command: TAGS_COMMAND.into(), error: error.to_string() })
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
    config.wire.keyring = Some(Keyring::from_file_text(&bytes).map_err(failed)?);
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
        if let Err(error) = env.disk().write_secret(path, &text) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str, status: Status, incarnation: u32) -> NodeState {
        NodeState {
            name: name.into(),
            addr: "10.0.0.2:7946".parse().unwrap(),
            incarnation,
            status,
            tags: Default::default(),
        }
    }

    /// A member erased and made again with the same status and incarnation within one step
    /// is recorded again: its erasure emptied its entry in the recorded view.
    #[test]
    fn a_member_erased_and_met_again_is_recorded_afresh() {
        let mut published = BTreeMap::new();
        let x = state("x", Status::Alive, 3);
        let name: super::super::codec::Name = "x".into();
        assert_eq!(state_changes(&mut published, [(&name, Some(&x))].into_iter()).len(), 1);
        assert!(state_changes(&mut published, [(&name, Some(&x))].into_iter()).is_empty(), "no change");
        let reap = Action::Event(MemberEvent { change: MemberChange::Reap, member: x.clone() });
        forget_if_erased(&mut published, &reap);
        assert_eq!(state_changes(&mut published, [(&name, Some(&x))].into_iter()).len(), 1);
        // An entry gone when the step publishes is forgotten too.
        assert!(state_changes(&mut published, [(&name, None)].into_iter()).is_empty());
        assert!(published.is_empty());
    }
}
