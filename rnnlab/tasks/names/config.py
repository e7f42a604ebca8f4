"""The name generator's architecture config (torch-free, so that ``--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.config import Config, nested, non_negative, option, positive, probability
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError


@dataclass(frozen=True)
class NameGeneratorConfig(Config):
    """Name generator: its architecture (stored in checkpoints).

    ``vocab_size`` (characters plus ``<pad>`` = 0, ``sos_id``, ``eos_id``), ``num_languages``
    and the special ids are set from the data. The recurrent layer reads
    ``embed_dim + lang_dim`` features per step and runs left to right only. ``dropout``
    (``--io-dropout``) is on the inputs and on the recurrent outputs; ``rnn.dropout`` between
    stacked recurrent layers.
    """

    title = "name generator"

    vocab_size: int = option(4, check=positive, cli=False, help="V, set from the data")
    num_languages: int = option(1, check=positive, cli=False, help="languages, from the data")
    embed_dim: int = option(32, check=positive, flag="--embedding", help="character embedding")
    lang_dim: int = option(16, check=positive, flag="--lang-embedding", help="language embedding")
    rnn: RecurrentConfig = nested(RecurrentConfig(cell="gru", hidden_size=128, num_layers=1))
    dropout: float = option(
        0.0, check=probability, flag="--io-dropout",
        help="dropout on the inputs and on the recurrent outputs",
    )  # fmt: skip
    sos_id: int = option(1, check=non_negative, cli=False, help="id of <sos>, from the data")
    eos_id: int = option(2, check=non_negative, cli=False, help="id of <eos>, from the data")

    def check(self) -> None:
        if self.rnn.bidirectional:
            raise RnnlabError(
                "a generator reads left to right: rnn.bidirectional must be False "
                "(no --bidirectional)"
            )
        for name in ("sos_id", "eos_id"):
            if getattr(self, name) >= self.vocab_size:
                raise RnnlabError(
                    f"{name} must be below vocab_size {self.vocab_size}, got {getattr(self, name)}"
                )


__all__ = ["NameGeneratorConfig"]
