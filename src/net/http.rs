//! Small HTTP/1.1 helpers over any [`Net`]: one request on a fresh connection, and a server
//! loop. Every operation is bounded in time and size: simulated TCP never retransmits, so a
//! stream cut by a partition would otherwise hang for good.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use std::cell::RefCell;
use std::rc::Rc;

use super::framing::{Framing, FramingScanner, Scanned};
use super::{Listener, Net};

/// Largest body read from a peer, request or response.
pub const BODY_BYTES_MAX: usize = 1 << 20;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection could not be opened.
    #[error("connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    /// The exchange did not finish in time.
    #[error("no response from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    /// The peer broke the protocol or closed the connection.
    #[error("HTTP exchange with {addr}: {message}")]
    Protocol { addr: SocketAddr, message: String },
}

/// Sends one request on a new connection and reads the whole response.
pub async fn exchange<N: Net>(
    net: &N,
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<Response<Bytes>, HttpError> {
    match tokio::time::timeout(timeout, exchange_unbounded(net, addr, request)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout { addr, timeout }),
    }
}

/// Opens a connection within `timeout`; a timeout is a connect failure (nothing was sent).
pub async fn connect<N: Net>(net: &N, addr: SocketAddr, timeout: Duration) -> Result<N::Stream, HttpError> {
    match tokio::time::timeout(timeout, net.connect(addr)).await {
        Ok(result) => result.map_err(|source| HttpError::Connect { addr, source }),
        Err(_) => {
            let source = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            );
            Err(HttpError::Connect { addr, source })
        }
    }
}

async fn exchange_unbounded<N: Net>(
    net: &N,
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, HttpError> {
    let stream = net.connect(addr).await.map_err(|source| HttpError::Connect { addr, source })?;
    send_unbounded(stream, addr, request).await
}

async fn send_unbounded<S>(
    stream: S,
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<Response<Bytes>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let protocol = |error: &dyn std::fmt::Display| HttpError::Protocol { addr, message: error.to_string() };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| protocol(&e))?;
    let connection = tokio::task::spawn_local(connection);
    let response = sender.send_request(request).await.map_err(|e| protocol(&e))?;
    let response = read_response(addr, response).await;
    drop(sender);
    connection.abort();
    response
}

/// Reads a whole request body, up to [`BODY_BYTES_MAX`].
pub async fn read_body(body: Incoming) -> Result<Bytes, String> {
    Limited::new(body, BODY_BYTES_MAX)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|error| error.to_string())
}

/// Where a request came from: the peer, and how many requests its connection carried
/// before this one (0: the first).
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// The client's address.
    pub peer: SocketAddr,
    /// Requests served on this connection before this one.
    pub earlier: u64,
}

/// Most header lines in a request; more is answered 431 (hyper's and HAProxy's default).
pub const REQUEST_HEADERS_MAX: usize = 100;
/// Largest request head in bytes; larger is answered 431 (HAProxy's `tune.bufsize`).
pub const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;
/// Counts request heads refused with 431 (over [`REQUEST_HEAD_BYTES_MAX`] bytes or
/// [`REQUEST_HEADERS_MAX`] lines) and tells its owner the running count each time.
pub struct HeadRefusals {
    count: std::cell::Cell<u64>,
    report: Box<dyn Fn(u64)>,
}

impl HeadRefusals {
    /// Refusals reported to `report` with their running count.
    pub fn new(report: impl Fn(u64) + 'static) -> Rc<Self> {
        Rc::new(Self { count: std::cell::Cell::new(0), report: Box::new(report) })
    }

    fn hit(&self) {
        let count = self.count.get().saturating_add(1);
        self.count.set(count);
        (self.report)(count);
    }
}

/// The answer to a request with both `Transfer-Encoding` and `Content-Length` (a smuggling
/// attempt, or a client that cannot be trusted to frame its requests).
const AMBIGUOUS_FRAMING: &str = "bad request: both Transfer-Encoding and Content-Length\n";

/// Connections served at once when the caller sets no limit.
pub const CONNECTIONS_MAX: usize = 4096;

/// Serves HTTP/1.1 on `listener` forever, one local task per connection, at most
/// [`CONNECTIONS_MAX`] at once.
pub async fn serve<L, F, Fut>(listener: L, handler: F)
where
    L: Listener,
    F: Fn(Origin, Request<Incoming>) -> Fut + Clone + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + 'static,
{
    serve_limited(listener, CONNECTIONS_MAX, None, None, handler).await
}

