use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use std::net::SocketAddr;

use super::*;

fn key(byte: u8, len: usize) -> Key {
    Key::from_bytes(vec![byte; len]).unwrap()
}

fn wire(label: Option<&str>, keys: Vec<Key>) -> Wire {
    Wire::new(label.map(str::to_string), Some(Keyring::new(keys).unwrap())).unwrap()
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

#[test]
fn a_sealed_frame_opens_with_the_same_key_of_every_size() {
    for len in [16, 24, 32] {
        let wire = wire(None, vec![key(1, len)]);
        let sealed = wire.seal(b"hello".to_vec(), None, &mut rng());
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD_BYTES);
        assert_ne!(&sealed[sealed.len() - 5..], b"hello");
        assert_eq!(&*wire.open(&sealed, None).unwrap().0, b"hello");
    }
}

#[test]
fn another_key_a_flipped_bit_or_a_short_frame_is_refused() {
    let ours = wire(None, vec![key(1, 32)]);
    let theirs = wire(None, vec![key(2, 32)]);
    let sealed = theirs.seal(b"dead web1".to_vec(), None, &mut rng());
    assert_eq!(ours.open(&sealed, None), Err(KeyringError::NoKeyOpens));
    let mut flipped = ours.seal(b"dead web1".to_vec(), None, &mut rng());
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(ours.open(&flipped, None), Err(KeyringError::NoKeyOpens));
    assert_eq!(ours.open(b"\x02plain", None), Err(KeyringError::TooShort(6)));
    let plain = [2u8; 40];
    assert_eq!(ours.open(&plain, None), Err(KeyringError::Version(2)));
}

#[test]
fn a_plain_wire_passes_frames_as_they_are() {
    let plain = Wire::default();
    assert!(plain.is_plain());
    assert_eq!(plain.seal(b"abc".to_vec(), None, &mut rng()), b"abc");
    assert_eq!(&*plain.open(b"abc", None).unwrap().0, b"abc");
}

#[test]
fn the_label_is_checked_and_sealed_in() {
    let a = wire(Some("prod"), vec![key(1, 32)]);
    let b = wire(Some("test"), vec![key(1, 32)]);
    let sealed = a.seal(b"x".to_vec(), None, &mut rng());
    assert_eq!(&sealed[..6], b"\xf4\x04prod");
    assert_eq!(&*a.open(&sealed, None).unwrap().0, b"x");
    assert!(matches!(b.open(&sealed, None), Err(KeyringError::LabelMismatch { .. })));
    // The label is associated data: rewriting the header alone does not get a frame in.
    let mut relabelled = b"\xf4\x04test".to_vec();
    relabelled.extend_from_slice(&sealed[6..]);
    assert_eq!(b.open(&relabelled, None), Err(KeyringError::NoKeyOpens));
    let label_only = Wire::new(Some("prod".into()), None).unwrap();
    assert_eq!(&*label_only.open(&label_only.seal(b"y".to_vec(), None, &mut rng()), None).unwrap().0, b"y");
    assert!(label_only.open(b"y", None).is_err());
    let long = "x".repeat(LABEL_BYTES_MAX + 1);
    assert_eq!(Wire::new(Some(long), None), Err(KeyringError::LabelTooLong(LABEL_BYTES_MAX + 1)));
}

