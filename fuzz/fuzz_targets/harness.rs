//! What each fuzz target does with its input: the libFuzzer targets beside this file call
//! these functions, and so does the stable smoke run in CI (tests/fuzz_smoke.rs), over the
//! committed corpus and seeded mutations of it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rollcall::gossip::codec::{self, Message, NodeState, Status};
use rollcall::gossip::config::GossipConfig;
use rollcall::gossip::core::{Action, Agent};
use rollcall::gossip::keyring::{Key, Keyring, Wire};
use rollcall::render::core::{Member, Renderer};

const TEMPLATE: &str = include_str!("../../scenarios/templates/haproxy.cfg.hb");

/// A datagram from a peer: opened and decoded, then handled by an agent that knows a few
/// members; the same bytes again to an agent with a keyring, which must refuse or open them.
pub fn gossip_datagram(bytes: &[u8]) {
    for sealed in [false, true] {
        let (mut agent, _) = agent(sealed);
        let mut out = Vec::new();
        let _ = agent.handle_datagram(peer(), bytes, Duration::from_millis(20), &mut out);
        run_timers(&mut agent, out);
    }
}

/// A push-pull frame, as a request and as the answer to ours, to a plain and a sealed agent.
pub fn gossip_stream(bytes: &[u8]) {
    for (sealed, is_answer) in [(false, false), (false, true), (true, false), (true, true)] {
        let (mut agent, _) = agent(sealed);
        let mut out = Vec::new();
        let _ = agent.handle_stream(peer(), bytes, is_answer, Duration::from_millis(20), &mut out);
        run_timers(&mut agent, out);
    }
}

/// An haproxy.cfg as the balancer loads it.
pub fn haproxy_cfg(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = rollcall::balancer::config::parse("fuzz.cfg", text);
    }
}

/// Bytes a client sends to the balancer's HTTP server (hyper with its head limits and the
/// framing check, as the balancer serves): the handler reads each body and answers 200.
pub fn http_request(bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;
    // A paused clock: waits end as soon as nothing else can run, so an exchange that stalls
    // (a body announced and never sent) costs no wall time.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build();
    let runtime = runtime.expect("a runtime");
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(HTTP_PIPE_BYTES);
        let handler = |_, request: hyper::Request<hyper::body::Incoming>| async move {
            let _ = rollcall::net::http::read_body(request.into_body()).await;
            rollcall::net::http::text_response(200, "ok")
        };
        let serving = rollcall::net::http::serve_connection(server, peer(), None, handler);
        // The client keeps its end open (hyper drops a half-closed connection's answers) and
        // reads until the server has nothing more to say.
        let talking = async {
            let _ = timeout(HTTP_IDLE, client.write_all(bytes)).await;
            let mut answer = [0u8; 4096];
            while let Ok(Ok(read)) = timeout(HTTP_IDLE, client.read(&mut answer)).await {
                if read == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = serving => {}
            () = talking => {}
        }
    });
}

/// The in-memory connection's buffer each way.
const HTTP_PIPE_BYTES: usize = 64 * 1024;
/// How long (on the paused clock) the client waits for the server's next bytes.
const HTTP_IDLE: Duration = Duration::from_secs(1);

/// A scenario file as `rollcall-sim run` reads it (templates resolve against scenarios/).
pub fn scenario(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let _ = rollcall_sim::scenario::parse("fuzz.toml", text, &base);
    }
}

/// A members file (the renderer's data when no agent feeds it) rendered through the lab's
/// template, and the config that makes loaded by the balancer's parser.
pub fn template_data(bytes: &[u8]) {
    let Ok(view) = serde_json::from_slice::<Vec<Member>>(bytes) else { return };
    let renderer = Renderer::new("haproxy.cfg.hb", TEMPLATE).expect("the lab's template compiles");
    if let Ok(Some(output)) = renderer.update(&view)
        && let Ok(text) = std::str::from_utf8(&output.bytes)
    {
        let _ = rollcall::balancer::config::parse("haproxy.cfg", text);
    }
}

/// The fuzzed agent's own address; peers are 10.0.0.2 and up.
const OURS: &str = "10.0.0.1:7946";

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
/// the paths a fuzzed message reaches then include refutation and confirmation. `sealed`:
/// with a keyring (and a label), so fuzzed bytes meet the opening path first.
fn agent(sealed: bool) -> (Agent, Vec<Action>) {
    let ours: SocketAddr = OURS.parse().unwrap();
    let mut config = GossipConfig::lan("s1", ours);
    config.tags = BTreeMap::from([("role".to_string(), "backend".to_string())]).into();
    if sealed {
        let ring = Keyring::new(vec![Key::from_bytes(vec![7; 32]).unwrap()]).unwrap();
        config.wire = Wire::new(Some("fuzz".into()), Some(ring)).unwrap();
    }
    let wire = config.wire.clone();
    let mut agent = Agent::new(config, ChaCha8Rng::seed_from_u64(1));
    let mut out = Vec::new();
    agent.start(Duration::ZERO, &mut out);
    let states = vec![member(2, Status::Alive), member(3, Status::Alive), member(4, Status::Suspect)];
    let push_pull = Message::PushPull { join: false, reply: false, ltime: 3, states, intents: vec![] };
    let frame = codec::encode_stream(&push_pull).unwrap();
    let bytes = wire.seal(frame, Some(ours), &mut ChaCha8Rng::seed_from_u64(2));
    agent.handle_stream(peer(), &bytes, false, Duration::from_millis(10), &mut out).unwrap();
    (agent, out)
}

/// The address fuzzed input comes from.
fn peer() -> SocketAddr {
    "10.0.0.2:7946".parse().unwrap()
}

/// Lets every timer the agent asked for fire once, a second apart: what a message set in
/// motion (suspicions, probes, broadcasts) runs to its end.
fn run_timers(agent: &mut Agent, out: Vec<Action>) {
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
