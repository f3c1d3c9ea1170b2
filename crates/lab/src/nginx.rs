//! nginx as the `http` workload's server (Debian's `nginx-light`), started in a
//! lab namespace with a configuration of its own: no system files read or
//! written, every path under one directory.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nearhost_kernel::process::{self, Process};
use nearhost_kernel::{netns, NetNs};

use crate::error::{LabError, Result};
use crate::measure::HttpFile;

/// One nginx instance's configuration.
pub struct Config<'a> {
    /// Holds nginx.conf, the pid file, logs, temp dirs and the web root `www`.
    pub dir: &'a Path,
    /// `listen` argument, e.g. `0.0.0.0:8080`.
    pub listen: &'a str,
    pub workers: usize,
    /// Pin the (single) worker to this CPU.
    pub cpu: Option<usize>,
}

impl Config<'_> {
    /// nginx.conf: keep-alive without a request limit (the load generator's
    /// connections stay open for the whole run, as in the study), no access
    /// log, and workers that run as root so the web root needs no
    /// permissions beyond the directory's own.
    pub fn render(&self) -> String {
        let d = self.dir.display();
        let affinity = match self.cpu {
            // One bit per CPU, the lowest on the right.
            Some(c) if self.workers == 1 => format!("worker_cpu_affinity 1{};\n", "0".repeat(c)),
            _ => String::new(),
        };
        format!(
            "daemon off;\nuser root;\nworker_processes {workers};\n{affinity}pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  default_type application/octet-stream;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               keepalive_requests 1000000;\n  keepalive_timeout 60s;\n\
               server {{ listen {listen}; root {d}/www; }}\n}}\n",
            workers = self.workers,
            listen = self.listen,
        )
    }

    /// Writes nginx.conf and the web root with `files` (name, body bytes);
    /// returns the configuration's path.
    pub fn write(&self, files: &[(&str, usize)]) -> std::io::Result<std::path::PathBuf> {
        let www = self.dir.join("www");
        std::fs::create_dir_all(&www)?;
        for (name, size) in files {
            std::fs::write(www.join(name), vec![b'n'; *size])?;
        }
        let conf = self.dir.join("nginx.conf");
        std::fs::write(&conf, self.render())?;
        Ok(conf)
    }
}

/// The files of the `http` workload, by the names the client asks for.
pub fn workload_files() -> Vec<(&'static str, usize)> {
    HttpFile::ALL.iter().map(|f| (f.name(), f.body_bytes())).collect()
}

/// Starts nginx in namespace `ns` (detached: a kept lab keeps it) and waits
/// until it listens on `port`; returns the master and its workers (all are
/// stopped by the lab's teardown: a worker outlives a killed master).
pub fn start_in(ns: &str, cfg: &Config, port: u16) -> Result<Vec<Process>> {
    let conf = cfg
        .write(&workload_files())
        .map_err(|e| LabError::io(format!("write nginx's files in {}", cfg.dir.display()), e))?;
    let handle = NetNs::open(netns::named_path(ns))
        .map_err(LabError::kernel(format!("open namespace {ns}")))?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(cfg.dir);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let child = process::spawn_in(&handle, &mut cmd, true).map_err(|e| {
        LabError::Other(format!(
            "start nginx in {ns}: {e}{}",
            if e.kind() == std::io::ErrorKind::NotFound {
                " (the http workload needs nginx: apt-get install nginx-light, or run scripts/setup.sh)"
            } else {
                ""
            }
        ))
    })?;
    let master = child.id();
    // The Child handle is dropped without waiting: the master is detached
    // and the lab's teardown stops it by pid.
    drop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process::listens_tcp(master, port) {
        if Instant::now() > deadline || Process::of(master).is_none() {
            let log = std::fs::read_to_string(cfg.dir.join("error.log")).unwrap_or_default();
            if let Some(p) = Process::of(master) {
                p.terminate(Duration::from_millis(500));
            }
            return Err(LabError::Other(format!(
                "nginx in {ns} did not listen on port {port} within 10 s: {}",
                log.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut all: Vec<Process> = Process::of(master).into_iter().collect();
    all.extend(process::children(master).into_iter().filter_map(Process::of));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pins_one_worker_and_keeps_everything_in_its_directory() {
        let dir = Path::new("/run/x");
        let c = Config { dir, listen: "0.0.0.0:8080", workers: 1, cpu: Some(1) };
        let text = c.render();
        assert!(text.contains("worker_cpu_affinity 10;"), "{text}");
        assert!(text.contains("listen 0.0.0.0:8080;"));
        for line in text.lines().filter(|l| l.contains(" /")) {
            assert!(line.contains("/run/x/"), "a path outside the directory: {line}");
        }
        let c = Config { dir, listen: "127.0.0.1:1", workers: 2, cpu: Some(0) };
        assert!(!c.render().contains("affinity"), "several workers are not pinned to one CPU");
    }
}
