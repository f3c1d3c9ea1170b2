//! Bad arguments, refused connections, wrong servers: a clear error naming
//! the flag or the target, the documented exit code, and no hang.

use nearhost_testkit as support;

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;

use support::bench::{run, RunOutput};

const LIMIT: Duration = Duration::from_secs(30);

fn bench(args: &[&str]) -> RunOutput {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    run(None, &all, LIMIT)
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

#[test]
fn bad_arguments_exit_with_2_and_name_the_flag() {
    let t = closed_port();
    let cases: [(&[&str], &str); 9] = [
        (&["rate", "--target", &t, "--rate", "0"], "--rate"),
        (&["rate", "--target", &t, "--pipeline", "0"], "--pipeline"),
        (&["rr", "--target", &t, "--connections", "0"], "--connections"),
        (&["rr", "--target", &t, "--connections", "2", "--threads", "3"], "--threads"),
        (&["rr", "--target", &t, "--request-size", "0"], "--request-size"),
        (&["rr", "--target", &t, "--duration", "7200"], "--duration"),
        (&["rr", "--target", "no-such-host.invalid"], "--target"),
        (&["udp", "--target", &t, "--size", "8"], "--size"),
        (&["rr", "--target", &t, "--cpus", "1000"], "--cpus"),
    ];
    for (args, flag) in cases {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(flag), "{args:?} should name {flag}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?} printed a report");
    }
}

#[test]
fn refused_connection_fails_at_once_with_a_hint() {
    let t = closed_port();
    for mode in ["rr", "rate", "stream"] {
        let out = bench(&[mode, "--target", &t, "--duration", "1"]);
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", out.stderr);
        assert!(
            out.stderr.contains(&t) && out.stderr.contains("nothing listens"),
            "{mode}: {}",
            out.stderr
        );
        assert!(out.elapsed < Duration::from_secs(5), "{mode} took {:?}", out.elapsed);
    }
}

#[test]
fn udp_without_a_server_fails_with_a_clear_error() {
    let t = closed_port();
    let out = bench(&["udp", "--target", &t, "--duration", "1", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains(&t), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(5), "took {:?}", out.elapsed);
}

#[test]
fn a_server_that_is_not_nearhost_is_named_as_such() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        std::thread::sleep(Duration::from_millis(500));
    });
    let out = bench(&["rr", "--target", &target, "--duration", "1"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("not a `nearhost bench serve` endpoint"), "{}", out.stderr);
}

#[test]
fn a_server_that_never_answers_the_hello_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    // The kernel completes the handshake from the backlog; nobody ever reads.
    let out = bench(&["rr", "--target", &target, "--duration", "1", "--timeout", "1"]);
    drop(listener);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("no answer to the hello within 1 s"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(5), "took {:?}", out.elapsed);
}

#[test]
fn a_server_that_dies_mid_run_is_counted_not_waited_for() {
    use nix::sys::signal::Signal;
    use support::bench::{start_server, ChildGuard};
    for mode in [&["rr"][..], &["rate", "--rate", "500", "--connections", "4"][..]] {
        let (mut server, addr) = start_server(None, "127.0.0.1:0", &["--threads", "1"]);
        let target = addr.to_string();
        let mut args = vec!["bench"];
        args.extend_from_slice(mode);
        args.extend_from_slice(&[
            "--target", &target, "--duration", "3", "--warmup", "0", "--timeout", "1", "--json",
        ]);
        let child = support::bench::command(None, &args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut client = ChildGuard { child, what: args.join(" ") };
        std::thread::sleep(Duration::from_secs(1));
        server.signal(Signal::SIGKILL);
        server.wait(Duration::from_secs(5));
        let status = client.wait(Duration::from_secs(15));
        let mut out = String::new();
        std::io::Read::read_to_string(client.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(status.success(), "{mode:?}: the run completes and reports: {status:?}");
        let r = nearhost_bench::Report::from_json(&out).unwrap();
        assert!(r.counts.responses > 0, "{mode:?}: {:?}", r.counts);
        assert!(r.counts.errors > 0, "{mode:?}: the failure is counted: {:?}", r.counts);
    }
}

#[test]
fn an_http_server_that_closes_after_every_response_is_followed() {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    // One request per connection, answered with `Connection: close`.
    let server = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let out = bench(&[
        "rate", "--http", "--target", &target, "--rate", "200", "--connections", "2", "--duration",
        "1", "--json",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
    assert!(out.status.success(), "{}", out.stderr);
    let r = nearhost_bench::Report::from_json(&out.stdout).unwrap();
    assert_eq!(
        r.counts.errors, 0,
        "a closed connection after a complete response is no error: {:?}",
        r.counts
    );
    assert!(r.counts.responses >= 190, "{:?}", r.counts);
    assert!(r.counts.reconnects >= 180, "one connection per request: {:?}", r.counts);
}
