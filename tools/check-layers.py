#!/usr/bin/env python3
"""Checks that the modules of the core crate import only downward.

The layers are read from the table under "What is where" in crates/ctxkit/src/lib.rs (one row
per layer: `| N | `module.rs`, `folder/` | ... |`), so the docs and the check cannot drift
apart. A module may use the modules of lower layers; files inside one folder module may use
each other only if the folder is the closed group named in CLOSED (the cancellation tree and
its value layers, which hold each other's parents); in any other folder the files must not
use each other in a circle (a file may use its folder's `mod.rs`, or be used by it, not both
through a sibling loop).

Paths through the crate root (`crate::Context`) are resolved through the `pub use` lines of
lib.rs. Prints one line per import that goes up or sideways and exits 1 if there is any.

usage: tools/check-layers.py [CRATE_SRC]   (default crates/ctxkit/src)
"""
import os
import re
import sys

CLOSED = {"tree"}

src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "ctxkit", "src")
lib = open(os.path.join(src, "lib.rs"), encoding="utf-8").read()

# The layer of every top-level module, from lib.rs's table.
layer = {}
for row in re.finditer(r"^//! \| (\d+) \| ([^|]+)\|", lib, re.M):
    for name in re.findall(r"`([a-z_]+)(?:\.rs|/)`", row.group(2)):
        layer[name] = int(row.group(1))
if not layer:
    sys.exit(f"{src}/lib.rs: no layer table found")

# Items re-exported at the root: `pub use module::{A, B}` / `pub use module::A` / `pub use glue::x`.
reexport = {}
for m in re.finditer(r"^pub use ([a-z_]+)::(?:\{([^}]*)\}|([A-Za-z_]+));", lib, re.M):
    for item in (m.group(2) or m.group(3)).split(","):
        reexport[item.strip()] = m.group(1)

declared = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))? )?mod ([a-z_]+);", lib, re.M))
missing = declared - set(layer)
problems = [f"lib.rs: module `{m}` has no row in the layer table" for m in sorted(missing)]


def top_module(rel):
    """The top-level module a file belongs to, and its path inside it."""
    parts = rel[:-3].split(os.sep)
    return parts[0], parts[1:]


for root, _, names in os.walk(src):
    for name in sorted(names):
        if not name.endswith(".rs") or name == "lib.rs" and root == src:
            continue
        path = os.path.join(root, name)
        rel = os.path.relpath(path, src)
        top, _ = top_module(rel)
        if top not in layer:
            problems.append(f"{rel}: module `{top}` has no row in the layer table")
            continue
        text = open(path, encoding="utf-8").read()
        # Doc links (`[x](crate::y)`) are documentation, not imports.
        code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith(("//", "///")))
        for m in re.finditer(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)", code):
            target = m.group(1)
            target = reexport.get(target, target)
            if target == top or target not in layer:
                continue
            if layer[target] >= layer[top]:
                line = text[: text.find(m.group(0))].count("\n") + 1
                problems.append(
                    f"{rel}:{line}: `crate::{m.group(1)}` is in layer {layer[target]} "
                    f"(`{target}`), not below layer {layer[top]} (`{top}`)")



def folder_circles(folder):
    """Circles among the files of one folder module, through `super::`, `self::`-less child
    paths in mod.rs, and `crate::folder::child` paths."""
    base = os.path.join(src, folder)
    files = {n[:-3]: open(os.path.join(base, n), encoding="utf-8").read()
             for n in os.listdir(base) if n.endswith(".rs")}
    children = set(files) - {"mod"}
    edges = {f: set() for f in files}
    for f, text in files.items():
        code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        if f != "mod":
            for m in re.finditer(r"\bsuper::([A-Za-z_]\w*)", code):
                edges[f].add(m.group(1) if m.group(1) in children else "mod")
            for m in re.finditer(r"\bsuper::\{", code):
                edges[f].add("mod")
        else:
            for c in children:
                if re.search(rf"(?<![:\w]){c}::", code):
                    edges[f].add(c)
        for m in re.finditer(rf"\bcrate::{folder}::([a-z_][a-z0-9_]*)", code):
            edges[f].add(m.group(1) if m.group(1) in children else "mod")
        edges[f].discard(f)
    # Tarjan's strongly connected components.
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in edges:
        if v not in index:
            strong(v)
    return out


for folder in sorted(layer):
    if folder in CLOSED or not os.path.isdir(os.path.join(src, folder)):
        continue
    for group in folder_circles(folder):
        files = ", ".join(f"{folder}/{f}.rs" for f in group)
        problems.append(f"{folder}/: files use each other in a circle: {files}")

if problems:
    print("\n".join(problems))
    sys.exit(1)
ranks = sorted(set(layer.values()))
print(f"{os.path.normpath(src)}: {len(layer)} modules in {len(ranks)} layers import only downward"
      f" (closed group: {', '.join(sorted(CLOSED))})")
