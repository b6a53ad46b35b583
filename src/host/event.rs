//! Observable events: what the trace records and what invariants read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

// The gossip core's vocabulary, recorded as is: the core imports nothing from `host`.
pub use crate::gossip::core::MemberChange;

/// A member's liveness in one host's gossip view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberStatus {
    /// Answering probes.
    Alive,
    /// Missed a probe; dead unless it refutes in time.
    Suspect,
    /// Declared dead.
    Dead,
    /// Left on purpose.
    Left,
}

/// One observable event of one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Event {
    /// The host booted (boot number, from 1).
    HostBooted { boot: u32 },
    /// A gossip datagram left the host.
    DatagramSent { to: String, bytes: u32 },
    /// A gossip datagram arrived.
    DatagramReceived { from: String, bytes: u32 },
    /// The host's own loss model dropped an outgoing datagram.
    DatagramDropped { to: String, bytes: u32 },
    /// A datagram could not be decoded; the peer is named.
    DatagramRejected { from: String, error: String },
    /// A push-pull went out over a stream (its answer, if any, arrives as `stream-received`).
    StreamSent { to: String, bytes: u32 },
    /// A push-pull (or the answer to ours) arrived over a stream.
    StreamReceived { from: String, bytes: u32 },
    /// A stream frame could not be decoded; the peer is named.
    StreamRejected { from: String, error: String },
    /// An attacker at `from` sent a forgery, a replay or a push-pull of a flood (`stream`)
    /// to `to`.
    AttackSent { what: String, from: String, to: String, bytes: u32, stream: bool },
    /// A `serf keys` change was applied: the keyring now holds `keys` keys.
    KeyringChanged { op: String, keys: u32 },
    /// A `serf keys` change was refused (removing the primary key, an unknown key, ...).
    KeyringRefused { op: String, error: String },
    /// A command (`serf tags`, `serf keys`, `serf force-leave`) found no agent running on
    /// the host: down, crashed, or not yet started. It changed nothing, as the `serf` command
    /// fails when it cannot reach its agent.
    CommandRefused { command: String, error: String },
    /// A protocol timer fired.
    Timer { name: String },
    /// The agent tried to join through its seeds.
    JoinAttempt { attempt: u32, seeds: Vec<String> },
    /// A join succeeded: a seed answered.
    Joined { via: String },
    /// The agent's table now holds what the cluster knows (a push-pull merged, nobody to
    /// ask, the join given up, or one TCP timeout passed); a renderer that waits for
    /// its data renders from here on.
    GossipSynced,
    /// The agent gave up joining.
    JoinGaveUp { attempts: u32 },
    /// The agent began a graceful leave.
    Leaving,
    /// The agent finished a graceful leave and stops.
    Left,
    /// A member event on this host's agent.
    Member { change: MemberChange, member: String, addr: String, tags: BTreeMap<String, String> },
    /// This host's gossip view of `member` changed: a new entry, a new status or a new
    /// incarnation. A restarted agent starts from an empty view.
    MemberState { member: String, status: MemberStatus, incarnation: u32 },
    /// A limit has now refused something `count` times (a full queue dropped a message, a
    /// full table refused a member...): recorded at counts 1, 2, 4, 8, ..., so the count is
    /// exact at each record and a storm stays a few records.
    LimitReached { limit: String, max: u64, count: u64 },
    /// The gossip agent's local health score changed (Lifeguard: 0 is healthy; its probe
    /// interval and timeout are `score + 1` times the configured ones).
    HealthScore { score: u32 },
    /// The supervisor started a service.
    ServiceStarted { service: String },
    /// A service ended; `status` is its exit status text.
    ServiceExited { service: String, status: String },
    /// A running service was stopped (SIGSTOP, `s6-svc -p`) or continued (SIGCONT, `-c`).
    ServiceStopped { service: String, stopped: bool },
    /// A service said it is ready (s6's readiness notification).
    ServiceReady { service: String },
    /// A service's finish script ended with `code` (`None`: killed at its timeout).
    ServiceFinished { service: String, code: Option<i32> },
    /// The supervisor will not restart a service (wanted down, once, or finish exit 125).
    ServiceDown { service: String },
    /// The node began its shutdown (s6-overlay's stage 3): it will halt with `code`.
    NodeShutdown { code: i32 },
    /// The node halted with `code` (its main program's, or 128 + the signal).
    HostHalted { code: i32 },
    /// The renderer wrote a new file listing these backends.
    Rendered { path: String, backends: Vec<String>, bytes: u32 },
    /// The renderer began to write a changed rendering to `path`.
    RenderStarted { path: String },
    /// The renderer failed; the file on disk was left as it was.
    RenderFailed { error: String },
    /// A rendering failed validation: the old file and the running balancer stay.
    RenderRejected { error: String },
    /// The balancer loaded a configuration with these servers.
    Reloaded { bind: String, servers: Vec<String> },
    /// The balancer processes accepting connections on `bind` now (more than one only while
    /// legacy reloads hand over, or when a hand-over was lost).
    Accepting { bind: String, pids: Vec<u32> },
    /// The balancer rejected a configuration and kept the one it had.
    ReloadFailed { error: String },
    /// The balancer's health checks took `server` out of rotation (`up` false) or put it
    /// back, as HAProxy logs `Server nodes/s1 is DOWN, reason: ...`.
    ServerState { server: String, up: bool, reason: String },
    /// The balancer picked `server` for a request and starts forwarding it; `request` is
    /// its `x-request-id` header, if any. Recorded before the exchange, so a request whose
    /// client gives up first is still linked to its server.
    Forwarding { request: Option<String>, server: String, addr: String },
    /// The balancer answered a request; `request` is its `x-request-id` header, if any.
    Proxied { request: Option<String>, server: Option<String>, status: u16 },
    /// A client request ended (workload hosts only).
    Request {
        id: u64,
        /// The `x-request-id` header it carried.
        request_id: String,
        sent_at_us: u64,
        status: Option<u16>,
        served_by: Option<String>,
        error: Option<String>,
    },
}

