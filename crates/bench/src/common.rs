//! Checks and report assembly shared by the client modes.

use std::time::Duration;

use crate::error::BenchError;
use crate::report::{Counts, Interval, Mode, Report, Settings, SCHEMA};
use crate::run::Plan;
use crate::sys;

/// Longest run accepted (every load loop must end by itself).
pub const MAX_DURATION_S: f64 = 3600.0;
/// Most connections (or UDP sockets) a client run may open.
pub const MAX_CONNECTIONS: u32 = 100_000;
/// Longest timeout accepted.
pub const MAX_TIMEOUT_S: f64 = 600.0;

/// The settings every client mode shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// Connections (TCP) or sockets (UDP).
    pub connections: u32,
    /// Client threads; 0 picks min(connections, usable CPUs).
    pub threads: usize,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// Unmeasured warm-up before it, seconds.
    pub warmup_s: f64,
    /// Connect and response timeout, seconds (also the drain time after the
    /// run for responses still in flight).
    pub timeout_s: f64,
    /// CPUs to pin client threads to, round-robin; empty: no pinning.
    pub cpus: Vec<usize>,
    /// Show a progress line on stderr (only if stderr is a terminal).
    pub progress: bool,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            connections: 1,
            threads: 0,
            duration_s: 10.0,
            warmup_s: 0.0,
            timeout_s: 5.0,
            cpus: Vec::new(),
            progress: false,
        }
    }
}

impl Common {
    /// Checks ranges; returns the number of threads to use.
    pub(crate) fn validate(&self) -> Result<usize, BenchError> {
        check_seconds("--duration", self.duration_s, 0.001, MAX_DURATION_S)?;
        check_seconds("--warmup", self.warmup_s, 0.0, MAX_DURATION_S)?;
        check_seconds("--timeout", self.timeout_s, 0.001, MAX_TIMEOUT_S)?;
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(BenchError::invalid(
                "--connections",
                self.connections,
                format!("must be 1..={MAX_CONNECTIONS}"),
            ));
        }
        let fd_limit = sys::raise_fd_limit();
        if u64::from(self.connections) + 64 > fd_limit {
            return Err(BenchError::invalid(
                "--connections",
                self.connections,
                format!("the open-files limit is {fd_limit}; raise it (ulimit -n) or use fewer connections"),
            ));
        }
        sys::check_cpus(&self.cpus)?;
        let usable = if self.cpus.is_empty() { sys::available_cpus() } else { self.cpus.len() };
        let threads = match self.threads {
            0 => usable.min(self.connections as usize),
            t => t,
        };
        if threads > self.connections as usize || threads > 1024 {
            return Err(BenchError::invalid(
                "--threads",
                threads,
                format!("must be at most --connections ({}) and at most 1024", self.connections),
            ));
        }
        Ok(threads)
    }

    /// How the run goes: `threads` threads on the chosen CPUs, warm-up, then
    /// the measured duration; `mode` names it on the progress line.
    pub(crate) fn plan(&self, threads: usize, mode: &str) -> Plan {
        Plan {
            threads,
            cpus: self.cpus.clone(),
            warmup_s: self.warmup_s,
            duration_s: self.duration_s,
            progress: self.progress.then(|| mode.to_string()),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s)
    }

    /// The report's settings section, before mode-specific fields.
    pub(crate) fn settings(&self, protocol: &str, threads: usize) -> Settings {
        Settings {
            protocol: protocol.into(),
            connections: self.connections,
            threads: threads as u32,
            duration_s: self.duration_s,
            warmup_s: self.warmup_s,
            request_size: 0,
            response_size: 0,
            rate_per_s: None,
            pipeline: None,
            timeout_s: self.timeout_s,
            cpus: self.cpus.clone(),
            window_bytes: None,
        }
    }
}

/// Checks that a number of seconds is finite and within `min..=max`.
pub(crate) fn check_seconds(
    flag: &'static str, value: f64, min: f64, max: f64,
) -> Result<(), BenchError> {
    if !value.is_finite() || value < min || value > max {
        return Err(BenchError::invalid(
            flag,
            value,
            format!("must be between {min} and {max} seconds"),
        ));
    }
    Ok(())
}

/// Checks a message size against `1..=max` (or `min..=max`).
pub(crate) fn check_size(
    flag: &'static str, value: u32, min: u32, max: u32,
) -> Result<(), BenchError> {
    if value < min || value > max {
        return Err(BenchError::invalid(flag, value, format!("must be {min}..={max} bytes")));
    }
    Ok(())
}

/// A report with the common fields filled in and every optional section empty.
pub(crate) fn base_report(
    mode: Mode, target: String, settings: Settings, counts: Counts, timeline: Vec<Interval>,
) -> Report {
    let elapsed_s = settings.duration_s;
    let in_window: u64 = timeline.iter().map(|i| i.responses).sum();
    Report {
        schema: SCHEMA.into(),
        mode,
        target,
        settings,
        elapsed_s,
        transactions_per_s: in_window as f64 / elapsed_s,
        counts,
        latency: None,
        latency_from_send: None,
        rate: None,
        throughput: None,
        udp: None,
        timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_pick_at_most_one_thread_per_connection() {
        let c = Common::default();
        assert_eq!(c.validate().unwrap(), 1);
    }

    #[test]
    fn out_of_range_values_name_their_flag() {
        let cases: Vec<(Common, &str)> = vec![
            (Common { duration_s: 0.0, ..Common::default() }, "--duration"),
            (Common { duration_s: f64::NAN, ..Common::default() }, "--duration"),
            (Common { duration_s: 7200.0, ..Common::default() }, "--duration"),
            (Common { warmup_s: -1.0, ..Common::default() }, "--warmup"),
            (Common { timeout_s: 0.0, ..Common::default() }, "--timeout"),
            (Common { connections: 0, ..Common::default() }, "--connections"),
            (Common { connections: 2, threads: 3, ..Common::default() }, "--threads"),
        ];
        for (c, flag) in cases {
            let err = c.validate().unwrap_err();
            assert!(err.is_usage_error());
            assert!(err.to_string().contains(flag), "{err} should name {flag}");
        }
    }

    #[test]
    fn sizes_are_checked() {
        assert!(check_size("--request-size", 1, 1, 10).is_ok());
        assert!(check_size("--request-size", 0, 1, 10)
            .unwrap_err()
            .to_string()
            .contains("--request-size"));
    }
}
