//! The `nearhost bench` command line: argument parsing and output only; the
//! measurements live in the library modules.
//!
//! Exit codes (also in docs/bench.md): 0 the run completed (errors and
//! timeouts it counted are in the report), 1 it could not run (unreachable
//! target, refused connection, I/O failure), 2 bad arguments.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::common::Common;
use crate::error::BenchError;
use crate::rate::{RateConfig, RateProtocol};
use crate::report::Report;
use crate::rr::RrConfig;
use crate::serve::{ServeConfig, Server};
use crate::stream::StreamConfig;
use crate::sys::parse_cpu_list;
use crate::udp::UdpConfig;

/// Measure latency and throughput (netperf/sockperf/wrk2/iperf3 semantics).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The measurement to run.
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The `nearhost bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Serve every mode: TCP echo/sink/source, HTTP/1.1 and UDP echo on one port.
    Serve(ServeArgs),
    /// Closed-loop TCP request/response (netperf TCP_RR).
    Rr(RrArgs),
    /// Open-loop constant-rate request/response, coordinated-omission correct (wrk2).
    Rate(RateArgs),
    /// UDP round-trip latency; with --rate, paced load with loss counts (sockperf, iperf3 -u).
    Udp(UdpArgs),
    /// TCP throughput with per-second intervals (iperf3).
    Stream(StreamArgs),
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, TCP and UDP (port 0: pick a free port and print it).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7000")]
    pub listen: SocketAddr,
    /// Server threads [default: number of usable CPUs].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Body size of the HTTP/1.1 response, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 350)]
    pub http_body_size: usize,
    /// Open connections above which new ones are closed at once.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Pin server threads to these CPUs, round-robin (e.g. 0,2-3).
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Stop after this many seconds [default: run until killed].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<f64>,
    /// Print the listening line as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A `--cpus` list (a newtype so clap treats it as one value, not many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

fn parse_cpus(text: &str) -> Result<CpuList, String> {
    parse_cpu_list(text).map(CpuList)
}

/// Flags every client mode has.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Server address (ADDR:PORT or HOST:PORT).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_target)]
    pub target: SocketAddr,
    /// Measured duration, seconds (at most 3600).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub duration: f64,
    /// Unmeasured warm-up before the measured window, seconds [default: 1 for rr, else 0].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub warmup: Option<f64>,
    /// Connections (TCP) or sockets (UDP).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub connections: u32,
    /// Client threads [default: min(connections, usable CPUs)].
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub threads: usize,
    /// Connect and response timeout, seconds [default: 5, udp: 1].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<f64>,
    /// Pin client threads to these CPUs, round-robin (e.g. 0,2-3).
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub cpus: Option<CpuList>,
    /// Print the report as JSON (schema in docs/bench.md).
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    fn common(&self, default_warmup: f64, default_timeout: f64) -> Common {
        Common {
            connections: self.connections,
            threads: self.threads,
            duration_s: self.duration,
            warmup_s: self.warmup.unwrap_or(default_warmup),
            timeout_s: self.timeout.unwrap_or(default_timeout),
            cpus: self.cpus.clone().map(|c| c.0).unwrap_or_default(),
            progress: true,
        }
    }
}

/// Flags of `rr`.
#[derive(Debug, Args)]
pub struct RrArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Request size, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1)]
    pub request_size: u32,
    /// Response size, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1)]
    pub response_size: u32,
}

/// Flags of `rate`.
#[derive(Debug, Args)]
pub struct RateArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Requests per second across all connections.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 1000.0)]
    pub rate: f64,
    /// Most requests in flight per connection (1: wait for each response, like wrk2).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub pipeline: u32,
    /// Speak HTTP/1.1 (GET --path) to any HTTP server instead of the bench echo protocol.
    #[arg(long)]
    pub http: bool,
    /// HTTP request path.
    #[arg(long, value_name = "PATH", default_value = "/", requires = "http")]
    pub path: String,
    /// HTTP Host header [default: the target address].
    #[arg(long, value_name = "HOST", requires = "http")]
    pub host: Option<String>,
    /// Echo request size, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1, conflicts_with = "http")]
    pub request_size: u32,
    /// Echo response size, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1, conflicts_with = "http")]
    pub response_size: u32,
}

/// Flags of `udp`.
#[derive(Debug, Args)]
pub struct UdpArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Datagram payload size, bytes (16..=65507).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: u32,
    /// Paced load: datagrams per second across all sockets [default: ping-pong].
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
}

/// Flags of `stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Server sends, client receives (default: client sends).
    #[arg(long)]
    pub reverse: bool,
    /// Bytes per write (or read) call.
    #[arg(long, value_name = "BYTES", default_value_t = 128 * 1024)]
    pub write_size: u32,
    /// Send with TCP_NODELAY (like iperf3 -N; off by default, like iperf3).
    #[arg(long)]
    pub nodelay: bool,
    /// Socket buffer of every connection, bytes: SO_SNDBUF and SO_RCVBUF, which
    /// bound the TCP window (like iperf3 -w). Default: the kernel autotunes.
    #[arg(long, value_name = "BYTES")]
    pub window: Option<u32>,
}

