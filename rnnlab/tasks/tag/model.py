r"""Many-to-many, same length: a recurrent sequence tagger (one tag per input token).

.. math::

    e_t = E[x_t], \quad (h_1 \dots h_T) = \mathrm{BiRNN}(e_1 \dots e_T), \quad
    p(y_t \mid x) = \mathrm{softmax}(W h_t + b)

Bidirectional by default: the tag of a word depends on what follows it (a comma after "speak"
is decided by the next word). The loss is the mean cross-entropy over the valid (unpadded)
tokens of the batch.

Shapes: N batch, T time, C tags.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.tasks.common import lengths_or_full, masked_cross_entropy, sequence_mask
from rnnlab.tasks.tag.config import TaggerConfig


class Tagger(nn.Module):
    """Embedding -> (bidirectional) recurrent layer -> linear -> tag logits at every step.

    Example::

        >>> model = Tagger(TaggerConfig(vocab_size=50, num_tags=5))
        >>> logits, _ = model(torch.randint(1, 50, (2, 6)), torch.tensor([6, 4]))
        >>> logits.shape
        torch.Size([2, 6, 5])
    """

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        self.rnn = config.rnn.build(config.embed_dim, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        k = 2 if config.rnn.bidirectional else 1
        self.head = nn.Linear(k * config.rnn.hidden_size, config.num_tags)

    def forward(
        self, tokens: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Args: tokens (N, T) ids, right-padded; lengths (N,); targets (N, T) tag ids
        (any value past each length).

        Returns: ``(logits (N, T, C), loss or None)``; logits past each length are those of a
        zero hidden state and never enter the loss.
        """
        lengths = lengths_or_full(tokens, lengths)
        out, _ = self.rnn(self.dropout(self.embedding(tokens)), lengths=lengths)
        logits = self.head(self.dropout(out))
        loss = None if targets is None else masked_cross_entropy(logits, targets, lengths)
        return logits, loss

    @torch.no_grad()
    def tag(self, tokens: Tensor, lengths: Tensor | None = None) -> list[list[int]]:
        """The most likely tag of every valid token, per sequence."""
        lengths = lengths_or_full(tokens, lengths)
        logits, _ = self(tokens, lengths)
        best = logits.argmax(dim=-1)
        mask = sequence_mask(lengths, tokens.shape[1])
        return [row[m].tolist() for row, m in zip(best, mask)]


__all__ = ["Tagger", "TaggerConfig"]
