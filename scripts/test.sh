#!/usr/bin/env bash
# nearhost's whole test suite (run as root, after scripts/setup.sh):
#   1. every unit and integration test on this machine's kernel;
#   2. the kernel lab: the same binaries, plus the tests this kernel cannot run
#      (ipvlan, dummy, bonding, netem), on Debian's kernel under qemu;
#   3. the benchmarks that compare nearhost with the reference tools (CNI ADD/DEL
#      vs the reference plugins, bench vs sockperf/iperf3/wrk, the agent at 10
#      hosts); they print their ratios and fail only when they cannot run.
# Any failure fails the suite. Tests that cannot run on this kernel are listed
# as "ignored" with their reason, and run in step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=1

started=$(date +%s)
step() { printf '\n==== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

# Namespaces left by an interrupted earlier run (tests remove their own).
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(nht|nhb)[0-9]' || true); do
  ip netns del "$ns" 2>/dev/null || true
done

step "build (release)"
cargo build --release --workspace --all-targets

step "tests on this machine's kernel ($(uname -r))"
log=$(mktemp)
cargo test --release --workspace 2>&1 | tee "$log"
ignored=$(grep -aE '^test .* ignored, ' "$log" | sed -E 's/^test (.*) \.\.\. ignored, (.*)$/  \1: \2/' || true)
if [[ -n "$ignored" ]]; then
  echo
  echo "Not run on this kernel (they run in the kernel lab next):"
  echo "$ignored"
fi
rm -f "$log"

step "kernel lab (Debian's kernel under qemu)"
scripts/kernel-lab

step "benchmarks against the reference tools (they print their ratios)"
cargo bench -p nearhost --bench cni_add_del -- --rounds 3 --per-round 10
cargo bench -p nearhost --bench bench_agreement
cargo bench -p nearhost --bench bench_efficiency
cargo bench -p nearhost --bench agent_scale

left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(nht|nhb)[0-9]' || true)
if [[ -n "$left" ]]; then
  echo "FAILED: tests left namespaces behind: $left" >&2
  exit 1
fi
step "all passed"
