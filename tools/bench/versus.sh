#!/usr/bin/env bash
# ctxkit against tokio-util on the same shape, in rounds: the `ops` program
# (crates/ctxkit/benches/ops.rs) runs the ctxkit mode, then the tokio-util mode, ROUNDS times
# in turn, each a process of its own timed with `date +%s%N` around it. Prints every round's
# ns per op for both, the medians, and in how many rounds ctxkit was the faster of the two:
# a verdict that a change of the machine's load between rounds does not decide, since it
# falls on both contenders of a round alike.
#
#   tools/bench/versus.sh [ROUNDS] [N] [PAIR...]   # defaults: 15 rounds, N = 2000000,
#                                                  # PAIR = closed:tu_closed open:tu_open
#                                                  #        child:tu_child tree1:tu_tree1
#                                                  #        tree1g:tu_tree1g
set -euo pipefail
rounds=${1:-15}
n=${2:-2000000}
shift $(($# < 2 ? $# : 2))
pairs=${*:-closed:tu_closed open:tu_open child:tu_child tree1:tu_tree1 tree1g:tu_tree1g}
. "$(dirname "$0")/lib/time-one.sh"
cd "$(git rev-parse --show-toplevel)"
cargo build -q --release -p ctxkit --bench ops 2>/dev/null
ops=$(ls -t target/release/deps/ops-* | grep -v '\.d$' | head -1)
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for pair in $pairs; do
    ours=${pair%%:*} theirs=${pair#*:}
    a="" b="" wins=0
    for _ in $(seq "$rounds"); do
        x=$(time_one "$ops" "$ours" "$n")
        y=$(time_one "$ops" "$theirs" "$n")
        a="$a $x" b="$b $y"
        if [ "$x" -lt "$y" ]; then wins=$((wins + 1)); fi
    done
    printf '%-8s %s\n' "$ours" "${a# }"
    printf '%-8s %s\n' "$theirs" "${b# }"
    printf '  medians %s vs %s ns/op; ctxkit faster in %d of %d rounds\n' \
        "$(echo "$a" | median)" "$(echo "$b" | median)" "$wins" "$rounds"
done
