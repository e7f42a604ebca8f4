"""The fast path: every cell's time loop and its backward in C++ (the ``"fast"`` backend).

:class:`rnnlab.core.layers.Recurrent` runs its cells here when its backend is ``"fast"``, or
``"auto"`` and :func:`why_not` finds nothing against it (see :mod:`rnnlab.core.backend`); the
results are those of the readable reference :func:`rnnlab.core.layers.scan` (tests/test_fast.py
and tests/test_backend.py check outputs, final states and every gradient against it, for every
cell and option). What it covers:

* cells that declare a kernel (:meth:`~rnnlab.core.cells.RecurrentCell.kernel`): Elman (tanh,
  relu), additive, minimal GRU, GRU (reset after or before), LSTM (with or without forget gate,
  peepholes), Jozefowicz et al.'s MUT1, MUT2 and MUT3, each with or without bias and layer
  norm (a subclass that overrides the math declares no kernel, so it runs the reference);
* float32 and float64 CPU tensors, and bfloat16 and float16 ones computed in float32 (the
  input, weights and state cast up for the loop, the outputs cast back);
* lengths (masking inside the loop) and both directions;
* zoneout (Krueger et al., 2017; :mod:`rnnlab.core.zoneout`) on ``h`` and the LSTM's ``c``;
* gradients of every order: the first from the C++ backward, higher orders (and batched
  gradients) by autograd through the cell's math (see :mod:`rnnlab.core.fast.function`).

The kernels are compiled at first use (see :mod:`rnnlab.core.fast._build`); without a compiler
one warning is printed and ``"auto"`` runs the reference loop.

The kernels keep their large internal buffers (those saved for backward and scratch, never the
outputs or input gradients) in a cache when freed, so that repeated calls of one shape reuse
the same memory instead of faulting in fresh pages; at most 256 MiB is kept
(``RNNLAB_FAST_CACHE_MB``, or :func:`set_cache_limit`; 0 turns it off).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch
from torch import Tensor

from rnnlab.core.cells import RecurrentCell
from rnnlab.core.fast import _build
from rnnlab.core.fast.function import cell_spec, run
from rnnlab.core.state import State, map_state
from rnnlab.core.zoneout import Zoneout, check_zoneout

_DTYPES = (torch.float32, torch.float64)
#: run in float32 (the weights, input and state cast up, the outputs cast back): a recurrence
#: accumulates its rounding over the time steps, and the kernels' vector math is float32's
_UPCAST = (torch.bfloat16, torch.float16)
#: torch kernels that rnnlab's own loop beats on CPU (measured with ``rnnlab bench``; see
#: docs/PERFORMANCE.md). torch.nn.LSTM goes through oneDNN and stays with torch.
_OWN_FASTER = frozenset({"GRU", "RNN_TANH", "RNN_RELU"})


def set_cache_limit(mib: float) -> float:
    """Keep at most ``mib`` MiB of freed kernel buffers for reuse (0: keep none, and free what
    is kept); returns the previous limit in MiB. Needs the kernels (:func:`is_available`)."""
    if mib < 0:
        raise ValueError(f"the cache limit must be >= 0 MiB, got {mib}")
    if not is_available():
        raise RuntimeError("rnnlab.core.fast's kernels are not available, so there is no cache")
    return torch.ops.rnnlab_fast.set_buffer_cache_limit(int(mib * 2**20)) / 2**20


def cached_bytes() -> int:
    """Bytes of freed kernel buffers the cache holds now (0 without the kernels)."""
    return int(torch.ops.rnnlab_fast.buffer_cache_bytes()) if is_available() else 0


@torch.compiler.assume_constant_result  # torch.compile: run once while tracing, not traced
def is_available() -> bool:
    """True if the C++ kernels are loaded (building them on the first call)."""
    return _build.load()


def why_not(cell: RecurrentCell, x: Tensor) -> str | None:
    """Why the C++ loop cannot run ``cell`` on inputs like ``x`` (one line), or None if it can.

    Args:
        cell: a cell.
        x: the input, or its projection (only its device, dtype and size matter).
    """
    if x.device.type != "cpu":
        return f"it runs on CPU tensors only, got a {x.device.type} tensor"
    if x.dtype not in _DTYPES + _UPCAST:
        return f"it runs float32, float64, bfloat16 and float16 only, got {x.dtype}"
    if x.numel() == 0:
        return "the input is empty"
    if cell.kernel() is None:
        return f"{type(cell).__name__} declares no fused kernel (RecurrentCell.kernel() is None)"
    if cell_spec(cell) is None:
        return f"{type(cell).__name__}'s layer norms have different epsilons"
    if not is_available():
        return "the C++ kernels could not be built (see the warning above)"
    return None


def supports(cell: RecurrentCell, x: Tensor) -> bool:
    """True if :func:`scan` can run ``cell`` over inputs like ``x`` (see :func:`why_not`)."""
    return why_not(cell, x) is None


def prefers_own_kernel(mode: str) -> bool:
    """True if rnnlab's loop was measured faster on CPU than torch's kernel ``mode`` ("GRU")."""
    return mode in _OWN_FASTER


def scan(
    cell: RecurrentCell,
    xp: Tensor,
    state: State,
    mask: Tensor | None = None,
    source: Tensor | None = None,
    zoneout: Zoneout | None = None,
) -> tuple[Tensor, State]:
    """:func:`rnnlab.core.layers.scan` (without ``keep_states``) on the C++ loop.

    Args:
        cell: a cell for which :func:`supports` is True.
        xp: ``cell.input_projection(x)``, time-major (T, N, G*H).
        state: the initial state, (N, H) or (h, c).
        mask: (T, N, 1) bool, True inside each sequence, or None.
        source: the input ``xp`` was projected from, (T, N, D), for higher-order gradients
            (double backward, batched gradients), which recompute from it; without it they
            raise.
        zoneout: ``(zh, zc)``, zoneout's blend weights of ``h`` (T, N, P) and of the LSTM's
            ``c`` (T, N, H), each in [0, 1] or None, as :func:`rnnlab.core.layers.scan`'s
            (constants: no gradient flows to them); None: no zoneout.

    Returns:
        ``(outputs (T, N, H), final_state)``, equal to the reference's.
    """
    spec = cell_spec(cell)
    if spec is None or not is_available():
        raise ValueError(f"no fast kernel for {type(cell).__name__}; check supports() first")
    zoneout = check_zoneout(zoneout, xp, state)
    if xp.dtype in _UPCAST:
        low = xp.dtype
        up = partial(map_state, lambda t: t.float())
        spec = replace(
            spec,
            weight_hh=spec.weight_hh.float(),
            params=tuple(None if p is None else p.float() for p in spec.params),
        )
        if zoneout is not None:
            zoneout = (_float(zoneout[0]), _float(zoneout[1]))
        # (no source: higher-order gradients of a low-precision layer raise, in one line)
        out, final = run(spec, xp.float(), up(state), mask, None, zoneout)
        return out.to(low), map_state(lambda t: t.to(low), final)
    return run(spec, xp, state, mask, source, zoneout)


def _float(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.float()


__all__ = [
    "cached_bytes",
    "is_available",
    "prefers_own_kernel",
    "scan",
    "set_cache_limit",
    "supports",
    "why_not",
]
