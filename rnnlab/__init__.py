"""rnnlab: the whole family of recurrent neural networks on PyTorch.

Cells (one step), layers (the loop over time, stacking, directions, lengths), torch.nn drop-ins,
task models, training, diagnostics and experiments.
"""

from __future__ import annotations

from rnnlab import nn
from rnnlab.core.cells import (
    AdditiveCell,
    ElmanCell,
    GRUCell,
    LSTMCell,
    MinimalGRUCell,
    RecurrentCell,
)
from rnnlab.core.layers import Recurrent, flip_valid, scan
from rnnlab.core.mut import MUT1Cell, MUT2Cell, MUT3Cell
from rnnlab.core.registry import CELLS, RecurrentConfig, cell_factory
from rnnlab.errors import RnnlabError

__version__ = "0.1.0"

__all__ = [
    "CELLS",
    "AdditiveCell",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "MUT1Cell",
    "MUT2Cell",
    "MUT3Cell",
    "MinimalGRUCell",
    "Recurrent",
    "RecurrentCell",
    "RecurrentConfig",
    "RnnlabError",
    "cell_factory",
    "flip_valid",
    "nn",
    "scan",
]
