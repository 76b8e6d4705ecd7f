#!/usr/bin/env python3
"""Sets Go's context figures beside ctxkit's and tokio-util's; run by tools/bench/compare.sh.

Reads, from the --out folder: go-micro.txt (`go test -bench` output), go-scale.txt and
scale.txt (`name value unit` lines); and criterion's medians from
<criterion>/**/new/{benchmark,estimates}.json. Prints a Markdown table. With --series RUN...,
the folders of runs made one after another (each with a copy of its criterion folder),
prints the summary of the series: each run's verdict on each target, and its figures.
"""
import argparse
import collections
import glob
import json
import os
import re
import statistics


def go_micro(path):
    runs = {}
    if not os.path.exists(path):
        return {}
    for line in open(path):
        m = re.match(r"^Benchmark(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op", line)
        if m:
            runs.setdefault(m.group(1), []).append(float(m.group(3)))
    return {k: statistics.median(v) for k, v in runs.items()}


def scale_lines(path):
    out = {}
    if not os.path.exists(path):
        return out
    for line in open(path):
        parts = line.split()
        if len(parts) == 3:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def criterion(root):
    out = {}
    for bench in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
        est = os.path.join(os.path.dirname(bench), "estimates.json")
        if not os.path.exists(est):
            continue
        full_id = json.load(open(bench))["full_id"]
        out[full_id] = json.load(open(est))["median"]["point_estimate"]
    return out


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "ns":
        if v >= 1e6:
            return f"{v / 1e6:.2f} ms"
        if v >= 1e3:
            return f"{v / 1e3:.2f} µs"
        if v >= 10:
            return f"{v:.1f} ns"
        return f"{v:.2f} ns"
    if unit == "B":
        return f"{v:.0f} B"
    if unit == "ms":
        return f"{v:.2f} ms"
    return f"{v:g}{' ' + unit if unit else ''}"


# One measure of one run: its figures, its target as text, the verdict ("" without a target,
# else "met" or "**missed**", with a note), the verdict against the anchor Go figure, and
# whether it is met (None without a target).
Row = collections.namedtuple("Row", "name go ours tokio unit want verdict anchor met")


