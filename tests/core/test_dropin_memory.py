"""The drop-ins (and every rnnlab layer) are freed on ``del``, as torch's modules are: no
reference cycle that only the cycle collector would free (a bound-method hook used to make one)."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import rnnlab.nn as rnnlab_nn
from rnnlab.core.registry import RecurrentConfig

MODULES = {
    "LSTM": lambda: rnnlab_nn.LSTM(4, 8, num_layers=2),
    "GRU": lambda: rnnlab_nn.GRU(4, 8, bidirectional=True),
    "RNN": lambda: rnnlab_nn.RNN(4, 8),
    "Recurrent peephole": lambda: RecurrentConfig("peephole", 8).build(4),
    "torch.nn.LSTM (reference)": lambda: torch.nn.LSTM(4, 8),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_a_module_is_freed_on_del(name: str) -> None:
    make = MODULES[name]

    def use() -> torch.nn.Module:
        module = make()
        out, _ = module(torch.randn(3, 2, 4))
        out.sum().backward()
        module.load_state_dict(module.state_dict())
        return module

    use()  # first use: imports and caches that live for the process
    gc.collect()
    gc.disable()
    try:
        module = use()
        ref = weakref.ref(module)
        del module
        assert ref() is None, "still alive after del: a reference cycle"
        assert gc.collect() == 0
    finally:
        gc.enable()
