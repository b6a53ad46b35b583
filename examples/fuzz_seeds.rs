//! Writes the gossip fuzz targets' seed corpus: one file per message kind, encoded as the
//! agent encodes it, so libFuzzer starts from well-formed datagrams and stream frames
//! (`cargo run --example fuzz_seeds`; the files are committed under fuzz/corpus/).

use std::collections::BTreeMap;
use std::path::Path;

use rollcall::gossip::codec::{self, Message, NodeState, Status, StatusTime};

fn state(name: &str, status: Status) -> NodeState {
    NodeState {
        name: name.into(),
        addr: "10.0.0.3:7946".parse().expect("an address"),
        incarnation: 2,
        status,
        tags: BTreeMap::from([("role".to_string(), "backend".to_string())]).into(),
    }
}

fn datagrams() -> Vec<(&'static str, Vec<Message>)> {
    let (s2, s3) = ("s2".to_string(), "s3".to_string());
    vec![
        ("ping", vec![Message::Ping { seq: 1, target: "s1".into() }]),
        ("ack", vec![Message::Ack { seq: 1 }]),
        ("alive", vec![Message::Alive(state("s3", Status::Alive))]),
        ("alive-us", vec![Message::Alive(NodeState { name: "s1".into(), ..state("s1", Status::Alive) })]),
        ("suspect", vec![Message::Suspect { name: s3.clone(), incarnation: 1, from: s2.clone() }]),
        ("suspect-us", vec![Message::Suspect { name: "s1".into(), incarnation: 0, from: s2.clone() }]),
        ("dead", vec![Message::Dead { name: s3.clone(), incarnation: 1, from: s2.clone() }]),
        ("left", vec![Message::Dead { name: s3.clone(), incarnation: 1, from: s3.clone() }]),
        ("join-intent", vec![Message::JoinIntent { name: s3.clone(), ltime: 9 }]),
        ("leave-intent", vec![Message::LeaveIntent { name: s3.clone(), ltime: 9, prune: true }]),
        (
            "ping-req",
            vec![Message::PingReq {
                seq: 4,
                target: s3,
                addr: "10.0.0.3:7946".parse().expect("an address"),
                nack: true,
            }],
        ),
        ("nack", vec![Message::Nack { seq: 4 }]),
        ("compound", vec![Message::Ack { seq: 2 }, Message::Alive(state("s5", Status::Alive))]),
    ]
}

fn streams() -> Vec<(&'static str, Message)> {
    let states = vec![state("s2", Status::Alive), state("s3", Status::Dead), state("s6", Status::Left)];
    let intents =
        vec![StatusTime { name: "s2".into(), ltime: 4 }, StatusTime { name: "s6".into(), ltime: 5 }];
    vec![
        ("push-pull", Message::PushPull { join: true, reply: false, ltime: 7, states, intents }),
        ("tcp-ping", Message::Ping { seq: 3, target: "s1".into() }),
        ("tcp-ack", Message::Ack { seq: 3 }),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    std::fs::create_dir_all(corpus.join("gossip_datagram"))?;
    std::fs::create_dir_all(corpus.join("gossip_stream"))?;
    for (name, messages) in datagrams() {
        std::fs::write(corpus.join("gossip_datagram").join(name), codec::encode(&messages)?)?;
    }
    for (name, message) in streams() {
        std::fs::write(corpus.join("gossip_stream").join(name), codec::encode_stream(&message)?)?;
    }
    Ok(())
}
