"""The classifier's architecture config, and the split options the example-based tasks share
(torch-free, so that ``--help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlab.config import Config, fraction, nested, non_negative, option, positive, probability
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError


@dataclass(frozen=True)
class SplitConfig(Config):
    """Split: the validation and test parts, drawn with their own seed."""

    title = "split"

    val_fraction: float = option(0.1, check=fraction, help="validation part")
    test_fraction: float = option(0.1, check=fraction, help="held-out test part")
    split_seed: int = option(
        0, check=non_negative, help="seed of the split, kept apart from --seed so that runs "
        "share a test set"
    )  # fmt: skip

    def check(self) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise RnnlabError(
                "--val-fraction and --test-fraction must sum below 1, got "
                f"{self.val_fraction:g} + {self.test_fraction:g}"
            )


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """Classifier: its architecture (stored in checkpoints).

    ``vocab_size`` (id 0 is padding), ``num_classes`` and ``class_weights`` (C cross-entropy
    weights, None for unweighted) are set from the data. ``dropout`` (``--io-dropout``) is on the
    embeddings and on the summary before the output layer; ``rnn.dropout`` between stacked
    recurrent layers.
    """

    title = "classifier"

    vocab_size: int = option(2, check=positive, cli=False, help="input tokens, set from the data")
    num_classes: int = option(2, check=positive, cli=False, help="C, set from the data")
    embed_dim: int = option(32, check=positive, flag="--embedding", help="character embedding size")
    rnn: RecurrentConfig = nested(RecurrentConfig(cell="lstm", hidden_size=128, num_layers=1))
    dropout: float = option(
        0.0, check=probability, flag="--io-dropout",
        help="dropout on the embeddings and on the summary before the output layer",
    )  # fmt: skip
    class_weights: tuple[float, ...] | None = option(
        None, check=positive, cli=False, help="cross-entropy weight of each class, from the data"
    )

    def check(self) -> None:
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise RnnlabError(
                f"class_weights must have {self.num_classes} entries, got {len(self.class_weights)}"
            )


__all__ = ["ClassifierConfig", "SplitConfig"]
