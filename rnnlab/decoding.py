"""Decoding: choosing the next token from a model's scores.

Sampling with temperature and top-k (and greedy decoding as temperature 0). Shapes: N batch,
V vocabulary size.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Draw one token per row from ``softmax(logits / temperature)``, optionally among the top k.

    .. math:: p(v) \propto \exp(z_v / \tau) \quad \text{for } v \text{ among the k largest } z

    Args:
        logits: (N, V) unnormalised scores.
        temperature: :math:`\tau \ge 0`; below 1 sharper, above 1 flatter; 0 takes the argmax
            (greedy decoding).
        top_k: keep only the ``top_k`` most likely tokens (None: all).
        generator: the random generator to draw from (for reproducible samples).

    Returns:
        (N,) LongTensor of token ids.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> sample_next(torch.tensor([[0.0, 5.0, 1.0]]), temperature=0.0)
        tensor([1])
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D (N, V), got shape {tuple(logits.shape)}")
    if not temperature >= 0:  # also rejects NaN
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


__all__ = ["sample_next"]
