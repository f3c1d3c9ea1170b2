//! `nearhost bench`: latency and throughput measurement.
//!
//! Modes (each a function returning a [`Report`]):
//! - [`rr::rr`] — closed-loop TCP request/response (netperf TCP_RR);
//! - [`rate::rate`] — open-loop constant rate, latency measured from each
//!   request's intended send time (coordinated-omission correct, wrk2), over
//!   the bench echo protocol or HTTP/1.1;
//! - [`udp::udp`] — UDP ping-pong, or paced load with loss and reordering;
//! - [`stream::stream`] — TCP bulk throughput (iperf3);
//! - [`serve::Server`] — the server side of all of them, on one port.
//!
//! Every mode reports HDR-histogram percentiles (p50 … p99.999, max), a
//! per-second timeline, and says whether its latency is round trip or one
//! way. [`Report`] is `serde`-serialisable; `nearhost bench … --json` prints
//! exactly it, so callers can either call these functions in-process or run
//! the binary and parse its output with [`Report::from_json`].
//!
//! ```no_run
//! use nearhost_bench::{rate::RateConfig, serve::{ServeConfig, Server}};
//! let server = Server::start(&ServeConfig { listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() })?;
//! let mut config = RateConfig::new(server.local_addr());
//! config.rate_per_s = 5000.0;
//! config.common.duration_s = 2.0;
//! let report = nearhost_bench::rate::rate(&config)?;
//! println!("p99 {} µs", report.latency.unwrap().p99_us);
//! # Ok::<(), nearhost_bench::BenchError>(())
//! ```

pub mod cli;
pub mod common;
pub mod error;
pub mod proto;
pub mod rate;
pub mod render;
pub mod report;
pub mod rr;
pub mod serve;
pub mod stream;
pub mod udp;

mod clock;
mod hist;
mod http;
mod loadgen;
mod net;
mod run;
mod schedule;
mod seq;
mod sys;
mod timeline;

pub use common::Common;
pub use error::BenchError;
pub use report::Report;
pub use sys::parse_cpu_list;
