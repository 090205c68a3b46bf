"""`make bench`: every term kind and installed peer on the same workloads, one table of medians.

    .venv/bin/python benchmarks/run.py            # the full sizes (a few minutes)
    .venv/bin/python benchmarks/run.py --quick    # tiny sizes: checks that everything runs

Each cell is a median in ns per bigdag node (N = the workload's node count, whatever a library makes
of it internally) and its ratio to TapeTerm (x2.0 = twice TapeTerm's time or bytes). Before a kind is
timed at a size, its output is checked against bigdag.reference_value (plain floats) and its leaf
gradients against TapeTerm's; a mismatch stops the run. Memory is measured in a fresh subprocess
per kind. The notes under the table say what each peer's phases measure.
"""
import argparse
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bigdag  # noqa: E402
import workloads  # noqa: E402
from timing import load_average, median_time, retained_bytes  # noqa: E402

FULL = dict(build=(10**4, 10**5, 10**6), replay=(10**4, 10**5, 10**6), one_shot=(10**4, 10**5),
            memory=10**5, epochs=100, budget=1.0)
QUICK = dict(build=(10**3, 3000), replay=(10**3, 3000), one_shot=(10**3,), memory=3000, epochs=2,
             budget=0.02)
REL = 1e-12


def machine():
    """One line on where the numbers come from (they are only comparable within one run)."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = load_average()
    return (f"machine: {os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}, "
            f"load average at the end {load}")


def sci(n):
    e = round(math.log10(n))
    return f"10^{e}" if 10**e == n else str(n)


class Table:
    """Rows of (label, N, {kind name: (value, ratio-able)}) printed with kinds as columns."""

    def __init__(self, names):
        self.names, self.rows, self.notes = names, [], []

    def add(self, label, n, cells, base="TapeTerm"):
        self.rows.append((label, n, cells, base))

    def render(self):
        width = 17
        head = f"{'workload':<40}{'N':>6}" + "".join(f"{k:>{width}}" for k in self.names)
        lines = [head, "-" * len(head)]
        for label, n, cells, base in self.rows:
            ref = cells.get(base)
            out = f"{label:<40}{sci(n) if n else '':>6}"
            for k in self.names:
                cell = cells.get(k, "")
                if isinstance(cell, float):
                    text = f"{cell:.0f}" if cell >= 100 else f"{cell:.1f}"
                    if isinstance(ref, float) and k != base:
                        ratio = cell / ref
                        text += f" x{ratio:.0f}" if ratio >= 10 else f" x{ratio:.1f}"
                    cell = text
                out += f"{cell:>{width}}"
            lines.append(out)
        return "\n".join(lines)


class Runner:
    def __init__(self, sizes, kinds, log):
        self.sizes, self.kinds, self.log = sizes, kinds, log
        self.live = [k for k in kinds if k.available]
        self.table = Table([k.name for k in kinds])
        self.refs, self.tape_grads = {}, {}

    def time(self, fn):
        return median_time(fn, budget=self.sizes["budget"])

    def reference(self, n):
        if n not in self.refs:
            self.refs[n] = bigdag.reference_value(bigdag.plan(n))
        return self.refs[n]

    def check(self, kind, g, n):
        """The output against the plain-float oracle, the leaf gradients against TapeTerm's."""
        value, ref = g.eval(), self.reference(n)
        if not math.isclose(value, ref, rel_tol=REL, abs_tol=REL):
            raise SystemExit(f"{kind.name} at N={n}: output {value!r}, reference {ref!r}")
        grads = g.leaf_grads()
        if kind.name == "TapeTerm":
            self.tape_grads[n] = grads
        elif n in self.tape_grads:
            for j, (a, b) in enumerate(zip(grads, self.tape_grads[n])):
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                    raise SystemExit(f"{kind.name} at N={n}: d/dx{j} = {a!r}, TapeTerm says {b!r}")

    def cell(self, kind, phase, n):
        """Why `kind` has no number here, or None if it has one."""
        if not kind.available:
            return "n/a"
        if phase not in kind.has:
            return "-"
        if kind.max_n is not None and n > kind.max_n:
            return "not run"
        return None

    def bigdag(self):
        s = self.sizes
        for k in self.live:
            g = k.build(1000)
            if g.eval() != bigdag.VALUE_AT_1000:
                raise SystemExit(f"{k.name}: bigdag(1000) = {g.eval()!r}, not {bigdag.VALUE_AT_1000!r}")
        self.log(f"bigdag N=1000 = {bigdag.VALUE_AT_1000!r} for " + ", ".join(k.name for k in self.live))
        graphs = {}
        for n in sorted(set(s["build"]) | set(s["replay"])):
            cells = {}
            for k in self.kinds:
                cells[k.name] = self.cell(k, "build", n)
                if cells[k.name] is None:
                    k.plan(n)
                    workloads.settle()
                    sec, runs, g = self.time(lambda: k.build(n))
                    g.prepare()
                    self.check(k, g, n)
                    cells[k.name] = sec / n * 1e9
                    graphs[k.name, n] = g if n in s["replay"] else None
                    self.log(f"build {k.name} N={n}: {sec / n * 1e9:.0f} ns/node ({runs} runs)")
            if n in s["build"]:
                self.table.add("build (ring builder)", n, cells)
            if n in s["build"]:
                tape = self.live[0]
                for label, gc_off in (("build, keep every node (GC on)", False),
                                      ("build, keep every node (GC off)", True)):
                    tape.plan(n, keep_all=True)
                    workloads.settle()
                    if gc_off:
                        workloads.gc.disable()
                    try:
                        sec, _, g = self.time(lambda: tape.build(n, keep_all=True))
                    finally:
                        workloads.gc.enable()
                    if g.eval() != self.reference(n):
                        raise SystemExit(f"keep-all build at N={n} gives {g.eval()!r}")
                    del g
                    self.table.add(label, n, {tape.name: sec / n * 1e9})
        for phase in ("replay", "eval", "backprop"):
            for n in s["replay"]:
                cells = {}
                for k in self.kinds:
                    cells[k.name] = self.cell(k, phase, n)
                    if cells[k.name] is None:
                        g = graphs[k.name, n]
                        if phase == "backprop":
                            g.eval()
                        workloads.settle()
                        sec, runs, _ = self.time(getattr(g, phase))
                        cells[k.name] = sec / n * 1e9
                        self.log(f"{phase} {k.name} N={n}: {sec / n * 1e9:.1f} ns/node ({runs} runs)")
                self.table.add({"replay": "replay (eval + backprop)"}.get(phase, phase), n, cells)
        graphs.clear()
        for n in s["one_shot"]:
            cells = {}
            for k in self.kinds:
                cells[k.name] = self.cell(k, "one-shot", n)
                if cells[k.name] is None:
                    workloads.settle()
                    sec, runs, value = self.time(lambda: k.one_shot(n))
                    if not math.isclose(value, self.reference(n), rel_tol=REL):
                        raise SystemExit(f"{k.name} one-shot at N={n} gives {value!r}")
                    cells[k.name] = sec / n * 1e9
                    self.log(f"one-shot {k.name} N={n}: {sec / n * 1e9:.0f} ns/node ({runs} runs)")
            self.table.add("one-shot (build + eval + backprop)", n, cells)

    def memory(self):
        n = self.sizes["memory"]
        cone = bigdag.cone_size(bigdag.plan(n))
        rss, traced = {}, {}
        for k in self.kinds:
            reason = self.cell(k, "build", n)
            if reason is not None:
                rss[k.name] = traced[k.name] = reason
            elif k.name == "TapeTerm":
                rss[k.name] = traced[k.name] = self.child(k, n, "nbytes") / (n + 2)
            else:
                rss[k.name] = self.child(k, n, "rss") / cone
                # CasADi's and PyTorch's nodes live in C++ heaps, which tracemalloc does not see.
                traced[k.name] = "-" if k.name in ("CasADi SX", "PyTorch") else \
                    self.child(k, n, "tracemalloc") / cone
        self.table.add("bytes/node, RSS delta (Tape: nbytes)", n, rss)
        self.table.add("bytes/node, tracemalloc (Tape: nbytes)", n, traced)
        self.table.notes.append(
            f"bytes/node: TapeTerm = tape.nbytes / len(tape) (it holds all N nodes, plus the cached "
            f"cone); the others hold only the output's cone ({cone} of {n} nodes), so their bytes "
            f"retained after build + eval + backprop and a replay (CasADi: + its two Functions) are divided by "
            f"{cone}; each measured in a fresh process")
        if self.live and 10**6 in self.sizes["build"]:
            tape = self.live[0]
            g = tape.build(10**6)
            g.replay()
            g.replay()  # the second sweep makes the cone's level order
            self.table.add("bytes/node (Tape: nbytes/len)", 10**6,
                           {tape.name: g.owner.nbytes / len(g.owner)})

    @staticmethod
    def child(kind, n, method):
        out = subprocess.run([sys.executable, __file__, "--memory", kind.name, str(n), method],
                             capture_output=True, text=True, check=True).stdout
        return float(out)

    def curve_fit(self):
        epochs = self.sizes["epochs"]
        oracle = workloads.float_curve_fit(epochs)
        cells, results = {}, {}
        for k in self.kinds:
            cells[k.name] = self.cell(k, "build", 0)
            if cells[k.name] is None:
                workloads.settle()
                sec, runs, results[k.name] = self.time(lambda: k.curve_fit(epochs))
                cells[k.name] = sec * 1e3
                self.log(f"curve fit {k.name}: {sec * 1e3:.1f} ms ({runs} runs)")
        self.table.add(f"curve fit, ms per {epochs} epochs", None, cells)
        worst = 0.0
        lines = [f"curve fit final (mu, sigma, scale) after {epochs} epochs; oracle (floats, "
                 f"hand-written derivatives) {tuple(round(v, 12) for v in oracle)}"]
        for name, params in results.items():
            diff = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(params, oracle))
            worst = max(worst, diff)
            lines.append(f"  {name:<10} {params}   max rel diff to oracle {diff:.1e}")
        if worst > 1e-9:
            raise SystemExit("\n".join(lines) + "\nthe kinds disagree on the curve fit")
        lines.append(f"  all kinds agree (max rel diff {worst:.1e})")
        self.table.notes.append("\n".join(lines))
        return results


