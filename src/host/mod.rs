//! What one node runs on: its name, network, clock, disk, seeded randomness and the sink its
//! observable events go to. The real binary and the simulator each build a [`HostEnv`]; the
//! stack's drivers only ever talk to the outside world through it.

mod event;

pub use event::{Event, MemberChange, MemberStatus};

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::net::Net;

/// Monotonic time since the world (or process) started.
pub trait Clock {
    /// Time elapsed since the start of the world.
    fn now(&self) -> Duration;
}

/// Where rendered files live. Writes are atomic: a reader sees the old bytes or the new bytes.
pub trait Disk {
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Replaces a file atomically (temporary file, fsync, rename).
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// [`Disk::write_atomic`] for a secret (a keyring): a new file readable by its owner only.
    fn write_secret(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.write_atomic(path, bytes)
    }
    /// Truncates a file and writes `bytes` into it, as a shell's `>` redirect does: a reader
    /// (or a crash) between two such writes sees what was written so far. The lab's way.
    fn write_in_place(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
}

/// Receives every observable event of a host, in order.
pub trait Observer {
    /// Records one event of `host` at time `at`.
    fn record(&self, at: Duration, host: &str, event: Event);

    /// Whether per-request events (forwarding, proxied) are wanted; building them costs an
    /// allocation or three per request, which a balancer serving real traffic skips.
    fn records_requests(&self) -> bool {
        true
    }
}

/// Everything a node's drivers may touch.
pub struct HostEnv<N: Net> {
    /// The host's name (also its gossip node name).
    pub name: String,
    /// Its network.
    pub net: N,
    clock: Rc<dyn Clock>,
    disk: Rc<dyn Disk>,
    observer: Rc<dyn Observer>,
    seed: u64,
}

impl<N: Net> Clone for HostEnv<N> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            net: self.net.clone(),
            clock: self.clock.clone(),
            disk: self.disk.clone(),
            observer: self.observer.clone(),
            seed: self.seed,
        }
    }
}

impl<N: Net> HostEnv<N> {
    /// Builds a host environment; `seed` must differ per host and per boot.
    pub fn new(
        name: impl Into<String>,
        net: N,
        clock: Rc<dyn Clock>,
        disk: Rc<dyn Disk>,
        observer: Rc<dyn Observer>,
        seed: u64,
    ) -> Self {
        Self { name: name.into(), net, clock, disk, observer, seed }
    }

    /// Time since the world started.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// The host's disk.
    pub fn disk(&self) -> &dyn Disk {
        &*self.disk
    }

    /// Records an observable event with the current time.
    pub fn observe(&self, event: Event) {
        self.observer.record(self.now(), &self.name, event);
    }

    /// Records a per-request event, built only if the observer wants those.
    pub fn observe_request(&self, event: impl FnOnce() -> Event) {
        if self.observer.records_requests() {
            self.observe(event());
        }
    }

    /// A random stream for one purpose: the same host seed and purpose give the same stream.
    pub fn rng(&self, purpose: &str) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(mix(self.seed, stable_hash(purpose.as_bytes())))
    }
}

/// The random seed of `host`'s boot number `boot` in a run of `seed`: every engine derives
/// it this way, so one host's random streams are the same whichever engine runs it.
pub fn host_seed(seed: u64, host: &str, boot: u32) -> u64 {
    mix(mix(seed, stable_hash(host.as_bytes())), u64::from(boot))
}

/// FNV-1a: a fixed algorithm, so derived seeds never change between toolchains.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Aborts a background task when dropped: a service whose run ends, however it ends, leaves
/// no task behind (a restarted one must be able to bind its port again).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Aborts the task and waits until it is gone, with what it held: an abort only schedules
    /// the task's end, and a socket it owns stays bound until then.
    pub async fn close(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SplitMix64 finaliser over two words: nearby inputs give unrelated seeds.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A disk kept in memory; it survives a simulated reboot when the world keeps the `Rc`.
#[derive(Default)]
pub struct MemoryDisk {
    files: RefCell<BTreeMap<PathBuf, Vec<u8>>>,
}

impl Disk for MemoryDisk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.files.borrow_mut().insert(path.to_path_buf(), bytes.to_vec());
        Ok(())
    }
    fn write_in_place(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.write_atomic(path, bytes)
    }
}

