"""rnnlab: the whole family of recurrent neural networks on PyTorch.

Cells (one step), layers (the loop over time, stacking, directions, lengths), torch.nn drop-ins,
task models, training, diagnostics and experiments. The names below are imported on first use,
so that ``import rnnlab`` (and the command line's ``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "RecurrentCell": "rnnlab.core.cells",
    "ElmanCell": "rnnlab.core.cells",
    "AdditiveCell": "rnnlab.core.cells",
    "MinimalGRUCell": "rnnlab.core.cells",
    "GRUCell": "rnnlab.core.cells",
    "LSTMCell": "rnnlab.core.cells",
    "MUT1Cell": "rnnlab.core.mut",
    "MUT2Cell": "rnnlab.core.mut",
    "MUT3Cell": "rnnlab.core.mut",
    "Recurrent": "rnnlab.core.layers",
    "scan": "rnnlab.core.layers",
    "flip_valid": "rnnlab.core.layers",
    "use_backend": "rnnlab.core.backend",
    "CELLS": "rnnlab.core.registry",
    "RecurrentConfig": "rnnlab.core.registry",
    "cell_factory": "rnnlab.core.registry",
    "register_cell": "rnnlab.core.registry",
    "TrainConfig": "rnnlab.train.config",
    "Trainer": "rnnlab.train.trainer",
    "load_run": "rnnlab.tasks.runner",
    "register_task": "rnnlab.tasks",
    "RnnlabError": "rnnlab.errors",
}
_MODULES = ("nn", "core", "train", "tasks", "data", "analysis", "config", "export")

if TYPE_CHECKING:
    from rnnlab import nn
    from rnnlab.core.backend import use_backend
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
    from rnnlab.core.registry import CELLS, RecurrentConfig, cell_factory, register_cell
    from rnnlab.errors import RnnlabError
    from rnnlab.tasks import register_task
    from rnnlab.tasks.runner import load_run
    from rnnlab.train.config import TrainConfig
    from rnnlab.train.trainer import Trainer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module(f"rnnlab.{name}")
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_MODULES])


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
    "TrainConfig",
    "Trainer",
    "__version__",
    "cell_factory",
    "flip_valid",
    "load_run",
    "nn",
    "register_cell",
    "register_task",
    "scan",
    "use_backend",
]
