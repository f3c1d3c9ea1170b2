#!/usr/bin/env bash
# nearhost's whole test suite (run as root, after scripts/setup.sh), in four parts:
#   host        every unit and integration test on this machine's kernel;
#   kernel-lab  the same binaries, plus the tests this kernel cannot run
#               (ipvlan, dummy, bonding, netem) and the NIC-driver suite on
#               emulated igb NICs, on Linux 6.12 and 6.1 under qemu 10;
#   benchmarks  the benchmarks that compare nearhost with the reference tools
#               (CNI ADD/DEL vs the reference plugins, bench vs sockperf/iperf3/wrk,
#               the agent at 10 hosts, hostReach's direct and Service paths); they
#               print their ratios and fail only when they cannot run;
#   fuzz        every fuzz target for 20 s under libFuzzer + AddressSanitizer
#               (scripts/fuzz; longer runs: scripts/fuzz --seconds N).
# Any failure fails the suite. Tests that cannot run on this kernel are listed
# as "ignored" with their reason, and run in the kernel lab.
#
#   scripts/test.sh                          all four parts
#   scripts/test.sh --only PART [--only …]   just those parts
#   scripts/test.sh --leave-out PART=REASON  all but PART; the reason is printed,
#                                            and the run ends "NOT COMPLETE"
#                                            (exit 0) so nobody mistakes it for
#                                            the whole suite
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=1

PARTS=(host kernel-lab benchmarks fuzz)
declare -A run=([host]=1 [kernel-lab]=1 [benchmarks]=1 [fuzz]=1)
declare -A left_out=()
only_given=0
while (($#)); do
  case "$1" in
    --only)
      ((only_given)) || for p in "${PARTS[@]}"; do run[$p]=0; done
      only_given=1
      [[ -n "${run[$2]:-}" ]] || { echo "test.sh: unknown part '$2' (parts: ${PARTS[*]})" >&2; exit 2; }
      run[$2]=1; shift 2 ;;
    --leave-out)
      part=${2%%=*}; why=${2#*=}
      [[ -n "${run[$part]:-}" && "$why" != "$2" && -n "$why" ]] \
        || { echo "test.sh: --leave-out takes PART=REASON (parts: ${PARTS[*]})" >&2; exit 2; }
      run[$part]=0; left_out[$part]=$why; shift 2 ;;
    *) echo "test.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

started=$(date +%s)
step() { printf '\n==== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }
for p in "${!left_out[@]}"; do echo "test.sh: NOT RUN here: $p (${left_out[$p]})"; done

# Namespaces left by an interrupted earlier run (tests remove their own).
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(nht|nhb)[0-9]' || true); do
  ip netns del "$ns" 2>/dev/null || true
done

if ((run[host])); then
  step "build (release)"
  cargo build --release --workspace --all-targets

  step "tests on this machine's kernel ($(uname -r))"
  log=$(mktemp)
  cargo test --release --workspace 2>&1 | tee "$log"
  ignored=$(grep -aE '^test .* ignored, ' "$log" | sed -E 's/^test (.*) \.\.\. ignored, (.*)$/  \1: \2/' || true)
  if [[ -n "$ignored" ]]; then
    echo
    echo "Not run on this kernel (they run in the kernel lab):"
    echo "$ignored"
  fi
  rm -f "$log"
fi

if ((run[kernel-lab])); then
  step "kernel lab (Linux 6.12 and 6.1 under qemu, emulated igb NICs)"
  scripts/kernel-lab
fi

if ((run[benchmarks])); then
  step "benchmarks against the reference tools (they print their ratios)"
  cargo bench -p nearhost --bench cni_add_del -- --rounds 3 --per-round 10
  cargo bench -p nearhost --bench bench_agreement
  cargo bench -p nearhost --bench bench_efficiency
  cargo bench -p nearhost --bench agent_scale
  NHB_ROUNDS=5 NHB_SECONDS=2 cargo bench -p nearhost --bench host_reach
fi

if ((run[fuzz])); then
  step "fuzzing the untrusted-input parsers (20 s per target)"
  scripts/fuzz --seconds 20
fi

left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(nht|nhb)[0-9]' || true)
if [[ -n "$left" ]]; then
  echo "FAILED: tests left namespaces behind: $left" >&2
  exit 1
fi
ran=(); for p in "${PARTS[@]}"; do ((run[$p])) && ran+=("$p"); done
if ((${#ran[@]} == ${#PARTS[@]})); then
  step "all passed"
else
  step "passed: ${ran[*]:-nothing}; NOT COMPLETE: the parts not run here must run elsewhere"
fi