#[test]
fn install_use_remove_rotates_without_a_refused_frame() {
    let (old, new) = (key(1, 32), key(2, 32));
    let mut a = wire(None, vec![old.clone()]);
    let mut b = wire(None, vec![old.clone()]);
    // Installed everywhere first: each side opens both, seals with the old.
    for side in [&mut a, &mut b] {
        side.keyring.as_mut().unwrap().apply(KeyOp::Install, new.clone()).unwrap();
    }
    // One side uses the new key before the other: both still open each other's frames.
    a.keyring.as_mut().unwrap().apply(KeyOp::Use, new.clone()).unwrap();
    assert!(b.open(&a.seal(b"1".to_vec(), None, &mut rng()), None).is_ok());
    assert!(a.open(&b.seal(b"2".to_vec(), None, &mut rng()), None).is_ok());
    b.keyring.as_mut().unwrap().apply(KeyOp::Use, new.clone()).unwrap();
    for side in [&mut a, &mut b] {
        let ring = side.keyring.as_mut().unwrap();
        assert_eq!(ring.apply(KeyOp::Remove, new.clone()), Err(KeyringError::RemovePrimary(new.encoded())));
        ring.apply(KeyOp::Remove, old.clone()).unwrap();
        assert_eq!(ring.encoded(), vec![new.encoded()]);
    }
    assert!(b.open(&a.seal(b"3".to_vec(), None, &mut rng()), None).is_ok());
    // A frame sealed with the removed key no longer opens.
    let stale = wire(None, vec![old.clone()]);
    assert_eq!(a.open(&stale.seal(b"4".to_vec(), None, &mut rng()), None), Err(KeyringError::NoKeyOpens));
    let ring = a.keyring.as_mut().unwrap();
    assert_eq!(ring.apply(KeyOp::Use, old.clone()), Err(KeyringError::NotInstalled(old.encoded())));
}

#[test]
fn the_keyring_is_bounded_and_keys_are_checked() {
    let mut ring = Keyring::new(vec![key(0, 16)]).unwrap();
    for byte in 1..KEYS_MAX as u8 {
        ring.apply(KeyOp::Install, key(byte, 16)).unwrap();
    }
    assert_eq!(ring.apply(KeyOp::Install, key(200, 16)), Err(KeyringError::Full));
    // Installing a key it holds is not a new key.
    ring.apply(KeyOp::Install, key(3, 16)).unwrap();
    assert_eq!(Keyring::new(vec![]), Err(KeyringError::Empty));
    assert_eq!(Key::from_bytes(vec![0; 20]).unwrap_err(), KeyringError::KeyLength(20));
    assert!(matches!(Key::parse("not base64!"), Err(KeyringError::NotBase64(_))));
    let serf_keygen = "T9jncgl9mbLus+baTTa7q7nPSUrXwbDi2dhbtqir37s=";
    assert_eq!(Key::parse(serf_keygen).unwrap().encoded(), serf_keygen);
    assert_eq!(format!("{:?}", Key::parse(serf_keygen).unwrap()), "Key(AES-256)");
}

#[test]
fn a_frame_bound_to_one_address_opens_nowhere_else_and_a_nonce_opens_once() {
    let wire = wire(None, vec![key(1, 32)]);
    let (s1, s2): (SocketAddr, SocketAddr) =
        ("10.0.0.2:7946".parse().unwrap(), "10.0.0.3:7946".parse().unwrap());
    let sealed = wire.seal(b"dead s9".to_vec(), Some(s1), &mut rng());
    let (frame, nonce) = wire.open(&sealed, Some(s1)).unwrap();
    assert_eq!(&*frame, b"dead s9");
    // Sniffed on its way to s1 and sent to s2, or opened unbound: it does not open.
    assert_eq!(wire.open(&sealed, Some(s2)), Err(KeyringError::NoKeyOpens));
    assert_eq!(wire.open(&sealed, None), Err(KeyringError::NoKeyOpens));
    let mut window = ReplayWindow::default();
    assert!(window.first_sight(nonce.unwrap()));
    assert!(!window.first_sight(nonce.unwrap()), "the same nonce again is a replay");
    // The window forgets the oldest nonce once it holds NONCES_REMEMBERED.
    for i in 0..NONCES_REMEMBERED as u32 {
        let mut other = [0u8; 12];
        other[..4].copy_from_slice(&i.to_be_bytes());
        other[11] = 1;
        assert!(window.first_sight(other));
    }
    assert!(window.first_sight(nonce.unwrap()), "forgotten after {NONCES_REMEMBERED} newer nonces");
    assert_eq!(window.order.len(), NONCES_REMEMBERED);
}
