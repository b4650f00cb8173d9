//! A guard against request smuggling that hyper would smooth over: a request head with
//! both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper accepts such a request, drops the length and reads the body as chunked (RFC 9112
//! §6.3 allows that), so by the time the gate sees the request the evidence is gone. This
//! wrapper watches the raw bytes of a connection as they are read and raises a flag when
//! one header block carries both fields; the gate then answers 400 on that connection.
//! It looks at header-like lines only (a blank line starts a new block), so a body would
//! have to contain both field lines in one block to trip it — rare, and then the request
//! is refused, never passed through.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Set once a header block with both framing fields went by.
#[derive(Debug, Clone, Default)]
pub struct Flag(Arc<AtomicBool>);

impl Flag {
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The line scanner; keeps only the first bytes of the current line.
#[derive(Debug, Default)]
struct Scan {
    /// The start of the current line (at most [`KEEP`] bytes).
    line: [u8; KEEP],
    len: usize,
    overflow: bool,
    content_length: bool,
    transfer_encoding: bool,
}

const PREFIX: usize = 18; // len("transfer-encoding:")
/// Bytes kept of a line: the longest name looked for, its colon and some whitespace.
const KEEP: usize = PREFIX + 2;

impl Scan {
    /// Feeds bytes read from the connection; `true` when a header block with both fields
    /// ended in them. Lines are found with `memchr`, and only their first bytes are kept,
    /// so a body costs a search for line ends, not a step per byte.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut found = false;
        while !bytes.is_empty() {
            let (part, ends_line) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..i], Some(i + 1)),
                None => (bytes, None),
            };
            let room = KEEP - self.len;
            let take = part.len().min(room);
            self.line[self.len..self.len + take].copy_from_slice(&part[..take]);
            self.len += take;
            self.overflow |= part.len() > room;
            let Some(next) = ends_line else { break };
            found |= self.end_line();
            bytes = &bytes[next..];
        }
        found
    }

    fn end_line(&mut self) -> bool {
        let kept = &self.line[..self.len];
        let line = kept.strip_suffix(b"\r").unwrap_or(kept);
        let mut found = false;
        if line.is_empty() && !self.overflow {
            found = self.content_length && self.transfer_encoding;
            self.content_length = false;
            self.transfer_encoding = false;
        } else {
            let name = line
                .split(|c| *c == b':')
                .next()
                .unwrap_or(&[])
                .trim_ascii();
            self.content_length |= name.eq_ignore_ascii_case(b"content-length");
            self.transfer_encoding |= name.eq_ignore_ascii_case(b"transfer-encoding");
        }
        self.len = 0;
        self.overflow = false;
        found
    }
}

/// Wraps a connection's byte stream and watches what is read.
#[derive(Debug)]
pub struct Watched<IO> {
    inner: IO,
    scan: Scan,
    flag: Flag,
}

impl<IO> Watched<IO> {
    pub fn new(inner: IO) -> (Watched<IO>, Flag) {
        let flag = Flag::default();
        (
            Watched {
                inner,
                scan: Scan::default(),
                flag: flag.clone(),
            },
            flag,
        )
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let new = buf.filled().get(before..).unwrap_or(&[]);
            let this = &mut *self;
            if this.scan.feed(new) {
                this.flag.0.store(true, Ordering::Relaxed);
            }
        }
        poll
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let mut s = Scan::default();
        chunks.iter().fold(false, |found, c| s.feed(c) | found)
    }

    #[test]
    fn both_fields_in_one_head_are_found_in_any_order_and_split() {
        let a = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(scan(&[a]));
        let b = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-LENGTH : 5\r\n\r\n";
        assert!(scan(&[b]));
        for cut in 1..a.len() {
            assert!(scan(&[&a[..cut], &a[cut..]]), "split at {cut}");
        }
    }

    #[test]
    fn ordinary_requests_pass() {
        let keepalive = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(!scan(&[keepalive]), "one field per head");
        let long = format!(
            "GET / HTTP/1.1\r\nX-Content-Length-Is-Long: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
            "a".repeat(100)
        );
        assert!(!scan(&[long.as_bytes()]));
    }
}
