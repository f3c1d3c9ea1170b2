#!/usr/bin/env bash
# Installs everything nearhost's demo and test suite need on a fresh Debian 12
# machine (run as root). Idempotent: does nothing when all is present.
set -euo pipefail

PACKAGES=(
  iproute2 iputils-ping nftables iptables tcpdump procps psmisc ethtool strace python3
  containernetworking-plugins   # reference plugins: macvlan, bridge, host-local (tests, benchmarks)
  sockperf iperf3 nginx-light wrk   # reference measurement tools (bench agreement/efficiency)
  qemu-system-x86 linux-image-amd64 # the kernel lab: Debian's 6.1 kernel under qemu
  busybox-static docker.io          # attach tests: a real Docker engine, images from busybox
  podman                            # Podman as a CNI runtime and as an attach target
  containerd                        # containerd's CRI as a CNI runtime (the kubelet's path)
  etcd-server etcd-client           # multi-host tests: real etcd
  protobuf-compiler                 # etcd-client and k8s-cri compile their protos at build time
  chromium                          # renders the demo report in tests
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

# etcd-server's Debian service would start a cluster member on boot; the tests
# start their own etcd in their own namespaces.
if systemctl is-active --quiet etcd 2>/dev/null; then systemctl disable --now etcd || true; fi

if ! command -v vng >/dev/null 2>&1; then
  echo "setup: installing virtme-ng (kernel lab)"
  python3 -m pip install --quiet virtme-ng
fi
command -v vng >/dev/null 2>&1 || { echo "setup: vng is not on PATH after pip install (check pip's script directory)" >&2; exit 1; }
echo "setup: ok"
