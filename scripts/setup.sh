#!/usr/bin/env bash
# Installs everything nearhost's build, demo and test suite need on a fresh
# Debian 12 machine (run as root). Idempotent: does nothing when all is present.
# The one thing it cannot install is the Rust toolchain (Debian 12's rustc is
# older than the workspace's rust-version): it checks for it and says how to
# get it. scripts/fresh-root proves this list on a clean debootstrap root.
set -euo pipefail

MIN_RUST=1.85

# One line per group; the README's "What setup.sh installs" mirrors this list.
PACKAGES=(
  gcc g++ libc6-dev ca-certificates             # build: the Rust linker/C compiler (C++: libFuzzer); TLS to crates.io
  protobuf-compiler libprotobuf-dev             # build: etcd-client and k8s-cri compile protos (libprotobuf-dev has the well-known .proto files)
  clang libbpf-dev linux-libc-dev bpftool       # build: the BPF fast path's C programs (clang -target bpf, libbpf's helper headers); bpftool in its tests
  iproute2 iputils-ping nftables iptables kmod  # kernel tools the tests drive: ip, ping, nft, iptables
  tcpdump procps psmisc ethtool strace          # tests and debugging: packet capture, ps/kill, NIC settings
  python3 python3-venv                          # test peers (http.server, sockets); a venv for virtme-ng
  containernetworking-plugins                   # reference plugins: macvlan, bridge, host-local (tests, benchmarks)
  sockperf iperf3 nginx-light wrk               # reference measurement tools (bench agreement/efficiency); nginx also serves the demo's http workload
  linux-image-amd64 busybox-static file         # the kernel lab: Debian 12's own kernel (6.1, the oldest supported), virtme-ng runs `file`
  docker.io                                     # attach tests: a real Docker engine, images from busybox
  podman                                        # Podman as a CNI runtime and as an attach target
  containerd                                    # containerd's CRI as a CNI runtime (the kubelet's path)
  etcd-server etcd-client                       # multi-host tests: real etcd
  chromium                                      # renders the demo report in tests
  dpkg-dev binutils debootstrap                 # the Debian package: scripts/build-deb (dpkg-shlibdeps, strip); a clean root to install it in
  dpdk dpdk-dev                                 # kernel bypass: dpdk-testpmd and its igb VF driver on a vfio-pci VF in the kernel lab
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The kernel lab's second kernel and its emulator come from bookworm-backports:
# Linux 6.12 (netkit, and the matrix's newest kernel) and qemu 10, whose `igb`
# device emulates an Intel 82576 with SR-IOV (Debian 12's qemu 7.2 has no igb).
# Backports are pinned at priority 100 by Debian, so nothing else moves to them.
BACKPORTS=/etc/apt/sources.list.d/nearhost-bookworm-backports.sources
if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "setup: adding bookworm-backports ($BACKPORTS): qemu 10 and Linux 6.12 for the kernel lab"
  cat > "$BACKPORTS" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  apt-get update -q
fi
qemu_have=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
# The newest linux-image of backports, by its versioned name, so Debian 12's
# 6.1 (linux-image-amd64 above) stays installed beside it.
bpo_kernel() {
  apt-cache depends "linux-image-amd64=$(apt-cache madison linux-image-amd64 | awk -F'|' '/bookworm-backports/ {gsub(/ /, "", $2); print $2; exit}')" 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
bpo_kernel=$(bpo_kernel)
[[ -n "$bpo_kernel" ]] || { apt-get update -q; bpo_kernel=$(bpo_kernel); }
[[ -n "$bpo_kernel" ]] || { echo "setup: FAILED: bookworm-backports has no linux-image-amd64 (apt-get update?)" >&2; exit 1; }
if ! dpkg --compare-versions "${qemu_have:-0}" ge 1:10 \
   || ! dpkg-query -W -f='${Status}' "$bpo_kernel" 2>/dev/null | grep -q "install ok installed"; then
  echo "setup: installing qemu-system-x86 (10, backports) and $bpo_kernel (kernel lab)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -t bookworm-backports qemu-system-x86 "$bpo_kernel"
fi

# etcd-server's Debian service would start a cluster member on boot; the tests
# start their own etcd in their own namespaces.
if systemctl is-active --quiet etcd 2>/dev/null; then systemctl disable --now etcd || true; fi

# virtme-ng (the kernel lab's qemu front end) is not packaged in Debian 12, and
# Debian's python3 refuses system-wide pip installs (PEP 668): it lives in its
# own virtual environment made by Debian's python3, with `vng` linked into
# /usr/local/bin. Pinned so every machine boots the lab the same way.
VIRTME_NG=virtme-ng==1.42
VENV=/opt/nearhost/virtme-ng
if ! "$VENV/bin/vng" --version >/dev/null 2>&1; then
  echo "setup: installing $VIRTME_NG into $VENV (kernel lab)"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  # pip in a venv trusts its own CA list, not the system's: point it at the
  # system bundle so the machine's certificate authorities count.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --cert /etc/ssl/certs/ca-certificates.crt "$VIRTME_NG"
fi
# vng runs its helpers (virtme-run, …) by name: all of them go on the PATH.
for tool in "$VENV"/bin/vng "$VENV"/bin/virtme-*; do
  ln -sf "$tool" "/usr/local/bin/$(basename "$tool")"
done
/usr/local/bin/vng --version >/dev/null || { echo "setup: FAILED: vng does not run from $VENV" >&2; exit 1; }
command -v virtme-run >/dev/null || { echo "setup: FAILED: virtme-run is not on PATH" >&2; exit 1; }

# kubernetes-validate checks deploy/kubernetes against the Kubernetes API's
# JSON schemas, which it bundles (no cluster, no network at test time). Not
# packaged in Debian 12: like virtme-ng, it lives in its own virtual
# environment made by Debian's python3. Pinned: the package suite
# (crates/nearhost/tests/package/kubernetes.rs) reads this pin and names the
# Kubernetes versions it validates against, which this version must bundle.
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0
KV_VENV=/opt/nearhost/kubernetes-validate
if [[ "$("$KV_VENV/bin/kubernetes-validate" --version 2>/dev/null)" != "${KUBERNETES_VALIDATE#*==}" ]]; then
  echo "setup: installing $KUBERNETES_VALIDATE into $KV_VENV (Kubernetes manifest checks)"
  rm -rf "$KV_VENV"
  /usr/bin/python3 -m venv "$KV_VENV"
  "$KV_VENV/bin/pip" install --quiet --disable-pip-version-check --cert /etc/ssl/certs/ca-certificates.crt "$KUBERNETES_VALIDATE"
fi
[[ "$("$KV_VENV/bin/kubernetes-validate" --version 2>/dev/null)" == "${KUBERNETES_VALIDATE#*==}" ]] \
  || { echo "setup: FAILED: $KUBERNETES_VALIDATE does not run from $KV_VENV" >&2; exit 1; }

# The Rust toolchain: rustup's, found on PATH or in root's ~/.cargo/bin.
cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
if ! [[ -x "$cargo" ]]; then
  echo "setup: FAILED: no Rust toolchain. Install rustup (https://rustup.rs) with Rust >= $MIN_RUST, then run setup.sh again." >&2
  exit 1
fi
have=$("$cargo" --version | awk '{print $2}')
if [[ "$(printf '%s\n%s\n' "$MIN_RUST" "$have" | sort -V | head -n 1)" != "$MIN_RUST" ]]; then
  echo "setup: FAILED: cargo $have is older than the workspace's rust-version $MIN_RUST (rustup update)" >&2
  exit 1
fi
# cargo-fuzz (scripts/fuzz): built from crates.io into a directory of its own,
# pinned, so the fuzz part never depends on what someone installed by hand.
CARGO_FUZZ=0.13.2
FUZZ_ROOT=/opt/nearhost/cargo-fuzz
if [[ "$("$FUZZ_ROOT/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ" ]]; then
  echo "setup: building cargo-fuzz $CARGO_FUZZ into $FUZZ_ROOT (fuzzing)"
  "$cargo" install --quiet --locked --root "$FUZZ_ROOT" "cargo-fuzz@$CARGO_FUZZ"
fi
echo "setup: ok (cargo $have, $(/usr/local/bin/vng --version 2>&1 | head -n 1), $("$FUZZ_ROOT/bin/cargo-fuzz" --version))"
