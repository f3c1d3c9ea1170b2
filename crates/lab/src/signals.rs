//! Ctrl-C and SIGTERM during a demo: remembered in a flag that the run checks
//! between (and during) measurements, so it can take the lab down cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{LabError, Result};

#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Registers SIGINT, SIGTERM and SIGHUP.
    pub fn install() -> Result<StopFlag> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in
            [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP]
        {
            signal_hook::flag::register(sig, Arc::clone(&flag))
                .map_err(|e| LabError::io("install signal handler", e))?;
        }
        Ok(StopFlag(flag))
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn check(&self) -> Result<()> {
        if self.raised() {
            Err(LabError::Interrupted)
        } else {
            Ok(())
        }
    }
}
