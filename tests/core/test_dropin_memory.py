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
    gc.garbage.clear()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage to be read
    gc.disable()
    try:
        module = use()
        ref = weakref.ref(module)
        del module
        assert ref() is None, "still alive after del: a reference cycle"
        gc.collect()
        # Only our own objects: another thread of the test process (pytest-xdist's) may leave
        # cycles of its own while the collector is off.
        ours = [o for o in gc.garbage if _ours(o)]
        assert not ours, f"left in reference cycles: {[type(o).__name__ for o in ours][:10]}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _ours(obj: object) -> bool:
    """A tensor, a module, or an object of a torch or rnnlab type (autograd nodes, hooks ...)."""
    if isinstance(obj, (torch.Tensor, torch.nn.Module)):
        return True
    owner = getattr(obj, "__self__", None)  # a bound method of a module
    if isinstance(owner, torch.nn.Module):
        return True
    return (getattr(type(obj), "__module__", None) or "").startswith(("torch", "rnnlab"))
