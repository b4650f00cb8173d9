//! HTTP/1.1 on the wire for the direct lane ([`super::lane`]): request and response heads
//! read with `httparse` into the `http` types the gate judges, the judged heads written
//! back out, and the framing of a console's response body.
//!
//! What goes out is always written from what was judged (the parsed method, target and
//! header map, each line ended with CRLF), never the bytes as received: a console reads
//! exactly the request the gate decided on. Anything unusual is not guessed at: a request
//! head the lane does not take is left to hyper whole; a console answer that is not plain
//! HTTP/1.1 framing is refused.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};

/// Most header lines in a head (hyper's limit too).
pub const MAX_HEADERS: usize = 100;

/// Where a head ends in a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// The head is complete and this many bytes long.
    Complete(usize),
    /// More bytes are needed.
    Partial,
    /// Not a head this side reads (malformed, too many lines).
    Unreadable,
}

/// Whether `buf` starts with a complete request head.
pub fn scan_request(buf: &[u8]) -> Scan {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::Request::new(&mut lines).parse(buf) {
        Ok(httparse::Status::Complete(n)) => Scan::Complete(n),
        Ok(httparse::Status::Partial) => Scan::Partial,
        Err(_) => Scan::Unreadable,
    }
}

/// The request in `head` (exactly one complete head), as the gate judges it; `None` for
/// anything but an HTTP/1.1 request with an origin-form target and well-formed header
/// values (hyper then reads it, and answers what it must). Values share `head`'s bytes.
pub fn request(head: &Bytes) -> Option<Request<()>> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(head) else {
        return None;
    };
    if parsed.version != Some(1) {
        return None;
    }
    let target = parsed.path.filter(|t| t.starts_with('/'))?;
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri = Uri::from_maybe_shared(head.slice_ref(target.as_bytes())).ok()?;
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = header_map(head, parsed.headers)?;
    Some(req)
}

fn header_map(head: &Bytes, lines: &[httparse::Header<'_>]) -> Option<HeaderMap> {
    let mut map = HeaderMap::with_capacity(lines.len());
    for line in lines {
        let name = HeaderName::from_bytes(line.name.as_bytes()).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(line.value)).ok()?;
        map.append(name, value);
    }
    Some(map)
}

/// Writes the head of `req` for the console at `target` (path and query): the request
/// line and every header of the map, nothing else.
pub fn write_request_head(out: &mut BytesMut, method: &Method, target: &str, headers: &HeaderMap) {
    out.reserve(64 + target.len() + headers.len() * 32);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    write_fields(out, headers);
    out.put_slice(b"\r\n");
}

fn write_fields(out: &mut BytesMut, headers: &HeaderMap) {
    for (name, value) in headers {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
}

/// How a console's response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (an answer to HEAD, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the console closes the connection.
    UntilClose,
}

/// A console's response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The console will close the connection after this response.
    pub closes: bool,
}

/// Why a console's answer is not used.
#[derive(Debug, PartialEq, Eq)]
pub struct Unusable(pub &'static str);

/// Reads a response head from `buf`: `Ok(None)` while incomplete, else the head and its
/// length. Interim (1xx) responses are returned too; the caller skips them.
///
/// # Errors
/// The answer is not a usable HTTP/1.1 response head: malformed, `101` (nothing was asked
/// to switch), both or conflicting framing fields, a transfer coding not ending in chunked.
pub fn response_head(buf: &[u8], to_head: bool) -> Result<Option<(ResponseHead, usize)>, Unusable> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut lines);
    let n = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Unusable("a malformed response head")),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Unusable("a malformed status"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Unusable("101 to a request that asked for no upgrade"));
    }
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes())
            .map_err(|_| Unusable("a malformed header name"))?;
        let value = HeaderValue::from_bytes(line.value)
            .map_err(|_| Unusable("a malformed header value"))?;
        headers.append(name, value);
    }
    let old = parsed.version == Some(0);
    let closes = old || has_token(&headers, "close");
    let framing = framing(status, &headers, to_head)?;
    Ok(Some((
        ResponseHead {
            status,
            headers,
            framing,
            closes,
        },
        n,
    )))
}

