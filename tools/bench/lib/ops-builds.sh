# Sourced by instructions.sh and wall.sh: builds the `ops` program (crates/ctxkit/benches/ops.rs)
# here and, copied, in a worktree of the revision `$rev` (the program uses only the public
# API), and sets `here` and `there` to the two binaries. The worktree is removed on exit.
root=$(git rev-parse --show-toplevel)
cd "$root"
other=$(mktemp -d)
trap 'git worktree remove --force "$other" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$other" "$rev"
cp crates/ctxkit/benches/ops.rs "$other/crates/ctxkit/examples/zz_ops.rs"
cargo build -q --release -p ctxkit --bench ops 2>/dev/null
here=$(ls -t target/release/deps/ops-* | grep -v '\.d$' | head -1)
(cd "$other" && CARGO_TARGET_DIR="$root/target/instructions-$rev" cargo build -q --release -p ctxkit --example zz_ops 2>/dev/null)
there="$root/target/instructions-$rev/release/examples/zz_ops"
# The modes both versions are compared on (see ops.rs).
modes="drop child vchild cancel common after tree1 tree1g few tree1c timeout open closed chain call"
