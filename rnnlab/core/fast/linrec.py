"""The minimal RNNs' linear recurrence on the C++ loop: the custom op ``rnnlab::linear_recurrence``.

``h_t = a_t * h_{t-1} + b_t`` (elementwise), sequential over t and vectorised and threaded over
the N*H lanes (rnnlab/core/fast/linrec.cpp), forward and backward; on a CPU this beats the
log-space parallel scan (:func:`rnnlab.core.minimal.linear_scan`) by doing one multiply-add
per element and no logs at all. :meth:`rnnlab.core.minimal.MinimalRNNCell.parallel_scan` runs
it where :func:`supported`.

The op has fake implementations and a registered autograd formula, so torch.compile traces it
(fullgraph) and ``torch.library.opcheck`` passes. Its first-order backward is the C++ one (the
op ``rnnlab::linear_recurrence_backward``); under ``create_graph=True`` the backward is written
instead with the forward op itself (the backward is again a linear recurrence, run in reverse),
so gradients of every order are exact.

Shapes: T time, N batch, H hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from rnnlab.core.fast import is_available
from rnnlab.errors import RnnlabError

_DTYPES = (torch.float32, torch.float64)


def supported(x: Tensor) -> bool:
    """True if :func:`linear_recurrence` can run on tensors like ``x``: on the CPU, float32 or
    float64, and with the C++ kernels built (:func:`rnnlab.core.fast.is_available`)."""
    return x.device.type == "cpu" and x.dtype in _DTYPES and is_available()


def _check(a: Tensor, b: Tensor, h0: Tensor) -> None:
    """One-line errors for inputs the kernel does not take (shapes, dtypes, devices)."""
    if a.dim() != 3 or b.shape != a.shape or a.shape[0] == 0:
        raise RnnlabError(
            f"linear_recurrence: expected a and b (T, N, H) alike with T >= 1, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if h0.shape != a.shape[1:]:
        raise RnnlabError(
            f"linear_recurrence: expected h0 (N, H) = {tuple(a.shape[1:])}, got {tuple(h0.shape)}"
        )
    if a.dtype not in _DTYPES or b.dtype != a.dtype or h0.dtype != a.dtype:
        raise RnnlabError(
            "linear_recurrence: expected a, b and h0 all float32 or all float64, got "
            f"{a.dtype}, {b.dtype} and {h0.dtype}"
        )
    if {t.device.type for t in (a, b, h0)} != {"cpu"}:
        raise RnnlabError("linear_recurrence runs on CPU tensors only")


@torch.library.custom_op("rnnlab::linear_recurrence", mutates_args=())
def linear_recurrence(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    r"""``h`` (T, N, H) with :math:`h_t = a_t h_{t-1} + b_t`, :math:`h_{-1} = h_0`.

    The final state is ``h[-1]``. Past a sequence's end a caller freezes the state with
    ``a = 1, b = 0`` (see :meth:`rnnlab.core.minimal.MinimalRNNCell.parallel_scan`).

    Args:
        a: (T, N, H) decays (for stability, ``|a| <= 1``); b: (T, N, H) increments;
        h0: (N, H) the state before the first step. All float32 or all float64, on the CPU.

    Example::

        >>> a, b = torch.full((3, 1, 2), 0.5), torch.ones(3, 1, 2)
        >>> linear_recurrence(a, b, torch.zeros(1, 2))[:, 0, 0]
        tensor([1.0000, 1.5000, 1.7500])
    """
    _check(a, b, h0)
    if not is_available():
        raise RnnlabError("linear_recurrence: the C++ kernels could not be built (see the warning)")
    return torch.ops.rnnlab_fast.linrec_forward(a, b, h0)


@linear_recurrence.register_fake
def _linear_recurrence_fake(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    _check(a, b, h0)
    return a.new_empty(a.shape)


@torch.library.custom_op("rnnlab::linear_recurrence_backward", mutates_args=())
def linear_recurrence_backward(
    a: Tensor, h: Tensor, h0: Tensor, grad_h: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``(grad_a, grad_b, grad_h0)`` of :func:`linear_recurrence` with outputs ``h`` and their
    gradient ``grad_h`` (first order, in C++)."""
    grad_a, grad_b, grad_h0 = torch.ops.rnnlab_fast.linrec_backward(a, h, h0, grad_h, None)
    return grad_a, grad_b, grad_h0


@linear_recurrence_backward.register_fake
def _linear_recurrence_backward_fake(
    a: Tensor, h: Tensor, h0: Tensor, grad_h: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    return a.new_empty(a.shape), a.new_empty(a.shape), h0.new_empty(h0.shape)


def _differentiable_backward(
    a: Tensor, h: Tensor, h0: Tensor, grad_h: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    r""":func:`linear_recurrence_backward` in terms of the forward op, hence differentiable:
    :math:`g_t = \partial L / \partial h_t` (through the recurrence) satisfies
    :math:`g_t = a_{t+1} g_{t+1} + \bar h_t`, the same recurrence run from the end."""
    # reversed: g'_s = a_{T-s} g'_{s-1} + grad_h_{T-1-s}, from g'_{-1} = 0 (so c_0 is never read)
    c = torch.cat([torch.zeros_like(a[:1]), a.flip(0)[:-1]])
    g = linear_recurrence(c, grad_h.flip(0), torch.zeros_like(h0)).flip(0)
    h_prev = torch.cat([h0.unsqueeze(0), h[:-1]])
    return g * h_prev, g, a[0] * g[0]


def _setup_context(ctx: FunctionCtx, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
    a, _b, h0 = inputs
    ctx.save_for_backward(a, h0, output)


def _backward(ctx: FunctionCtx, grad_h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    a, h0, h = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: a backward that autograd can differentiate
        return _differentiable_backward(a, h, h0, grad_h)
    return linear_recurrence_backward(a, h, h0, grad_h)


linear_recurrence.register_autograd(_backward, setup_context=_setup_context)


__all__ = ["linear_recurrence", "linear_recurrence_backward", "supported"]
