"""The benchmark workloads for every term kind and peer library, behind one small interface.

A *kind* knows how to build the bigdag graph (benchmarks/bigdag.py) and the seed's curve fit in its
library's own idiom. Kinds whose library is missing are listed by `kinds()` with the reason, never
faked. Each kind's bigdag graph has these phases, which the benchmarks time one at a time:

    g = kind.build(n)           # build (ring builder; kind.build(n, keep_all=True) keeps every node)
    g.prepare()                 # untimed set-up a library needs before replaying (CasADi's Functions)
    g.eval()                    # forward: set the 16 leaves, recompute the output's value, return it
    g.backprop()                # reverse: gradients of the output (needs the values of g.eval())
    g.replay()                  # eval + backprop
    g.leaf_grads()              # the 16 leaf gradients (after a fresh sweep), to check the kinds

>>> [k.name for k in kinds() if k.available][:1]
['TapeTerm']
"""
import gc
import math
import operator

import bigdag
import rustograd_cy as rg

ARITH = {"add": operator.add, "sub": operator.sub, "mul": operator.mul}


class Kind:
    """One term kind or peer. `note` says what its phases measure where that differs from ours."""

    name = "?"
    available = True
    missing = ""  # why it is not available
    note = ""
    max_n = None  # the largest N it is run at (None: every size); see `note`
    has = ("build", "eval", "backprop", "replay", "one-shot")

    def __init__(self):
        self._plans = {}

    def plan(self, n, keep_all=False):
        """The compiled bigdag plan for this kind (cached per N: compiling is not part of a build)."""
        key = (n, keep_all)
        if key not in self._plans:
            steps = bigdag.plan(n)
            compile_ = bigdag.compile_plan if keep_all else bigdag.compile_ring
            self._plans[key] = compile_(steps, self.table())
        return self._plans[key]

    def build(self, n, keep_all=False):
        leaves = self.leaves(bigdag.leaf_values())
        if keep_all:
            return self.graph(bigdag.build(self.plan(n, True), leaves)[-1], leaves, n)
        return self.graph(bigdag.build_ring(self.plan(n), leaves), leaves, n)

    def one_shot(self, n):
        """Build, eval and backprop once; returns the output's value."""
        g = self.build(n)
        value = g.eval()
        g.backprop()
        return value


class Graph:
    def prepare(self):
        pass


class RgGraph(Graph):
    """A rustograd graph (any of the three kinds: they share one API)."""

    def __init__(self, out, leaves, owner=None):
        self.out, self.leaves, self.owner = out, leaves, owner
        self.inputs = list(zip(leaves, bigdag.leaf_values()))

    def eval(self):
        # A replay sets its inputs first; RcTerm caches values until a set(), so without this its
        # eval() would time a cache hit. (Same values: the output is checked against the reference.)
        for x, v in self.inputs:
            x.set(v)
        return self.out.eval()

    def backprop(self):
        self.out.backprop()

    def replay(self):
        self.eval()
        self.out.backprop()

    def leaf_grads(self):
        self.replay()
        # A leaf outside the output's cone: the tape says 0.0, the pointer kinds None (not reached).
        return [0.0 if x.grad is None else x.grad for x in self.leaves]


class RgKind(Kind):
    """TapeTerm, RcTerm and Term: `make(name, value)` makes a leaf."""

    def __init__(self, name, cls):
        super().__init__()
        self.name, self.cls = name, cls

    def table(self):
        return bigdag.term_table(self.cls)

    def new_leaf_maker(self):
        return self.cls

    def leaves(self, values):
        make = self.new_leaf_maker()
        return [make(f"x{j}", v) for j, v in enumerate(values)]

    def graph(self, out, leaves, n):
        return RgGraph(out, leaves)

    def curve_fit(self, epochs):
        return rg_curve_fit(self.new_leaf_maker(), epochs)


class TapeKind(RgKind):
    def __init__(self):
        super().__init__("TapeTerm", rg.TapeTerm)

    def new_leaf_maker(self):
        return rg.Tape().term

    def graph(self, out, leaves, n):
        return RgGraph(out, leaves, out.tape)


# -- the seed's curve fit ----------------------------------------------------------------------

CURVE_X = [i / 10 for i in range(-40, 40)]
CURVE_Y = [0.75 * math.exp(-((x - 1.2) ** 2) / 0.35) for x in CURVE_X]
CURVE_START = (0.0, 1.0, 1.0)  # mu, sigma, scale
CURVE_RATE = 0.01


def model_loss(x, y, mu, sigma, scale, exp):
    """The seed's model and loss, for any kind with arithmetic and `exp`."""
    g = scale * exp(-((x - mu) * (x - mu)) / sigma / sigma)
    return (g - y) * (g - y)


