//! `nearhost bench` across two network namespaces joined by a veth pair,
//! and the errors that only a real network path produces (no route, a
//! silent address). All traffic stays inside namespaces this test creates.

use nearhost_testkit as support;

use std::time::Duration;

use support::bench::{check_report, run, run_report, start_server, Netns, VethPair};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn every_mode_crosses_a_veth_pair() {
    let pair = VethPair::new();
    let listen = format!("{}:7000", VethPair::ADDR_B);
    let (_server, addr) = start_server(Some(&pair.b.name), &listen, &["--threads", "1"]);
    let target = addr.to_string();
    let ns = Some(pair.a.name.as_str());
    let rr = run_report(
        ns,
        &["bench", "rr", "--target", &target, "--duration", "1", "--warmup", "0"],
        LIMIT,
    );
    check_report(&rr);
    assert!(rr.counts.responses > 100, "{:?}", rr.counts);
    let rate = run_report(
        ns,
        &["bench", "rate", "--target", &target, "--duration", "1", "--rate", "500"],
        LIMIT,
    );
    // Every request answered; the schedule (500 in 1 s) is for a loaded
    // generator to keep only roughly: the kernel lab's emulated CPUs sent 492.
    let c = &rate.counts;
    assert!(c.responses == c.requests_sent && c.errors == 0 && c.timeouts == 0, "{c:?}");
    assert!(c.requests_sent >= 450, "{c:?}");
    let udp = run_report(
        ns,
        &["bench", "udp", "--target", &target, "--duration", "1", "--rate", "1000"],
        LIMIT,
    );
    assert!(udp.udp.as_ref().unwrap().received >= 990, "{:?}", udp.udp);
    let stream =
        run_report(ns, &["bench", "stream", "--target", &target, "--duration", "1"], LIMIT);
    assert!(stream.throughput.as_ref().unwrap().client_bits_per_s > 1e8, "{:?}", stream.throughput);
}

#[test]
fn no_route_to_the_target_fails_at_once() {
    let ns = Netns::new("lo");
    let out = run(
        Some(&ns.name),
        &["bench", "rr", "--target", "198.18.7.1:7000", "--duration", "1"],
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("no route"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(5), "took {:?}", out.elapsed);
}

#[test]
fn a_silent_address_times_out_within_the_timeout() {
    let pair = VethPair::new();
    let ns = Some(pair.a.name.as_str());
    let target = format!("{}:7000", VethPair::SILENT);
    let out =
        run(ns, &["bench", "rr", "--target", &target, "--duration", "1", "--timeout", "1"], LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("timed out after 1 s"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(4), "took {:?}", out.elapsed);

    let out =
        run(ns, &["bench", "udp", "--target", &target, "--duration", "1", "--timeout", "1"], LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("no UDP reply"), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(4), "took {:?}", out.elapsed);
}
