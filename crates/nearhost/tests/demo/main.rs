//! `nearhost demo --quick` end to end: the report, its page (rendered in
//! headless Chromium), with the default workloads and with the studies' ones.
//!
//! Not run in the kernel lab: it measures latency, which under qemu's emulation
//! says nothing about the kernel; the lab's own tests build the same lab there.

use nearhost_testkit as support;

use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use support::lab::*;
use support::*;

/// Screenshot of a page in headless Chromium, decoded to RGBA.
fn screenshot(html: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("shot.png");
    let status = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1600",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("chromium (apt-get install chromium)");
    assert!(status.success(), "chromium failed to render the report");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let rgba: Vec<u8> = match info.color_type {
        png::ColorType::Rgba => buf[..info.buffer_size()].to_vec(),
        png::ColorType::Rgb => {
            buf[..info.buffer_size()].chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
        }
        other => panic!("unexpected PNG color type {other:?}"),
    };
    (info.width, info.height, rgba)
}

fn count_color(rgba: &[u8], hex: &str) -> usize {
    let c = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    let (r, g, b) = ((c >> 16) as u8, (c >> 8) as u8, c as u8);
    rgba.chunks(4)
        .filter(|p| p[0].abs_diff(r) < 8 && p[1].abs_diff(g) < 8 && p[2].abs_diff(b) < 8)
        .count()
}