def evaluate(out, criterion_dir, size):
    """The rows of one run's table."""
    go = go_micro(os.path.join(out, "go-micro.txt"))
    go.update(scale_lines(os.path.join(out, "go-scale.txt")))
    ours = criterion(criterion_dir)
    ours.update(scale_lines(os.path.join(out, "scale.txt")))

    for table, spin in ((go, "CommonParentCancelSpinOnly"), (ours, "ctxkit/CommonParentCancelSpinOnly")):
        if "CommonParentCancel" in table and spin in table:
            table["-CommonParentCancel"] = table["CommonParentCancel"] - table[spin]

    d = 100 if size == "small" else 1
    M, K100, K10 = 1_000_000 // d, 100_000 // d, 10_000 // d

    # (measure, go key, ctxkit key, tokio-util key, unit, target)
    # target: ("le", x) ctxkit <= x; ("x", k) Go/ctxkit >= k; ("tk",) faster than tokio-util.
    rows = [
        ("CheckCanceled/Err", "CheckCanceled/Err", "CheckCanceled/Err",
         "tokio_util/CheckCanceled/Err", "ns", ("le", 1.0)),
        ("CheckCanceled/Done", "CheckCanceled/Done", "CheckCanceled/Done", None, "ns", ("le", 1.0)),
        ("ContextCancelDone", "ContextCancelDone", "ContextCancelDone",
         "tokio_util/ContextCancelDone", "ns", ("le", 1.0)),
        ("floor: a done check, one load behind a pointer, no context", None,
         "floor/CheckCanceled/one_load", None, "ns", None),
        ("CommonParentCancel", "CommonParentCancel", "CommonParentCancel",
         "tokio_util/CommonParentCancel", "ns", ("x", 4)),
        ("CommonParentCancel: its spin alone", "CommonParentCancelSpinOnly",
         "ctxkit/CommonParentCancelSpinOnly", None, "ns", None),
        ("CommonParentCancel minus its spin", "-CommonParentCancel", "-CommonParentCancel",
         None, "ns", None),
        ("floor: the spin + 2 RMWs of one shared line, no context", None,
         "floor/CommonParentCancel/two_rmw", None, "ns", None),
        ("floor: the spin + 2 lock/unlock of one shared mutex, no context", None,
         "floor/CommonParentCancel/two_locks", None, "ns", None),
        ("floor: the spin + 2 RMWs of one shared line + a child in a list per thread", None,
         "floor/CommonParentCancel/lanes", None, "ns", None),
    ]
    for w in (40, 4000, 400000):
        rows.append((f"WithTimeout/concurrency={w}", f"WithTimeout/concurrency={w}",
                     f"WithTimeout/concurrency={w}", None, "ns",
                     ("x", 4) if w == 400000 else None))
    for depth in (1, 10, 100, 1000):
        for r in ("Background", "OpenCanceler", "ClosedCanceler"):
            k = f"CancelTree/depth={depth}/Root={r}"
            tgt = ("x", 6) if (depth, r) == (1000, "Background") else ("tk",)
            rows.append((k, k, k, "tokio_util/" + k, "ns", tgt))
    rows.append(("floor: CancelTree/depth=1000/Root=Background, a chain of reference-counted "
                 "levels, no context", None, "floor/CancelTree/depth=1000/Root=Background",
                 None, "ns", None))
    for depth in (10, 100, 1000):
        k = f"CancelTree/depth={depth}/Root=OpenCanceler"
        rows.append((f"floor: {k}, a chain of reference-counted levels, each made done by "
                     "the root's cancel, no context", None, f"floor/{k}", None, "ns", None))
    for depth in (10, 1000):
        k = f"depth={depth}/Root=OpenCanceler"
        rows.append((f"CancelTree/{k}, every level's handle kept", None,
                     f"LevelsKept/ctxkit/{k}", f"LevelsKept/tokio_util/{k}", "ns", None))
    for depth in (10, 20, 30, 50, 100):
        k = f"DeepValueSameGoRoutine/depth={depth}"
        rows.append((k, k, k, None, "ns", ("x", 25) if depth == 100 else None))
    rows += [
        ("child of a live parent, dropped (child_token+drop)", None, "ctxkit/ChildDrop",
         "tokio_util/ChildDrop", "ns", ("tk",)),
        ("the same under a context carrying a value", None, "ctxkit/ChildDropUnderValue",
         None, "ns", None),
        ("cancel after the one child was dropped", None, "ctxkit/CancelAfterChild",
         "tokio_util/CancelAfterChild", "ns", None),
        ("done().await on a done context (cancelled().await)", None, "ctxkit/DoneAwaitReady",
         "tokio_util/DoneAwaitReady", "ns", ("tk",)),
        ("merge (create + drop)", None, "ctxkit/Merge", None, "ns", None),
        ("named_child (create + drop)", None, "ctxkit/NamedChild", None, "ns", None),
        ("after_func + stop", None, "ctxkit/AfterFuncStop", None, "ns", None),
        ("with_cancel + on_cancel + cancel", None, "ctxkit/OnCancel", None, "ns", None),
    ]
    scale = [
        (f"fan-out wake, {K100} tasks (ns/waiter)", f"fanout_wake/tasks={K100}", "ns", None),
        (f"fan-out wake, {M} tasks (ns/waiter)", f"fanout_wake/tasks={M}", "ns", ("x", 3)),
        (f"fan-out wake, {M} tasks, cancel() from a task", f"fanout_wake/tasks={M}/from_task", "ns", None),
        (f"fan-out wake, {M} tasks: until cancel() returned", f"fanout_wake/tasks={M}/cancel_returned", "ns", None),
        (f"fan-out wake, {M} counting wakers, no runtime (the core's share)", f"fanout_wake/counting_wakers={M}", "ns", None),
        (f"fan-out wake, {K10} blocked threads (ns/waiter)", f"fanout_wake/threads={K10}", "ns", None),
        (f"floor: fan-out wake, {M} tasks, from a plain list of wakers, no context",
         f"floor/fanout_wake/tasks={M}", "ns", None),
        (f"wide {M}: create (ns/child)", f"wide/n={M}/create", "ns", ("x", 5)),
        (f"wide {M}: bytes/child", f"wide/n={M}/bytes", "B", ("le", 96)),
        (f"wide {M}: allocations/child", f"wide/n={M}/allocs", "", None),
        (f"wide {M}: cancel (ns/child)", f"wide/n={M}/cancel", "ns", ("x", 3)),
        (f"wide {M}: drop (ns/child; Go: GC)", f"wide/n={M}/drop", "ns", None),
        (f"floor: wide {M}, create: a child holding its parent, held weakly under the "
         "parent's lock, and a second owner dropped, no context",
         f"floor/wide/n={M}/create", "ns", None),
        (f"floor: wide {M}, create, the same with children of 80 bytes, the size of ctxkit's "
         "node", f"floor/wide/n={M}/create_node_size", "ns", None),
        (f"deep {M}: create (ns/level)", f"deep/n={M}/create", "ns", ("x", 5)),
        (f"deep {M}: bytes/level", f"deep/n={M}/bytes", "B", None),
        (f"deep {M}: allocations/level", f"deep/n={M}/allocs", "", None),
        (f"deep {M}: cancel (ns/level)", f"deep/n={M}/cancel", "ns", ("x", 5)),
        (f"deep {M}: drop (ns/level; Go: GC)", f"deep/n={M}/drop", "ns", None),
        (f"floor: deep {M}, create: a level holding its parent, held weakly under the "
         "parent's lock, and a second owner dropped, no context",
         f"floor/deep/n={M}/create", "ns", None),
        (f"{M} timers: create (ns)", f"timers/n={M}/create", "ns", ("x", 4)),
        (f"{M} timers: bytes each", f"timers/n={M}/bytes", "B", ("le", 128)),
        (f"{M} timers: allocations each", f"timers/n={M}/allocs", "", None),
        (f"{M} timers: cancel (ns)", f"timers/n={M}/cancel", "ns", ("x", 3)),
        (f"{M} timers: drop (ns; Go: GC)", f"timers/n={M}/drop", "ns", None),
        (f"floor: {M} timers, create: a clock read and 32 bytes each, no context",
         f"floor/timers/n={M}/create", "ns", None),
        (f"floor: {M} timers, create, with Go's API: the same, held weakly by the queue "
         "under its lock, and a second owner kept, the first dropped",
         f"floor/timers/n={M}/create_api", "ns", None),
        (f"floor: {M} timers, create, with Go's API and contexts of 80 bytes, the size of "
         "ctxkit's node", f"floor/timers/n={M}/create_api_node_size", "ns", None),
        ("timer lateness, one deadline at a time, a blocked waiter: p50", "timer_lateness/alone/p50", "ms", None),
        (f"timer lateness {K10} x 50 ms: min", f"timer_lateness/n={K10}/min", "ms", None),
        (f"timer lateness {K10} x 50 ms: p10", f"timer_lateness/n={K10}/p10", "ms", None),
        (f"timer lateness {K10} x 50 ms: p50", f"timer_lateness/n={K10}/p50", "ms", None),
        (f"timer lateness {K10} x 50 ms: p90", f"timer_lateness/n={K10}/p90", "ms", None),
        (f"timer lateness {K10} x 50 ms: p99", f"timer_lateness/n={K10}/p99", "ms", ("le", 2)),
        (f"timer lateness {K10} x 50 ms: max", f"timer_lateness/n={K10}/max", "ms", ("le", 10)),
        (f"floor: timer lateness {K10} x 50 ms on the runtime's own timer, no context: p99",
         f"floor/timer_lateness/n={K10}/p99", "ms", None),
    ]
    for name, key, unit, tgt in scale:
        gk = key.replace("/from_task", "")  # Go's cancel() always runs on a goroutine
        tk = "tokio_util/" + key if ("tokio_util/" + key) in ours else None
        if tgt is None and tk and unit == "ns" and not key.endswith(("cancel_returned", "drop")):
            tgt = ("tk",)
        rows.append((name, gk, key, tk, unit, tgt))

    # The anchor: the Go figures the "x" targets were set from (Go 1.23 on this machine; the
    # low end where a range was given). Such a target also shows the bound they give, and
    # the verdict against it where it differs from the verdict against this run's Go figure.
    anchor_go = {
        "CommonParentCancel": 286, "CancelTree/depth=1000/Root=Background": 194_000,
        "WithTimeout/concurrency=400000": 2600, "DeepValueSameGoRoutine/depth=100": 377,
        f"fanout_wake/tasks={M}": 350, f"wide/n={M}/create": 324, f"wide/n={M}/cancel": 119,
        f"deep/n={M}/create": 311, f"deep/n={M}/cancel": 373, f"timers/n={M}/create": 325,
        f"timers/n={M}/cancel": 160,
    }
    # Rows whose floor is measured: the same work without ctxkit, on the same runtime and
    # machine. A missed target whose floor misses it too cannot be met here. For
    # CommonParentCancel the floor is that of any design in which a child counts a reference
    # on the parent both threads share and is registered where the parent's cancellation
    # finds it: the spin, two read-modify-writes of one line, and a small child allocated and
    # put into a list of the calling thread's own (go_parity.rs, `lanes_floor`). For
    # the chains (under Background, and the deep million), that of any tree freed by
    # reference counts (go_parity.rs, `floor_chain`; scale.rs, `deep_floor`); under an open
    # root, the same chain with each level made done by the root's cancel
    # (`floor_open_chain`).
    floors = {
        "CheckCanceled/Err": "floor/CheckCanceled/one_load",
        "CheckCanceled/Done": "floor/CheckCanceled/one_load",
        "CommonParentCancel": "floor/CommonParentCancel/lanes",
        "CancelTree/depth=1000/Root=Background": "floor/CancelTree/depth=1000/Root=Background",
        **{f"CancelTree/depth={d}/Root=OpenCanceler": f"floor/CancelTree/depth={d}/Root=OpenCanceler"
           for d in (10, 100, 1000)},
        f"fanout_wake/tasks={M}": f"floor/fanout_wake/tasks={M}",
        f"timer_lateness/n={K10}/p99": f"floor/timer_lateness/n={K10}/p99",
        f"timers/n={M}/create": f"floor/timers/n={M}/create_api",
        f"wide/n={M}/create": f"floor/wide/n={M}/create",
        f"deep/n={M}/create": f"floor/deep/n={M}/create",
    }
    evaluated = []
    for name, gk, ck, tk, unit, tgt in rows:
        g = go.get(gk) if gk else None
        c = ours.get(ck) if ck else None
        t = ours.get(tk) if tk else None
        want, verdict, anchor, ok = "", "", "", None
        if tgt and c is not None:
            kind = tgt[0]

            # Each part of the target, for a figure: ctxkit's, or its floor's.
            def meets_go(x):
                if kind == "le":
                    return x <= tgt[1]
                if kind == "x":
                    return g is not None and g / x >= tgt[1]
                return True

            def meets_tokio(x):
                return t is None or unit != "ns" or x < t

            if kind == "le":
                want = f"≤ {fmt(tgt[1], unit)}"
            elif kind == "x":
                want = f"≥ {tgt[1]}x faster than Go"
                if gk in anchor_go:
                    bound = anchor_go[gk] / tgt[1]
                    want += f" (anchor: {fmt(anchor_go[gk], unit)} → ≤ {fmt(bound, unit)})"
                    anchor = "met" if c <= bound else "**missed**"
            if t is not None and unit == "ns":
                want += ("; " if want else "") + "faster than tokio-util"
            ok = meets_go(c) and meets_tokio(c)
            verdict = "met" if ok else "**missed**"
            # The floor bounds the row when it misses a part of the target the row misses.
            f = ours.get(floors.get(ck, ""))
            if not ok and f is not None:
                if (not meets_go(c) and not meets_go(f)) or (not meets_tokio(c) and not meets_tokio(f)):
                    verdict += f" (its floor, {fmt(f, unit)}, misses it too)"
        evaluated.append(Row(name, g, c, t, unit, want, verdict, anchor, ok))
    return evaluated


