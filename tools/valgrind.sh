#!/usr/bin/env bash
# Runs valgrind memcheck over the test binaries of the core crate (ctxkit): fails on any
# invalid read or write, use of uninitialised memory, or definitely lost bytes.
#
#     bash tools/valgrind.sh            # every test binary of ctxkit
#     bash tools/valgrind.sh semantics  # only the named test targets
#
# Under valgrind everything runs tens of times slower, so the big and long tests run small:
#   - CTXKIT_TEST_SCALE (the scaled deep chains and wide fans of semantics/depth.rs and
#     survival.rs) defaults to 2000 here;
#   - PROPTEST_CASES (model.rs) defaults to 64;
#   - the semantics tests named `million_*` are skipped (the scaled tests beside them cover
#     the same code paths at the smaller scale);
#   - stress.rs runs for CTXKIT_STRESS_SECS=2 with CTXKIT_SOAK_TIMERS=20000 timers.
# Tests that measure time against fixed limits may be slower than those limits under
# valgrind; the test filters below skip the ones known to be (VALGRIND_SKIP adds more).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        echo "valgrind: installing it with apt-get"
        apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
    else
        echo "valgrind is not installed and cannot be installed here (needs apt-get and root)" >&2
        exit 1
    fi
fi

export CTXKIT_TEST_SCALE="${CTXKIT_TEST_SCALE:-2000}"
export PROPTEST_CASES="${PROPTEST_CASES:-64}"
export CTXKIT_STRESS_SECS="${CTXKIT_STRESS_SECS:-2}"
export CTXKIT_SOAK_TIMERS="${CTXKIT_SOAK_TIMERS:-20000}"
export CTXKIT_SOAK_FIRING="${CTXKIT_SOAK_FIRING:-200}"
# proptest writes failures next to the sources; under valgrind a flaky timing failure
# should not leave a file behind.
export PROPTEST_DISABLE_FAILURE_PERSISTENCE=1

ONLY=("$@")

# Test binaries: "<target name> <path>" lines, from cargo's JSON messages.
list_binaries() {
    cargo test -p ctxkit --no-run --message-format=json "$@" 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])
'
}

echo "valgrind: building the test binaries of ctxkit"
cargo test -p ctxkit --no-run
cargo test -p ctxkit --no-run --features diagnostics --test stress
mapfile -t BINARIES < <(list_binaries; list_binaries --features diagnostics --test stress)

# Per-binary test filters: long or timing-bound tests that valgrind makes too slow.
skip_args() {
    local skips=()
    case "$1" in
        semantics) skips+=(million) ;;
    esac
    for s in ${VALGRIND_SKIP:-}; do skips+=("$s"); done
    for s in "${skips[@]}"; do printf -- '--skip\n%s\n' "$s"; done
}

FAILED=()
for entry in "${BINARIES[@]}"; do
    name="${entry%% *}"
    exe="${entry#* }"
    if [[ ${#ONLY[@]} -gt 0 ]] && [[ ! " ${ONLY[*]} " == *" $name "* ]]; then
        continue
    fi
    mapfile -t extra < <(skip_args "$name")
    echo "---- valgrind: $name ($(basename "$exe")) ${extra[*]}"
    start=$SECONDS
    if valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite --fair-sched=yes \
        "$exe" --test-threads=1 "${extra[@]}" >"/tmp/valgrind-$name.log" 2>&1; then
        echo "     ok ($((SECONDS - start)) s)"
    else
        echo "     FAILED ($((SECONDS - start)) s); the end of its output:"
        tail -n 60 "/tmp/valgrind-$name.log"
        FAILED+=("$name")
    fi
done

if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "valgrind: failures in: ${FAILED[*]}" >&2
    exit 1
fi
echo "valgrind: no memory errors, no definite leaks"
