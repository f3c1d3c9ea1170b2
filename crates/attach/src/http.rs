//! Just enough HTTP/1.1 for one GET to a container engine's API on its Unix
//! socket (Docker, or Podman's Docker-compatible API). Blocking, no async
//! runtime: this runs in the same process as the plugin code.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long an engine may take to answer an inspect.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Inspect answers are a few KiB; refuse anything absurd.
const MAX_RESPONSE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The socket is missing, refuses connections or denies access.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET path` on the Unix socket at `socket`. The connection is closed after
/// one request, so the body ends at EOF unless framed otherwise.
pub fn get(socket: &Path, path: &str) -> Result<Response, HttpError> {
    let mut stream = UnixStream::connect(socket).map_err(HttpError::Connect)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(HttpError::Io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(HttpError::Io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: nearhost\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(HttpError::Io)?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw).map_err(HttpError::Io)?;
    parse_response(&raw)
}

/// Parses a complete response: status line, headers, and a body framed by
/// `Transfer-Encoding: chunked`, `Content-Length`, or EOF.
pub fn parse_response(raw: &[u8]) -> Result<Response, HttpError> {
    let bad = |m: &str| HttpError::Malformed(m.to_string());
    let split =
        raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers are not UTF-8"))?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length: Option<usize> = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length =
                Some(v.parse().map_err(|_| HttpError::Malformed(format!("Content-Length {v:?}")))?);
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = length {
        body.get(..n).ok_or_else(|| bad("body shorter than its Content-Length"))?.to_vec()
    } else {
        body.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| HttpError::Malformed("chunk size line".into()))?;
        let size_text = std::str::from_utf8(&data[..eol]).unwrap_or_default();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_text:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk =
            data.get(..size).ok_or_else(|| HttpError::Malformed("truncated chunk".into()))?;
        out.extend_from_slice(chunk);
        data =
            data.get(size + 2..).ok_or_else(|| HttpError::Malformed("truncated chunk".into()))?;
    }
}

/// Percent-encodes a path segment (container names are plain, but a user may
/// type anything).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_chunked_and_eof_bodies() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}xx").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"{\"a\":1}"[..]));
        let r = parse_response(b"HTTP/1.0 500 Oops\r\nServer: x\r\n\r\nboom").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"boom"[..]));
    }

    #[test]
    fn malformed_responses_are_errors() {
        for raw in [
            &b"garbage"[..],
            b"SPDY 200\r\n\r\n",
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(
                matches!(parse_response(raw), Err(HttpError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn one_get_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let n = conn.read(&mut req).unwrap();
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Id\":\"abc\"}",
            )
            .unwrap();
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        let r = get(&sock, "/containers/web%2F1/json").unwrap();
        assert_eq!(r.body, b"{\"Id\":\"abc\"}");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /containers/web%2F1/json HTTP/1.1\r\n"), "{req}");
        assert!(matches!(get(&dir.path().join("none.sock"), "/"), Err(HttpError::Connect(_))));
        assert_eq!(path_segment("web/1 x"), "web%2F1%20x");
    }
}
