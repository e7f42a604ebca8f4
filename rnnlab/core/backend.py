"""Which implementation runs a :class:`~rnnlab.core.layers.Recurrent` layer: the one switch.

Three implementations compute the same function (tests/test_backend.py runs them all against
each other):

* ``"torch"``: torch's fused kernels (``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh``,
  ``torch.rnn_relu``; oneDNN on CPU, cuDNN on GPU), for layers whose cells are exactly torch's;
* ``"fast"``: rnnlab's C++ loop with a hand-derived backward (:mod:`rnnlab.core.fast`), every
  cell of the family on CPU float32/float64;
* ``"reference"``: the readable Python loop over the cells' own step
  (:func:`rnnlab.core.layers.scan`), which runs everything, with autograd as its backward.

``"auto"`` (the default) picks the fastest that can run the layer. A layer takes its choice as
``Recurrent(..., backend=...)``; :func:`use_backend` overrides it for every layer run inside a
block. :meth:`Recurrent.backend_for <rnnlab.core.layers.Recurrent.backend_for>` is the one place
that decides; an explicit choice that cannot run the layer raises instead of falling back.

Example::

    >>> with use_backend("reference"):        # e.g. as a test oracle
    ...     out, state = layer(x)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnlab.core import onednn
from rnnlab.core.kernels import BACKENDS
from rnnlab.core.state import State, map_state

#: torch's fused kernel for each value of :meth:`RecurrentCell.torch_kernel`.
TORCH_KERNELS = {
    "LSTM": torch.lstm,
    "GRU": torch.gru,
    "RNN_TANH": torch.rnn_tanh,
    "RNN_RELU": torch.rnn_relu,
}

_local = threading.local()


def check_backend(name: object) -> str:
    """``name`` if it is one of :data:`BACKENDS`, else a ValueError naming the choices."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    return name  # type: ignore[return-value]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run every :class:`~rnnlab.core.layers.Recurrent` inside the block on backend ``name``.

    Overrides each layer's own ``backend``; per thread; nestable (the innermost block wins, and
    ``use_backend("auto")`` restores the automatic choice inside an outer block).

    Args:
        name: one of :data:`BACKENDS`.
    """
    check_backend(name)
    stack = _stack()
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


def forced_backend() -> str | None:
    """The backend of the innermost :func:`use_backend` block of this thread, or None."""
    # read without creating: under torch.compile, creating the list while tracing would be a
    # side effect that fails the graph's guard on the next call (one recompile)
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def _stack() -> list[str]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


# torch.backends.mkldnn.enabled's getter and setter, without its Python property (called twice
# per generated token); the switch is process-wide, as torch.backends.mkldnn.flags's is
_mkldnn_enabled = torch._C._get_mkldnn_enabled
_set_mkldnn_enabled = torch._C._set_mkldnn_enabled


def run_torch_kernel(
    mode: str,
    x: Tensor,
    state: State | None,
    lengths: Tensor | None,
    weights: list[Tensor],
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    hidden_size: int,
    output_size: int | None = None,
) -> tuple[Tensor, State]:
    """A whole stack on torch's fused kernel ``mode``, as ``torch.nn.LSTM/GRU/RNN`` run it.

    Args:
        x: time-major input (T, N, D); state (L*K, N, H) or a pair, or None for zeros.
        lengths: (N,) valid lengths (the input is then packed), or None.
        weights: torch's flat weight list: per layer and direction ``w_ih, w_hh[, b_ih, b_hh]``
            (then ``w_hr`` with projections).
        output_size: the size of ``h``: P for an LSTM with projections; None: ``hidden_size``.

    Returns:
        ``(outputs (T, N, K*H) (K*P with projections), final state)``.
    """
    if (
        mode == "LSTM"
        and lengths is None
        and torch.compiler.is_compiling()
        and onednn.usable(x, bias, output_size not in (None, hidden_size))
    ):
        # compiled: the same oneDNN kernels as eager's torch.lstm, as custom operators
        return onednn.run_stack(
            x, state, weights, num_layers, dropout, training, bidirectional, hidden_size
        )
    T, N = x.shape[:2]
    LK = num_layers * (2 if bidirectional else 1)
    lstm = mode == "LSTM"
    if state is None:
        h = x.new_zeros(LK, N, output_size or hidden_size)
        state = (h, x.new_zeros(LK, N, hidden_size)) if lstm else h
    args = (weights, bias, num_layers, dropout, training, bidirectional)
    kernel = TORCH_KERNELS[mode]
    if lengths is None:
        hx = list(state) if lstm else state
        if T == 1 and x.device.type == "cpu" and _mkldnn_enabled() and not torch.jit.is_tracing():
            # One step (generation, beam search, the decoders): oneDNN's RNN primitive costs
            # milliseconds per call to set up on the CPU; ATen's own kernel (two GEMMs and the
            # gates) a fraction of one. Same math; results agree to float rounding.
            _set_mkldnn_enabled(False)
            try:
                result = kernel(x, hx, *args, False)
            finally:
                _set_mkldnn_enabled(True)
        else:
            result = kernel(x, hx, *args, False)
        out = result[0]
    else:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        order = packed.sorted_indices.to(x.device)
        hx = map_state(lambda h: h.index_select(1, order), state)
        result = kernel(packed.data, packed.batch_sizes, list(hx) if lstm else hx, *args)
        out, _ = pad_packed_sequence(
            PackedSequence(
                result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
            ),
            total_length=T,
        )
        unsort = packed.unsorted_indices.to(x.device)
        result = (result[0], *[h.index_select(1, unsort) for h in result[1:]])
    final = (result[1], result[2]) if lstm else result[1]
    return out, final


__all__ = ["BACKENDS", "check_backend", "forced_backend", "run_torch_kernel", "use_backend"]
