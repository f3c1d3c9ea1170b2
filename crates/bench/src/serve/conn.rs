//! One server-side TCP connection: sniffs the protocol from the first bytes,
//! then answers echo requests, discards (sink), sends (source) or serves
//! HTTP/1.1 keep-alive responses.
//!
//! Sockets are edge-triggered (mio), so every handler reads until the kernel
//! has nothing more and writes until the kernel takes nothing more.

use std::io::{self, Read, Write};
use std::sync::LazyLock;

use mio::event::Event;
use mio::net::TcpStream;

use crate::http;
use crate::proto::{TcpMode, ACK_ERR, ACK_OK, HELLO_LEN, MAGIC};

/// Bytes written per call for echo responses and source data: filler, not
/// zeros (see [`crate::proto::filler`]).
static PAYLOAD: LazyLock<Vec<u8>> = LazyLock::new(|| crate::proto::filler(128 * 1024));
/// Stop reading HTTP requests while this much output is waiting: a client
/// that pipelines without reading must not grow our memory without bound.
const MAX_PENDING_OUT: usize = 4 << 20;

/// What the connection does, decided by its first bytes.
enum Proto {
    Sniff,
    Echo { request_size: u64, response_size: u64, partial: u64 },
    Sink { received: u64 },
    Source,
    Http,
}

/// What the worker should do with the connection after an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Keep,
    Close,
}

pub(super) struct Conn {
    pub(super) stream: TcpStream,
    proto: Proto,
    /// Bytes not yet framed (sniffing, partial hello, partial HTTP request).
    inbuf: Vec<u8>,
    /// Bytes to write before anything else (ack, HTTP responses, sink report).
    out: Vec<u8>,
    out_pos: usize,
    /// Echo response bytes still owed (written from [`PAYLOAD`]).
    owed: u64,
    close_after_write: bool,
    /// Reading paused because too much output is pending.
    paused: bool,
}

impl Conn {
    pub(super) fn new(stream: TcpStream) -> Self {
        Conn {
            stream,
            proto: Proto::Sniff,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            owed: 0,
            close_after_write: false,
            paused: false,
        }
    }

    /// Handles one readiness event.
    pub(super) fn on_event(
        &mut self, event: &Event, scratch: &mut [u8], http_response: &[u8],
    ) -> Next {
        if (event.is_readable() || event.is_read_closed())
            && self.read(scratch, http_response, event.is_read_closed()) == Next::Close
        {
            return Next::Close;
        }
        self.flush(scratch, http_response)
    }

    /// Reads until the socket is drained (or reading is paused).
    fn read(&mut self, scratch: &mut [u8], http_response: &[u8], peer_closed: bool) -> Next {
        while !self.paused && !self.close_after_write {
            match self.stream.read(scratch) {
                Ok(0) => return self.on_peer_shutdown(),
                Ok(n) => {
                    self.consume(&scratch[..n], http_response);
                    // A short read emptied the socket: a later arrival raises a
                    // new edge. Not when the peer closed: the FIN raised no
                    // separate edge, so read on until we see the 0.
                    if n < scratch.len() && !peer_closed {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
        Next::Keep
    }

    /// The client shut down its write side. A sink client does that to ask
    /// for the byte count; everyone else is leaving.
    fn on_peer_shutdown(&mut self) -> Next {
        if let Proto::Sink { received } = self.proto {
            self.out.extend_from_slice(&received.to_be_bytes());
            self.close_after_write = true;
            return Next::Keep;
        }
        Next::Close
    }

    fn consume(&mut self, data: &[u8], http_response: &[u8]) {
        match &mut self.proto {
            Proto::Echo { request_size, response_size, partial } => {
                let total = *partial + data.len() as u64;
                *partial = total % *request_size;
                self.owed += total / *request_size * *response_size;
            }
            Proto::Sink { received } => *received += data.len() as u64,
            Proto::Source => {}
            Proto::Sniff | Proto::Http => {
                self.inbuf.extend_from_slice(data);
                self.frame(http_response);
            }
        }
    }

    /// Frames buffered bytes according to the (possibly just sniffed) protocol.
    fn frame(&mut self, http_response: &[u8]) {
        if let Proto::Sniff = self.proto {
            if self.inbuf.len() < MAGIC.len() {
                return;
            }
            if self.inbuf[..MAGIC.len()] != MAGIC {
                self.proto = Proto::Http;
            } else if self.inbuf.len() < HELLO_LEN {
                return;
            } else {
                self.accept_hello(http_response);
                return;
            }
        }
        self.serve_http(http_response);
    }

    fn accept_hello(&mut self, http_response: &[u8]) {
        let hello: [u8; HELLO_LEN] = self.inbuf[..HELLO_LEN].try_into().expect("length checked");
        match TcpMode::from_hello(&hello) {
            Ok(mode) => {
                self.proto = match mode {
                    TcpMode::Echo { request_size, response_size } => Proto::Echo {
                        request_size: u64::from(request_size),
                        response_size: u64::from(response_size),
                        partial: 0,
                    },
                    TcpMode::Sink => Proto::Sink { received: 0 },
                    TcpMode::Source { nodelay } => {
                        // Accepted connections start with TCP_NODELAY (right
                        // for request/response); bulk sending follows the
                        // client's choice, off by default like iperf3.
                        let _ = self.stream.set_nodelay(nodelay);
                        Proto::Source
                    }
                };
                self.out.extend_from_slice(&ACK_OK);
                let rest = self.inbuf.split_off(HELLO_LEN);
                self.inbuf = Vec::new();
                self.consume(&rest, http_response);
            }
            Err(_) => {
                self.out.extend_from_slice(&ACK_ERR);
                self.close_after_write = true;
            }
        }
    }

    /// Answers every complete request in `inbuf` with the fixed response.
    fn serve_http(&mut self, http_response: &[u8]) {
        let mut pos = 0;
        while pos < self.inbuf.len() && !self.close_after_write {
            match http::parse_request(&self.inbuf[pos..]) {
                Ok(Some(req)) => {
                    self.out.extend_from_slice(http_response);
                    pos += req.len;
                    self.close_after_write = req.close;
                }
                Ok(None) => break,
                Err(_) => {
                    self.out.extend_from_slice(http::BAD_REQUEST);
                    self.close_after_write = true;
                }
            }
        }
        self.inbuf.drain(..pos.min(self.inbuf.len()));
        self.paused = self.out.len() - self.out_pos > MAX_PENDING_OUT;
    }

    /// Writes pending output until done or the socket is full.
    fn flush(&mut self, scratch: &mut [u8], http_response: &[u8]) -> Next {
        loop {
            let chunk: &[u8] = if self.out_pos < self.out.len() {
                &self.out[self.out_pos..]
            } else if self.owed > 0 {
                &PAYLOAD[..self.owed.min(PAYLOAD.len() as u64) as usize]
            } else if matches!(self.proto, Proto::Source) {
                &PAYLOAD
            } else {
                break;
            };
            match self.stream.write(chunk) {
                Ok(n) => self.wrote(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
        if self.close_after_write {
            return Next::Close;
        }
        if self.paused {
            // Output drained: take up the requests we stopped reading.
            self.paused = false;
            self.serve_http(http_response);
            if self.read(scratch, http_response, false) == Next::Close {
                return Next::Close;
            }
            return self.flush(scratch, http_response);
        }
        Next::Keep
    }

    fn wrote(&mut self, n: usize) {
        if self.out_pos < self.out.len() {
            self.out_pos += n;
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
        } else if self.owed > 0 {
            self.owed -= n as u64;
        }
    }
}
