#!/usr/bin/env bash
# Instructions per operation of the core (callgrind), here and at another revision, side by
# side: a measure of the core's own work that the load of a shared machine does not move.
#
#   tools/bench/instructions.sh REV [N]
#
# Builds `crates/ctxkit/benches/ops.rs` here and, copied, in a worktree of REV (the program uses
# only the public API), runs each mode (see ops.rs: drop, child, vchild, cancel, after, tree1, tree1c, timeout, call, and the chains open,
# closed and chain (live), counted per level) N times (default 200000) under valgrind's callgrind and
# prints instructions per operation (process start included, the same for both).
set -euo pipefail
rev=${1:?usage: tools/bench/instructions.sh REV [N]}
n=${2:-200000}
root=$(git rev-parse --show-toplevel)
cd "$root"
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)" >&2; exit 1; }
other=$(mktemp -d)
trap 'git worktree remove --force "$other" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$other" "$rev"
cp crates/ctxkit/benches/ops.rs "$other/crates/ctxkit/examples/zz_ops.rs"
cargo build -q --release -p ctxkit --bench ops 2>/dev/null
here=$(ls -t target/release/deps/ops-* | grep -v '\.d$' | head -1)
(cd "$other" && CARGO_TARGET_DIR="$root/target/instructions-$rev" cargo build -q --release -p ctxkit --example zz_ops 2>/dev/null)
there="$root/target/instructions-$rev/release/examples/zz_ops"
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
printf '%-8s %14s %14s %8s\n' mode "$rev" HEAD change
for mode in drop child vchild cancel after tree1 tree1c timeout open closed chain call; do
    a=$(count "$there" "$mode" "$n")
    b=$(count "$here" "$mode" "$n")
    printf '%-8s %14s %14s %7s%%\n' "$mode" "$((a / n)) instr/op" "$((b / n)) instr/op" \
        "$(python3 -c "print(f'{($b - $a) * 100 / $a:+.1f}')")"
done