def figures(row):
    g, c, unit = row.go, row.ours, row.unit
    ratio = f"{g / c:.1f}x" if g is not None and c else "—"
    return (f"| {row.name} | {fmt(g, unit)} | {fmt(c, unit)} | {fmt(row.tokio, unit)} | "
            f"{ratio} | {row.want} |")


def met_cell(row):
    verdict = row.verdict
    if row.anchor and row.anchor != verdict:
        verdict += f" (against the anchor: {row.anchor})"
    return verdict


def print_run(evaluated, out):
    head = ("| measure | Go | ctxkit | tokio-util | ratio (Go/ctxkit) | target | this run | "
            "anchor Go figure |\n|---|---:|---:|---:|---:|---|---|---|")
    summary_head = ("| measure | Go | ctxkit | tokio-util | ratio (Go/ctxkit) | target | met? |\n"
                    "|---|---:|---:|---:|---:|---|---|")
    with_target = [row for row in evaluated if row.verdict]
    print("### Summary: the targets\n")
    print(summary_head)
    print("\n".join(f"{figures(row)} {met_cell(row)} |" for row in with_target))
    print("\n### Every figure\n")
    print(head)
    print("\n".join(f"{figures(row)} {row.verdict} | {row.anchor} |" for row in evaluated))
    print()
    machine = os.path.join(out, "machine.txt")
    if os.path.exists(machine):
        print("```")
        print(open(machine).read().rstrip())
        print("```")
        print()
    met = sum(1 for row in with_target if row.met)
    print(f"{met} targets met, {len(with_target) - met} missed (judged against Go's figures from "
          "this run). Medians: criterion's median estimate; Go: median of the -count runs; "
          "scale: one run.")


