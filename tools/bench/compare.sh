#!/usr/bin/env bash
# Runs Go's context benchmarks and scale program, then ctxkit's criterion suite (go_parity,
# with the tokio-util shapes) and scale benchmark, on this machine, and prints one table:
# measure | Go | ctxkit | tokio-util | ratio | target.
#
# Usage: tools/bench/compare.sh [--size small] [--table-only] [--series N]
#   --size small   scale programs at sizes / 100 (seconds instead of a minute)
#   --table-only   re-print the table from the outputs of the last run (or series)
#   --series N     N runs in a row, in OUT/run-1 ... OUT/run-N, each started once the
#                  one-minute load is under LOAD_MAX (default 0.7; waits at most 10 minutes),
#                  then the summary of the series: each run's verdict on each target (a
#                  target counts as met when it holds in three runs in a row)
# Environment: OUT (output folder, default target/compare), GO_COUNT (runs of each Go
# benchmark, median taken; default 3), CRITERION_ARGS (extra arguments for criterion).
# Installs Go 1.23 from Debian's backports when it is missing (needs root and apt).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
size=full
table_only=0
series=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --size) size=$2; shift 2 ;;
    --table-only) table_only=1; shift ;;
    --series) series=$2; shift 2 ;;
    *) echo "usage: $0 [--size small|full] [--table-only] [--series N]" >&2; exit 2 ;;
  esac
done
if ! [[ $series =~ ^[0-9]+$ ]]; then
  echo "--series: a number of runs, not '$series'" >&2
  exit 2
fi
out=$(realpath -m "${OUT:-$root/target/compare}")
mkdir -p "$out"

if (( series > 0 )); then
  runs=()
  for i in $(seq "$series"); do
    runs+=("$out/run-$i")
    if [[ $table_only == 0 ]]; then
      # The thread fan-out of a run leaves the load high for a minute: start each run on a
      # machine as quiet as the first.
      for _ in $(seq 60); do
        awk -v max="${LOAD_MAX:-0.7}" '{ exit !($1 < max) }' /proc/loadavg && break
        sleep 10
      done
      echo "== run $i of $series (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      OUT="$out/run-$i" "$root/tools/bench/compare.sh" --size "$size" > /dev/null
    fi
  done
  python3 tools/bench/compare.py --series "${runs[@]}" --size "$size" | tee "$out/series.md"
  exit 0
fi

if [[ $table_only == 0 ]]; then
  GO=/usr/lib/go-1.23/bin/go
  if [[ ! -x $GO ]]; then
    src=/etc/apt/sources.list.d/debian.sources
    if [[ -f $src ]] && ! grep -rqs bookworm-backports /etc/apt/sources.list.d/; then
      # the first stanza (the main archive) with the backports suite
      awk 'BEGIN { RS = ""; ORS = "\n\n" } NR == 1' "$src" |
        sed -e 's/^Suites:.*/Suites: bookworm-backports/' > /etc/apt/sources.list.d/backports.sources
    fi
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-1.23-go >/dev/null
  fi
  export GOPATH=${GOPATH:-/tmp/gopath} GOCACHE=${GOCACHE:-/tmp/gocache} GOFLAGS=-mod=mod GOTOOLCHAIN=local

  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$GO" version
    rustc --version
  } > "$out/machine.txt"

  echo "$(date -u +%T) load before Go: go test -bench . -benchmem context: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
  echo "== Go: go test -bench . -benchmem context (count ${GO_COUNT:-3})" >&2
  "$GO" test -run XXX -bench . -benchmem -count "${GO_COUNT:-3}" context | tee "$out/go-micro.txt" >&2
  # The floor of CommonParentCancel (its spin alone), from tools/bench/go/spin_test.go.
  (cd tools/bench/go && "$GO" test -run XXX -bench . -benchmem -count "${GO_COUNT:-3}") | tee -a "$out/go-micro.txt" >&2

  echo "$(date -u +%T) load before Go: scale program: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
  echo "== Go: scale program (tools/bench/go)" >&2
  (cd tools/bench/go && "$GO" build -o "$out/goscale" .)
  "$out/goscale" -size "$size" | tee "$out/go-scale.txt" >&2

  echo "$(date -u +%T) load before ctxkit: cargo bench -p ctxkit --bench go_parity: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
  echo "== ctxkit: cargo bench -p ctxkit --bench go_parity" >&2
  rm -rf target/criterion
  # shellcheck disable=SC2086
  cargo bench -p ctxkit --bench go_parity -- ${CRITERION_ARGS:-} 2>&1 | tee "$out/criterion.txt" >&2
  # The medians of this run, kept with its other outputs (the next run replaces
  # target/criterion).
  rm -rf "$out/criterion"
  mkdir -p "$out/criterion"
  (cd target/criterion &&
    find . -path '*/new/*' \( -name benchmark.json -o -name estimates.json \) \
      -exec cp --parents {} "$out/criterion" \;)

  echo "$(date -u +%T) load before ctxkit: scale benchmark: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
  echo "== ctxkit: cargo bench -p ctxkit --bench scale -- --size $size" >&2
  cargo bench -p ctxkit --bench scale -- --size "$size" | tee "$out/scale.txt" >&2
  echo "$(date -u +%T) load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
fi

medians=$out/criterion
[[ -d $medians ]] || medians=target/criterion # the output of an older run
python3 tools/bench/compare.py --out "$out" --criterion "$medians" --size "$size" | tee "$out/table.md"
