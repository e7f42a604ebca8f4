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

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.core.registry import RecurrentConfig
from rnnlab.tasks.common import (
    check_rnn_input,
    config_from_dict,
    config_to_dict,
    lengths_or_full,
    top_hidden,
)

TASK = "classify"


@dataclass(frozen=True)
class ClassifierConfig:
    """Args:
    vocab_size: number of input tokens (id 0 is padding).
    num_classes: C.
    embed_dim: size of the token embeddings (= ``rnn.input_size``).
    rnn: the recurrent layer (any cell, stacked, bidirectional).
    dropout: on the embeddings and on the summary before the output layer.
    class_weights: C cross-entropy weights, or None for unweighted.
    """

    vocab_size: int
    num_classes: int
    embed_dim: int = 32
    rnn: RecurrentConfig = field(default_factory=lambda: RecurrentConfig(input_size=32))
    dropout: float = 0.0
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        check_rnn_input(self.rnn, self.embed_dim, "ClassifierConfig")
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise ValueError(
                f"class_weights must have {self.num_classes} entries, got {len(self.class_weights)}"
            )


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
        self.rnn = config.rnn.build(batch_first=True)
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

    def to_meta(self) -> dict:
        return {"task": TASK, "model_config": config_to_dict(self.config)}


def from_meta(meta: dict) -> Classifier:
    return Classifier(config_from_dict(ClassifierConfig, meta["model_config"]))


__all__ = ["Classifier", "ClassifierConfig", "from_meta"]
