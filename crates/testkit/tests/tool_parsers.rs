//! The benchmarks compare against sockperf, iperf3 and wrk by reading their
//! output; these tests pin that parsing to real output of the Debian builds.

use nearhost_testkit::tools::*;

const SOCKPERF: &str = "\
sockperf: [Total Run] RunTime=2.000 sec; Warm up time=400 msec; SentMessages=40010; ReceivedMessages=39984
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=1.550 sec; SentMessages=31008; ReceivedMessages=31001
sockperf: \x1b[2;35m====> avg-latency=340.970 (std-dev=614.070)\x1b[0m
sockperf: # dropped messages = 7; # duplicated messages = 0; # out-of-order messages = 0
sockperf: ---> <MAX> observation = 3914.085
sockperf: ---> percentile 99.999 = 3914.085
sockperf: ---> percentile 99.000 = 2464.382
sockperf: ---> percentile 50.000 =    7.150
sockperf: ---> <MIN> observation =    5.788
";

#[test]
fn reads_sockperf_percentiles_drops_and_counts() {
    assert_eq!(sockperf_percentile(SOCKPERF, "50.000"), Some(7.150));
    assert_eq!(sockperf_percentile(SOCKPERF, "99.000"), Some(2464.382));
    assert_eq!(sockperf_percentile(SOCKPERF, "90.000"), None);
    assert_eq!(sockperf_dropped(SOCKPERF), Some(7));
    assert_eq!(sockperf_valid_messages(SOCKPERF), Some((31008, 31001)));
}

#[test]
fn reads_iperf3_json() {
    let tcp = r#"{"end":{"sum_sent":{"bits_per_second":19932014586.9,"bytes":1,"retransmits":35160},
                 "sum_received":{"bits_per_second":19875387059.1}}}"#;
    assert_eq!(iperf3_tcp_bits(tcp), Some((19932014586.9, 19875387059.1)));
    assert_eq!(iperf3_retransmits(tcp), Some(35160));
    let udp = r#"{"end":{"sum":{"lost_packets":3,"packets":300,"lost_percent":1.0}}}"#;
    assert_eq!(iperf3_udp_loss_percent(udp), Some(1.0));
    assert_eq!(iperf3_tcp_bits("{\"error\":\"unable to connect\"}"), None);
}

#[test]
fn reads_wrk_requests_per_second() {
    let out = "Running 5s test @ http://127.0.0.1:18080/file350\n  1 threads and 50 connections\n\
               Requests/sec:  52265.83\nTransfer/sec:     28.41MB\n";
    assert_eq!(wrk_requests_per_sec(out), Some(52265.83));
    assert_eq!(wrk_requests_per_sec("unable to connect"), None);
}

#[test]
fn median_and_check_lines() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    let c = Check::ratio("x", "1".into(), "1".into(), 1.05, 0.9, 1.1);
    assert!(c.passed() && c.line().ends_with("PASS"), "{}", c.line());
    assert!(c.line().contains("ratio 1.050 (target 0.90..1.10)"), "{}", c.line());
    let c = Check { value: 0.8, ..c };
    assert!(!c.passed() && c.line().ends_with("OUT-OF-RANGE"));
    let c = Check { value: f64::NAN, ..c };
    assert!(!c.passed());
    let c = Check { value: 2.0, high: f64::INFINITY, low: 1.0, ..c };
    assert!(c.passed() && c.line().contains("1.00..inf"), "{}", c.line());
}