impl Event {
    /// Short kind name, as in the serialized form.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::HostBooted { .. } => "host-booted",
            Event::DatagramSent { .. } => "datagram-sent",
            Event::DatagramReceived { .. } => "datagram-received",
            Event::DatagramDropped { .. } => "datagram-dropped",
            Event::DatagramRejected { .. } => "datagram-rejected",
            Event::StreamSent { .. } => "stream-sent",
            Event::StreamReceived { .. } => "stream-received",
            Event::StreamRejected { .. } => "stream-rejected",
            Event::AttackSent { .. } => "attack-sent",
            Event::KeyringChanged { .. } => "keyring-changed",
            Event::KeyringRefused { .. } => "keyring-refused",
            Event::CommandRefused { .. } => "command-refused",
            Event::Timer { .. } => "timer",
            Event::JoinAttempt { .. } => "join-attempt",
            Event::Joined { .. } => "joined",
            Event::GossipSynced => "gossip-synced",
            Event::JoinGaveUp { .. } => "join-gave-up",
            Event::Leaving => "leaving",
            Event::Left => "left",
            Event::Member { .. } => "member",
            Event::MemberState { .. } => "member-state",
            Event::HealthScore { .. } => "health-score",
            Event::LimitReached { .. } => "limit-reached",
            Event::ServiceStarted { .. } => "service-started",
            Event::ServiceExited { .. } => "service-exited",
            Event::ServiceStopped { .. } => "service-stopped",
            Event::ServiceReady { .. } => "service-ready",
            Event::ServiceFinished { .. } => "service-finished",
            Event::ServiceDown { .. } => "service-down",
            Event::NodeShutdown { .. } => "node-shutdown",
            Event::HostHalted { .. } => "host-halted",
            Event::Rendered { .. } => "rendered",
            Event::RenderStarted { .. } => "render-started",
            Event::RenderFailed { .. } => "render-failed",
            Event::RenderRejected { .. } => "render-rejected",
            Event::Reloaded { .. } => "reloaded",
            Event::ReloadFailed { .. } => "reload-failed",
            Event::Accepting { .. } => "accepting",
            Event::Forwarding { .. } => "forwarding",
            Event::ServerState { .. } => "server-state",
            Event::Proxied { .. } => "proxied",
            Event::Request { .. } => "request",
        }
    }
}