def rg_curve_fit(make, epochs):
    """The curve fit the seed's way: build once; per sample set x, y, eval, backprop, read grads."""
    x, y = make("x", 0.0), make("y", 0.0)
    params = [make(name, v) for name, v in zip(("mu", "sigma", "scale"), CURVE_START)]
    loss = model_loss(x, y, *params, exp=lambda t: t.exp())
    current = list(CURVE_START)
    for _ in range(epochs):
        for p, v in zip(params, current):
            p.set(v)
        nxt = list(current)
        for xi, yi in zip(CURVE_X, CURVE_Y):
            x.set(xi)
            y.set(yi)
            loss.eval()
            loss.backprop()
            for k, p in enumerate(params):
                nxt[k] -= CURVE_RATE * p.grad
        current = nxt
    return tuple(current)


def float_curve_fit(epochs):
    """The same fit with hand-written derivatives on plain floats (the oracle)."""
    mu, sigma, scale = CURVE_START
    for _ in range(epochs):
        nxt = [mu, sigma, scale]
        for x, y in zip(CURVE_X, CURVE_Y):
            e = math.exp(-((x - mu) * (x - mu)) / sigma / sigma)
            g = scale * e
            dg = 2 * (g - y)
            nxt[0] -= CURVE_RATE * dg * g * 2 * (x - mu) / sigma ** 2
            nxt[1] -= CURVE_RATE * dg * g * 2 * (x - mu) ** 2 / sigma ** 3
            nxt[2] -= CURVE_RATE * dg * e
        mu, sigma, scale = nxt
    return mu, sigma, scale


# -- peers -------------------------------------------------------------------------------------

class CasadiKind(Kind):
    name = "CasADi SX"
    note = ("CasADi SX: build = SX expression construction; eval = call of Function(x -> f); replay = "
            "call of Function(x -> [f, gradient(f, x)]) (reverse mode, one call; the Functions are "
            "made once, outside the build/eval/replay timings, inside one-shot); backprop alone is "
            "not separable")
    has = ("build", "eval", "replay", "one-shot")

    def __init__(self, casadi):
        super().__init__()
        self.ca = casadi

    def table(self):
        return dict(ARITH, sin=self.ca.sin, cos=self.ca.cos, tanh=self.ca.tanh)

    def leaves(self, values):
        self._x = self.ca.SX.sym("x", len(values))
        return [self._x[j] for j in range(len(values))]

    def graph(self, out, leaves, n):
        return CasadiGraph(self.ca, self._x, out)

    def one_shot(self, n):
        """Build, make the Function, call it once."""
        return self.build(n).replay_with_value()

    def curve_fit(self, epochs):
        ca = self.ca
        x, y, mu, sigma, scale = (ca.SX.sym(s) for s in ("x", "y", "mu", "sigma", "scale"))
        loss = model_loss(x, y, mu, sigma, scale, exp=ca.exp)
        p = ca.vertcat(mu, sigma, scale)
        f = ca.Function("fit", [x, y, p], [loss, ca.gradient(loss, p)])
        current = list(CURVE_START)
        for _ in range(epochs):
            nxt = list(current)
            for xi, yi in zip(CURVE_X, CURVE_Y):
                _, grad = f(xi, yi, current)
                for k in range(3):
                    nxt[k] -= CURVE_RATE * float(grad[k])
            current = nxt
        return tuple(current)


class CasadiGraph(Graph):
    def __init__(self, ca, x, out):
        self.ca, self.x, self.out = ca, x, out
        self.values = bigdag.leaf_values()
        self.f = self.fg = None

    def prepare(self):
        if self.f is None:
            ca, x, out = self.ca, self.x, self.out
            self.f = ca.Function("f", [x], [out])
            self.fg = ca.Function("fg", [x], [out, ca.gradient(out, x)])

    def eval(self):
        self.prepare()
        return float(self.f(self.values))

    def replay(self):
        self.prepare()
        self.fg(self.values)

    def replay_with_value(self):
        self.prepare()
        value, grads = self.fg(self.values)
        self._grads = [float(g) for g in grads.full().ravel()]
        return float(value)

    def leaf_grads(self):
        self.replay_with_value()
        return self._grads


class TorchKind(Kind):
    name = "PyTorch"
    note = ("PyTorch (0-d float64 tensors, define-by-run): build = the ops on requires_grad leaves, "
            "recording the autograd graph; eval = the same ops under torch.no_grad() (a forward "
            "recompute is a rebuild); backprop = backward(retain_graph=True) on the built graph; "
            "replay = the ops again on the same leaves + backward (the closest to eval + backprop "
            "its model allows)")

    def __init__(self, torch):
        super().__init__()
        self.torch = torch

    def table(self):
        t = self.torch
        return dict(ARITH, sin=t.sin, cos=t.cos, tanh=t.tanh)

    def leaves(self, values):
        t = self.torch
        return [t.tensor(v, dtype=t.float64, requires_grad=True) for v in values]

    def graph(self, out, leaves, n):
        return TorchGraph(self.torch, self.plan(n), out, leaves)

    def curve_fit(self, epochs):
        t = self.torch
        current = list(CURVE_START)
        for _ in range(epochs):
            params = [t.tensor(v, dtype=t.float64, requires_grad=True) for v in current]
            nxt = list(current)
            for xi, yi in zip(CURVE_X, CURVE_Y):
                loss = model_loss(t.tensor(xi, dtype=t.float64), t.tensor(yi, dtype=t.float64),
                                  *params, exp=t.exp)
                loss.backward()
                for k, p in enumerate(params):
                    nxt[k] -= CURVE_RATE * p.grad.item()
                    p.grad = None
            current = nxt
        return tuple(current)


