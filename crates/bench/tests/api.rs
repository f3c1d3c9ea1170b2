//! The library API that `nearhost demo` uses: run the server and every mode
//! in-process and get the same `Report` that `--json` prints.

use nearhost_bench::rate::{rate, RateConfig, RateProtocol};
use nearhost_bench::report::{LatencyOrigin, Mode};
use nearhost_bench::rr::{rr, RrConfig};
use nearhost_bench::serve::{ServeConfig, Server};
use nearhost_bench::stream::{stream, StreamConfig};
use nearhost_bench::udp::{udp, UdpConfig};
use nearhost_bench::{BenchError, Report};

fn short<T>(mut config: T, common: impl FnOnce(&mut T) -> &mut nearhost_bench::Common) -> T {
    let c = common(&mut config);
    c.duration_s = 1.0;
    c.warmup_s = 0.0;
    config
}

#[test]
fn every_mode_runs_in_process_against_an_in_process_server() {
    let server = Server::start(&ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        threads: 2,
        ..Default::default()
    })
    .expect("server starts");
    let addr = server.local_addr();

    let r = rr(&short(RrConfig::new(addr), |c| &mut c.common)).unwrap();
    assert_eq!((r.mode, r.latency.as_ref().unwrap().origin), (Mode::Rr, LatencyOrigin::SendTime));

    let mut cfg = short(RateConfig::new(addr), |c| &mut c.common);
    cfg.rate_per_s = 500.0;
    cfg.protocol = RateProtocol::Http { path: "/".into(), host: None };
    let r = rate(&cfg).unwrap();
    assert!(r.counts.responses >= 495 && r.counts.errors == 0, "{:?}", r.counts);

    let r = udp(&short(UdpConfig::new(addr), |c| &mut c.common)).unwrap();
    assert!(r.udp.as_ref().unwrap().received > 0);

    let r = stream(&short(StreamConfig::new(addr), |c| &mut c.common)).unwrap();
    assert!(r.throughput.as_ref().unwrap().client_bits_per_s > 0.0);

    // The report survives the JSON round trip the CLI uses.
    assert_eq!(Report::from_json(&r.to_json()).unwrap(), r);
    let stats = server.shutdown().unwrap();
    assert!(stats.connections >= 3, "{stats:?}");
    assert!(stats.datagrams > 0, "{stats:?}");
}

#[test]
fn library_errors_are_typed_and_name_the_setting() {
    let mut cfg = RateConfig::new("127.0.0.1:9".parse().unwrap());
    cfg.rate_per_s = -1.0;
    match rate(&cfg) {
        Err(e @ BenchError::InvalidArgument { flag: "--rate", .. }) => assert!(e.is_usage_error()),
        other => panic!("expected an invalid --rate, got {other:?}"),
    }
    // Port 9 (discard) is not listening on loopback here: a connect error, not a usage error.
    let err =
        rr(&short(RrConfig::new("127.0.0.1:9".parse().unwrap()), |c| &mut c.common)).unwrap_err();
    assert!(matches!(err, BenchError::Connect { .. }), "{err}");
    assert!(!err.is_usage_error());
}
