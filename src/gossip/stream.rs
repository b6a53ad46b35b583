//! Push-pull over TCP for the gossip driver: the initiator sends one length-prefixed frame
//! and reads one back; every step is bounded by the TCP timeout, a frame by what
//! `members_max` members can take (and its buffer grows only as bytes arrive), and the
//! connections served at once by [`CONNECTIONS_MAX`]. Frames reach the agent through one
//! bounded channel, so the agent itself stays single-threaded and sans-io. Every task
//! belongs to the [`Streams`] (or its server): a killed agent stops all of them.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::codec::{self, FRAME_HEADER_BYTES};
use super::limits::{Limit, LimitCounts};
use crate::net::{Listener, Net};

/// Incoming push-pulls not yet taken by the agent; connections beyond are closed.
pub const PENDING_MAX: usize = 16;
/// Incoming connections served at once; more wait in the listen queue.
pub const CONNECTIONS_MAX: usize = 32;

/// A frame for the agent: a push-pull from `from`, or the answer to ours (no `answer`).
pub struct Incoming {
    /// The peer: the connection's source, or the address we connected to.
    pub from: SocketAddr,
    /// The frame, without its length prefix.
    pub bytes: Vec<u8>,
    /// Where the agent's answer goes, to be written back on the same connection.
    pub answer: Option<oneshot::Sender<Vec<u8>>>,
}

pub use crate::host::AbortOnDrop;

/// Opens and serves push-pull streams for one agent.
pub struct Streams<N: Net> {
    net: N,
    to_agent: mpsc::Sender<Incoming>,
    timeout: Duration,
    frame_max: usize,
    /// What the frame and queue limits refused, shared with every connection's task.
    limits: Rc<RefCell<LimitCounts>>,
    /// Our push-pulls in flight: aborted with the agent.
    outgoing: RefCell<JoinSet<()>>,
}

impl<N: Net> Streams<N> {
    /// Streams with `timeout` per step and frames of at most `members_max` members; the
    /// receiver yields what arrives for the agent.
    pub fn new(net: N, timeout: Duration, members_max: usize) -> (Self, mpsc::Receiver<Incoming>) {
        let (to_agent, incoming) = mpsc::channel(PENDING_MAX);
        let frame_max = codec::stream_bytes_max(members_max);
        let limits = Rc::default();
        (Self { net, to_agent, timeout, frame_max, limits, outgoing: RefCell::new(JoinSet::new()) }, incoming)
    }

    /// The limits whose count reached a new power of two since the last call.
    pub fn limits_due(&self) -> Vec<(Limit, u64)> {
        self.limits.borrow_mut().due()
    }

    /// Accepts push-pulls on `listener` until the guard is dropped.
    pub fn serve(&self, listener: N::Listener) -> AbortOnDrop {
        let (to_agent, timeout, frame_max) = (self.to_agent.clone(), self.timeout, self.frame_max);
        let limits = self.limits.clone();
        AbortOnDrop(tokio::task::spawn_local(async move {
            // Owned by this task: aborting it aborts the connections it serves.
            let mut serving = JoinSet::new();
            let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
            loop {
                while serving.try_join_next().is_some() {}
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "gossip stream accept failed");
                        tokio::time::sleep(timeout / 100).await;
                        continue;
                    }
                };
                let (to_agent, limits) = (to_agent.clone(), limits.clone());
                serving.spawn_local(async move {
                    let bounds = Bounds { timeout, frame_max, limits };
                    if let Err(error) = answer_one(stream, peer, to_agent, &bounds).await {
                        tracing::debug!(%peer, %error, "gossip stream from peer failed");
                    }
                    drop(slot);
                });
            }
        }))
    }

    /// Sends `bytes` to `to` in the background; the answer reaches the agent as an
    /// [`Incoming`] from `to`. A failure is logged: the push-pull is simply lost.
    pub fn push_pull(&self, to: SocketAddr, bytes: Vec<u8>) {
        let (net, to_agent) = (self.net.clone(), self.to_agent.clone());
        let bounds = Bounds { timeout: self.timeout, frame_max: self.frame_max, limits: self.limits.clone() };
        let mut outgoing = self.outgoing.borrow_mut();
        while outgoing.try_join_next().is_some() {}
        outgoing.spawn_local(async move {
            let exchange = async {
                let mut stream = net.connect(to).await?;
                write_frame(&mut stream, &bytes).await?;
                read_frame(&mut stream, &bounds).await
            };
            match bounded(bounds.timeout, exchange).await {
                Ok(answer) => {
                    if to_agent.try_send(Incoming { from: to, bytes: answer, answer: None }).is_err() {
                        bounds.limits.borrow_mut().hit(Limit::PendingStreams, 1);
                    }
                }
                Err(error) => tracing::debug!(%to, %error, "push-pull to peer failed"),
            }
        });
    }
}

