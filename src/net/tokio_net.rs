//! [`Net`] on real tokio sockets, for the `rollcall` binary and real-mode tests.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::{Datagram, Listener, Net};

/// Real sockets; `local_ip` is the address the node advertises to its peers.
#[derive(Clone, Debug)]
pub struct TokioNet {
    /// Address advertised to peers (the host's own loopback address in tests).
    pub advertise: IpAddr,
    /// Bind listeners with SO_REUSEPORT, so that one listener per thread shares a port.
    pub reuse_port: bool,
}

/// Backlog of a listening socket.
const LISTEN_BACKLOG: u32 = 1024;

impl TokioNet {
    /// Real sockets advertising `advertise`, one listener per port.
    pub fn new(advertise: IpAddr) -> Self {
        TokioNet { advertise, reuse_port: false }
    }
}

impl Datagram for tokio::net::UdpSocket {
    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        tokio::net::UdpSocket::send_to(self, bytes, to).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        tokio::net::UdpSocket::recv_from(self, buf).await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        // Requests and answers are whole messages: do not hold them back for more data.
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }
}

impl Net for TokioNet {
    type Udp = tokio::net::UdpSocket;
    type Listener = tokio::net::TcpListener;
    type Stream = tokio::net::TcpStream;

    async fn bind_udp(&self, addr: SocketAddr) -> io::Result<Self::Udp> {
        tokio::net::UdpSocket::bind(addr).await
    }
    async fn bind_tcp(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        if !self.reuse_port {
            return tokio::net::TcpListener::bind(addr).await;
        }
        let socket =
            if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    }
    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
    fn resolve(&self, host: &str) -> io::Result<IpAddr> {
        if let Ok(ip) = host.parse() {
            return Ok(ip);
        }
        (host, 0)
            .to_socket_addrs()?
            .next()
            .map(|addr| addr.ip())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no such host {host}")))
    }
    fn local_ip(&self) -> IpAddr {
        self.advertise
    }
}
