"""Pieces the task models share: lengths, masks, masked losses, the final hidden state; and
what the task objects share: evaluation in batches, mean losses, predictions, data sources,
stratified splits, seeded generators.

Shapes: N batch, T time, V vocabulary (or classes), H hidden size, L layers, K directions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.core.layers import Recurrent
from rnnlab.core.state import State, hidden_part
from rnnlab.train import distributed

if TYPE_CHECKING:
    from rnnlab.tasks.classify.config import SplitConfig
    from rnnlab.tasks.classify.data import Example


def lengths_or_full(tokens: Tensor, lengths: Tensor | None) -> Tensor:
    """``lengths`` as a (N,) long tensor on ``tokens``' device; every row's full T if None."""
    if lengths is None:
        return torch.full(
            (tokens.shape[0],), tokens.shape[1], dtype=torch.long, device=tokens.device
        )
    return torch.as_tensor(lengths, dtype=torch.long, device=tokens.device)


def sequence_mask(lengths: Tensor, T: int) -> Tensor:
    """(N, T) bool, True at steps inside each sequence."""
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def masked_cross_entropy(
    logits: Tensor, targets: Tensor, lengths: Tensor, weight: Tensor | None = None
) -> Tensor:
    """Mean cross-entropy over the valid steps only: logits (N, T, V), targets (N, T)."""
    mask = sequence_mask(lengths.to(logits.device), logits.shape[1])
    return F.cross_entropy(logits[mask], targets[mask], weight=weight)


def top_hidden(state: State, rnn: Recurrent) -> Tensor:
    """The last layer's final hidden state, directions concatenated: (N, K*H).

    For a bidirectional layer the reverse direction's "final" state is the one after reading the
    whole sequence backwards, so both halves summarise the whole sequence.
    """
    h = hidden_part(state)  # (L*K, N, H)
    K = rnn.num_directions
    return torch.cat(list(h[-K:]), dim=-1)


def evaluate_batches(
    model: nn.Module,
    items: Sequence[Any],
    collate: Callable[[list[Any]], tuple],
    size: int = 256,
) -> Iterator[tuple[tuple, Any, Tensor]]:
    """``(batch, output, loss)`` of ``model`` on ``items`` in collated batches of ``size``, in
    order, without gradients; each batch on the model's device (the targets last, so that
    ``output, loss = model(*batch)``)."""
    from rnnlab.data.batching import chunks

    device = next(model.parameters()).device
    with torch.no_grad():
        for chunk in chunks(items, size):
            batch = tuple(t.to(device) if isinstance(t, Tensor) else t for t in collate(chunk))
            output, loss = model(*batch)
            yield batch, output, loss


def mean_loss(
    model: nn.Module,
    items: Sequence[Any],
    collate: Callable[[list[Any]], tuple],
    tokens: Callable[[tuple], int],
    size: int = 256,
) -> float:
    """The mean loss per token of ``model`` on ``items``: each batch's mean loss weighted by its
    ``tokens(batch)`` (0.0 for no tokens). In a distributed validation each rank scores its part
    of ``items`` and the sums are combined (:mod:`rnnlab.train.distributed`)."""
    total, n = 0.0, 0
    for batch, _, loss in evaluate_batches(model, distributed.shard(items), collate, size):
        count = tokens(batch)
        total += float(loss) * count
        n += count
    total, n = distributed.reduce_sums([total, n])
    return total / max(n, 1)


def predictions(
    model: nn.Module,
    items: Sequence[Any],
    collate: Callable[[list[Any]], tuple],
    mask: Callable[[tuple], Tensor] | None = None,
) -> tuple[list[int], list[int], float]:
    """Predicted (argmax) and true ids of ``items``, and the mean loss per target.

    The model's output is the logits (N, ..., V) of the batch's last tensor, the targets (N, ...);
    ``mask(batch)`` (a bool tensor of the targets' shape) keeps the scored targets (default: all).
    """
    pred: list[int] = []
    gold: list[int] = []
    total = 0.0
    for batch, logits, loss in evaluate_batches(model, distributed.shard(items), collate):
        y = batch[-1]
        keep = mask(batch) if mask is not None else torch.ones_like(y, dtype=torch.bool)
        pred += logits.argmax(-1)[keep].tolist()
        targets = y[keep].tolist()
        gold += targets
        total += float(loss) * len(targets)
    (total,) = distributed.reduce_sums([total])
    pred, gold = distributed.gather_list(pred), distributed.gather_list(gold)
    return pred, gold, total / len(gold)


def data_source(path: str | None, bundled: str) -> str:
    """Where the data comes from: ``path`` resolved, or ``"bundled:NAME"`` without one."""
    return str(Path(path).resolve()) if path else f"bundled:{bundled}"


def split_examples(
    examples: Sequence[Example], split: SplitConfig, source: str, what: str = "examples"
) -> tuple[list[Example], list[Example], list[Example]]:
    """``examples`` in train, validation and test parts, stratified by label as ``split`` says;
    a :class:`~rnnlab.errors.RnnlabError` naming ``source`` if the validation or test part is
    empty (``what``: the examples' name in that message)."""
    from rnnlab.errors import RnnlabError
    from rnnlab.tasks.classify.data import stratified_split

    fractions = (split.val_fraction, split.test_fraction)
    parts = stratified_split([e.label for e in examples], fractions, split.split_seed)
    train, val, test = ([examples[i] for i in idx] for idx in parts)
    if not val or not test:
        raise RnnlabError(f"{source}: too few {what} for a validation and a test split")
    return train, val, test


def seeded_generator(device: torch.device | str, seed: int | None) -> torch.Generator:
    """A generator on ``device`` seeded by ``seed``, or from fresh entropy if None."""
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    return generator


__all__ = [
    "data_source",
    "evaluate_batches",
    "lengths_or_full",
    "masked_cross_entropy",
    "mean_loss",
    "predictions",
    "seeded_generator",
    "sequence_mask",
    "split_examples",
    "top_hidden",
]
