#!/usr/bin/env bash
# Creates the Python venv with grpcio that the interop tests use (tests/interop.rs).
#
#   bash crates/ctxkit-tower/tests/interop/setup.sh [VENV_DIR]
#
# VENV_DIR defaults to $CTXKIT_GRPCIO_VENV, else grpcio-venv in cargo's target directory
# (where the tests look). Re-running it on an existing venv is quick.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${1:-${CTXKIT_GRPCIO_VENV:-}}"
if [[ -z "$venv" ]]; then
    target_dir="$(cd "$here" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    venv="$target_dir/grpcio-venv"
fi

if [[ ! -x "$venv/bin/python" ]]; then
    if ! python3 -m venv "$venv"; then
        # Debian's python3 keeps venv support in a package of its own.
        rm -rf "$venv"
        apt-get install -y -q python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
fi
if ! "$venv/bin/python" -c 'import grpc, grpc_tools, google.protobuf' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio grpcio-tools protobuf
fi
"$venv/bin/python" -c 'import grpc; print("grpcio", grpc.__version__, "in", "'"$venv"'")'
