//! HTTP/1.1 on the wire for the direct lane ([`super::lane`]): request and response heads
//! read with `httparse` into the `http` types the gate judges, the judged heads written
//! back out, and the framing of a console's response body.
//!
//! What goes out is always written from what was judged (the parsed method, target and
//! header map, each line ended with CRLF), never the bytes as received: a console reads
//! exactly the request the gate decided on. Anything unusual is not guessed at: a request
//! head the lane does not take is left to hyper whole; a console answer that is not plain
//! HTTP/1.1 framing is refused.

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, SET_COOKIE, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use smallvec::SmallVec;

/// Most header lines in a head (hyper's limit too).
pub const MAX_HEADERS: usize = 100;

/// What the start of a client's bytes holds. (Not boxed: one per request, moved once.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Head {
    /// A complete head, taken off the buffer: its bytes, and the request they make if it
    /// is an HTTP/1.1 request with an origin-form target and well-formed header values
    /// (`None`: hyper reads it, and answers what it must). Values share `bytes`.
    Complete {
        bytes: Bytes,
        request: Option<Request<()>>,
    },
    /// More bytes are needed.
    Partial,
    /// Not a head this side reads (malformed, too many lines).
    Unreadable,
}

/// Takes the request head at the start of `inbox`, if it is complete (read once). The
/// request's header map is `spare` (an empty map, kept by the connection so that a
/// request does not allocate one), which is left empty in its place.
pub fn take_request(inbox: &mut BytesMut, spare: &mut HeaderMap) -> Head {
    let mut lines = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let n = match parsed.parse_with_uninit_headers(inbox, &mut lines) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Unreadable,
    };
    // Where each part lies, so the parts can share the head's bytes once it is split off.
    let base = inbox.as_ptr() as usize;
    let at = |part: &[u8]| (part.as_ptr() as usize - base, part.len());
    let fields: SmallVec<[_; 24]> = parsed
        .headers
        .iter()
        .map(|line| (at(line.name.as_bytes()), at(line.value)))
        .collect();
    let version = parsed.version;
    let target = parsed.path.map(|t| at(t.as_bytes()));
    let method = parsed
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
    let bytes = inbox.split_to(n).freeze();
    let part = |(start, len): (usize, usize)| bytes.slice(start..start + len);
    let request = (|| {
        if version != Some(1) {
            return None;
        }
        let target = part(target?);
        if !target.starts_with(b"/") {
            return None;
        }
        let mut req = Request::new(());
        *req.method_mut() = method?;
        *req.uri_mut() = Uri::from_maybe_shared(target).ok()?;
        *req.version_mut() = Version::HTTP_11;
        let map = req.headers_mut();
        *map = std::mem::take(spare);
        map.clear();
        // Room for the forwarding fields the gate adds, so the map never grows.
        map.reserve(fields.len() + 6);
        for &(name, value) in &fields {
            let name = HeaderName::from_bytes(&part(name)).ok()?;
            map.append(name, HeaderValue::from_maybe_shared(part(value)).ok()?);
        }
        Some(req)
    })();
    Head::Complete { bytes, request }
}

/// Writes a request head for the console: the request line for `target` (path and
/// query), then `fields`, nothing else.
pub fn write_request_head<'f>(
    out: &mut BytesMut,
    method: &Method,
    target: &str,
    fields: impl Iterator<Item = (&'f HeaderName, &'f HeaderValue)>,
) {
    out.reserve(512 + target.len());
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in fields {
        put_field(out, name, value.as_bytes());
    }
    out.put_slice(b"\r\n");
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

/// A console's response head, as the lane passes it on.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub framing: Framing,
    /// The console will close the connection after this response.
    pub closes: bool,
    /// The console's `Set-Cookie` fields that go to the client, for the session rules
    /// ([`crate::passthrough::answered`]).
    pub set_cookies: HeaderMap,
    /// The names of the gate's own cookies the console tried to set (dropped).
    pub gate_cookies: Vec<String>,
    /// Whether the console sent its own `Strict-Transport-Security`.
    pub hsts: bool,
}