/// What bounds one connection: its steps' timeout, its frame's size, and the counts of
/// what those limits refused.
struct Bounds {
    timeout: Duration,
    frame_max: usize,
    limits: Rc<RefCell<LimitCounts>>,
}

/// Reads one push-pull from `peer`, hands it to the agent and writes its answer back.
async fn answer_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    to_agent: mpsc::Sender<Incoming>,
    bounds: &Bounds,
) -> io::Result<()> {
    let timeout = bounds.timeout;
    let bytes = bounded(timeout, read_frame(&mut stream, bounds)).await?;
    let (answer, answered) = oneshot::channel();
    if to_agent.try_send(Incoming { from: peer, bytes, answer: Some(answer) }).is_err() {
        bounds.limits.borrow_mut().hit(Limit::PendingStreams, 1);
        return Err(io::Error::other(format!("{PENDING_MAX} push-pulls already wait for the agent")));
    }
    let answer =
        bounded(timeout, async { answered.await.map_err(|_| io::Error::other("no answer")) }).await?;
    bounded(timeout, write_frame(&mut stream, &answer)).await
}

async fn bounded<T>(timeout: Duration, step: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(timeout, step).await.unwrap_or_else(|_| {
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("no progress in {timeout:?}")))
    })
}

async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("frame over 4 GiB"))?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + bytes.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).await?;
    stream.flush().await
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S, bounds: &Bounds) -> io::Result<Vec<u8>> {
    let frame_max = bounds.frame_max;
    let mut header = [0u8; FRAME_HEADER_BYTES];
    stream.read_exact(&mut header).await?;
    let len = u32::from_be_bytes(header) as usize;
    if len > frame_max {
        bounds.limits.borrow_mut().hit(Limit::StreamBytes, 1);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes over the {frame_max}-byte limit"),
        ));
    }
    // Grown as bytes arrive: a peer that announces a large frame and sends nothing costs
    // nothing.
    let mut bytes = Vec::new();
    stream.take(len as u64).read_to_end(&mut bytes).await?;
    if bytes.len() < len {
        let message = format!("frame cut at {} of {len} bytes", bytes.len());
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, message));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    fn bounds(frame_max: usize) -> Bounds {
        Bounds { timeout: Duration::from_secs(1), frame_max, limits: Rc::default() }
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_and_counted() {
        let (mut peer, ours) = duplex(64);
        let (to_agent, _incoming) = mpsc::channel(PENDING_MAX);
        let bounds = bounds(16);
        peer.write_all(&17u32.to_be_bytes()).await.unwrap();
        let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        let error = answer_one(ours, from, to_agent, &bounds).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert_eq!(bounds.limits.borrow().count(Limit::StreamBytes), 1);
    }

    #[tokio::test]
    async fn a_push_pull_past_the_pending_limit_is_refused_and_counted() {
        let (to_agent, _incoming) = mpsc::channel(PENDING_MAX);
        let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        for _ in 0..PENDING_MAX {
            to_agent.try_send(Incoming { from, bytes: Vec::new(), answer: None }).unwrap();
        }
        let (mut peer, ours) = duplex(64);
        peer.write_all(&[0, 0, 0, 1, 42]).await.unwrap();
        let bounds = bounds(16);
        let error = answer_one(ours, from, to_agent, &bounds).await.unwrap_err();
        assert!(error.to_string().contains("already wait"), "{error}");
        let mut counts = bounds.limits.borrow_mut();
        assert_eq!(counts.count(Limit::PendingStreams), 1);
        assert_eq!(counts.due(), [(Limit::PendingStreams, 1)]);
    }
}
