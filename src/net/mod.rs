//! The network seen by the stack's drivers.
//!
//! Drivers are generic over [`Net`] so that the same code runs on tokio's sockets (the real
//! binary) and on turmoil's simulated sockets (rollcall-sim). It is a trait and not a cargo
//! feature: features unify across a workspace and would hand the real binary simulated sockets.
//! [`lossy::LossyUdp`] adds seeded per-datagram loss and latency on top of any [`Datagram`].

pub mod framing;
pub mod http;
pub mod lossy;
pub mod tokio_net;

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};

/// A bound UDP socket.
pub trait Datagram: 'static {
    /// Sends one datagram; a datagram that cannot be delivered is lost silently, as in UDP.
    fn send_to(&self, bytes: &[u8], to: SocketAddr) -> impl Future<Output = io::Result<usize>>;
    /// Waits for one datagram.
    fn recv_from(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, SocketAddr)>>;
    /// The address this socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A bound TCP listener.
pub trait Listener: 'static {
    /// The stream type of accepted connections.
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;
    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>>;
}

/// Sockets and name resolution for one host.
pub trait Net: Clone + 'static {
    /// UDP socket type.
    type Udp: Datagram;
    /// TCP listener type.
    type Listener: Listener<Stream = Self::Stream>;
    /// TCP stream type.
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;

    /// Binds a UDP socket.
    fn bind_udp(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Udp>>;
    /// Binds a TCP listener.
    fn bind_tcp(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>>;
    /// Opens a TCP connection.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Stream>>;
    /// Resolves a host name (or a literal address) to an IP address.
    fn resolve(&self, host: &str) -> io::Result<IpAddr>;
    /// The address other hosts reach this one at.
    fn local_ip(&self) -> IpAddr;
}

/// Resolves `host:port` or `host` (with `default_port`) to a socket address.
pub fn resolve_endpoint<N: Net>(net: &N, endpoint: &str, default_port: u16) -> io::Result<SocketAddr> {
    resolve_endpoint_with(endpoint, default_port, |host| net.resolve(host))
}

/// [`resolve_endpoint`] with `resolve` for host names (an engine without a [`Net`]).
pub fn resolve_endpoint_with(
    endpoint: &str,
    default_port: u16,
    resolve: impl Fn(&str) -> io::Result<IpAddr>,
) -> io::Result<SocketAddr> {
    if let Ok(addr) = endpoint.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) => {
            let port = port.parse::<u16>().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad port in {endpoint:?}"))
            })?;
            (host, port)
        }
        None => (endpoint, default_port),
    };
    Ok(SocketAddr::new(resolve(host)?, port))
}