/// One lab per machine: the two demos of this file take turns.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn demo_quick_end_to_end() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let _clean = CleanLab;
    let out_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // Three short rounds: the ordering check compares medians, not one sample.
    let out = nearhost(&[
        "demo",
        "--quick",
        "--rounds",
        "3",
        "--json",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert!(out.status.success(), "demo failed: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("demo --quick took {took:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints the report");
    assert_eq!(report["schema"], "nearhost-demo/1");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(saved["measurements"], report["measurements"], "report.json is what --json printed");
    // The header: doctor's summary of this machine and the lab hosts' tuning.
    let host = &report["host"];
    assert!(host["cpus"].as_u64().unwrap() >= 1, "{host}");
    let links = host["links"].as_array().unwrap();
    assert!(links.iter().any(|l| l[0] == "veth" && l[1] == "yes"), "{host}");
    let tuning = host["tuning"].as_str().unwrap();
    assert!(tuning.contains("tuned by nearhost"), "{tuning}");
    let lab_hosts = report["lab_hosts"].as_array().unwrap();
    assert_eq!(lab_hosts.len(), 2, "{lab_hosts:?}");
    for h in lab_hosts {
        let fin =
            h["sysctls"].as_array().unwrap().iter().find(|kv| kv[0] == "net.ipv4.tcp_fin_timeout");
        assert!(fin.is_some_and(|kv| kv[1].as_str().unwrap().parse::<u32>().is_ok()), "{h}");
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains("/run/nearhost-lab/bpffs"), "the lab unmounted its bpffs: {mounts}");

    // Every datapath is either measured or explained; ipvlan only where the
    // kernel has it, routed-bpf only where it has tcx (Linux 6.6+).
    let tcx = kernel_at_least(6, 6);
    let expected =
        ["host", "bridge", "routed", "routed-bpf", "netkit", "vxlan", "macvlan", "ipvlan"];
    let infos = report["datapaths"].as_array().unwrap();
    for name in expected {
        let d = infos
            .iter()
            .find(|d| d["datapath"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let want = match name {
            "ipvlan" => kernel_has("ipvlan"),
            "routed-bpf" => tcx,
            "netkit" => kernel_has("netkit"),
            _ => true,
        };
        assert_eq!(d["available"], want, "{name}: {d}");
        if !want {
            assert!(d["reason"].as_str().unwrap().contains("not available on this kernel"), "{d}");
        }
    }
    let measured: Vec<&str> = infos
        .iter()
        .filter(|d| d["available"] == true)
        .map(|d| d["datapath"].as_str().unwrap())
        .collect();
    let ms = report["measurements"].as_array().unwrap();
    let keys: Vec<&str> = ms.iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["rr-1B", "rr-64B", "rate-30pct", "rate-50pct", "rate-70pct", "rate-90pct"]);
    for m in ms {
        for dp in &measured {
            let r = m["results"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["datapath"] == *dp)
                .unwrap_or_else(|| panic!("{dp} not in {}", m["key"]));
            assert!(r["median"]["p50_us"].as_f64().unwrap() > 0.0);
            assert!(r["median"]["transactions_per_s"].as_f64().unwrap() > 0.0);
            if *dp == "host" {
                assert!(r["ratio_to_host"].is_null());
            } else {
                assert!(
                    r["ratio_to_host"]["p50"]["median"].as_f64().unwrap() > 0.0,
                    "{dp} has no ratio"
                );
            }
        }
    }
    // No ordering between datapaths is asserted here: the demo's numbers are
    // benchmarks, judged in docs/PERFORMANCE.md from interleaved rounds. A CI
    // run on a loaded machine measured the host's p50 at 357 µs and bridge's
    // at 206 µs; a test that fails on noise proves nothing about nearhost.

    // A self-contained page that really draws its charts.
    let html_path = out_dir.path().join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for fetch in ["src=\"http", "href=\"http", "url(http", "@import", "<script"] {
        assert!(!html.contains(fetch), "the report must not fetch anything ({fetch})");
    }
    assert_eq!(html.matches("class=\"chart percentile\"").count(), 6);
    assert!(
        html.contains("<h2>The host</h2>") && html.contains("lab hosts' sysctls"),
        "the header"
    );
    let (w, h, rgba) = screenshot(&html_path);
    assert!(w >= 1000 && h >= 1000);
    for (dp, color) in
        [("bridge", "#d62728"), ("routed", "#2ca02c"), ("vxlan", "#ff7f0e"), ("macvlan", "#1f77b4")]
    {
        let n = count_color(&rgba, color);
        assert!(n > 300, "{dp}'s color appears in only {n} pixels: the charts did not draw");
    }
    assert!(lab_namespaces().is_empty(), "the demo left namespaces: {:?}", lab_namespaces());
    assert!(lab_processes().is_empty(), "the demo left processes: {:?}", lab_processes());
}

/// Live nginx processes on the machine (the http workload starts one per
/// server namespace; the lab's teardown must stop every one of them). A
/// zombie is not counted: the lab's nginx belongs to init once the demo has
/// exited, and this machine's init reaps it when it gets round to it.
fn nginx_pids() -> Vec<String> {
    let out = Command::new("ps").args(["-eo", "pid=,stat=,comm="]).output().expect("ps (procps)");
    let mut pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [pid, stat, "nginx"] if !stat.starts_with('Z') => Some(pid.to_string()),
            _ => None,
        })
        .collect();
    pids.sort();
    pids
}

/// The studies' workloads (all but the default two) end to end, with short
/// runs: every section, every datapath's figures, the charts drawn, nginx's
/// responses the study's sizes, and nothing left behind.
#[test]
fn demo_reruns_the_studies_workloads_end_to_end() {
    let _one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
    let _clean = CleanLab;
    let nginx_before = nginx_pids();
    let out_dir = tempfile::tempdir().unwrap();
    let out = nearhost(&[
        "demo",
        "--quick",
        "--workload",
        "http,udp",
        "--workload",
        "stream,pps",
        "--datapaths",
        "routed,macvlan",
        "--duration",
        "0.4",
        "--udp-sizes",
        "64,1024",
        "--windows",
        "64K,auto",
        "--keep",
        "--json",
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    // The estimate comes first, before the lab is built.
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("nearhost demo: http, udp, stream, pps (") && first.contains(" s "),
        "{stderr}"
    );

    // nginx answers the study's sizes: 350 bytes in all for the small file.
    let fetch = |path: &str| {
        let script = format!(
            "import socket\ns=socket.create_connection(('198.18.0.12',8080),5)\n\
             s.sendall(b'GET /{path} HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n\
             d=b''\nwhile True:\n c=s.recv(65536)\n if not c: break\n d+=c\nprint(len(d), d.split(b' ')[1].decode())"
        );
        let o = Command::new("ip")
            .args(["netns", "exec", "nhlab-h1", "python3", "-c", &script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let small = fetch("350B");
    let large = fetch("4KB");
    let down = nearhost(&["lab", "down"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    // A 100-byte body under about 250 bytes of nginx's headers (with
    // "Connection: close" here; the demo's keep-alive connections get
    // "keep-alive", 5 bytes more).
    for (got, body) in [(&small, 100), (&large, 4096)] {
        let (len, status) = got.split_once(' ').unwrap_or_else(|| panic!("{got:?}"));
        assert_eq!(status, "200", "{got}");
        let headers = len.parse::<usize>().unwrap() - body;
        assert!((235..=260).contains(&headers), "{body}-byte body: {got}");
    }

    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints the report");
    assert_eq!(
        report["settings"]["workloads"],
        serde_json::json!(["http", "udp", "stream", "pps"])
    );
    for file in ["350B", "4KB"] {
        assert!(report["host_http_max_per_s"][file].as_f64().unwrap() > 10.0, "{file}");
    }
    assert!(report["host_max_per_s"].is_null(), "rate was not measured");
    let ms = report["measurements"].as_array().unwrap();
    let keys: Vec<&str> = ms.iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "http-350B-max", "http-350B-30pct", "http-350B-50pct", "http-350B-70pct",
            "http-4KB-max", "http-4KB-30pct", "http-4KB-50pct", "http-4KB-70pct", "udp-64B",
            "udp-1024B", "udp-loss-1400B-20000ps", "stream-64K", "stream-auto", "pps-1s", "pps-4s"
        ]
    );
    let measured = ["host", "routed", "macvlan"];
    for m in ms {
        let key = m["key"].as_str().unwrap();
        let results = m["results"].as_array().unwrap();
        assert_eq!(results.len(), measured.len(), "{key}");
        for r in results {
            let dp = r["datapath"].as_str().unwrap();
            assert!(measured.contains(&dp), "{key}: {dp}");
            let f = &r["median"];
            let num = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
            let what = format!("{key} {dp}: {f}");
            match m["metric"].as_str().unwrap() {
                "latency" => {
                    for p in ["p50_us", "p90_us", "p99_us", "p99_9_us", "p99_99_us", "p99_999_us"] {
                        assert!(num(p) > 0.0, "{what}");
                    }
                    assert!(num("p99_999_us") >= num("p50_us"), "{what}");
                }
                "max_rate" | "packet_rate" => assert!(num("transactions_per_s") > 0.0, "{what}"),
                "throughput" => assert!(num("bits_per_s") > 1e6, "{what}"),
                "loss" => assert!((0.0..=1.0).contains(&num("loss_ratio")), "{what}"),
                other => panic!("{key}: metric {other}"),
            }
            if key.starts_with("http-") {
                assert_eq!(f["errors"], 0, "nginx answered every request with 200: {what}");
            }
            if dp != "host" && m["metric"] != "loss" {
                assert!(!r["ratio_to_host"].is_null(), "{what}");
            }
        }
    }
    let sections = report["workloads"].as_array().unwrap();
    let names: Vec<&str> = sections.iter().map(|s| s["workload"].as_str().unwrap()).collect();
    assert_eq!(names, ["http", "udp", "stream", "pps"]);
    for s in sections {
        let w = s["workload"].as_str().unwrap();
        assert!(s["study"].as_str().unwrap().len() > 80, "{w}");
        let n = ms.iter().filter(|m| m["workload"] == w).count();
        assert_eq!(s["found"].as_array().unwrap().len(), n, "{w}: one finding per measurement");
    }
    let first = sections[0]["found"][0].as_str().unwrap();
    assert!(first.starts_with("http-350B-max") && first.contains("routed"), "{first}");

    // The page: a section per workload, bars for rates/throughput/loss,
    // percentile curves for latency; really drawn.
    let html_path = out_dir.path().join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    for w in ["http", "udp", "stream", "pps"] {
        assert!(html.contains(&format!("id=\"workload-{w}\"")), "{w}");
    }
    assert_eq!(html.matches("class=\"chart bars\"").count(), 4, "http max, udp loss, stream, pps");
    assert_eq!(html.matches("class=\"chart percentile\"").count(), 8, "6 http levels, 2 udp sizes");
    let (_, _, rgba) = screenshot(&html_path);
    for (dp, color) in [("routed", "#2ca02c"), ("macvlan", "#1f77b4")] {
        let n = count_color(&rgba, color);
        assert!(n > 300, "{dp}'s color appears in only {n} pixels: the charts did not draw");
    }
    // A saved report renders again without measuring.
    let again = tempfile::tempdir().unwrap();
    let from = nearhost(&[
        "demo",
        "--from",
        out_dir.path().join("report.json").to_str().unwrap(),
        "--out",
        again.path().to_str().unwrap(),
    ]);
    assert!(from.status.success(), "{}", String::from_utf8_lossy(&from.stderr));
    let table = String::from_utf8_lossy(&from.stdout);
    assert!(
        table.contains("== TCP throughput by socket buffer") && table.contains("Gbit/s"),
        "{table}"
    );
    assert_eq!(std::fs::read_to_string(again.path().join("report.html")).unwrap(), html);

    assert!(lab_namespaces().is_empty(), "the demo left namespaces: {:?}", lab_namespaces());
    assert!(lab_processes().is_empty(), "the demo left processes: {:?}", lab_processes());
    assert_eq!(nginx_pids(), nginx_before, "the lab's nginx processes are gone");
}