def print_series(runs):
    """The summary of runs made one after another: the last run's figures, each run's
    verdict, and each run's figures for every measure with a target."""
    n = len(runs)
    labels = ", ".join(str(i + 1) for i in range(n))
    last = runs[-1]
    print(f"### Summary of {n} runs in a row: the targets\n")
    print(f"| measure | Go | ctxkit | tokio-util | ratio (Go/ctxkit) | target | met? (run {n}) "
          f"| runs {labels} |\n|---|---:|---:|---:|---:|---|---|---|")
    for i, row in enumerate(last):
        if not row.verdict:
            continue
        verdicts = ", ".join(
            "—" if run[i].met is None else ("met" if run[i].met else "missed") for run in runs)
        print(f"{figures(row)} {met_cell(row)} | {verdicts} |")
    print()
    counts = [sum(1 for row in run if row.met) for run in runs]
    total = sum(1 for row in last if row.verdict)
    held = sum(1 for i, row in enumerate(last) if row.verdict and all(run[i].met for run in runs))
    print(f"Targets met: {', '.join(map(str, counts))} of {total} in runs {labels}; "
          f"{held} met in every run.\n")
    print(f"### Each run's figures (runs {labels})\n")
    print("| measure | ctxkit | tokio-util | Go |\n|---|---|---|---|")
    for i, row in enumerate(last):
        if not row.verdict:
            continue
        cells = [", ".join(fmt(getattr(run[i], k), row.unit) for run in runs)
                 for k in ("ours", "tokio", "go")]
        print(f"| {row.name} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", help="the folder of one run")
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--size", default="full")
    ap.add_argument("--series", nargs="+", metavar="RUN",
                    help="the folders of runs made one after another, oldest first, each "
                         "with its criterion/ copy: prints their summary")
    a = ap.parse_args()
    if a.series:
        runs = [evaluate(run, os.path.join(run, "criterion"), a.size) for run in a.series]
        print_series(runs)
        return
    if not a.out:
        ap.error("--out or --series is needed")
    print_run(evaluate(a.out, a.criterion, a.size), a.out)

if __name__ == "__main__":
    main()
