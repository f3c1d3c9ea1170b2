//! The small part of HTTP/1.1 the bench needs: a streaming response framer
//! for the `rate --http` client and a request framer for the server.
//!
//! The client only needs to know where each response ends and whether it
//! succeeded, so the framer reads the status line and the three headers that
//! decide framing (`Content-Length`, `Transfer-Encoding`, `Connection`) and
//! counts body bytes without copying them.

use std::sync::LazyLock;

use memchr::memmem;

/// Longest response or request head accepted (bytes up to the blank line).
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// A response or request that cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head is longer than [`MAX_HEAD`].
    #[error("HTTP head longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    /// The status or request line is malformed.
    #[error("malformed HTTP start line {0:?}")]
    BadStartLine(String),
    /// A `Content-Length` or chunk size is not a number.
    #[error("malformed HTTP length {0:?}")]
    BadLength(String),
    /// The response body is delimited by closing the connection, which a
    /// keep-alive benchmark cannot use.
    #[error(
        "HTTP response has neither Content-Length nor chunked encoding (keep-alive needs one)"
    )]
    Unframed,
    /// Chunked request bodies are not supported by the bench server.
    #[error("chunked HTTP request bodies are not supported")]
    ChunkedRequest,
}

/// The `GET` request the client sends, built once and reused. Only the
/// mandatory `Host` header, like wrk, so servers parse the same bytes.
pub(crate) fn build_request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// The keep-alive response the server sends for every request.
pub(crate) fn build_response(body_size: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nServer: nearhost-bench\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {body_size}\r\n\r\n"
    )
    .into_bytes();
    out.resize(out.len() + body_size, b'x');
    out
}

