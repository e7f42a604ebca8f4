r"""Penalties on a model's hidden states, added to the loss during training.

:class:`StatePenalties` collects the outputs of every :class:`~rnnlab.core.layers.Recurrent` in a
model with forward hooks and turns them into the penalties the trainer adds to the loss:

* the **norm-stabilizer** (Krueger & Memisevic, 2016), ``TrainConfig.norm_stabilizer``:
  :math:`\beta \cdot \mathrm{mean}_t (\|h_t\| - \|h_{t-1}\|)^2`;
* **activation regularisation** (AR, Merity, Keskar & Socher 2018), ``TrainConfig.ar``:
  :math:`\alpha \cdot \mathrm{mean}(h_t^2)` over the layer's output after its output dropout;
* **temporal activation regularisation** (TAR, the same paper), ``TrainConfig.tar``:
  :math:`\beta \cdot \mathrm{mean}((h_t - h_{t-1})^2)` over the output before that dropout.

Means run over the valid steps (padded steps, whose outputs are exactly zero, are left out) and,
for AR and TAR, the units. For a stacked layer the outputs are those of its top layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from rnnlab.core.layers import Recurrent
from rnnlab.errors import RnnlabError


class StatePenalties:
    r"""The norm-stabilizer, AR and TAR of every :class:`~rnnlab.core.layers.Recurrent` in
    ``model`` (a weight of 0 turns one off).

    The hooks record during training forwards only (grad enabled, training mode);
    :meth:`penalty` turns what they recorded into one scalar and forgets it.

    Example::

        penalties = StatePenalties(model, ar=2.0, tar=1.0)
        loss = model(x, y)[1]
        extra = penalties.penalty()  # None if no Recurrent ran
        (loss + extra).backward()
    """

    def __init__(
        self, model: nn.Module, norm_stabilizer: float = 0.0, ar: float = 0.0, tar: float = 0.0
    ) -> None:
        self.weights = {"norm_stabilizer": norm_stabilizer, "ar": ar, "tar": tar}
        self.outputs: list[tuple[Tensor, Tensor]] = []  # (output, before output dropout), (N, T, H)
        self.handles = [
            m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, Recurrent)
        ]
        if not self.handles:
            on = ", ".join(name for name, w in self.weights.items() if w) or "state penalties"
            raise RnnlabError(f"{on} needs a model with a rnnlab Recurrent layer")

    def _hook(self, module: nn.Module, inputs: tuple, output: tuple) -> None:
        undropped = module.__dict__.pop("undropped_output", None)  # time-major, if it dropped
        if not (module.training and torch.is_grad_enabled()):
            return
        out = output[0]
        batch_first = module.batch_first
        if isinstance(out, PackedSequence):
            out, batch_first = pad_packed_sequence(out, batch_first=True)[0], True
        if out.dim() != 3:
            return
        out = out if batch_first else out.transpose(0, 1)
        before = out if undropped is None else undropped.transpose(0, 1)
        self.outputs.append((out, before))

    def penalty(self) -> Tensor | None:
        """The penalty over the outputs collected since the last call (None if there are none):
        each weighted term averaged over the layers' outputs, then summed."""
        terms: dict[str, list[Tensor]] = {name: [] for name, w in self.weights.items() if w}
        for out, before in self.outputs:
            valid = before.detach().abs().amax(-1) > 0  # (N, T): padded steps are exact zeros
            pairs = valid[:, 1:] & valid[:, :-1]
            if "norm_stabilizer" in terms and pairs.any():
                norms = before.norm(dim=-1)
                diff = (norms[:, 1:] - norms[:, :-1]).pow(2)
                terms["norm_stabilizer"].append((diff * pairs).sum() / pairs.sum())
            if "ar" in terms and valid.any():
                squares = out.pow(2).mean(-1)
                terms["ar"].append((squares * valid).sum() / valid.sum())
            if "tar" in terms and pairs.any():
                steps = (before[:, 1:] - before[:, :-1]).pow(2).mean(-1)
                terms["tar"].append((steps * pairs).sum() / pairs.sum())
        self.outputs.clear()
        total = [self.weights[name] * torch.stack(ts).mean() for name, ts in terms.items() if ts]
        return torch.stack(total).sum() if total else None

    def remove(self) -> None:
        """Detach the hooks."""
        for h in self.handles:
            h.remove()


def NormStabilizer(model: nn.Module, beta: float) -> StatePenalties:
    r"""Krueger & Memisevic (2016): :math:`\beta \cdot \mathrm{mean}_t (\|h_t\| -
    \|h_{t-1}\|)^2` alone (:class:`StatePenalties` with ``norm_stabilizer=beta``)."""
    return StatePenalties(model, norm_stabilizer=beta)


__all__ = ["NormStabilizer", "StatePenalties"]
