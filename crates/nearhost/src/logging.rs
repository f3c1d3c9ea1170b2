//! Where logs go and how they look, for every mode of the binary.
//!
//! - stderr always (stdout carries CNI results and command output), coloured
//!   only when stderr is a terminal, so a runtime's log or a pipe never gets
//!   escape codes;
//! - a CNI config's `"logFile"` as well (plain text, appended, never coloured);
//! - `--log-format json` (or `NEARHOST_LOG_FORMAT=json`): one JSON object per
//!   line, for the agent under a log collector;
//! - the level: `NEARHOST_LOG`, else `RUST_LOG` (both `tracing` filters, e.g.
//!   `debug` or `nearhost_agent=debug`), else the CNI config's `"logLevel"`,
//!   else the mode's default.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, message, fields).
    Json,
}

/// What a CNI config says about logging: `"logFile"`, `"logLevel"`.
#[derive(Debug, Default)]
pub struct CniLogging {
    pub file: Option<PathBuf>,
    pub level: Option<String>,
}

/// The levels `"logLevel"` accepts.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl CniLogging {
    /// Reads `"logFile"` and `"logLevel"` from the config on stdin (an
    /// undecodable config has none: the plugin reports it in its own words).
    /// A bad value is an error naming the field and the value.
    pub fn from_config(stdin: &[u8]) -> Result<CniLogging, (String, String)> {
        let Ok(serde_json::Value::Object(conf)) = serde_json::from_slice(stdin) else {
            return Ok(CniLogging::default());
        };
        let mut out = CniLogging::default();
        match conf.get("logFile") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => {
                let p = Path::new(s);
                if !p.is_absolute() || s.contains('\0') || s.ends_with('/') {
                    return Err((
                        "logFile".into(),
                        format!("{s:?} is not an absolute path of a file"),
                    ));
                }
                out.file = Some(p.to_path_buf());
            }
            Some(v) => return Err(("logFile".into(), format!("expected a string, got {v}"))),
        }
        match conf.get("logLevel") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s))
                if LEVELS.contains(&s.to_ascii_lowercase().as_str()) =>
            {
                out.level = Some(s.to_ascii_lowercase());
            }
            Some(v) => {
                return Err(("logLevel".into(), format!("{v} is not one of {}", LEVELS.join(", "))))
            }
        }
        Ok(out)
    }
}

/// Opens a log file for appending: created 0600 when missing, never through
/// a symlink, only a regular file (a config naming `/dev/sda` or a link to
/// `/etc/shadow` gets a warning, not a write).
fn open_log_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// The filter: the environment's, else `fallback`. A filter the environment
/// spells wrong is reported and the fallback used.
fn filter(fallback: &str) -> (EnvFilter, Option<String>) {
    for var in ["NEARHOST_LOG", "RUST_LOG"] {
        if let Ok(v) = std::env::var(var) {
            if v.is_empty() {
                continue;
            }
            return match EnvFilter::try_new(&v) {
                Ok(f) => (f, None),
                Err(e) => (
                    EnvFilter::new(fallback),
                    Some(format!("{var}={v:?} is not a log filter ({e}); using {fallback:?}")),
                ),
            };
        }
    }
    (EnvFilter::new(fallback), None)
}

/// Sets up logging once for the process. `default_level` applies when neither
/// the environment nor `level` (a CNI config's) names one. A log file that
/// cannot be opened is reported on stderr; logging to stderr goes on.
pub fn init(format: Format, default_level: &str, level: Option<&str>, file: Option<&Path>) {
    let (filter, bad_env) = filter(level.unwrap_or(default_level));
    let stderr_ansi = std::io::stderr().is_terminal();
    let stderr_layer = match format {
        Format::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(stderr_ansi)
            .with_target(false)
            .boxed(),
        Format::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed(),
    };
    let mut file_error = None;
    let file_layer = file.and_then(|p| match open_log_file(p) {
        Ok(f) => Some(match format {
            Format::Text => tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(f))
                .with_ansi(false)
                .with_target(false)
                .boxed(),
            Format::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::sync::Mutex::new(f))
                .with_ansi(false)
                .boxed(),
        }),
        Err(e) => {
            file_error = Some(format!("logFile {}: {e}; logging to stderr only", p.display()));
            None
        }
    });
    let _ =
        tracing_subscriber::registry().with(filter).with(stderr_layer).with(file_layer).try_init();
    for msg in bad_env.into_iter().chain(file_error) {
        tracing::warn!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_settings_in_a_cni_config_are_checked() {
        let ok = CniLogging::from_config(br#"{"logFile": "/var/log/nh.log", "logLevel": "DEBUG"}"#)
            .unwrap();
        assert_eq!(ok.file.as_deref(), Some(Path::new("/var/log/nh.log")));
        assert_eq!(ok.level.as_deref(), Some("debug"));
        let none = CniLogging::from_config(br#"{"cniVersion": "1.0.0"}"#).unwrap();
        assert!(none.file.is_none() && none.level.is_none());
        assert!(CniLogging::from_config(b"not json").unwrap().file.is_none());
        for (conf, field, says) in [
            (r#"{"logFile": "nh.log"}"#, "logFile", "\"nh.log\" is not an absolute path"),
            (r#"{"logFile": "/var/log/"}"#, "logFile", "is not an absolute path of a file"),
            (r#"{"logFile": 3}"#, "logFile", "expected a string, got 3"),
            (r#"{"logLevel": "loud"}"#, "logLevel", "\"loud\" is not one of off, error"),
            (r#"{"logLevel": true}"#, "logLevel", "true is not one of"),
        ] {
            let (f, why) = CniLogging::from_config(conf.as_bytes()).unwrap_err();
            assert_eq!(f, field, "{conf}");
            assert!(why.contains(says), "{conf}: {why}");
        }
    }
}
