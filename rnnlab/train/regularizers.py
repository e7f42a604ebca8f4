"""Regularisers that act on a model's hidden states during training.

:class:`NormStabilizer` (Krueger & Memisevic, 2016) penalises changes of the hidden-state norm
from step to step; the trainer adds it to the loss when ``TrainConfig.norm_stabilizer > 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from rnnlab.core.layers import Recurrent
from rnnlab.errors import RnnlabError


class NormStabilizer:
    r"""Krueger & Memisevic (2016): :math:`\beta \cdot \mathrm{mean}_t (\|h_t\| - \|h_{t-1}\|)^2`.

    Collects the outputs of every :class:`rnnlab.core.layers.Recurrent` in ``model`` with forward
    hooks during training forwards (grad enabled, training mode); :meth:`penalty` turns them
    into the penalty and forgets them. Padded steps (outputs exactly zero past a sequence's
    length) are left out. For a stacked layer the outputs are those of its top layer.

    Example::

        stab = NormStabilizer(model, beta=50.0)
        loss = model(x, y)[1]
        penalty = stab.penalty()  # None if no Recurrent ran
        (loss + penalty).backward()
    """

    def __init__(self, model: nn.Module, beta: float) -> None:
        self.beta = beta
        self.outputs: list[tuple[Tensor, bool]] = []
        self.handles = [
            m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, Recurrent)
        ]
        if not self.handles:
            raise RnnlabError("norm_stabilizer needs a model with a rnnlab Recurrent layer")

    def _hook(self, module: nn.Module, inputs: tuple, output: tuple) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        out = output[0]
        batch_first = module.batch_first
        if isinstance(out, PackedSequence):
            out, batch_first = pad_packed_sequence(out, batch_first=True)[0], True
        if out.dim() == 3:
            self.outputs.append((out, batch_first))

    def penalty(self) -> Tensor | None:
        """The penalty over the outputs collected since the last call (None if there are none)."""
        terms = []
        for out, batch_first in self.outputs:
            norms = out.norm(dim=-1)  # (N, T) or (T, N)
            if not batch_first:
                norms = norms.t()
            diff = norms[:, 1:] - norms[:, :-1]
            valid = (norms[:, 1:] > 0) & (norms[:, :-1] > 0)
            if valid.any():
                terms.append((diff.pow(2) * valid).sum() / valid.sum())
        self.outputs.clear()
        return self.beta * torch.stack(terms).mean() if terms else None

    def remove(self) -> None:
        """Detach the hooks."""
        for h in self.handles:
            h.remove()


__all__ = ["NormStabilizer"]
