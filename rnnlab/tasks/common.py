"""Pieces the task models share: lengths, masks, masked losses, the final hidden state.

Shapes: N batch, T time, V vocabulary (or classes), H hidden size, L layers, K directions.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from rnnlab.core.layers import Recurrent
from rnnlab.core.state import State, hidden_part


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


__all__ = ["lengths_or_full", "masked_cross_entropy", "sequence_mask", "top_hidden"]
