//! Request framing as the client sent it, seen before hyper parses it.
//!
//! A request with both `Transfer-Encoding` and `Content-Length` is the classic smuggling
//! vector: a proxy and a server that pick different headers disagree on where the next request
//! starts. hyper reads such a request by `Transfer-Encoding` and drops `Content-Length` before
//! the handler sees the headers, so the handler cannot refuse it. [`FramingScanner`] follows
//! the bytes of a client connection (heads, then bodies by their own framing, so the next head
//! is found) and gives one verdict per request head, in order; [`Scanned`] wraps the stream.
//! When the bytes stop making sense the scanner gives up and hyper's own parser, which rejects
//! what is malformed, has the last word.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::http::{REQUEST_HEAD_BYTES_MAX, REQUEST_HEADERS_MAX};

/// Longest chunk-size or trailer line followed; longer ones stop the scan (hyper rejects them).
const CHUNK_LINE_BYTES_MAX: usize = 4096;
/// Verdicts kept before the handler takes them; a client that pipelines more heads than this
/// stops the scan (the later requests are then judged by hyper alone).
const PENDING_VERDICTS_MAX: usize = 64;

/// What a request head says about its framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One framing header, or none.
    Clear,
    /// Both `Transfer-Encoding` and `Content-Length`: refused with 400.
    Ambiguous,
}

#[derive(Debug)]
enum State {
    /// Reading a request head (bytes so far).
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping a chunk's data and its CRLF.
    ChunkData(u64),
    /// Reading trailer lines up to the empty one.
    Trailer(Vec<u8>),
    /// Lost track (malformed input, or the connection ends after this request anyway).
    Stopped,
}

/// Follows one connection's bytes from client to server.
#[derive(Debug)]
pub struct FramingScanner {
    state: State,
    verdicts: VecDeque<Framing>,
}

impl Default for FramingScanner {
    fn default() -> Self {
        Self { state: State::Head(Vec::new()), verdicts: VecDeque::new() }
    }
}

impl FramingScanner {
    /// Takes the next request's verdict; `Clear` when the scan stopped before its head.
    pub fn next_verdict(&mut self) -> Framing {
        self.verdicts.pop_front().unwrap_or(Framing::Clear)
    }

    /// Follows `bytes`, the next bytes the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = self.step(bytes);
            if used == 0 {
                // Every state takes at least one byte or ends; this is the backstop that keeps
                // a mistake here from spinning a connection task forever.
                self.state = State::Stopped;
                return;
            }
            bytes = &bytes[used..];
        }
    }

    /// Moves the current state on with `bytes`; returns how many it took (0: stopped).
    fn step(&mut self, bytes: &[u8]) -> usize {
        let (used, next) = match &mut self.state {
            State::Stopped => return 0,
            State::Head(head) => match take_until(head, bytes, b"\r\n\r\n", REQUEST_HEAD_BYTES_MAX) {
                None => (0, Some(State::Stopped)),
                Some((used, false)) => (used, None),
                Some((used, true)) => {
                    let head = std::mem::take(head);
                    (used, Some(self.after_head(&head)))
                }
            },
            State::Body(left) => skip(left, bytes, || State::Head(Vec::new())),
            State::ChunkData(left) => skip(left, bytes, || State::ChunkSize(Vec::new())),
            State::ChunkSize(line) => match take_until(line, bytes, b"\n", CHUNK_LINE_BYTES_MAX) {
                None => (0, Some(State::Stopped)),
                Some((used, false)) => (used, None),
                Some((used, true)) => match chunk_size(line) {
                    Some(0) => (used, Some(State::Trailer(Vec::new()))),
                    Some(size) => (used, Some(State::ChunkData(size.saturating_add(2)))),
                    None => (used, Some(State::Stopped)),
                },
            },
            State::Trailer(line) => match take_until(line, bytes, b"\n", CHUNK_LINE_BYTES_MAX) {
                None => (0, Some(State::Stopped)),
                Some((used, false)) => (used, None),
                Some((used, true)) => {
                    let empty = line.as_slice() == b"\n" || line.as_slice() == b"\r\n";
                    line.clear();
                    (used, empty.then(|| State::Head(Vec::new())))
                }
            },
        };
        if let Some(next) = next {
            self.state = next;
        }
        used
    }

    /// Judges a complete head and returns how its body is framed.
    fn after_head(&mut self, head: &[u8]) -> State {
        let mut headers = [httparse::EMPTY_HEADER; REQUEST_HEADERS_MAX];
        let mut request = httparse::Request::new(&mut headers);
        if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
            return State::Stopped;
        }
        let named =
            |name: &'static str| request.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name));
        let encodings: Vec<&[u8]> = named("transfer-encoding").map(|h| h.value).collect();
        let length = named("content-length").next().map(|h| h.value);
        if self.verdicts.len() >= PENDING_VERDICTS_MAX {
            return State::Stopped;
        }
        if !encodings.is_empty() && length.is_some() {
            self.verdicts.push_back(Framing::Ambiguous);
            // The connection closes after the 400.
            return State::Stopped;
        }
        self.verdicts.push_back(Framing::Clear);
        if let Some(last) = encodings.last() {
            let chunked = last
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|e| e.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return if chunked { State::ChunkSize(Vec::new()) } else { State::Stopped };
        }
        match length.map(|value| std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<u64>().ok())) {
            None | Some(Some(0)) => State::Head(Vec::new()),
            Some(Some(length)) => State::Body(length),
            Some(None) => State::Stopped,
        }
    }
}

