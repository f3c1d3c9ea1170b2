//! Compiles the BPF programs in `bpf/` with clang (`-target bpf`) into
//! `OUT_DIR`; `src/bpf.rs` embeds the objects. scripts/setup.sh installs clang
//! and libbpf's headers (Debian: clang, libbpf-dev).

use std::path::PathBuf;
use std::process::Command;

/// The C files in `bpf/`, each built into `OUT_DIR/NAME.o`.
const PROGRAMS: &[&str] = &["host_routing"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = std::env::var("NEARHOST_BPF_CLANG").unwrap_or_else(|_| "clang".into());
    println!("cargo:rerun-if-env-changed=NEARHOST_BPF_CLANG");
    for name in PROGRAMS {
        let src = format!("bpf/{name}.c");
        println!("cargo:rerun-if-changed={src}");
        let obj = out.join(format!("{name}.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            // <asm/types.h> lives under the multiarch include directory.
            .arg(format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH))
            .args(["-c", &src, "-o"])
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {clang} to build the BPF programs ({e}): \
                     run scripts/setup.sh (Debian: apt install clang libbpf-dev)"
                )
            });
        assert!(status.success(), "{clang} failed on {src} ({status})");
    }
}
