//! A progress bar on stderr, only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    total: usize,
    done: usize,
    tty: bool,
    started: Instant,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            total: total.max(1),
            done: 0,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    /// Shows `what` as the step now running.
    pub fn step(&mut self, what: &str) {
        if !self.tty {
            return;
        }
        let width = 30;
        let filled = width * self.done / self.total;
        let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
        let elapsed = self.started.elapsed().as_secs();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K[{bar}] {}/{} {elapsed:>3}s  {what}", self.done, self.total);
        let _ = err.flush();
    }

    pub fn advance(&mut self) {
        self.done = (self.done + 1).min(self.total);
    }

    /// Prints a line above the bar (a note that should stay visible).
    pub fn note(&mut self, line: &str) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{line}");
    }

    pub fn finish(&mut self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}
