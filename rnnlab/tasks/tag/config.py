"""The tagger's architecture config (torch-free, so that ``--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.config import Config, nested, option, positive, probability
from rnnlab.core.registry import RecurrentConfig


@dataclass(frozen=True)
class TaggerConfig(Config):
    """Tagger: its architecture (stored in checkpoints).

    ``vocab_size`` (id 0 is padding) and ``num_tags`` are set from the data. The recurrent layer
    is bidirectional by default (``--unidirectional``: left to right only). ``dropout``
    (``--io-dropout``) is on the embeddings and on the recurrent outputs; ``rnn.dropout`` between
    stacked recurrent layers.
    """

    title = "tagger"

    vocab_size: int = option(2, check=positive, cli=False, help="input tokens, set from the data")
    num_tags: int = option(2, check=positive, cli=False, help="C, set from the data")
    embed_dim: int = option(64, check=positive, flag="--embedding", help="token embedding size")
    rnn: RecurrentConfig = nested(
        RecurrentConfig(cell="lstm", hidden_size=128, num_layers=1, bidirectional=True)
    )
    dropout: float = option(
        0.0, check=probability, flag="--io-dropout",
        help="dropout on the embeddings and on the recurrent outputs",
    )  # fmt: skip


__all__ = ["TaggerConfig"]