class TorchGraph(Graph):
    def __init__(self, torch, plan, out, leaves):
        self.torch, self.plan, self.out, self.leaves = torch, plan, out, leaves

    def eval(self):
        with self.torch.no_grad():
            return float(bigdag.build_ring(self.plan, self.leaves))

    def backprop(self):
        for x in self.leaves:
            x.grad = None
        self.out.backward(retain_graph=True)

    def replay(self):
        for x in self.leaves:
            x.grad = None
        self.out = bigdag.build_ring(self.plan, self.leaves)
        self.out.backward(retain_graph=True)

    def leaf_grads(self):
        self.backprop()
        return [0.0 if x.grad is None else x.grad.item() for x in self.leaves]


class MicrogradKind(Kind):
    name = "micrograd"
    note = ("micrograd: its Value engine plus sin/cos/tanh/exp written in its own closure style (it "
            "has only + * ** relu); values are computed while building, so eval = build and there "
            "is no replay; backprop = zero every grad, then backward(), whose topological sort is "
            "recursive: it raises RecursionError on deep graphs (default recursion limit), so "
            "micrograd runs only at N <= 10^4 here; a - b is three Values (a + b * Value(-1))")
    has = ("build", "backprop", "one-shot")
    max_n = 10 ** 4

    def __init__(self, engine):
        super().__init__()
        self.Value = engine.Value

    def _unary(self, f, df, op):
        Value = self.Value

        def fn(a):
            out = Value(f(a.data), (a,), op)

            def _backward():
                a.grad += df(a.data, out.data) * out.grad
            out._backward = _backward
            return out
        return fn

    def table(self):
        return dict(ARITH,
                    sin=self._unary(math.sin, lambda a, o: math.cos(a), "sin"),
                    cos=self._unary(math.cos, lambda a, o: -math.sin(a), "cos"),
                    tanh=self._unary(math.tanh, lambda a, o: 1 - o * o, "tanh"))

    def leaves(self, values):
        return [self.Value(v) for v in values]

    def graph(self, out, leaves, n):
        return MicrogradGraph(out, leaves)

    def curve_fit(self, epochs):
        exp = self._unary(math.exp, lambda a, o: o, "exp")
        current = list(CURVE_START)
        for _ in range(epochs):
            params = [self.Value(v) for v in current]
            nxt = list(current)
            for xi, yi in zip(CURVE_X, CURVE_Y):
                loss = model_loss(self.Value(xi), self.Value(yi), *params, exp=exp)
                for p in params:
                    p.grad = 0
                loss.backward()
                for k, p in enumerate(params):
                    nxt[k] -= CURVE_RATE * p.grad
            current = nxt
        return tuple(current)


class MicrogradGraph(Graph):
    def __init__(self, out, leaves):
        self.out, self.leaves = out, leaves

    def eval(self):
        return self.out.data

    def backprop(self):
        # Zero the grads of the whole graph first (backward() accumulates), iteratively.
        stack, seen = [self.out], set()
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                v.grad = 0
                stack.extend(v._prev)
        self.out.backward()

    def leaf_grads(self):
        self.backprop()
        return [x.grad for x in self.leaves]


class Missing(Kind):
    available = False

    def __init__(self, name, missing):
        super().__init__()
        self.name, self.missing = name, missing


def kinds(peers=True):
    """Every kind, TapeTerm first; kinds that cannot run here come back as `Missing` with a reason."""
    out = [TapeKind()]
    for name in ("RcTerm", "Term"):
        cls = getattr(rg, name, None)
        out.append(RgKind(name, cls) if cls is not None else
                   Missing(name, f"rg.{name} not available in this build"))
    if not peers:
        return out
    for name, module, make in (("CasADi SX", "casadi", CasadiKind), ("PyTorch", "torch", TorchKind),
                               ("micrograd", "micrograd.engine", MicrogradKind)):
        try:
            import importlib
            out.append(make(importlib.import_module(module)))
        except ImportError:
            out.append(Missing(name, f"{module} not installed (pip install '.[peers]'; torch==2.13.0)"))
    return out


def settle():
    """Collect garbage between measurements so one kind's leftovers do not bill the next."""
    gc.collect()