/// Runs a `nearhost bench` command line.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (report, json) = match args.command {
        BenchCommand::Serve(a) => return serve(a),
        BenchCommand::Rr(a) => {
            let mut config = RrConfig::new(a.client.target);
            config.common = a.client.common(1.0, 5.0);
            config.request_size = a.request_size;
            config.response_size = a.response_size;
            (crate::rr::rr(&config)?, a.client.json)
        }
        BenchCommand::Rate(a) => {
            let mut config = RateConfig::new(a.client.target);
            config.common = a.client.common(0.0, 5.0);
            config.rate_per_s = a.rate;
            config.pipeline = a.pipeline;
            config.protocol = match a.http {
                true => RateProtocol::Http { path: a.path, host: a.host },
                false => RateProtocol::Echo {
                    request_size: a.request_size,
                    response_size: a.response_size,
                },
            };
            (crate::rate::rate(&config)?, a.client.json)
        }
        BenchCommand::Udp(a) => {
            let mut config = UdpConfig::new(a.client.target);
            config.common = a.client.common(0.0, 1.0);
            config.size = a.size;
            config.rate_per_s = a.rate;
            (crate::udp::udp(&config)?, a.client.json)
        }
        BenchCommand::Stream(a) => {
            let mut config = StreamConfig::new(a.client.target);
            config.common = a.client.common(0.0, 5.0);
            config.reverse = a.reverse;
            config.write_size = a.write_size;
            config.nodelay = a.nodelay;
            config.window = a.window;
            (crate::stream::stream(&config)?, a.client.json)
        }
    };
    print_report(&report, json)
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    let text = if json { report.to_json() } else { crate::render::render(report) };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", text.trim_end()).context("writing the report to stdout")?;
    Ok(())
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let config = ServeConfig {
        listen: a.listen,
        threads: a.threads.unwrap_or(ServeConfig::default().threads),
        http_body_size: a.http_body_size,
        max_connections: a.max_connections,
        cpus: a.cpus.map(|c| c.0).unwrap_or_default(),
    };
    let server = Server::start(&config)?;
    let addr = server.local_addr();
    let line = if a.json {
        serde_json::json!({ "listening": addr.to_string(), "threads": config.threads }).to_string()
    } else {
        format!(
            "nearhost bench serve: listening on {addr} (TCP echo/sink/source/HTTP, UDP echo), {} thread(s)",
            config.threads
        )
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).context("writing to stdout")?;
    drop(out);
    let stats = match a.duration {
        Some(secs) => {
            std::thread::sleep(Duration::from_secs_f64(secs));
            server.shutdown()?
        }
        None => server.wait()?,
    };
    eprintln!(
        "nearhost bench serve: {} connections, {} rejected, {} datagrams echoed",
        stats.connections, stats.rejected, stats.datagrams
    );
    Ok(())
}

/// The process exit code for an error returned by [`run`]: 2 for bad
/// arguments, 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<BenchError>() {
        Some(e) if e.is_usage_error() => 2,
        _ => 1,
    }
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    let secs: f64 =
        text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=crate::common::MAX_DURATION_S).contains(&secs) {
        return Err(format!("must be 0..={} seconds", crate::common::MAX_DURATION_S));
    }
    Ok(secs)
}

fn parse_target(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let mut addrs =
        text.to_socket_addrs().map_err(|e| format!("expected ADDR:PORT or HOST:PORT ({e})"))?;
    addrs.next().ok_or_else(|| format!("{text:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(line: &str) -> Result<BenchArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))
            .map(|w| w.bench)
    }

    #[test]
    fn every_subcommand_parses_its_documented_flags() {
        let lines = [
            "serve --listen 127.0.0.1:0 --threads 2 --http-body-size 4096 --max-connections 5 --cpus 0 --duration 1 --json",
            "rr --target 127.0.0.1:7000 --connections 2 --threads 1 --request-size 64 --response-size 64 \
             --duration 1 --warmup 0 --timeout 2 --cpus 0 --json",
            "rate --target 127.0.0.1:7000 --rate 1000 --pipeline 4 --connections 10 --request-size 2 --response-size 3",
            "rate --target 127.0.0.1:80 --http --path /file350 --host example --rate 5000",
            "udp --target [::1]:7000 --size 100 --rate 20000 --connections 2",
            "stream --target 127.0.0.1:7000 --reverse --write-size 65536 --connections 2 --nodelay --window 65536",
        ];
        for line in lines {
            let args = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            if let BenchCommand::Rr(rr) = &args.command {
                assert_eq!(rr.client.cpus, Some(CpuList(vec![0])));
                assert_eq!(rr.request_size, 64);
            }
        }
    }

    #[test]
    fn bad_flags_are_rejected_by_name() {
        let err = parse("rate --target 127.0.0.1:7000 --path /x").unwrap_err().to_string();
        assert!(err.contains("--http"), "{err}");
        let err = parse("rr --target 127.0.0.1:7000 --duration soon").unwrap_err().to_string();
        assert!(err.contains("--duration"), "{err}");
        let err = parse("rr --target nowhere").unwrap_err().to_string();
        assert!(err.contains("--target"), "{err}");
        let err = parse("rr --target 127.0.0.1:1 --cpus 2-1").unwrap_err().to_string();
        assert!(err.contains("--cpus"), "{err}");
    }

    #[test]
    fn seconds_and_targets_parse() {
        assert_eq!(parse_seconds("1.5"), Ok(1.5));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("ten").unwrap_err().contains("seconds"));
        assert_eq!(parse_target("127.0.0.1:7000").unwrap().port(), 7000);
        assert_eq!(parse_target("[::1]:80").unwrap().port(), 80);
        assert!(parse_target("127.0.0.1").is_err());
    }

    #[test]
    fn usage_errors_exit_with_two() {
        let usage = anyhow::Error::from(BenchError::invalid("--rate", 0, "must be positive"));
        assert_eq!(exit_code(&usage), 2);
        let io = anyhow::Error::from(BenchError::io("x", std::io::Error::other("y")));
        assert_eq!(exit_code(&io), 1);
    }
}
