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
from rustograd_cy._optim import SGD, Adam

__all__ = ["SGD", "Adam"]