/// Appends `bytes` to `buffer` up to and including the first `end` (searched across the
/// boundary), at most `limit` bytes in all; returns how many bytes of `bytes` it took and
/// whether `end` was found, or `None` when `buffer` is full without it.
fn take_until(buffer: &mut Vec<u8>, bytes: &[u8], end: &[u8], limit: usize) -> Option<(usize, bool)> {
    let overlap = buffer.len().saturating_sub(end.len() - 1);
    let room = limit.saturating_sub(buffer.len()).min(bytes.len());
    buffer.extend_from_slice(&bytes[..room]);
    match buffer[overlap..].windows(end.len()).position(|w| w == end) {
        Some(at) => {
            let stop = overlap + at + end.len();
            let used = room - (buffer.len() - stop);
            buffer.truncate(stop);
            Some((used, true))
        }
        None if buffer.len() >= limit => None,
        None => Some((room, false)),
    }
}

/// Takes up to `left` bytes of `bytes`; when none are left, the state becomes `then()`.
fn skip(left: &mut u64, bytes: &[u8], then: impl FnOnce() -> State) -> (usize, Option<State>) {
    let used = bytes.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    *left -= used as u64;
    (used, (*left == 0).then(then))
}

/// The size in a chunk-size line (`1a;ext\r\n`), if it is one.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let size = text.trim_end_matches(['\r', '\n']).split(';').next()?.trim();
    u64::from_str_radix(size, 16).ok()
}

/// A client stream whose incoming bytes go through a [`FramingScanner`] on their way to hyper.
pub struct Scanned<S> {
    inner: S,
    scanner: Rc<RefCell<FramingScanner>>,
}

impl<S> Scanned<S> {
    /// Wraps `inner`; the handler reads verdicts from `scanner`.
    pub fn new(inner: S, scanner: Rc<RefCell<FramingScanner>>) -> Self {
        Self { inner, scanner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Scanned<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.scanner.borrow_mut().feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Scanned<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` in pieces of `step` bytes and returns the verdicts.
    fn scan(bytes: &[u8], step: usize) -> Vec<Framing> {
        let mut scanner = FramingScanner::default();
        for piece in bytes.chunks(step) {
            scanner.feed(piece);
        }
        scanner.verdicts.into_iter().collect()
    }

    fn every_split(bytes: &[u8]) -> Vec<Vec<Framing>> {
        (1..=bytes.len()).map(|step| scan(bytes, step)).collect()
    }

    #[test]
    fn both_framing_headers_are_ambiguous_in_either_order() {
        for head in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 0\r\n\r\n",
        ] {
            for verdicts in every_split(head.as_bytes()) {
                assert_eq!(verdicts, [Framing::Ambiguous], "{head:?}");
            }
        }
    }

    #[test]
    fn bodies_are_skipped_so_the_next_head_is_judged() {
        let stream = concat!(
            "POST /a HTTP/1.1\r\nContent-Length: 40\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: x\r\n\r\n",
            "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "5;ext=1\r\nhello\r\n19\r\nContent-Length: 1\r\n\r\nabcd\r\n0\r\nTrailer: x\r\n\r\n",
            "GET /c HTTP/1.1\r\n\r\n",
            "GET /d HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for verdicts in every_split(stream.as_bytes()) {
            let expected = [Framing::Clear, Framing::Clear, Framing::Clear, Framing::Ambiguous];
            assert_eq!(verdicts, expected);
        }
    }

    #[test]
    fn garbage_stops_the_scan_without_a_verdict() {
        assert_eq!(scan(b"NOT HTTP\r\n\r\nGET / HTTP/1.1\r\n\r\n", 7), []);
        assert_eq!(
            scan(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\nGET / HTTP/1.1\r\n\r\n", 3),
            [Framing::Clear]
        );
        let huge = vec![b'a'; REQUEST_HEAD_BYTES_MAX * 2];
        assert_eq!(scan(&huge, 1000), []);
        let mut scanner = FramingScanner::default();
        assert_eq!(scanner.next_verdict(), Framing::Clear);
    }
}
