//! `serve`: the server side of every mode, on one port for TCP and UDP.
//!
//! Each TCP thread runs its own mio poll with its own SO_REUSEPORT listener,
//! so the kernel spreads connections across threads and no state is shared
//! on the hot path. What a TCP connection does is decided by its first bytes
//! (see [`crate::proto`]): the bench hello selects echo, sink or source;
//! anything else is served as HTTP/1.1. UDP is echoed by separate threads
//! (see [`udp`]), one per TCP thread and pinned alongside it.

mod conn;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::error::BenchError;
use crate::{http, net, sys};
use conn::{Conn, Next};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 3);

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address for both the TCP listener and the UDP socket (port 0: any).
    pub listen: SocketAddr,
    /// Server threads (each with its own listener and poll).
    pub threads: usize,
    /// Body size of the HTTP/1.1 response, bytes.
    pub http_body_size: usize,
    /// Open connections above which new ones are closed at once.
    pub max_connections: usize,
    /// CPUs to pin the threads to (round-robin); empty: no pinning.
    pub cpus: Vec<usize>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            threads: sys::available_cpus(),
            http_body_size: 350,
            max_connections: 10_000,
            cpus: Vec::new(),
        }
    }
}

impl ServeConfig {
    fn validate(&self) -> Result<(), BenchError> {
        if self.threads == 0 || self.threads > 256 {
            return Err(BenchError::invalid("--threads", self.threads, "must be 1..=256"));
        }
        if self.http_body_size > 64 << 20 {
            return Err(BenchError::invalid(
                "--http-body-size", self.http_body_size, "must be at most 64 MiB",
            ));
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err(BenchError::invalid(
                "--max-connections", self.max_connections, "must be 1..=1000000",
            ));
        }
        sys::check_cpus(&self.cpus)
    }
}

/// Totals over the server's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// TCP connections accepted and served.
    pub connections: u64,
    /// TCP connections closed at once because `max_connections` were open.
    pub rejected: u64,
    /// UDP datagrams echoed.
    pub datagrams: u64,
}

/// State shared by the server threads (never touched per request, except
/// the connection count on accept/close).
struct Shared {
    stop: AtomicBool,
    open: AtomicUsize,
    connections: AtomicU64,
    rejected: AtomicU64,
    datagrams: AtomicU64,
    max_connections: usize,
    http_response: Vec<u8>,
}

/// A running server. Dropping it stops the threads.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<Result<(), BenchError>>>,
}

impl Server {
    /// Binds (TCP and UDP on the same port) and starts the threads.
    pub fn start(config: &ServeConfig) -> Result<Server, BenchError> {
        config.validate()?;
        sys::raise_fd_limit();
        let first = net::reuseport_listener(config.listen)?;
        let addr =
            first.local_addr().map_err(|e| BenchError::io("reading the listening address", e))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            datagrams: AtomicU64::new(0),
            max_connections: config.max_connections,
            http_response: http::build_response(config.http_body_size),
        });
        let mut server = Server { addr, shared, wakers: Vec::new(), threads: Vec::new() };
        let mut first = Some(first);
        for index in 0..config.threads {
            // Port 0 was resolved by the first bind; the others share it.
            let listener = match first.take() {
                Some(l) => l,
                None => net::reuseport_listener(addr)?,
            };
            let worker = Worker::new(listener, Arc::clone(&server.shared))?;
            server.wakers.push(Arc::clone(&worker.waker));
            let cpus = config.cpus.clone();
            server.spawn(format!("nhb-serve-{index}"), move || {
                sys::pin_worker(&cpus, index)?;
                worker.run()
            })?;
            let echo = udp::UdpEcho::new(net::reuseport_udp(addr)?, Arc::clone(&server.shared))?;
            let cpus = config.cpus.clone();
            server.spawn(format!("nhb-udp-{index}"), move || {
                sys::pin_worker(&cpus, index)?;
                echo.run()
            })?;
        }
        Ok(server)
    }

    fn spawn(
        &mut self, name: String, body: impl FnOnce() -> Result<(), BenchError> + Send + 'static,
    ) -> Result<(), BenchError> {
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(body)
            .map_err(|e| BenchError::io("starting a server thread", e))?;
        self.threads.push(handle);
        Ok(())
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Totals so far.
    pub fn stats(&self) -> ServeStats {
        ServeStats {
            connections: self.shared.connections.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            datagrams: self.shared.datagrams.load(Ordering::Relaxed),
        }
    }

    /// Blocks until a thread fails (the server normally runs until the
    /// process is killed).
    pub fn wait(mut self) -> Result<ServeStats, BenchError> {
        let threads = std::mem::take(&mut self.threads);
        for handle in threads {
            handle.join().map_err(|_| BenchError::WorkerPanicked)??;
        }
        Ok(self.stats())
    }

    /// Stops the threads and returns the totals.
    pub fn shutdown(mut self) -> Result<ServeStats, BenchError> {
        self.stop_threads()?;
        Ok(self.stats())
    }

    fn stop_threads(&mut self) -> Result<(), BenchError> {
        self.shared.stop.store(true, Ordering::SeqCst);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
        for handle in std::mem::take(&mut self.threads) {
            handle.join().map_err(|_| BenchError::WorkerPanicked)??;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_threads();
    }
}

/// One TCP server thread: a poll over its listener and its connections.
struct Worker {
    poll: Poll,
    waker: Arc<Waker>,
    listener: TcpListener,
    conns: Slab<Conn>,
    shared: Arc<Shared>,
}

impl Worker {
    fn new(listener: std::net::TcpListener, shared: Arc<Shared>) -> Result<Self, BenchError> {
        let setup = |e| BenchError::io("setting up the server poll", e);
        let poll = Poll::new().map_err(setup)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(setup)?);
        let mut listener = TcpListener::from_std(listener);
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE).map_err(setup)?;
        Ok(Worker { poll, waker, listener, conns: Slab::new(), shared })
    }

    fn run(mut self) -> Result<(), BenchError> {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024];
        while !self.shared.stop.load(Ordering::Relaxed) {
            match self.poll.poll(&mut events, Some(Duration::from_secs(1))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(BenchError::io("waiting for server events", e)),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(key) => {
                        let Some(conn) = self.conns.get_mut(key) else { continue };
                        if conn.on_event(event, &mut scratch, &self.shared.http_response)
                            == Next::Close
                        {
                            self.close(key);
                        }
                    }
                }
            }
        }
        for key in self.conns.iter().map(|(k, _)| k).collect::<Vec<_>>() {
            self.close(key);
        }
        Ok(())
    }

    fn accept_all(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ECONNABORTED, EMFILE, …: this connection is lost; keep serving.
                Err(_) => return,
            };
            if self.shared.open.fetch_add(1, Ordering::Relaxed) >= self.shared.max_connections {
                self.shared.open.fetch_sub(1, Ordering::Relaxed);
                self.shared.rejected.fetch_add(1, Ordering::Relaxed);
                continue; // dropping the stream closes it
            }
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self.poll.registry().register(&mut stream, Token(entry.key()), interest).is_err() {
                self.shared.open.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            entry.insert(Conn::new(stream));
            self.shared.connections.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn close(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}
