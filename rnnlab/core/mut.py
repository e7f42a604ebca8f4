"""Jozefowicz, Zaremba & Sutskever (2015)'s evolved cells MUT1, MUT2 and MUT3.

They follow the one cell contract of :mod:`rnnlab.core.cells` (fused input GEMM, ``step``,
``gates``) and sit in their own module because their recurrent terms act on different vectors
per gate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnlab.core.cells import RecurrentCell, Weights
from rnnlab.core.kernels import Kernel


class _JozefowiczCell(RecurrentCell):
    """Shared declaration of MUT1-3: the gates' recurrent terms act on different vectors.

    ``weight_ih`` holds the input blocks of all three gates ``z, r, h`` (one fused GEMM, as in
    every cell). The recurrent terms of these cells read ``h``, ``r * h`` or ``tanh(h)``, and
    some gates have none, so ``weight_hh`` stores only the blocks the equations use, split into
    ``recurrent_groups`` (block counts, in order): each group is one GEMM on its own vector
    (:meth:`~rnnlab.core.cells.RecurrentCell.recurrent`), with its own layer norm (as the
    GRU's ``reset="before"``).
    """

    recurrent_groups: tuple[int, ...] = ()

    def weights(self) -> Weights:
        return Weights(gates=("z", "r", "h"), recurrent=self.recurrent_groups)


class MUT1Cell(_JozefowiczCell):
    r"""MUT1, the first of the three architectures found by Jozefowicz, Zaremba & Sutskever (2015).

    .. math::
        z_t &= \sigma(W_{xz} x_t + b_z) \\
        r_t &= \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r_t \odot h_{t-1}) + \tanh(W_{xh} x_t + b_{xh}) + b_h) \odot z_t
               + h_{t-1} \odot (1 - z_t)

    The paper adds ``tanh(x_t)`` itself, which needs D = H; here ``x_t`` is projected to H first
    (``W_xh``, its block of ``weight_ih``), so the cell takes any input size. ``z`` is the
    fraction of the *new* candidate taken (the lectures' update gate ``u``; torch's GRU ``z`` is
    the opposite). ``weight_ih`` blocks ``z, r, h``; ``weight_hh`` blocks ``r, h`` (z has no
    recurrent term).

    Example::

        >>> cell = MUT1Cell(8, 16)
        >>> h, state = cell(torch.randn(4, 8))
    """

    recurrent_groups = (1, 1)

    def kernel(self) -> Kernel | None:
        return Kernel.MUT1

    def _gates(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        x_z, x_r, x_h = xp.chunk(3, dim=-1)
        z = torch.sigmoid(x_z)
        r = torch.sigmoid(x_r + self.recurrent(state, 0))
        cand = torch.tanh(self.recurrent(r * state, 1) + torch.tanh(x_h))
        h = state + z * (cand - state)
        return h, h, {"z": z, "r": r}


class MUT2Cell(_JozefowiczCell):
    r"""MUT2 (Jozefowicz, Zaremba & Sutskever, 2015).

    .. math::
        z_t &= \sigma(W_{xz} x_t + W_{hz} h_{t-1} + b_z) \\
        r_t &= \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r_t \odot h_{t-1}) + W_{xh} x_t + b_h) \odot z_t
               + h_{t-1} \odot (1 - z_t)

    The paper's reset gate reads the raw input, ``r_t = sigma(x_t + W_hr h_{t-1} + b_r)``, which
    needs D = H; here ``x_t`` is projected (``W_xr``), which makes ``r`` read like the GRU's.
    ``z`` as in :class:`MUT1Cell`. ``weight_ih`` blocks ``z, r, h``; ``weight_hh`` blocks
    ``z, r`` (one GEMM on ``h``) and ``h`` (on ``r * h``).
    """

    recurrent_groups = (2, 1)

    def kernel(self) -> Kernel | None:
        return Kernel.MUT2

    def _gates(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        H = self.hidden_size
        x_zr, x_h = xp[..., : 2 * H], xp[..., 2 * H :]
        z, r = torch.sigmoid(x_zr + self.recurrent(state, 0)).chunk(2, dim=-1)
        cand = torch.tanh(self.recurrent(r * state, 1) + x_h)
        h = state + z * (cand - state)
        return h, h, {"z": z, "r": r}


class MUT3Cell(_JozefowiczCell):
    r"""MUT3 (Jozefowicz, Zaremba & Sutskever, 2015).

    .. math::
        z_t &= \sigma(W_{xz} x_t + W_{hz} \tanh(h_{t-1}) + b_z) \\
        r_t &= \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r_t \odot h_{t-1}) + W_{xh} x_t + b_h) \odot z_t
               + h_{t-1} \odot (1 - z_t)

    Every term is as in the paper (no raw input is added). ``z`` as in :class:`MUT1Cell`.
    ``weight_ih`` blocks ``z, r, h``; ``weight_hh`` blocks ``z`` (on ``tanh h``), ``r`` (on
    ``h``) and ``h`` (on ``r * h``): three recurrent GEMMs per step.
    """

    recurrent_groups = (1, 1, 1)

    def kernel(self) -> Kernel | None:
        return Kernel.MUT3

    def _gates(self, xp: Tensor, state: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        x_z, x_r, x_h = xp.chunk(3, dim=-1)
        z = torch.sigmoid(x_z + self.recurrent(torch.tanh(state), 0))
        r = torch.sigmoid(x_r + self.recurrent(state, 1))
        cand = torch.tanh(self.recurrent(r * state, 2) + x_h)
        h = state + z * (cand - state)
        return h, h, {"z": z, "r": r}


__all__ = ["MUT1Cell", "MUT2Cell", "MUT3Cell"]
