//! Seeded per-datagram loss and extra latency for gossip traffic.
//!
//! turmoil's own `fail_rate` drops whole links and wedges TCP for good, so packet loss is
//! modelled here, above the socket, with the host's seeded RNG: the same seed drops the same
//! datagrams.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Datagram;

/// Loss and latency applied to a host's outgoing datagrams; the world changes it between steps.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Probability in [0, 1] that one datagram is dropped.
    pub loss_rate: f64,
    /// Delay added to every datagram.
    pub extra_latency: Duration,
}

/// What happened to a datagram handed to [`LossyUdp::send_to`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the socket (now, or after the extra latency if its run still holds the
    /// socket then).
    Sent,
    /// Dropped by the loss model.
    Dropped,
}

/// A UDP socket whose sends go through a seeded loss and latency model.
pub struct LossyUdp<U: Datagram> {
    socket: Rc<U>,
    faults: Rc<Cell<LinkFaults>>,
    rng: RefCell<ChaCha8Rng>,
}

impl<U: Datagram> LossyUdp<U> {
    /// Wraps `socket`; `faults` is shared with whoever injects faults.
    pub fn new(socket: U, faults: Rc<Cell<LinkFaults>>, rng: ChaCha8Rng) -> Self {
        Self { socket: Rc::new(socket), faults, rng: RefCell::new(rng) }
    }

    /// Sends a datagram, or drops it as the loss model says.
    pub async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<Delivery> {
        let faults = self.faults.get();
        assert!((0.0..=1.0).contains(&faults.loss_rate), "loss rate out of range");
        // Always draw, so that the random stream does not depend on whether loss is on.
        let draw: f64 = self.rng.borrow_mut().random();
        if draw < faults.loss_rate {
            return Ok(Delivery::Dropped);
        }
        if faults.extra_latency.is_zero() {
            self.socket.send_to(bytes, to).await?;
        } else {
            // Held weakly: the socket closes when its run ends, as a process's does when
            // it dies, so a restarted agent binds its port again at once; what the run still
            // held back is then lost with it.
            let socket = Rc::downgrade(&self.socket);
            let bytes = bytes.to_vec();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(faults.extra_latency).await;
                // A late datagram that cannot be sent is lost, as on a real network.
                if let Some(socket) = socket.upgrade() {
                    let _ = socket.send_to(&bytes, to).await;
                }
            });
        }
        Ok(Delivery::Sent)
    }

    /// Receives one datagram.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}
