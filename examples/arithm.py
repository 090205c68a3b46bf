"""The seed README's first numbers: (a + b) * c, its derivatives, backprop, and its graph.

The numbers are printed once per term kind (they agree to the bit); the graph drawn is the Term's,
the kind the seed writes this example with.
"""
import _common
import rustograd_cy as rg


#: Each term kind with a function returning its leaf maker `leaf(name, value)`, the seed's first.
KINDS = [("Term", lambda: rg.Term), ("RcTerm", lambda: rg.RcTerm), ("TapeTerm", lambda: rg.Tape().term)]


def numbers(leaf):
    """Build (a + b) * c with `leaf(name, value)` and print what the seed prints; returns abc."""
    a, b, c = leaf("a", 123.0), leaf("b", 321.0), leaf("c", 42.0)
    ab = a + b
    abc = ab * c
    print(f"a + b = {ab.eval()}")
    print(f"(a + b) * c = {abc.eval()}")
    print(f"d(a + b) / da = {ab.derive(a)}")
    print(f"d((a + b) * c) / da = {abc.derive(a)}")  # 42
    print(f"d((a + b) * c) / db = {abc.derive(b)}")  # 42
    print(f"d((a + b) * c) / dc = {abc.derive(c)}")  # 444
    d = leaf("d", 2.0)
    abcd = abc / d
    abcd.eval()
    print(f"d((a + b) * c / d) / dc = {abcd.derive(c)}")  # 222
    abc.backprop()
    print(f"backprop: a.grad = {a.grad}, b.grad = {b.grad}, c.grad = {c.grad}")
    return abc


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    drawn = {}
    for kind, leaf_maker in KINDS:
        print(f"-- {kind}")
        drawn[kind] = numbers(leaf_maker())
    print(drawn["Term"].dot(), end="")
    _common.save_graph(drawn["Term"], args.out, "graphviz")


if __name__ == "__main__":
    main()
