"""The encoder-decoder's architecture config (torch-free, so that ``--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.config import Config, nested, non_negative, option, positive, probability, unit_interval
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError

#: The attention mechanisms, by the name the config stores (None: no attention).
ATTENTION_NAMES = ("bahdanau", "luong")


def parse_attention(text: str) -> str | None:
    """``--attention``: bahdanau, luong, or none (no attention)."""
    if text == "none":
        return None
    if text not in ATTENTION_NAMES:
        raise RnnlabError(f"expected bahdanau, luong or none, got {text!r}")
    return text


@dataclass(frozen=True)
class Seq2SeqConfig(Config):
    """Encoder-decoder: its architecture (stored in checkpoints).

    The vocabulary sizes and the target's ``<sos>``/``<eos>`` ids are set from the data (id 0
    is ``<pad>`` in both vocabularies). The encoder is any recurrent layer (stacked,
    bidirectional); the decoder has the same cell, hidden size and layers, one direction.
    ``rnn.dropout`` acts between stacked layers, ``dropout`` (``--io-dropout``) on the
    embeddings and on the features before the output layer.
    """

    title = "encoder-decoder"

    src_vocab_size: int = option(1, check=positive, cli=False, help="source vocabulary size")
    tgt_vocab_size: int = option(1, check=positive, cli=False, help="target vocabulary size")
    embed_dim: int = option(128, check=positive, aliases=("--embedding",), help="embedding size")
    encoder: RecurrentConfig = nested(RecurrentConfig(cell="gru", hidden_size=256))
    attention: str | None = option(
        None, parse=parse_attention, metavar="{bahdanau,luong,none}", const="bahdanau",
        help="attention decoder: bahdanau (additive; a bare --attention), luong "
        "(multiplicative) or none",
    )  # fmt: skip
    dropout: float = option(
        0.0, check=probability, flag="--io-dropout", metavar="P",
        help="dropout on the embeddings and before the output layer",
    )  # fmt: skip
    teacher_forcing: float = option(
        1.0, check=unit_interval,
        help="probability of feeding the gold previous token in training",
    )  # fmt: skip
    sos_id: int = option(1, check=non_negative, cli=False, help="target id of <sos>")
    eos_id: int = option(2, check=non_negative, cli=False, help="target id of <eos>")

    def check(self) -> None:
        if self.attention is not None and self.attention not in ATTENTION_NAMES:
            raise RnnlabError(
                f"attention must be None or one of {', '.join(ATTENTION_NAMES)}, "
                f"got {self.attention!r}"
            )


__all__ = ["ATTENTION_NAMES", "Seq2SeqConfig", "parse_attention"]