/// The real file system.
pub struct RealDisk;

impl Disk for RealDisk {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        crate::files::write_atomic(path, bytes)
    }
    fn write_secret(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        crate::files::write_atomic_with_mode(path, bytes, crate::files::SECRET_FILE_MODE)
    }
    fn write_in_place(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        std::fs::write(path, bytes)
    }
}

/// Helpers for driver tests: a host on a paused tokio clock that records its events.
#[cfg(test)]
pub mod testing {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::{Clock, Disk, Event, HostEnv, Observer};
    use crate::net::tokio_net::TokioNet;

    /// tokio's clock, paused in tests, so time only moves when every task waits.
    pub struct TokioClock(pub tokio::time::Instant);

    impl Clock for TokioClock {
        fn now(&self) -> Duration {
            self.0.elapsed()
        }
    }

    /// Events with their times, in order.
    #[derive(Clone, Default)]
    pub struct Recorded(pub Rc<RefCell<Vec<(Duration, Event)>>>);

    impl Observer for Recorded {
        fn record(&self, at: Duration, _host: &str, event: Event) {
            self.0.borrow_mut().push((at, event));
        }
    }

    /// A host named `test` on `disk`; call inside a paused runtime.
    pub fn host(disk: Rc<dyn Disk>) -> (HostEnv<TokioNet>, Recorded) {
        let recorded = Recorded::default();
        let net = TokioNet::new(std::net::Ipv4Addr::LOCALHOST.into());
        let clock = Rc::new(TokioClock(tokio::time::Instant::now()));
        (HostEnv::new("test", net, clock, disk, Rc::new(recorded.clone()), 7), recorded)
    }

    /// Runs `future` on a current-thread runtime with real time and real IO, and a `LocalSet`.
    pub fn run_real<F: Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        tokio::task::LocalSet::new().block_on(&runtime, future)
    }

    /// Runs `future` on a paused current-thread runtime with a `LocalSet`.
    pub fn run_paused<F: Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        tokio::task::LocalSet::new().block_on(&runtime, future)
    }
}

#[cfg(test)]
mod disk_tests {
    use super::{Disk, RealDisk};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rollcall-disk-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A write that died between its temporary file and the rename (a crash, a full disk)
    /// leaves the live file as it was; the next write replaces both.
    #[test]
    fn a_write_that_stopped_before_its_rename_leaves_the_old_file() {
        let dir = scratch("atomic");
        let live = dir.join("haproxy.cfg");
        RealDisk.write_atomic(&live, b"old, whole\n").unwrap();
        // What the dead write left: a partial temporary file beside the live one.
        std::fs::write(dir.join("haproxy.cfg.rollcall-tmp"), b"new, but cut sh").unwrap();
        assert_eq!(RealDisk.read(&live).unwrap(), b"old, whole\n");
        RealDisk.write_atomic(&live, b"new, whole\n").unwrap();
        assert_eq!(RealDisk.read(&live).unwrap(), b"new, whole\n");
        assert!(!dir.join("haproxy.cfg.rollcall-tmp").exists(), "the temporary file was renamed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The lab's `>` redirect: what a reader sees between the truncation and the write.
    #[test]
    fn an_in_place_write_is_seen_truncated_in_between() {
        let dir = scratch("in-place");
        let live = dir.join("haproxy.cfg");
        RealDisk.write_atomic(&live, b"old\n").unwrap();
        RealDisk.write_in_place(&live, b"").unwrap();
        assert_eq!(RealDisk.read(&live).unwrap(), b"", "a crash here leaves an empty file");
        RealDisk.write_in_place(&live, b"new\n").unwrap();
        assert_eq!(RealDisk.read(&live).unwrap(), b"new\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