/// Serves HTTP/1.1 on `listener` forever, at most `connections` at once: when the limit is
/// reached, new connections wait in the listen queue (and it is logged once per episode). A
/// client that does not send a whole request head within `head_timeout` (HAProxy's `timeout
/// http-request`, else `timeout client`), including an idle keep-alive one, is disconnected.
///
/// The `Date` header is off: it reads the real clock, which would break replay.
/// Heads refused with 431 are counted in `refusals`, if given.
pub async fn serve_limited<L, F, Fut>(
    listener: L,
    connections: usize,
    head_timeout: Option<Duration>,
    refusals: Option<Rc<HeadRefusals>>,
    handler: F,
) where
    L: Listener,
    F: Fn(Origin, Request<Incoming>) -> Fut + Clone + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + 'static,
{
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(connections.max(1)));
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::warn!(connections, "connection limit reached; new connections wait");
                match slots.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                }
            }
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (handler, refusals) = (handler.clone(), refusals.clone());
        tokio::task::spawn_local(async move {
            let result = serve_connection(stream, peer, head_timeout, handler).await;
            drop(permit);
            if let (Err(error), Some(refusals)) = (&result, &refusals)
                && error.is_parse_too_large()
            {
                refusals.hit();
            }
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// Serves one connection from `peer` until it closes: hyper's HTTP/1.1 server with the head
/// limits, no `Date` header, and requests of ambiguous framing answered 400 (the fuzz
/// target `http_request` feeds it bytes directly).
pub async fn serve_connection<S, F, Fut>(
    stream: S,
    peer: SocketAddr,
    head_timeout: Option<Duration>,
    handler: F,
) -> Result<(), hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    F: Fn(Origin, Request<Incoming>) -> Fut + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + 'static,
{
    let served = std::cell::Cell::new(0u64);
    let scanner = Rc::new(RefCell::new(FramingScanner::default()));
    let stream = Scanned::new(stream, scanner.clone());
    let service = hyper::service::service_fn(move |request| {
        let earlier = served.replace(served.get() + 1);
        let ambiguous = scanner.borrow_mut().next_verdict() == Framing::Ambiguous;
        let response = (!ambiguous).then(|| handler(Origin { peer, earlier }, request));
        async move {
            Ok::<_, Infallible>(match response {
                Some(response) => response.await,
                None => text_response(400, AMBIGUOUS_FRAMING),
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .auto_date_header(false)
        .keep_alive(true)
        .writev(false)
        .max_headers(REQUEST_HEADERS_MAX)
        .max_buf_size(REQUEST_HEAD_BYTES_MAX);
    if let Some(timeout) = head_timeout {
        builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeout);
    }
    builder.serve_connection(TokioIo::new(stream), service).await
}

/// Most idle keep-alive connections kept per server.
pub const IDLE_PER_SERVER_MAX: usize = 64;

/// Idle keep-alive connections to servers, for reuse (HAProxy's `http-reuse`).
#[derive(Default)]
pub struct Pool {
    idle: std::cell::RefCell<std::collections::BTreeMap<SocketAddr, Vec<SendRequest<Full<Bytes>>>>>,
}

impl Pool {
    /// An idle connection to `addr` that is still open.
    fn take(&self, addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(sender) = list.pop() {
            if !sender.is_closed() && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < IDLE_PER_SERVER_MAX && !sender.is_closed() {
            list.push(sender);
        }
    }

    /// Sends `request` on an idle connection to `addr`, if there is one. `Err` gives the
    /// request back when no idle connection could take it (none, or it was closed before the
    /// request went out), so the caller can open a new one.
    pub async fn send_idle(
        &self,
        addr: SocketAddr,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Result<Response<Bytes>, HttpError>, Request<Full<Bytes>>> {
        let Some(mut sender) = self.take(addr) else { return Err(request) };
        let exchange = async {
            let response = sender.try_send_request(request).await;
            let response = match response {
                Ok(response) => response,
                Err(mut error) => return Err(error.take_message()),
            };
            Ok(read_response(addr, response).await)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(result)) => {
                if result.is_ok() {
                    self.put(addr, sender);
                }
                Ok(result)
            }
            // Closed before the request went out: nothing was sent, try a new connection.
            Ok(Err(Some(request))) => Err(request),
            Ok(Err(None)) => Ok(Err(HttpError::Protocol { addr, message: "idle connection failed".into() })),
            Err(_) => Ok(Err(HttpError::Timeout { addr, timeout })),
        }
    }

    /// Sends `request` on a new connection, keeping the connection for reuse afterwards.
    pub async fn send_new<S>(
        &self,
        stream: S,
        addr: SocketAddr,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, HttpError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    {
        let exchange = async {
            let protocol =
                |error: &dyn std::fmt::Display| HttpError::Protocol { addr, message: error.to_string() };
            let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
                .writev(false)
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| protocol(&e))?;
            tokio::task::spawn_local(connection);
            let response = sender.send_request(request).await.map_err(|e| protocol(&e))?;
            let response = read_response(addr, response).await?;
            Ok((sender, response))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((sender, response))) => {
                self.put(addr, sender);
                Ok(response)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(HttpError::Timeout { addr, timeout }),
        }
    }
}

async fn read_response(addr: SocketAddr, response: Response<Incoming>) -> Result<Response<Bytes>, HttpError> {
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| HttpError::Protocol { addr, message: e.to_string() })?;
    Ok(Response::from_parts(parts, body.to_bytes()))
}

/// A response with a status and a plain-text body.
pub fn text_response(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/plain".parse().expect("static header"));
    response
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What `serve_limited` counts as a refused head: hyper answers 431 and ends the
    /// connection with a too-large parse error.
    #[tokio::test]
    async fn a_head_over_the_limit_is_answered_431_and_reported_as_too_large() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = "10.0.0.9:40000".parse().unwrap();
        let handler = |_, _request| async { text_response(200, "ok") };
        let filler = "x".repeat(REQUEST_HEAD_BYTES_MAX);
        let request = format!("GET / HTTP/1.1\r\nHost: ha\r\nX-Filler: {filler}\r\n\r\n");
        let talking = async {
            client.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let (served, answer) = tokio::join!(serve_connection(server, peer, None, handler), talking);
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 431"), "{answer:?}");
        let error = served.unwrap_err();
        assert!(error.is_parse_too_large(), "{error}");
        let counted = std::rc::Rc::new(std::cell::Cell::new(0));
        let seen = counted.clone();
        let refusals = HeadRefusals::new(move |count| seen.set(count));
        refusals.hit();
        refusals.hit();
        assert_eq!(counted.get(), 2);
    }
}
