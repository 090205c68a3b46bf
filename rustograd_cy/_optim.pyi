"""Type stubs for the compiled optimizers (rustograd_cy/_optim.pyx), exported as rustograd_cy.optim."""
from typing import Iterable

import numpy as np
import numpy.typing as npt

from rustograd_cy._tape import Tape, TapeTerm

def gather(params: Iterable[TapeTerm]) -> tuple[Tape, npt.NDArray[np.int32]]: ...

class SGD:
    tape: Tape
    lr: float
    momentum: float
    def __init__(self, params: Iterable[TapeTerm], lr: float, momentum: float = ...) -> None: ...
    def step(self, grads: npt.ArrayLike | None = ...) -> None: ...

class Adam:
    tape: Tape
    lr: float
    eps: float
    betas: tuple[float, float]
    steps: int
    def __init__(self, params: Iterable[TapeTerm], lr: float = ..., betas: tuple[float, float] = ...,
                 eps: float = ...) -> None: ...
    def step(self, grads: npt.ArrayLike | None = ...) -> None: ...