/// What the server answers to a request it cannot frame (then it closes).
pub(crate) const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Framing-relevant facts of one head.
#[derive(Debug, Default)]
struct Head {
    status: u16,
    http10: bool,
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

/// Parses a head (start line + headers, without the blank line). Works on
/// bytes and never allocates on success: it runs once per response on the
/// client's hot path.
fn parse_head(head: &[u8], response: bool) -> Result<Head, HttpError> {
    let mut lines = head.split(|&b| b == b'\n').map(trim);
    let start = lines.next().unwrap_or_default();
    let mut out = Head::default();
    let bad = || {
        HttpError::BadStartLine(String::from_utf8_lossy(&start[..start.len().min(80)]).into_owned())
    };
    let mut words = start.split(|&b| b == b' ');
    let version = if response {
        let version = words.next().ok_or_else(bad)?;
        let status = words.next().ok_or_else(bad)?;
        out.status = parse_number(status).filter(|s| *s < 1000).ok_or_else(bad)? as u16;
        version
    } else {
        let method = words.next().ok_or_else(bad)?;
        let version = words.nth(1).ok_or_else(bad)?;
        if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
            return Err(bad());
        }
        version
    };
    if !version.starts_with(b"HTTP/1.") {
        return Err(bad());
    }
    out.http10 = version == b"HTTP/1.0";
    for line in lines {
        let Some(colon) = memchr::memchr(b':', line) else { continue };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let bad_length = || HttpError::BadLength(String::from_utf8_lossy(value).into_owned());
            out.content_length = Some(parse_number(value).ok_or_else(bad_length)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            out.chunked = has_token(value, b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            out.close |= has_token(value, b"close");
            out.keep_alive |= has_token(value, b"keep-alive");
        }
    }
    if out.http10 && !out.keep_alive {
        out.close = true;
    }
    Ok(out)
}

/// Strips surrounding spaces, tabs and CR.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

/// A decimal number of at most 18 digits (no sign, no spaces).
fn parse_number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Whether a comma-separated header value lists `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// Finds the blank line ending a head; built once, used for every response.
fn find_head_end(data: &[u8]) -> Option<usize> {
    static FINDER: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));
    FINDER.find(data)
}

/// A request the server has framed: its total length and whether the client
/// asked to close afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) len: usize,
    pub(crate) close: bool,
}

/// Frames the first request in `buf`; `Ok(None)` when it is not complete yet.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<Request>, HttpError> {
    let Some(end) = find_head_end(buf) else {
        return if buf.len() > MAX_HEAD { Err(HttpError::HeadTooLong) } else { Ok(None) };
    };
    let head = parse_head(&buf[..end], false)?;
    if head.chunked {
        return Err(HttpError::ChunkedRequest);
    }
    let len = end + 4 + head.content_length.unwrap_or(0) as usize;
    Ok((buf.len() >= len).then_some(Request { len, close: head.close }))
}

/// Where the response framer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body { remaining: u64 },
    ChunkSize,
    ChunkData { remaining: u64 },
    ChunkEnd { remaining: u8 },
    Trailer,
}

/// Result of feeding bytes to the framer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Framed {
    /// Responses completed (final responses; `1xx` are skipped).
    pub(crate) complete: u32,
    /// Of those, responses with a status outside 2xx/3xx.
    pub(crate) failed: u32,
    /// The last completed response announced that the server will close;
    /// bytes after it were not consumed.
    pub(crate) close: bool,
}

/// Streaming response framer for one connection.
#[derive(Debug)]
pub(crate) struct ResponseFramer {
    state: State,
    /// Partial head or chunk-size/trailer line carried between reads.
    pending: Vec<u8>,
    current_ok: bool,
    current_close: bool,
}

impl Default for ResponseFramer {
    fn default() -> Self {
        ResponseFramer {
            state: State::Head,
            pending: Vec::new(),
            current_ok: true,
            current_close: false,
        }
    }
}

impl ResponseFramer {
    /// Forgets any partial response (after a reconnect).
    pub(crate) fn reset(&mut self) {
        *self = ResponseFramer::default();
    }

    /// Consumes `data` and reports the responses it completed.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Framed, HttpError> {
        let mut out = Framed::default();
        let mut pos = 0;
        while pos < data.len() {
            pos += match self.state {
                State::Head => self.feed_head(&data[pos..], &mut out)?,
                State::Body { remaining } | State::ChunkData { remaining } => {
                    let take = remaining.min((data.len() - pos) as u64);
                    self.after_body_bytes(remaining - take, &mut out);
                    take as usize
                }
                State::ChunkEnd { remaining } => {
                    let take = usize::from(remaining).min(data.len() - pos);
                    self.state = match remaining as usize - take {
                        0 => State::ChunkSize,
                        left => State::ChunkEnd { remaining: left as u8 },
                    };
                    take
                }
                State::ChunkSize | State::Trailer => self.feed_line(&data[pos..], &mut out)?,
            };
            if out.close {
                break;
            }
        }
        Ok(out)
    }

    fn after_body_bytes(&mut self, left: u64, out: &mut Framed) {
        self.state = match (self.state, left) {
            (State::Body { .. }, 0) => return self.complete(out),
            (State::Body { .. }, remaining) => State::Body { remaining },
            (_, 0) => State::ChunkEnd { remaining: 2 },
            (_, remaining) => State::ChunkData { remaining },
        };
    }

    fn complete(&mut self, out: &mut Framed) {
        out.complete += 1;
        if !self.current_ok {
            out.failed += 1;
        }
        out.close = self.current_close;
        self.state = State::Head;
    }

    /// Consumes head bytes; returns how many bytes of `data` were used.
    fn feed_head(&mut self, data: &[u8], out: &mut Framed) -> Result<usize, HttpError> {
        let (head_len, used) = if self.pending.is_empty() {
            match find_head_end(data) {
                Some(end) => (end, end + 4),
                None => return self.stash(data, data.len()),
            }
        } else {
            // The head started in an earlier read: search across the seam.
            let old = self.pending.len();
            let from = old.saturating_sub(3);
            let take = data.len().min(MAX_HEAD + 4);
            self.pending.extend_from_slice(&data[..take]);
            match find_head_end(&self.pending[from..]) {
                Some(rel) => {
                    let end = from + rel;
                    self.pending.truncate(end);
                    (end, end + 4 - old)
                }
                None => {
                    self.pending.truncate(old);
                    return self.stash(data, take);
                }
            }
        };
        let head = if self.pending.is_empty() {
            parse_head(&data[..head_len], true)?
        } else {
            parse_head(&std::mem::take(&mut self.pending), true)?
        };
        self.start_body(&head, out)?;
        Ok(used)
    }

    fn stash(&mut self, data: &[u8], take: usize) -> Result<usize, HttpError> {
        self.pending.extend_from_slice(&data[..take]);
        if self.pending.len() > MAX_HEAD {
            return Err(HttpError::HeadTooLong);
        }
        Ok(take)
    }

    fn start_body(&mut self, head: &Head, out: &mut Framed) -> Result<(), HttpError> {
        if (100..200).contains(&head.status) {
            return Ok(()); // interim response: the final one follows
        }
        self.current_ok = (200..400).contains(&head.status);
        self.current_close = head.close;
        let no_body = head.status == 204 || head.status == 304;
        match (no_body, head.chunked, head.content_length) {
            (true, _, _) | (false, false, Some(0)) => self.complete(out),
            (false, true, _) => self.state = State::ChunkSize,
            (false, false, Some(n)) => self.state = State::Body { remaining: n },
            (false, false, None) => return Err(HttpError::Unframed),
        }
        Ok(())
    }

    /// Consumes a chunk-size or trailer line (possibly split across reads).
    fn feed_line(&mut self, data: &[u8], out: &mut Framed) -> Result<usize, HttpError> {
        let Some(nl) = memchr::memchr(b'\n', data) else {
            return self.stash(data, data.len());
        };
        self.pending.extend_from_slice(&data[..nl]);
        let line = std::mem::take(&mut self.pending);
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        if self.state == State::Trailer {
            if line.is_empty() {
                self.complete(out);
            }
            return Ok(nl + 1);
        }
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::BadLength(size_text.into()))?;
        self.state = if size == 0 { State::Trailer } else { State::ChunkData { remaining: size } };
        Ok(nl + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK_350: &str = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 350\r\n\r\n";

    fn response(head: &str, body: usize) -> Vec<u8> {
        let mut v = head.as_bytes().to_vec();
        v.resize(v.len() + body, b'b');
        v
    }

    #[test]
    fn frames_pipelined_content_length_responses() {
        let mut wire = response(OK_350, 350);
        wire.extend(response(OK_350, 350));
        wire.extend(response("HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\n", 3));
        let mut f = ResponseFramer::default();
        assert_eq!(f.feed(&wire).unwrap(), Framed { complete: 3, failed: 1, close: false });
    }

    #[test]
    fn frames_responses_split_at_every_byte() {
        let mut wire = response(OK_350, 350);
        wire.extend(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\n",
        );
        wire.extend([b'z'; 26]);
        wire.extend(b"\r\n0\r\nX-Trailer: 1\r\n\r\n");
        wire.extend(b"HTTP/1.1 204 No Content\r\n\r\n");
        for split in 0..wire.len() {
            let mut f = ResponseFramer::default();
            let a = f.feed(&wire[..split]).unwrap();
            let b = f.feed(&wire[split..]).unwrap();
            assert_eq!(a.complete + b.complete, 3, "split at {split}");
        }
        // And one byte at a time.
        let mut f = ResponseFramer::default();
        let total: u32 = wire.chunks(1).map(|c| f.feed(c).unwrap().complete).sum();
        assert_eq!(total, 3);
    }

    #[test]
    fn skips_interim_responses_and_stops_at_close() {
        let mut wire = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        wire.extend(response(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
            2,
        ));
        wire.extend(response(OK_350, 350));
        let mut f = ResponseFramer::default();
        assert_eq!(f.feed(&wire).unwrap(), Framed { complete: 1, failed: 0, close: true });
        let mut f = ResponseFramer::default();
        let http10 = response("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 1);
        assert!(f.feed(&http10).unwrap().close);
    }

    #[test]
    fn rejects_what_cannot_be_framed() {
        let mut f = ResponseFramer::default();
        assert_eq!(f.feed(b"HTTP/1.1 200 OK\r\n\r\nbody"), Err(HttpError::Unframed));
        let mut f = ResponseFramer::default();
        assert!(matches!(f.feed(b"SSH-2.0-OpenSSH\r\n\r\n"), Err(HttpError::BadStartLine(_))));
        let mut f = ResponseFramer::default();
        assert!(matches!(
            f.feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(HttpError::BadLength(_))
        ));
        let mut f = ResponseFramer::default();
        let endless = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(f.feed(b"HTTP/1.1 200 OK\r\n").unwrap().complete, 0);
        assert_eq!(f.feed(&endless), Err(HttpError::HeadTooLong));
    }

    #[test]
    fn parses_requests_with_and_without_bodies() {
        let get = build_request("127.0.0.1:80", "/file350");
        assert_eq!(parse_request(&get).unwrap(), Some(Request { len: get.len(), close: false }));
        assert_eq!(parse_request(&get[..get.len() - 1]).unwrap(), None);
        let post = b"POST /x HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcdGET";
        assert_eq!(
            parse_request(post).unwrap(),
            Some(Request { len: post.len() - 3, close: true })
        );
        let http10 = b"GET / HTTP/1.0\r\n\r\n";
        assert!(parse_request(http10).unwrap().unwrap().close);
        assert!(parse_request(b"get / HTTP/1.1\r\n\r\n").is_err());
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::ChunkedRequest)
        );
    }

    #[test]
    fn header_names_and_tokens_match_in_any_case() {
        let wire = response(
            "HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh:   4 \r\nCONNECTION: Keep-Alive, Close\r\n\r\n",
            4,
        );
        let mut f = ResponseFramer::default();
        assert_eq!(f.feed(&wire).unwrap(), Framed { complete: 1, failed: 0, close: true });
        assert_eq!(parse_number(b"0350"), Some(350));
        assert_eq!(parse_number(b"-1"), None);
        assert_eq!(parse_number(b"9999999999999999999"), None);
        assert_eq!(trim(b" \t x y\r"), b"x y");
    }

    #[test]
    fn server_response_frames_as_one_response_of_the_right_size() {
        let resp = build_response(350);
        let mut f = ResponseFramer::default();
        assert_eq!(f.feed(&resp).unwrap().complete, 1);
        assert!(resp.ends_with(&[b'x'; 350]));
    }
}