/// Why a console's answer is not used.
#[derive(Debug, PartialEq, Eq)]
pub struct Unusable(pub &'static str);

/// Reads a response head from `buf`: `Ok(None)` while incomplete, else the head and its
/// length, with the status line and every field that may reach the client written to
/// `out` (not yet ended: [`end_response_head`] adds the gate's fields and framing).
/// Hop-by-hop fields (RFC 9110 §7.6.1, and those `Connection` names), the framing fields
/// and a `Set-Cookie` for a gate cookie never do. Interim (1xx) responses are returned
/// too; the caller skips them.
///
/// # Errors
/// The answer is not a usable HTTP/1.1 response head: malformed, `101` (nothing was asked
/// to switch), both or conflicting framing fields, a transfer coding not ending in chunked.
pub fn response_head(
    buf: &[u8],
    to_head: bool,
    out: &mut BytesMut,
) -> Result<Option<(ResponseHead, usize)>, Unusable> {
    let mut lines = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let n = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut lines) {
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
    let fields = parsed.headers;
    // `Connection` first: it names more fields to drop, wherever they are.
    let mut closes = parsed.version == Some(0);
    let mut named: Vec<&[u8]> = Vec::new();
    for line in fields.iter() {
        if line.name.eq_ignore_ascii_case("connection") {
            if std::str::from_utf8(line.value).is_err() {
                return Err(Unusable("a bad Connection"));
            }
            for token in list_items(line.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    closes = true;
                } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                    named.push(token);
                }
            }
        }
    }
    let mut frame = FramingFields::default();
    let mut head = ResponseHead {
        status,
        framing: Framing::Empty,
        closes,
        set_cookies: HeaderMap::new(),
        gate_cookies: Vec::new(),
        hsts: false,
    };
    let body_follows = !(to_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    begin_status(out, status, 64 + n);
    for line in fields.iter() {
        // Names compared in any case; each comparison settles a name of another length at
        // once.
        let name = line.name;
        // A field the console's `Connection` names goes no further, and is not read
        // (as the full path removes it before anything reads the answer), except for
        // the framing, read from the fields as they came.
        let named_here = named
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name.as_bytes()));
        if name.eq_ignore_ascii_case("content-length") {
            frame.length(line.value)?;
            // The answer to HEAD, and a 304, keep the console's length (of the body they
            // stand for); a body is framed by the gate; a 204 or 1xx has none.
            if body_follows || !(to_head || status == StatusCode::NOT_MODIFIED) {
                continue;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            frame.coding(line.value);
            continue;
        } else if crate::proxy::is_hop_by_hop_name(name.as_bytes()) || named_here {
            continue;
        } else if name.eq_ignore_ascii_case("set-cookie") {
            let value = HeaderValue::from_bytes(line.value)
                .map_err(|_| Unusable("a malformed header value"))?;
            match crate::cookies::set_cookie_name(&value) {
                Some(n) if !n.is_empty() && !crate::cookies::is_gate_cookie(n) => {
                    head.set_cookies.append(SET_COOKIE, value.clone());
                }
                // A nameless cookie (`Set-Cookie: =mfa_session=x`) comes back from
                // browsers as `mfa_session=x`: it goes too, as one that cannot be read.
                other => {
                    let shown = other.map_or_else(
                        || String::from_utf8_lossy(line.value).into_owned(),
                        str::to_string,
                    );
                    head.gate_cookies.push(shown);
                    continue;
                }
            }
        } else if name.eq_ignore_ascii_case("strict-transport-security") {
            head.hsts = true;
        }
        if named_here {
            continue;
        }
        put_line(out, buf, line);
    }
    head.framing = frame.framing(body_follows)?;
    Ok(Some((head, n)))
}

