//! An agent with a few members, to feed what a fuzzer makes up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rollcall::gossip::codec::{self, Message, NodeState, Status};
use rollcall::gossip::config::GossipConfig;
use rollcall::gossip::core::{Action, Agent};

/// The fuzzed agent's own address; peers are 10.0.0.2 and up.
pub const OURS: &str = "10.0.0.1:7946";

fn member(n: u8, status: Status) -> NodeState {
    NodeState {
        name: format!("s{n}").into(),
        addr: format!("10.0.0.{n}:7946").parse().unwrap(),
        incarnation: 1,
        status,
        tags: BTreeMap::from([("role".to_string(), "backend".to_string())]).into(),
    }
}

/// Agent `s1`, started, that has merged a push-pull listing alive and suspect members:
/// the paths a fuzzed message reaches then include refutation and confirmation.
pub fn agent() -> (Agent, Vec<Action>) {
    let ours: SocketAddr = OURS.parse().unwrap();
    let mut config = GossipConfig::lan("s1", ours);
    config.tags = BTreeMap::from([("role".to_string(), "backend".to_string())]).into();
    let mut agent = Agent::new(config, ChaCha8Rng::seed_from_u64(1));
    let mut out = Vec::new();
    agent.start(Duration::ZERO, &mut out);
    let states = vec![member(2, Status::Alive), member(3, Status::Alive), member(4, Status::Suspect)];
    let push_pull = Message::PushPull { join: false, reply: false, ltime: 3, states, intents: vec![] };
    let bytes = codec::encode_stream(&push_pull).unwrap();
    agent.handle_stream(peer(), &bytes, false, Duration::from_millis(10), &mut out).unwrap();
    (agent, out)
}

/// The address fuzzed input comes from.
pub fn peer() -> SocketAddr {
    "10.0.0.2:7946".parse().unwrap()
}

/// Lets every timer the agent asked for fire once, a second apart: what a message set in
/// motion (suspicions, probes, broadcasts) runs to its end.
pub fn run_timers(agent: &mut Agent, out: Vec<Action>) {
    let mut now = Duration::from_secs(1);
    let timers: Vec<_> = out
        .into_iter()
        .filter_map(|action| match action {
            Action::SetTimer { timer, .. } => Some(timer),
            _ => None,
        })
        .collect();
    for timer in timers {
        let mut next = Vec::new();
        agent.handle_timer(timer, now, &mut next);
        now += Duration::from_secs(1);
    }
}
