//! Process and thread set-up: CPU pinning and the open-files limit.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::Pid;

use crate::error::BenchError;

/// Largest CPU number accepted by `--cpus` (the kernel's CpuSet size).
const MAX_CPU: usize = 1023;

/// Parses a CPU list such as `0,2-3` (the `taskset -c` syntax) into CPU
/// numbers, in the order given, without duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus: Vec<usize> = Vec::new();
    for part in text.split(',').map(str::trim) {
        let num = |s: &str| -> Result<usize, String> {
            let n: usize = s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a CPU number (use e.g. 0,2-3)"))?;
            if n > MAX_CPU {
                return Err(format!("CPU {n} is above {MAX_CPU}"));
            }
            Ok(n)
        };
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (num(lo)?, num(hi)?),
            None => (num(part)?, num(part)?),
        };
        if lo > hi {
            return Err(format!("range {part:?} runs backwards"));
        }
        for cpu in lo..=hi {
            if !cpus.contains(&cpu) {
                cpus.push(cpu);
            }
        }
    }
    Ok(cpus)
}

/// Checks that every CPU is one this process may run on.
pub(crate) fn check_cpus(cpus: &[usize]) -> Result<(), BenchError> {
    let allowed = sched_getaffinity(Pid::from_raw(0))
        .map_err(|e| BenchError::io("reading the CPU affinity", e.into()))?;
    for &cpu in cpus {
        if !allowed.is_set(cpu).unwrap_or(false) {
            let list: Vec<String> = (0..=MAX_CPU)
                .filter(|&c| allowed.is_set(c).unwrap_or(false))
                .map(|c| c.to_string())
                .collect();
            return Err(BenchError::invalid(
                "--cpus",
                cpu,
                format!("this process may only run on CPUs {}", list.join(",")),
            ));
        }
    }
    Ok(())
}

/// Pins the calling thread to one CPU.
pub(crate) fn pin_current_thread(cpu: usize) -> Result<(), BenchError> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|error| BenchError::Affinity { cpu, error })?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|error| BenchError::Affinity { cpu, error })
}

/// Pins worker `index` to its CPU, if `cpus` is not empty (round-robin).
pub(crate) fn pin_worker(cpus: &[usize], index: usize) -> Result<(), BenchError> {
    match cpus.get(index % cpus.len().max(1)) {
        Some(&cpu) => pin_current_thread(cpu),
        None => Ok(()),
    }
}

/// Raises the soft open-files limit to the hard limit so that thousands of
/// connections fit; returns the resulting soft limit.
pub(crate) fn raise_fd_limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// Number of CPUs this process may use (at least 1).
pub(crate) fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("1,0").unwrap(), vec![1, 0]);
        assert_eq!(parse_cpu_list("0-2,5, 2").unwrap(), vec![0, 1, 2, 5]);
    }

    #[test]
    fn rejects_bad_lists() {
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("a").unwrap_err().contains("not a CPU number"));
        assert!(parse_cpu_list("3-1").unwrap_err().contains("backwards"));
        assert!(parse_cpu_list("5000").unwrap_err().contains("above"));
    }

    #[test]
    fn cpu_zero_is_usable_and_a_huge_cpu_is_not() {
        // Every Linux process may run on some CPU; CPU 1023 exists nowhere here.
        let allowed = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let first = (0..=MAX_CPU).find(|&c| allowed.is_set(c).unwrap()).unwrap();
        assert!(check_cpus(&[first]).is_ok());
        let err = check_cpus(&[MAX_CPU]).unwrap_err();
        assert!(err.to_string().contains("--cpus"), "{err}");
    }
}