fn begin_status(out: &mut BytesMut, status: StatusCode, room: usize) {
    out.reserve(room);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes a console's field line as it came — name, colon, the console's spacing, value
/// (httparse has checked each, and trimmed the value's end) — ended with CRLF.
fn put_line(out: &mut BytesMut, buf: &[u8], line: &httparse::Header<'_>) {
    let base = buf.as_ptr() as usize;
    let start = (line.name.as_ptr() as usize).wrapping_sub(base);
    let end = (line.value.as_ptr() as usize + line.value.len()).wrapping_sub(base);
    match buf.get(start..end) {
        Some(text) if end > start + line.name.len() => {
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        // An empty value may not point into the buffer.
        _ => put_raw(out, line.name.as_bytes(), line.value),
    }
}

fn put_field(out: &mut BytesMut, name: &HeaderName, value: &[u8]) {
    put_raw(out, name.as_str().as_bytes(), value);
}

fn put_raw(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// The items of a comma-separated field value, each without the spaces and tabs around
/// it (RFC 9110 §5.6.1); empty items are kept.
fn list_items(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|item| {
        let ows = |b: &u8| *b == b' ' || *b == b'\t';
        let start = item.iter().position(|b| !ows(b)).unwrap_or(item.len());
        let end = item.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
        &item[start..end]
    })
}

/// The framing fields of a response, as they are read.
#[derive(Debug, Default)]
struct FramingFields {
    /// The one length all `Content-Length` values agree on (`Err` if they do not).
    length: Option<Result<u64, Unusable>>,
    /// Whether `Transfer-Encoding` is present, and whether its last coding is chunked.
    coding: Option<bool>,
}

impl FramingFields {
    /// Takes one `Content-Length` field, itself maybe a list of one repeated number
    /// (RFC 9110 §8.6).
    fn length(&mut self, value: &[u8]) -> Result<(), Unusable> {
        let bad = || Unusable("a bad Content-Length");
        for part in list_items(value) {
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            // At most 19 digits: no overflow.
            let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            match self.length {
                Some(Ok(l)) if l != n => {
                    self.length = Some(Err(Unusable("conflicting Content-Length values")));
                }
                Some(_) => {}
                None => self.length = Some(Ok(n)),
            }
        }
        Ok(())
    }

    /// Takes one `Transfer-Encoding` field; the last one's last coding counts.
    fn coding(&mut self, value: &[u8]) {
        let last = list_items(value).rfind(|c| !c.is_empty());
        self.coding = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
    }

    /// How the body is delimited (RFC 9112 §6.3).
    fn framing(self, body_follows: bool) -> Result<Framing, Unusable> {
        if self.coding.is_some() && self.length.is_some() {
            return Err(Unusable("both Content-Length and Transfer-Encoding"));
        }
        let length = self.length.transpose()?;
        if !body_follows {
            return Ok(Framing::Empty);
        }
        match (self.coding, length) {
            (Some(true), _) => Ok(Framing::Chunked),
            (Some(false), _) => Err(Unusable("a transfer coding that does not end in chunked")),
            (None, Some(n)) => Ok(Framing::Length(n)),
            (None, None) => Ok(Framing::UntilClose),
        }
    }
}

/// Begins the head of one of the gate's own answers: the status line and `headers`
/// (framing fields excluded: [`end_response_head`] adds the gate's).
pub fn begin_response_head(out: &mut BytesMut, status: StatusCode, headers: &HeaderMap) {
    begin_status(out, status, 64 + headers.len() * 40);
    for (name, value) in headers {
        if name != CONTENT_LENGTH && name != TRANSFER_ENCODING {
            put_field(out, name, value.as_bytes());
        }
    }
}

/// Ends a response head begun by [`response_head`] or [`begin_response_head`]: the
/// gate's own `fields`, then the framing the gate sends the body with.
pub fn end_response_head<'a>(
    out: &mut BytesMut,
    fields: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    body: Outgoing,
) {
    for (name, value) in fields {
        put_field(out, name, value.as_bytes());
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

    fn framing_of(head: &str) -> Result<Option<Framing>, Unusable> {
        response_head(head.as_bytes(), false, &mut BytesMut::new())
            .map(|h| h.map(|(h, _)| h.framing))
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let head = framing_of;
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
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-LENGTH:\t 7 ,7\t\r\n\r\n"),
            Ok(Some(Framing::Length(7)))
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTRANSFER-encoding: chunked \r\n\r\n"),
            Ok(Some(Framing::Chunked))
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n"),
            Err(Unusable("a bad Content-Length"))
        );
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Length: 5"), Ok(None));
        for bad in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: ,\r\n\r\n",
            // Only spaces and tabs surround a list item, not other Unicode spaces.
            "HTTP/1.1 200 OK\r\nContent-Length: \u{a0}1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
        let answer_to_head = response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
            true,
            &mut BytesMut::new(),
        );
        assert_eq!(
            answer_to_head.map(|h| h.map(|(h, _)| h.framing)),
            Ok(Some(Framing::Empty))
        );
    }

    #[test]
    fn a_request_is_read_once_and_written_from_what_was_read() {
        let raw: &[u8] = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-One: 1\r\nx-one: 2\r\n\r\nGET /next";
        let mut inbox = BytesMut::from(&raw[..10]);
        assert!(matches!(
            take_request(&mut inbox, &mut HeaderMap::new()),
            Head::Partial
        ));
        let mut inbox = BytesMut::from(raw);
        // The connection's spare map still holds an earlier request's fields.
        let mut spare = HeaderMap::new();
        spare.insert("x-earlier", HeaderValue::from_static("1"));
        let Head::Complete {
            bytes,
            request: Some(req),
        } = take_request(&mut inbox, &mut spare)
        else {
            panic!("a request");
        };
        assert!(spare.is_empty());
        assert_eq!(&inbox[..], b"GET /next", "the rest stays");
        assert_eq!(bytes.len(), raw.len() - 9);
        let mut out = BytesMut::new();
        write_request_head(&mut out, req.method(), "/a?b=c", req.headers().iter());
        assert_eq!(
            &out[..],
            b"GET /a?b=c HTTP/1.1\r\nhost: x\r\nx-one: 1\r\nx-one: 2\r\n\r\n"
        );
        for other in [
            &b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n"[..],
            b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let taken = take_request(&mut BytesMut::from(other), &mut HeaderMap::new());
            assert!(
                matches!(taken, Head::Complete { request: None, .. }),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        let bad = take_request(
            &mut BytesMut::from(&b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"[..]),
            &mut HeaderMap::new(),
        );
        assert!(matches!(bad, Head::Unreadable));
    }

    #[test]
    fn a_response_head_keeps_what_may_reach_the_client_and_takes_the_gates_framing() {
        let console = "HTTP/1.1 200 Fine\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: mfa_session=forged; Path=/\r\nSet-Cookie: =mfa_session=x\r\nSet-Cookie: console=1\r\nStrict-Transport-Security: max-age=1\r\n\r\n";
        let mut out = BytesMut::new();
        let (head, n) = response_head(console.as_bytes(), false, &mut out)
            .expect("usable")
            .expect("complete");
        assert_eq!(n, console.len());
        assert_eq!(head.framing, Framing::Length(12));
        assert!(head.hsts && !head.closes);
        assert_eq!(
            head.gate_cookies,
            vec!["mfa_session".to_string(), String::new()]
        );
        assert_eq!(head.set_cookies.get_all(SET_COOKIE).iter().count(), 1);
        end_response_head(&mut out, [], Outgoing::Length(12));
        assert_eq!(
            std::str::from_utf8(&out).expect("text"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: console=1\r\nStrict-Transport-Security: max-age=1\r\ncontent-length: 12\r\n\r\n"
        );
        out.clear();
        // Hop-by-hop names in any case, and a `Connection` list with tabs, empty items
        // and a name in another case than its field's.
        let hops = "HTTP/1.1 200 OK\r\nTE: trailers\r\nPROXY-Connection: x\r\nUpGrade: h2c\r\nConnection:\tX-A ,,\tCLOSE\r\nx-a: 1\r\nKEEP-ALIVE: 5\r\nHTTP2-Settings: a\r\nTrailer: b\r\nProxy-Authenticate: c\r\nProxy-Authorization: d\r\nX-Kept: 2\r\nContent-Length: 0\r\n\r\n";
        let (head, _) = response_head(hops.as_bytes(), false, &mut out)
            .expect("usable")
            .expect("complete");
        assert!(head.closes);
        assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\nX-Kept: 2\r\n");
        out.clear();
        // A `Set-Cookie` or `Strict-Transport-Security` the console's `Connection` names
        // is neither passed nor read (the session rules, the gate's own HSTS).
        let named = "HTTP/1.1 200 OK\r\nConnection: set-cookie, Strict-Transport-Security\r\nSet-Cookie: console=1\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 0\r\n\r\n";
        let (head, _) = response_head(named.as_bytes(), false, &mut out)
            .expect("usable")
            .expect("complete");
        assert!(!head.hsts && head.set_cookies.is_empty());
        assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\n");
        out.clear();
        let to_head = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nConnection: close\r\n\r\n";
        let (head, _) = response_head(to_head.as_bytes(), true, &mut out)
            .expect("usable")
            .expect("complete");
        assert!(head.closes);
        end_response_head(&mut out, [], Outgoing::None);
        assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
        out.clear();
        begin_response_head(
            &mut out,
            StatusCode::from_u16(299).expect("code"),
            &HeaderMap::new(),
        );
        end_response_head(&mut out, [], Outgoing::Chunked);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 299 \r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn a_console_field_line_keeps_its_spacing_and_ends_with_crlf() {
        // Bare LF line ends, a tab, no space, trailing spaces, an empty value.
        let console = "HTTP/1.1 200 OK\nX-Tab:\tone\nX-Tight:two\nX-Trail: three  \nX-Empty:\nX-Spaced:   \r\nContent-Length: 0\n\n";
        let mut out = BytesMut::new();
        let (head, n) = response_head(console.as_bytes(), false, &mut out)
            .expect("usable")
            .expect("complete");
        assert_eq!((n, head.framing), (console.len(), Framing::Length(0)));
        let text = std::str::from_utf8(&out).expect("text");
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "HTTP/1.1 200 OK");
        assert_eq!(lines[1], "X-Tab:\tone");
        assert_eq!(lines[2], "X-Tight:two");
        assert_eq!(lines[3].trim_end(), "X-Trail: three");
        assert_eq!(lines[4].trim_end(), "X-Empty:");
        assert_eq!(lines[5].trim_end(), "X-Spaced:");
        assert_eq!(lines.len(), 7, "every line ended with CRLF: {text:?}");
        assert!(!text.contains('\n') || text.matches('\n').count() == text.matches("\r\n").count());
    }
}
