r"""The regularisers of the AWD-LSTM (Merity, Keskar & Socher, 2018) and zoneout, for any cell.

Each is an option of :class:`~rnnlab.core.layers.Recurrent` (and of ``RecurrentConfig``, so of
every task and the CLI), active in training mode only, and runs on every backend:

* **weight drop** (DropConnect on the recurrent weights, Wan et al. 2013, as Merity et al. use
  it): :func:`dropped_recurrent_weights` replaces each cell's ``weight_hh`` by
  :math:`W_{hh} \odot M / (1 - p)`, :math:`M_{ij} \sim \mathrm{Bernoulli}(1 - p)`, one mask per
  forward call (per batch) shared by every sequence and time step. The kernels (torch's,
  rnnlab's C++ loop) run unchanged on the dropped matrix, so the fast path stays.
* **locked (variational) dropout** (Gal & Ghahramani, 2016): :func:`locked_dropout` samples one
  mask per sequence and feature and applies it at every time step, on the layer's input,
  between its stacked layers and on its output.
* **embedding dropout** (Gal & Ghahramani, 2016): :func:`embedding_dropout` drops whole rows of
  an embedding matrix (every occurrence of a token in the batch), for the models that own one.
* **zoneout** (Krueger et al., 2017): each unit of the state keeps its previous value with
  probability :math:`p` instead of updating, :math:`s_t = z_t \odot s_{t-1} + (1 - z_t) \odot
  \tilde s_t`; :func:`rnnlab.core.zoneout.zoneout_weights` makes the :math:`z_t` (Bernoulli in
  training, their expectation :math:`p` in evaluation, as the paper does), which the loops blend
  in after each step.

Activation regularisation (AR/TAR) acts on the loss, not the layer:
:class:`rnnlab.train.regularizers.StatePenalties`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor

from rnnlab.core.cells import RecurrentCell


def locked_dropout(x: Tensor, p: float, training: bool, time_dim: int = 0) -> Tensor:
    r"""Dropout with one mask per sequence and feature, the same at every time step.

    ``x`` has its time steps along ``time_dim`` (0: time-major (T, N, F)); the mask, scaled by
    :math:`1/(1-p)`, has size 1 there. Identity when not ``training`` or ``p == 0``.

    Example::

        >>> y = locked_dropout(torch.ones(5, 2, 3), 0.5, training=True)
        >>> bool((y == y[0]).all())  # every step has the same mask
        True
    """
    if not training or p == 0.0:
        return x
    shape = list(x.shape)
    shape[time_dim] = 1
    mask = x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
    return x * mask


def embedding_dropout(weight: Tensor, idx: Tensor, p: float, training: bool) -> Tensor:
    r"""``F.embedding(idx, weight)`` with whole rows of ``weight`` dropped (with probability
    ``p``) and the rest scaled by :math:`1/(1-p)`: a dropped token is zero wherever it occurs
    in the batch. One mask per call. Identity (a plain lookup) when not ``training`` or
    ``p == 0``."""
    if not training or p == 0.0:
        return F.embedding(idx, weight)
    keep = weight.new_empty(weight.shape[0], 1).bernoulli_(1.0 - p).div_(1.0 - p)
    return F.embedding(idx, weight * keep)


@contextmanager
def dropped_recurrent_weights(
    cells: Iterable[RecurrentCell], p: float, training: bool
) -> Iterator[None]:
    """Within the block every cell's ``weight_hh`` is DropConnect-ed: one fresh Bernoulli mask
    per cell (and per entry of the block), scaled by ``1/(1-p)``; the gradient reaches the
    parameter through the mask. Restored on exit, whatever happens. Nothing changes when not
    ``training`` or ``p == 0``."""
    if not training or p == 0.0:
        yield
        return
    saved: list[tuple[RecurrentCell, Tensor]] = []
    try:
        for cell in cells:
            weight = cell._parameters["weight_hh"]
            saved.append((cell, weight))  # type: ignore[arg-type]
            # (the parameter dict, not setattr: a module refuses a plain tensor as a parameter)
            cell._parameters["weight_hh"] = F.dropout(weight, p, True)  # type: ignore[assignment]
        yield
    finally:
        for cell, weight in saved:
            cell._parameters["weight_hh"] = weight  # type: ignore[assignment]


__all__ = ["dropped_recurrent_weights", "embedding_dropout", "locked_dropout"]
