#!/usr/bin/env bash
# Wall time per operation of the core, here and at another revision, run alternately: the
# `ops` program of each (built as `instructions.sh` builds them, `lib/ops-builds.sh`) runs one
# mode N times, timed with `date +%s%N` around the process, ROUNDS times each, before and after
# in turn, so that a change of the machine's load falls on both. Prints each run's ns per op
# (process start included: a few ms, under 0.5 ns an op at the default N).
#
#   tools/bench/wall.sh REV [ROUNDS] [N] [MODE...]     # defaults: 5 rounds, N = 3000000, every mode
set -euo pipefail
rev=${1:?usage: tools/bench/wall.sh REV [ROUNDS] [N] [MODE...]}
rounds=${2:-5}
n=${3:-3000000}
shift $(($# < 3 ? $# : 3))
picked="$*"
. "$(dirname "$0")/lib/time-one.sh"
. "$(dirname "$0")/lib/ops-builds.sh"
printf '%-8s %-28s %-28s\n' mode "$rev (ns/op)" "HEAD (ns/op)"
for mode in ${picked:-$modes}; do
    a="" b=""
    for _ in $(seq "$rounds"); do
        a="$a $(time_one "$there" "$mode" "$n")"
        b="$b $(time_one "$here" "$mode" "$n")"
    done
    printf '%-8s %-28s %-28s\n' "$mode" "${a# }" "${b# }"
done