def memory_child(name, n, method):
    """Bytes retained by one kind's bigdag graph after build + eval + backprop and a replay (run in a
    subprocess): a replayed tape also holds its cone's level order (docs/internals.md)."""
    kind = next(k for k in workloads.kinds() if k.name == name)
    kind.plan(n)

    def make():
        g = kind.build(n)
        g.prepare()
        g.leaf_grads()  # values and gradients computed
        g.replay()  # and replayed once, as a graph that is kept to be replayed is
        return g

    if method == "nbytes":
        g = make()
        return g.owner.nbytes
    return retained_bytes(make, method)


def targets(table):
    """The issue's targets next to what was measured (reported, not asserted)."""
    def get(label, n, kind="TapeTerm"):
        for lab, m, cells, _ in table.rows:
            if lab.startswith(label) and m == n and isinstance(cells.get(kind), float):
                return cells[kind]
        return None

    lines = ["targets (reported, not asserted):"]
    for what, value, goal in (("replay ns/node at N=10^6", get("replay", 10**6), 18),
                              ("build ns/node at N=10^6 (ring)", get("build (ring", 10**6), 200),
                              ("bytes/node at N=10^6", get("bytes/node (Tape: nbytes/len)", 10**6), 40)):
        if value is not None:
            lines.append(f"  TapeTerm {what}: {value:.1f} (target <= {goal}): "
                         f"{'met' if value <= goal else 'NOT met'}")
    rc, tape = get("replay", 10**5, "RcTerm"), get("replay", 10**5)
    if rc is not None and tape is not None:
        lines.append(f"  TapeTerm replay vs RcTerm at N=10^5: {rc / tape:.1f}x faster (target >= 5x): "
                     f"{'met' if rc / tape >= 5 else 'NOT met'}")
    else:
        lines.append("  TapeTerm replay vs RcTerm at N=10^5: RcTerm not available")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test of the workloads)")
    p.add_argument("--no-peers", action="store_true", help="only the rustograd term kinds")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--memory", nargs=3, metavar=("KIND", "N", "METHOD"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory:
        name, n, method = args.memory
        print(memory_child(name, int(n), method))
        return None
    kinds = workloads.kinds(peers=not args.no_peers)
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    runner = Runner(QUICK if args.quick else FULL, kinds, log)
    runner.bigdag()
    runner.memory()
    runner.curve_fit()
    print(f"rustograd-cy benchmarks: medians, ns per bigdag node unless said, ratio = kind / TapeTerm"
          f"{'  (--quick sizes)' if args.quick else ''}")
    print(machine())
    print(runner.table.render())
    print()
    for k in kinds:
        if not k.available:
            print(f"{k.name}: not available: {k.missing}")
        elif k.note:
            print(k.note)
    for note in runner.table.notes:
        print(note)
    print(f"'-' = the library has no such phase; 'not run' = see its note; each time is the median "
          f"of 3-25 runs (fewer where one run exceeds {3 * runner.sizes['budget']:g} s)")
    print(targets(runner.table))
    return runner


if __name__ == "__main__":
    main()
