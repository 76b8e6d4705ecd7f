#!/usr/bin/env bash
# Instructions per operation of the core (callgrind), here and at another revision, side by
# side: a measure of the core's own work that the load of a shared machine does not move.
#
#   tools/bench/instructions.sh REV [N]
#
# Builds `crates/ctxkit/benches/ops.rs` here and at REV (`lib/ops-builds.sh`), runs each mode
# (see ops.rs: drop, child, vchild, cancel, after, tree1, tree1g, few, tree1c, timeout, call, and the
# chains open, closed and chain (live), counted per level) N times (default 200000) under
# valgrind's callgrind and prints instructions per operation (process start included, the
# same for both).
set -euo pipefail
rev=${1:?usage: tools/bench/instructions.sh REV [N]}
n=${2:-200000}
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)" >&2; exit 1; }
. "$(dirname "$0")/lib/ops-builds.sh"
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
printf '%-8s %14s %14s %8s\n' mode "$rev" HEAD change
for mode in $modes; do
    a=$(count "$there" "$mode" "$n")
    b=$(count "$here" "$mode" "$n")
    printf '%-8s %14s %14s %7s%%\n' "$mode" "$((a / n)) instr/op" "$((b / n)) instr/op" \
        "$(python3 -c "print(f'{($b - $a) * 100 / $a:+.1f}')")"
done
