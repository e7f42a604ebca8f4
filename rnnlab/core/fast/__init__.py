"""The fast path: every cell's time loop and its backward in C++, used by the layers automatically.

:class:`rnnlab.core.layers.Recurrent` asks :func:`supports` for each cell and direction; where it
says yes the loop runs in :func:`scan` instead of the readable reference
:func:`rnnlab.core.layers.scan`, with the same results (tests/test_fast.py checks outputs, final
states and every gradient against the reference, for every cell and option). What it covers:

* cells: Elman (tanh, relu), additive, minimal GRU, GRU (reset after or before), LSTM (with or
  without forget gate, peepholes), Jozefowicz et al.'s MUT1, MUT2 and MUT3, each with or
  without bias and layer norm; exactly these
  classes (a subclass may change the math, so it runs the reference);
* float32 and float64 CPU tensors; lengths (masking inside the loop) and both directions;
* first-order gradients (a double backward raises; use :func:`disabled` for it).

Everything else (CUDA tensors, half precision, ``return_states=True``, other cells) runs the
reference loop. The kernels are compiled at first use (see :mod:`rnnlab.core.fast._build`); without
a compiler one warning is printed and everything runs the reference loop.

Standard cells that are exactly one of torch's fused kernels keep running torch's kernel,
except where rnnlab's loop was measured faster (:func:`prefers_own_kernel`).

The kernels keep their large internal buffers (those saved for backward and scratch, never the
outputs or input gradients) in a cache when freed, so that repeated calls of one shape reuse
the same memory instead of faulting in fresh pages; at most 256 MiB is kept
(``RNNLAB_FAST_CACHE_MB``, or :func:`set_cache_limit`; 0 turns it off).

Example::

    >>> with rnnlab.core.fast.disabled():      # force the reference loop, e.g. as a test oracle
    ...     out, state = layer(x)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from torch import Tensor

from rnnlab.core.cells import RecurrentCell, State
from rnnlab.core.fast import _build
from rnnlab.core.fast.function import cell_spec, run

_DTYPES = (torch.float32, torch.float64)
#: torch kernels that rnnlab's own loop beats on CPU (measured with ``rnnlab bench``; see
#: docs/PERFORMANCE.md). torch.nn.LSTM goes through oneDNN and stays with torch.
_OWN_FASTER = frozenset({"GRU", "RNN_TANH", "RNN_RELU"})
_local = threading.local()


def enabled() -> bool:
    """Whether the fast path may be used now (False inside :func:`disabled`)."""
    return getattr(_local, "disabled", 0) == 0


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Inside this block (in this thread) layers run as if there were no fast path.

    rnnlab's own cells run the reference loop :func:`rnnlab.core.layers.scan`; standard cells run
    torch's fused kernels. Tests use it to get the oracle; nesting is allowed.
    """
    _local.disabled = getattr(_local, "disabled", 0) + 1
    try:
        yield
    finally:
        _local.disabled -= 1


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


def is_available() -> bool:
    """True if the C++ kernels are loaded (building them on the first call)."""
    return _build.load()


def _eligible(x: Tensor) -> bool:
    return enabled() and x.device.type == "cpu" and x.dtype in _DTYPES and x.numel() > 0


def supports(cell: RecurrentCell, xp: Tensor) -> bool:
    """True if :func:`scan` can run ``cell`` over the projected inputs ``xp``."""
    return _eligible(xp) and cell_spec(cell) is not None and is_available()


def prefers_own_kernel(mode: str, x: Tensor) -> bool:
    """True if rnnlab's loop is faster than torch's kernel ``mode`` ("GRU", ...) for input x."""
    return mode in _OWN_FASTER and _eligible(x) and is_available()


def scan(
    cell: RecurrentCell, xp: Tensor, state: State, mask: Tensor | None = None
) -> tuple[Tensor, State]:
    """:func:`rnnlab.core.layers.scan` (without ``keep_states``) on the C++ loop.

    Args:
        cell: a cell for which :func:`supports` is True.
        xp: ``cell.input_projection(x)``, time-major (T, N, G*H).
        state: the initial state, (N, H) or (h, c).
        mask: (T, N, 1) bool, True inside each sequence, or None.

    Returns:
        ``(outputs (T, N, H), final_state)``, equal to the reference's.
    """
    spec = cell_spec(cell)
    if spec is None or not is_available():
        raise ValueError(f"no fast kernel for {type(cell).__name__}; check supports() first")
    return run(spec, xp, state, mask)


__all__ = [
    "cached_bytes",
    "disabled",
    "enabled",
    "is_available",
    "prefers_own_kernel",
    "scan",
    "set_cache_limit",
    "supports",
]