/// Whether the `Connection` header lists `token`.
pub fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn framing(status: StatusCode, headers: &HeaderMap, to_head: bool) -> Result<Framing, Unusable> {
    let te = headers.get_all(TRANSFER_ENCODING);
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    if te.iter().next().is_some() && lengths.next().is_some() {
        return Err(Unusable("both Content-Length and Transfer-Encoding"));
    }
    if to_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if te.iter().next().is_some() {
        // The last coding of the last line is the one applied last.
        let last_line = te.iter().next_back().map(HeaderValue::to_str);
        let last = match last_line {
            Some(Ok(line)) => line.split(',').map(str::trim).rfind(|c| !c.is_empty()),
            _ => None,
        };
        return match last {
            Some(c) if c.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(Unusable("a transfer coding that does not end in chunked")),
        };
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        // Each value may itself be a list of one repeated number (RFC 9110 §8.6).
        for part in v
            .to_str()
            .map_err(|_| Unusable("a bad Content-Length"))?
            .split(',')
        {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > 19 {
                return Err(Unusable("a bad Content-Length"));
            }
            let n: u64 = part.parse().map_err(|_| Unusable("a bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Unusable("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Writes a response head for the client: the status line, the judged header map, then
/// the framing the gate sends the body with (in place of the console's).
pub fn write_response_head(
    out: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    body: Outgoing,
) {
    out.reserve(64 + headers.len() * 40);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        // An answer without a body keeps the console's length (that of the answer to HEAD).
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && body != Outgoing::None) {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match body {
        Outgoing::None => {}
        Outgoing::Length(n) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa(n, &mut [0; 20]));
            out.put_slice(b"\r\n");
        }
        Outgoing::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
}

/// How the gate frames a body it sends the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// No body follows (HEAD, 204, 304); a `Content-Length` in the map is passed as the
    /// console gave it.
    None,
    Length(u64),
    Chunked,
}

fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends one chunk of a chunked body.
pub fn put_chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.put_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// The end of a chunked body (no trailers: they are not passed on).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Longest chunk-size line (size and extensions) and longest trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// A strict decoder of a console's chunked body (RFC 9112 §7.1): sizes in hex, lines
/// ended by CRLF, extensions skipped, trailers read and dropped.
#[derive(Debug, Default)]
pub struct Dechunk {
    state: Chunk,
    /// Bytes of the current size line, or of the trailer section, so far.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size (`seen` digits so far) into `size`.
    #[default]
    SizeStart,
    Size {
        size: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to CR.
    Extension {
        size: u64,
    },
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// In the trailer section: at the start of a line, inside one, or after its CR.
    TrailerLineStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    Done,
}

impl Dechunk {
    /// Decodes from `input`, appending the data to `out` re-chunked for the client.
    /// Returns how many bytes of `input` were used; stops at the end of the body.
    ///
    /// # Errors
    /// The framing is broken.
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<usize, Unusable> {
        let bad = |why| Err(Unusable(why));
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                Chunk::Done => break,
                Chunk::Data { left } => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - i);
                    put_chunk(out, &input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data { left }
                    };
                    continue;
                }
                Chunk::SizeStart | Chunk::Size { .. } => {
                    let (size, digits) = match self.state {
                        Chunk::Size { size, digits } => (size, digits),
                        _ => (0, 0),
                    };
                    match (b as char).to_digit(16) {
                        Some(d) => {
                            if digits >= 15 {
                                return bad("a chunk size too large");
                            }
                            self.state = Chunk::Size {
                                size: size * 16 + u64::from(d),
                                digits: digits + 1,
                            };
                        }
                        None if digits == 0 => return bad("a chunk without a size"),
                        None if b == b'\r' => self.state = Chunk::SizeLf { size },
                        None if b == b';' || b == b' ' || b == b'\t' => {
                            self.state = Chunk::Extension { size }
                        }
                        None => return bad("a malformed chunk size"),
                    }
                    self.line += 1;
                }
                Chunk::Extension { size } => {
                    if b == b'\r' {
                        self.state = Chunk::SizeLf { size };
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return bad("a malformed chunk extension");
                    }
                    self.line += 1;
                }
                Chunk::SizeLf { size } => {
                    if b != b'\n' {
                        return bad("a chunk size line not ended by CRLF");
                    }
                    self.line = 0;
                    self.state = if size == 0 {
                        Chunk::TrailerLineStart
                    } else {
                        Chunk::Data { left: size }
                    };
                }
                Chunk::DataCr => {
                    if b != b'\r' {
                        return bad("chunk data not ended by CRLF");
                    }
                    self.state = Chunk::DataLf;
                }
                Chunk::DataLf => {
                    if b != b'\n' {
                        return bad("chunk data not ended by CRLF");
                    }
                    self.line = 0;
                    self.state = Chunk::SizeStart;
                }
                Chunk::TrailerLineStart | Chunk::TrailerLine => {
                    let start = self.state == Chunk::TrailerLineStart;
                    if b == b'\r' {
                        self.state = Chunk::TrailerLf { empty: start };
                    } else if b == b'\n' {
                        return bad("a trailer line not ended by CRLF");
                    } else {
                        self.state = Chunk::TrailerLine;
                    }
                    self.line += 1;
                }
                Chunk::TrailerLf { empty } => {
                    if b != b'\n' {
                        return bad("a trailer line not ended by CRLF");
                    }
                    self.line += 1;
                    self.state = if empty {
                        Chunk::Done
                    } else {
                        Chunk::TrailerLineStart
                    };
                }
            }
            if self.line > MAX_TRAILERS
                || (self.line > MAX_CHUNK_LINE
                    && matches!(
                        self.state,
                        Chunk::Size { .. } | Chunk::Extension { .. } | Chunk::SizeLf { .. }
                    ))
            {
                return bad("a chunk size line or trailer section too long");
            }
            i += 1;
        }
        Ok(i)
    }

    /// Whether the whole body has been read.
    pub fn done(&self) -> bool {
        self.state == Chunk::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dechunk_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool, usize), Unusable> {
        let mut d = Dechunk::default();
        let mut out = BytesMut::new();
        let mut used = 0;
        for p in pieces {
            used += d.feed(p, &mut out)?;
        }
        Ok((decode_rechunked(&out), d.done(), used))
    }

    /// The data of a body the decoder re-chunked (sizes are trusted: it wrote them).
    fn decode_rechunked(mut b: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        while !b.is_empty() {
            let end = b.windows(2).position(|w| w == b"\r\n").expect("size line");
            let n = usize::from_str_radix(std::str::from_utf8(&b[..end]).expect("hex"), 16)
                .expect("hex");
            data.extend_from_slice(&b[end + 2..end + 2 + n]);
            b = &b[end + 2 + n + 2..];
        }
        data
    }

    #[test]
    fn a_chunked_body_is_decoded_however_it_is_split() {
        let body: &[u8] =
            b"5;name=value\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for cut in 0..body.len() {
            let (a, b) = body.split_at(cut);
            let (data, done, used) = dechunk_all(&[a, b]).expect("valid");
            assert_eq!(data, b"hello world!", "split at {cut}");
            assert!(done);
            assert_eq!(
                &body[used..],
                b"NEXT",
                "stops at the end of the body (split at {cut})"
            );
        }
    }

    #[test]
    fn broken_chunk_framing_is_refused() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"1234567890abcdef0\r\n",
            b"0\r\nX: 1\n\r\n",
            b"5;a\nb\r\nhello\r\n",
        ] {
            assert!(
                dechunk_all(&[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("5;{}\r\n", "x".repeat(5000));
        assert!(
            dechunk_all(&[long.as_bytes()]).is_err(),
            "an endless extension"
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let head = |s: &str| response_head(s.as_bytes(), false).map(|h| h.map(|(h, _)| h.framing));
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Ok(Some(Framing::Length(12)))
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 12, 12\r\n\r\n"),
            Ok(Some(Framing::Length(12)))
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(Some(Framing::Chunked))
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\n\r\n"),
            Ok(Some(Framing::UntilClose))
        );
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"),
            Ok(Some(Framing::Empty))
        );
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Length: 5"), Ok(None));
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
        let answer_to_head =
            response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true);
        assert_eq!(
            answer_to_head.map(|h| h.map(|(h, _)| h.framing)),
            Ok(Some(Framing::Empty))
        );
    }

    #[test]
    fn a_request_is_read_once_and_written_from_what_was_read() {
        let head =
            Bytes::from_static(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-One: 1\r\nx-one: 2\r\n\r\n");
        assert_eq!(scan_request(&head), Scan::Complete(head.len()));
        assert_eq!(scan_request(&head[..10]), Scan::Partial);
        let req = request(&head).expect("a request");
        let mut out = BytesMut::new();
        write_request_head(&mut out, req.method(), "/a?b=c", req.headers());
        assert_eq!(
            &out[..],
            b"GET /a?b=c HTTP/1.1\r\nhost: x\r\nx-one: 1\r\nx-one: 2\r\n\r\n"
        );
        for other in [
            &b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n"[..],
            b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert!(
                request(&Bytes::from_static(other)).is_none(),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        assert_eq!(
            scan_request(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"),
            Scan::Unreadable
        );
    }

    #[test]
    fn a_response_head_is_written_with_the_gates_framing() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("99"));
        let mut out = BytesMut::new();
        write_response_head(&mut out, StatusCode::OK, &h, Outgoing::Length(12));
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\r\n"
        );
        out.clear();
        write_response_head(
            &mut out,
            StatusCode::from_u16(299).expect("code"),
            &HeaderMap::new(),
            Outgoing::Chunked,
        );
        assert_eq!(
            &out[..],
            b"HTTP/1.1 299 \r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
