#!/usr/bin/env python3
"""Checks the declared MSRV (`rust-version`) of each library of the workspace against its
dependencies in Cargo.lock.

A user of a library builds its normal and build dependencies (with the features the user
enables), never its dev-dependencies. So for each workspace member, with all its features and
for every target platform, this takes the packages that a build of the library compiles
(`cargo tree -e normal,build`, which resolves features as such a build does) and fails when
any of them declares a `rust-version` above the member's own (read from `cargo metadata`),
printing the offenders.

Excluded: the dependencies of `cfg(loom)` (the core's model-checking build, made only with
RUSTFLAGS="--cfg loom"; it needs the toolchain of the tests, see README.md).

    python3 tools/check-msrv.py            # from anywhere in the repository
    python3 tools/check-msrv.py --verbose  # also list the dependencies closest to the MSRV
"""

import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Packages whose subtree is left out, and why.
PRUNED = {"loom": "only under cfg(loom), the model-checking build"}


def version_key(v):
    """'1.85' and '1.85.0' compare equal; a missing rust-version sorts lowest."""
    parts = [int(p) for p in re.findall(r"\d+", v or "")][:3]
    return tuple(parts + [0] * (3 - len(parts)))


def cargo(*args):
    return subprocess.run(
        ["cargo", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    meta = json.loads(cargo("metadata", "--format-version", "1", "--locked", "--all-features"))
    rust_version = {(p["name"], p["version"]): p.get("rust_version") for p in meta["packages"]}
    members = [p for p in meta["packages"] if p["id"] in meta["workspace_members"]]

    failed = False
    for member in sorted(members, key=lambda p: p["name"]):
        name, declared = member["name"], member.get("rust_version")
        if not declared:
            print(f"{name}: declares no rust-version")
            failed = True
            continue
        tree = cargo(
            "tree", "--locked", "-p", name, "--all-features", "--target", "all",
            "-e", "normal,build", "--prefix", "none", "--format", "{p}",
            *[arg for pkg in PRUNED for arg in ("--prune", pkg)],
        )
        deps = set()
        for line in tree.splitlines():
            m = re.match(r"^(\S+) v(\S+)", line)
            if m and m.group(1) != name:
                deps.add((m.group(1), m.group(2)))
        ranked = sorted(deps, key=lambda d: (version_key(rust_version.get(d)), d))
        offenders = [d for d in ranked if version_key(rust_version.get(d)) > version_key(declared)]
        top = ranked[-1] if ranked else None
        top_text = f"{top[0]} {top[1]} needs {rust_version.get(top)}" if top else "no dependencies"
        print(f"{name}: rust-version {declared}; {len(deps)} dependencies, highest: {top_text}")
        if a.verbose:
            for d in ranked[-10:]:
                print(f"    {rust_version.get(d) or '-':>8}  {d[0]} {d[1]}")
        if offenders:
            failed = True
            print(f"{name}: dependencies that need a newer Rust than {declared}:")
            for d in offenders:
                print(f"    {rust_version[d]:>8}  {d[0]} {d[1]}")
    for pkg, why in PRUNED.items():
        print(f"(not counted: {pkg} and what only it uses: {why})")
    if failed:
        print(
            "MSRV check failed: raise rust-version in the root Cargo.toml, or keep these "
            "dependencies at versions that support it (`cargo update -p NAME --precise VERSION`)",
            file=sys.stderr,
        )
        return 1
    print("MSRV check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
