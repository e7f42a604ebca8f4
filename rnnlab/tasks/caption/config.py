"""The captioner's architecture config (torch-free, so that ``--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.config import Config, nested, non_negative, option, positive, probability
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError

#: The splits of the synthetic set: train, the in-distribution test, held-out combinations.
SPLITS = ("train", "test", "heldout")


@dataclass(frozen=True)
class CaptionerConfig(Config):
    """Captioner: its architecture (stored in checkpoints).

    ``vocab_size`` counts the words and the specials (``<pad>`` = 0, ``sos_id`` = ``<start>``,
    ``eos_id`` = ``<end>``), set from the data, as is ``image_size`` (S: images are (3, S, S)).
    ``channels`` are the output channels of the CNN's conv blocks, each halving the image.
    ``rnn.dropout`` acts between stacked layers, ``dropout`` (``--io-dropout``) on the word
    embeddings and the decoder's outputs.
    """

    title = "captioner"

    vocab_size: int = option(1, check=positive, cli=False, help="V, set from the data")
    image_size: int = option(36, check=positive, cli=False, help="S, set from the data")
    channels: tuple[int, ...] = option(
        (16, 32, 64), check=positive, cli=False, help="output channels of the conv blocks"
    )
    feature_dim: int = option(
        128, check=positive, aliases=("--features",), help="image feature size"
    )
    embed_dim: int = option(
        32, check=positive, aliases=("--embedding",), help="word embedding size"
    )
    rnn: RecurrentConfig = nested(RecurrentConfig(cell="lstm", hidden_size=128))
    dropout: float = option(
        0.0, check=probability, flag="--io-dropout", metavar="P",
        help="dropout on the word embeddings and the decoder outputs",
    )  # fmt: skip
    sos_id: int = option(1, check=non_negative, cli=False, help="id of <start>")
    eos_id: int = option(2, check=non_negative, cli=False, help="id of <end>")

    def check(self) -> None:
        if self.rnn.bidirectional:
            raise RnnlabError(
                "a caption decoder reads left to right: --bidirectional is not allowed"
            )
        if self.image_size >> len(self.channels) < 1:
            raise RnnlabError(
                f"image_size {self.image_size} too small for {len(self.channels)} pools"
            )


__all__ = ["SPLITS", "CaptionerConfig"]
