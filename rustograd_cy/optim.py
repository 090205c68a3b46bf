"""Optimizers over a tape's leaves: `step()` updates every parameter in one C loop.

A training step: set the data, `loss.eval()`, `loss.backprop()`, `opt.step()`.

>>> import rustograd_cy as rg
>>> tape = rg.Tape()
>>> w = tape.term("w", 1.0)
>>> loss = w * w
>>> opt = rg.optim.SGD([w], lr=0.25)
>>> _ = loss.eval(); loss.backprop(); opt.step()
>>> w.data
0.5
"""
import numpy as np

from rustograd_cy import _optim


class SGD:
    """Gradient descent with optional momentum (PyTorch's form: v = momentum * v + g; x -= lr * v).

    `lr` may be changed between steps (a schedule)."""

    def __init__(self, params, lr, momentum=0.0):
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        self.tape, self._idx = _optim.gather(params)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self._velocity = np.zeros(len(self._idx) if momentum else 0)

    def step(self):
        """Update every parameter from its gradient of the last backprop()."""
        _optim.sgd_step(self.tape, self._idx, self.lr, self.momentum, self._velocity)


class Adam:
    """Adam (PyTorch's form, bias-corrected), over leaves of one tape."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.tape, self._idx = _optim.gather(params)
        self.lr, self.betas, self.eps = float(lr), (b1, b2), float(eps)
        self._m = np.zeros(len(self._idx))
        self._v = np.zeros(len(self._idx))
        self.steps = 0

    def step(self):
        """Update every parameter from its gradient of the last backprop()."""
        b1, b2 = self.betas
        t = self.steps + 1
        _optim.adam_step(self.tape, self._idx, self.lr, b1, b2, self.eps, 1.0 - b1 ** t,
                         1.0 - b2 ** t, self._m, self._v)
        self.steps = t
