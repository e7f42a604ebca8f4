r"""Many-to-one: a recurrent sequence classifier (e.g. a name's characters -> its language).

.. math::

    e_t = E[x_t], \quad (h_1 \dots h_T) = \mathrm{RNN}(e_1 \dots e_T), \quad
    p(y \mid x) = \mathrm{softmax}(W\,[\overrightarrow{h}_T; \overleftarrow{h}_1] + b)

The summary of the sequence is the last layer's final hidden state at each sequence's own last
step (both directions when bidirectional). Class imbalance is handled by per-class weights in
the cross-entropy (``class_weights``; see :func:`rnnlab.tasks.classify.data.class_weights`).

Shapes: N batch, T time, C classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.tasks.classify.config import ClassifierConfig
from rnnlab.tasks.common import lengths_or_full, top_hidden


class Classifier(nn.Module):
    """Embedding -> recurrent layer -> final hidden state -> linear -> class logits.

    Example::

        >>> model = Classifier(ClassifierConfig(vocab_size=30, num_classes=4))
        >>> logits, loss = model(torch.randint(1, 30, (2, 7)), torch.tensor([7, 3]),
        ...                      torch.tensor([0, 3]))
        >>> logits.shape
        torch.Size([2, 4])
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        self.rnn = config.rnn.build(config.embed_dim, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        k = 2 if config.rnn.bidirectional else 1
        self.head = nn.Linear(k * config.rnn.hidden_size, config.num_classes)
        weights = None if config.class_weights is None else torch.tensor(config.class_weights)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(
        self, tokens: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Args: tokens (N, T) ids, right-padded; lengths (N,); targets (N,) class ids.

        Returns: ``(logits (N, C), loss or None)`` (weighted mean cross-entropy).
        """
        lengths = lengths_or_full(tokens, lengths)
        x = self.dropout(self.embedding(tokens))
        _, state = self.rnn(x, lengths=lengths)
        logits = self.head(self.dropout(top_hidden(state, self.rnn)))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits, targets, weight=self.class_weights)
        return logits, loss

    @torch.no_grad()
    def predict_proba(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Class probabilities (N, C)."""
        logits, _ = self(tokens, lengths)
        return logits.softmax(dim=-1)


__all__ = ["Classifier", "ClassifierConfig"]
