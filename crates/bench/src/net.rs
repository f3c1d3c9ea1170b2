//! Socket set-up shared by the client modes and the server: connecting with
//! a timeout and a clear error, the bench handshake, and SO_REUSEPORT
//! listeners (one per server thread, so the kernel spreads connections).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6,
};

use crate::error::BenchError;
use crate::proto::{TcpMode, ACK_ERR, ACK_OK};

/// Opens a TCP connection within `timeout`, mapping failures to errors that
/// say what to check.
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, BenchError> {
    let stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| connect_error(addr, timeout, e))?;
    stream.set_nodelay(true).map_err(|e| BenchError::io("setting TCP_NODELAY", e))?;
    Ok(stream)
}

/// Turns a connect failure into a [`BenchError`] with a hint.
pub(crate) fn connect_error(addr: SocketAddr, timeout: Duration, e: io::Error) -> BenchError {
    let hint = match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            return BenchError::ConnectTimeout { addr, timeout_s: timeout.as_secs_f64() }
        }
        io::ErrorKind::ConnectionRefused => {
            "; nothing listens there (start `nearhost bench serve --listen ADDR:PORT`)"
        }
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => {
            "; there is no route to that address"
        }
        io::ErrorKind::AddrNotAvailable => {
            "; that address cannot be connected to (is it a local or unspecified address?)"
        }
        _ => "",
    };
    BenchError::Connect { addr, error: e, hint }
}

/// Connects and performs the bench hello for `mode` within `timeout`.
pub(crate) fn connect_bench(
    addr: SocketAddr, mode: TcpMode, timeout: Duration,
) -> Result<TcpStream, BenchError> {
    let mut stream = connect(addr, timeout)?;
    let handshake_err = |detail: String| BenchError::Handshake { addr, detail };
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| BenchError::io("setting a read timeout", e))?;
    stream
        .write_all(&mode.hello())
        .map_err(|e| handshake_err(format!("sending the hello failed: {e}")))?;
    let mut ack = [0u8; 4];
    match stream.read_exact(&mut ack) {
        Ok(()) if ack == ACK_OK => {}
        Ok(()) if ack == ACK_ERR => {
            return Err(handshake_err("the server rejected the hello".into()))
        }
        Ok(()) => {
            return Err(handshake_err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&ack)
            )))
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            return Err(handshake_err(format!(
                "no answer to the hello within {} s",
                timeout.as_secs_f64()
            )))
        }
        Err(e) => {
            return Err(handshake_err(format!("the connection failed during the hello: {e}")))
        }
    }
    stream.set_read_timeout(None).map_err(|e| BenchError::io("clearing the read timeout", e))?;
    Ok(stream)
}

/// A non-blocking socket bound to `addr` with SO_REUSEADDR and SO_REUSEPORT.
fn reuseport_socket(addr: SocketAddr, ty: SockType) -> Result<OwnedFd, BenchError> {
    let listen_err = |e: nix::Error| BenchError::Listen { addr, error: e.into() };
    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket(family, ty, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
        .map_err(listen_err)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(listen_err)?;
    setsockopt(&fd, sockopt::ReusePort, &true).map_err(listen_err)?;
    match addr {
        SocketAddr::V4(a) => bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(a)),
    }
    .map_err(listen_err)?;
    Ok(fd)
}

/// A non-blocking TCP listener on `addr` that other threads may share the
/// port with (SO_REUSEPORT).
pub(crate) fn reuseport_listener(addr: SocketAddr) -> Result<TcpListener, BenchError> {
    let fd = reuseport_socket(addr, SockType::Stream)?;
    let backlog = Backlog::new(4096).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog).map_err(|e| BenchError::Listen { addr, error: e.into() })?;
    Ok(TcpListener::from(fd))
}

/// A non-blocking UDP socket on `addr`, port shared across threads.
pub(crate) fn reuseport_udp(addr: SocketAddr) -> Result<UdpSocket, BenchError> {
    let sock = UdpSocket::from(reuseport_socket(addr, SockType::Datagram)?);
    enlarge_udp_buffer(&sock);
    Ok(sock)
}

/// Asks for a 4 MiB receive buffer (the kernel caps it at
/// `net.core.rmem_max`). With the default ~200 KiB, a process that is
/// descheduled for a few milliseconds overflows its own buffer at tens of
/// thousands of datagrams per second, and that loss would be blamed on the
/// network. Best effort: a smaller buffer only makes such loss more likely.
pub(crate) fn enlarge_udp_buffer(sock: &UdpSocket) {
    let _ = setsockopt(sock, sockopt::RcvBuf, &(4 << 20));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connection_names_the_target_and_what_to_do() {
        // Bind then drop a listener to find a port nothing listens on.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let err = connect(addr, Duration::from_secs(2)).unwrap_err().to_string();
        assert!(
            err.contains(&addr.to_string()) && err.contains("--target") && err.contains("serve"),
            "{err}"
        );
    }

    #[test]
    fn two_listeners_share_a_port() {
        let a = reuseport_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.local_addr().unwrap();
        let b = reuseport_listener(addr).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
        let u = reuseport_udp(addr).unwrap();
        assert_eq!(u.local_addr().unwrap(), addr);
    }

    #[test]
    fn handshake_with_a_non_bench_server_fails_clearly() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        });
        let err =
            connect_bench(addr, TcpMode::Sink, Duration::from_secs(2)).unwrap_err().to_string();
        server.join().unwrap();
        assert!(err.contains("not a `nearhost bench serve` endpoint"), "{err}");
    }
}
