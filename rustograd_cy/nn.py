"""Small neural networks built as scalar graphs on a tape: one leaf per weight, one node per operation.

Build once, then train by replaying the tape over batches (set the input leaves to arrays).

>>> import rustograd_cy as rg
>>> tape = rg.Tape()
>>> net = rg.nn.MLP(tape, [2, 3, 1], seed=0)
>>> len(net.inputs), len(net.outputs), len(net.parameters())
(2, 1, 13)
"""
import numpy as np

ACTIVATIONS = ("tanh", "relu", "sigmoid")


class Linear:
    """out[o] = bias[o] + sum_i weight[o][i] * x[i], with weights uniform(-1, 1) from `rng` and zero
    biases (drawn row by row, as rng.uniform(-1, 1, (n_out, n_in)))."""

    def __init__(self, tape, n_in, n_out, rng, name="linear"):
        if n_in < 1 or n_out < 1:
            raise ValueError(f"Linear needs n_in, n_out >= 1, got {n_in}, {n_out}")
        w = rng.uniform(-1.0, 1.0, (n_out, n_in))
        self.n_in, self.n_out = n_in, n_out
        self.weight = [[tape.term(f"{name}.w{o}_{i}", float(w[o, i])) for i in range(n_in)]
                       for o in range(n_out)]
        self.bias = [tape.term(f"{name}.b{o}", 0.0) for o in range(n_out)]

    def __call__(self, inputs):
        """The n_out output terms for a list of n_in input terms."""
        if len(inputs) != self.n_in:
            raise ValueError(f"this Linear takes {self.n_in} inputs, got {len(inputs)}")
        outputs = []
        for row, b in zip(self.weight, self.bias):
            acc = b
            for w, x in zip(row, inputs):
                acc = acc + w * x
            outputs.append(acc)
        return outputs

    def parameters(self):
        """Weights (row by row) then biases."""
        return [w for row in self.weight for w in row] + list(self.bias)


class MLP:
    """A multi-layer perceptron on `tape`: `sizes` = [inputs, hidden..., outputs], `activation` on the
    hidden layers, a linear output layer. Input leaves `inputs` (x0, x1, ...) and output terms
    `outputs` are built at once; call the MLP on other terms to build it again on them."""

    def __init__(self, tape, sizes, activation="tanh", seed=0):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if len(sizes) < 2:
            raise ValueError(f"sizes needs an input and an output size, got {sizes}")
        rng = np.random.default_rng(seed)
        self.activation = activation
        self.layers = [Linear(tape, n_in, n_out, rng, name=f"layer{k}")
                       for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]
        self.inputs = [tape.term(f"x{j}", 0.0) for j in range(sizes[0])]
        self.outputs = self(self.inputs)

    def __call__(self, inputs):
        """The output terms for a list of input terms."""
        xs = list(inputs)
        for k, layer in enumerate(self.layers):
            xs = layer(xs)
            if k < len(self.layers) - 1:
                xs = [getattr(x, self.activation)() for x in xs]
        return xs

    def parameters(self):
        """Every weight and bias leaf, layer by layer."""
        return [p for layer in self.layers for p in layer.parameters()]
