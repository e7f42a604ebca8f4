"""The language model's architecture config (torch-free, so that ``--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.config import Config, nested, non_negative, option, positive, probability
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError


@dataclass(frozen=True)
class LMConfig(Config):
    """Language model: its architecture (stored in checkpoints).

    ``vocab_size`` is set from the data. Dropout sits on the non-recurrent connections only:
    ``rnn.dropout`` between the recurrent layers, ``io_dropout`` on the embedding and before the
    decoder (Zaremba et al., 2014); the AWD-LSTM's (Merity et al., 2018) are the layer's options
    (``rnn.weight_drop``, ``rnn.locked_dropout``, ...) and ``embedding_dropout``.
    """

    title = "language model"

    vocab_size: int = option(1, check=positive, cli=False, help="V, set from the data")
    embedding_size: int = option(
        128, check=non_negative, aliases=("--embedding",), help="embedding size; 0 = one-hot inputs"
    )
    rnn: RecurrentConfig = nested(RecurrentConfig(hidden_size=512, num_layers=2, dropout=0.2))
    tie_weights: bool = option(
        False, help="the decoder shares the embedding matrix (needs --embedding = --hidden)"
    )
    io_dropout: float = option(
        0.0, check=probability, help="dropout on the embedding and before the decoder"
    )
    embedding_dropout: float = option(
        0.0,
        check=probability,
        help="drop whole tokens' embeddings (rows of the matrix), one mask per batch (Gal & "
        "Ghahramani 2016)",
    )

    def check(self) -> None:
        if self.tie_weights and self.embedding_size != self.rnn.hidden_size:
            raise RnnlabError(
                "tied weights need --embedding equal to --hidden, got "
                f"{self.embedding_size} and {self.rnn.hidden_size}"
            )
        if self.rnn.bidirectional:
            raise RnnlabError(
                "a language model reads left to right: --bidirectional is not allowed"
            )
        if self.embedding_dropout and not self.embedding_size:
            raise RnnlabError("--embedding-dropout needs an embedding (--embedding > 0)")


__all__ = ["LMConfig"]
