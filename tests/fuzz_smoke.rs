//! Every fuzz target's body (fuzz/fuzz_targets/harness.rs) on stable, for a bounded count:
//! each committed corpus input, then seeded mutations of them (bytes flipped, cut, inserted,
//! two inputs spliced). Seconds in CI; libFuzzer's long runs are `benches/fuzz.sh`. A panic
//! here is a finding: its input is printed for a regression test.

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "../fuzz/fuzz_targets/harness.rs"]
mod harness;

/// Mutated inputs per target, besides the corpus itself.
const MUTATIONS: usize = 20_000;
/// Largest input a mutation makes.
const INPUT_BYTES_MAX: usize = 8_192;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let inputs: Vec<Vec<u8>> = files.iter().map(|file| std::fs::read(file).unwrap()).collect();
    assert!(!inputs.is_empty(), "{} holds no corpus", dir.display());
    inputs
}

/// One mutation of `input`, another corpus input at hand for splicing.
fn mutate(input: &[u8], other: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut bytes = input.to_vec();
    match rng.random_range(0..4) {
        0 if !bytes.is_empty() => {
            for _ in 0..rng.random_range(1..=8) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
            }
        }
        1 if !bytes.is_empty() => bytes.truncate(rng.random_range(0..bytes.len())),
        2 => {
            let at = rng.random_range(0..=bytes.len());
            let noise: Vec<u8> = (0..rng.random_range(1..=64)).map(|_| rng.random()).collect();
            bytes.splice(at..at, noise);
        }
        _ => {
            let cut = rng.random_range(0..=bytes.len());
            let from = rng.random_range(0..=other.len());
            bytes.truncate(cut);
            bytes.extend_from_slice(&other[from..]);
        }
    }
    bytes.truncate(INPUT_BYTES_MAX);
    bytes
}

fn smoke(target: &str, body: fn(&[u8])) {
    let inputs = corpus(target);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mutated = (0..MUTATIONS).map(|_| {
        let input = &inputs[rng.random_range(0..inputs.len())];
        let other = &inputs[rng.random_range(0..inputs.len())];
        mutate(input, other, &mut rng)
    });
    for input in inputs.clone().into_iter().chain(mutated.collect::<Vec<_>>()) {
        let outcome = std::panic::catch_unwind(|| body(&input));
        assert!(outcome.is_ok(), "{target} panicked on input {input:?}");
    }
}

#[test]
fn gossip_datagram() {
    smoke("gossip_datagram", harness::gossip_datagram);
}

#[test]
fn gossip_stream() {
    smoke("gossip_stream", harness::gossip_stream);
}

#[test]
fn haproxy_cfg() {
    smoke("haproxy_cfg", harness::haproxy_cfg);
}

#[test]
fn http_request() {
    smoke("http_request", harness::http_request);
}

#[test]
fn scenario() {
    smoke("scenario", harness::scenario);
}

#[test]
fn template_data() {
    smoke("template_data", harness::template_data);
}
