"""Many-to-one sequence classification: ``rnnlab train classify`` and ``rnnlab predict``.

With no ``--data``: the bundled names data (surname -> one of 18 languages), character level.
``--data`` takes a folder of class files (``LABEL.txt``, one example per line) or a
``text<TAB>label`` file (``.tsv``; ``.csv`` for ``text,label``). The test report is accuracy,
macro-F1, a per-class table (``RUN/test_report.txt``) and a confusion matrix
(``RUN/confusion.png``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rnnlab.config import Config, nested, option, positive
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import Report, Task, TaskData
from rnnlab.tasks.classify.config import ClassifierConfig, SplitConfig
from rnnlab.tasks.classify.data import WEIGHTINGS
from rnnlab.train.config import TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rnnlab.tasks.classify.data import Example
    from rnnlab.tasks.runner import Run


@dataclass(frozen=True)
class ClassifyTaskConfig(Config):
    """Train a character-level sequence classifier (default: the bundled names, 18 languages,
    18,827 surnames, a stratified 80/10/10 split, an LSTM, 12 epochs or 180 s); test accuracy,
    macro-F1, per-class table and confusion matrix written to the run directory."""

    title = "data"

    data: str | None = option(
        None, metavar="PATH", help="folder of LABEL.txt class files, or a text<TAB>label .tsv / "
        "text,label .csv (default: the bundled names)"
    )  # fmt: skip
    class_weights: str = option(
        "sqrt", choices=WEIGHTINGS,
        help="loss weights against class imbalance: 1/sqrt(n_c), 1/n_c (inverse), or none",
    )  # fmt: skip
    split: SplitConfig = nested(SplitConfig())
    model: ClassifierConfig = nested(ClassifierConfig())
    train: TrainConfig = nested(
        TrainConfig(
            batch_size=64, lr=3e-3, schedule="cosine", eval_every=250, max_epochs=12,
            time_budget=180.0,
        )
    )  # fmt: skip


@dataclass(frozen=True)
class PredictConfig(Config):
    """Print the most likely classes of each text, with their probabilities, e.g.
    `rnnlab predict runs/classify "Dostoevsky"`."""

    title = "predict"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    texts: tuple[str, ...] = option(positional=True, metavar="TEXT", help="texts to classify")
    top: int = option(3, check=positive, help="classes to show")


def read_data(path: str | None) -> list[Example]:
    """The labelled examples of ``--data`` (default: the bundled names)."""
    from rnnlab.data import bundled
    from rnnlab.tasks.classify.data import read_examples

    return read_examples(path if path else bundled("names"))


class ClassifyTask(Task):
    """many-to-one: a character-level sequence classifier (default: names -> language)"""

    name = "classify"
    help = "many-to-one: classify sequences (default: names -> language)"
    config = ClassifyTaskConfig
    commands = {"predict": PredictConfig}
    unit = "examples"
    model_class = "rnnlab.tasks.classify.model:Classifier"
    model_config = ClassifierConfig

    # -- training ---------------------------------------------------------------------------
    def load(self, config: ClassifyTaskConfig) -> TaskData:
        from rnnlab.data.vocab import Vocab
        from rnnlab.tasks.classify.data import (
            characters,
            class_weights,
            summary,
        )
        from rnnlab.tasks.common import data_source, split_examples

        examples = read_data(config.data)
        source = data_source(config.data, "names")
        labels = sorted({e.label for e in examples})
        if len(labels) < 2:
            raise RnnlabError(f"{source}: need at least 2 classes, found {len(labels)}")
        train, val, test = split_examples(examples, config.split, source)
        vocab = Vocab.build((characters(e.text) for e in train), sos=None, eos=None)
        weights = class_weights([e.label for e in train], labels, config.class_weights)
        print(f"data: {source}: {summary(examples)}", file=sys.stderr)
        return TaskData(
            train, val, test, vocabs={"tokens": vocab, "labels": Vocab.of_labels(labels)},
            source=source, summary=f"{len(examples)} examples",
            provenance={"class_weights": config.class_weights}, extra={"weights": weights},
        )  # fmt: skip

    def build_model(self, config: ClassifyTaskConfig, data: TaskData) -> nn.Module:
        weights = None if config.class_weights == "none" else tuple(data.extra["weights"])
        return self.new_model(
            config.model.replace(
                vocab_size=len(data.vocabs["tokens"]),
                num_classes=len(data.vocabs["labels"]),
                class_weights=weights,
            )
        )

    def collate(self, data: TaskData) -> Callable[[list[Example]], tuple]:
        """Examples -> ``(tokens (N, T), lengths (N,), class ids (N,))``, right-padded."""
        import torch

        from rnnlab.data.batching import pad_batch
        from rnnlab.tasks.classify.data import characters

        vocab, labels = data.vocabs["tokens"], data.vocabs["labels"]

        def collate(items: list[Example]) -> tuple:
            tokens, lengths = pad_batch([vocab.encode(characters(e.text)) for e in items])
            return tokens, lengths, torch.tensor([labels.index(e.label) for e in items])

        return collate

    def evaluate(
        self, model: nn.Module, data: TaskData, config: ClassifyTaskConfig
    ) -> dict[str, float]:
        from rnnlab.tasks.common import predictions
        from rnnlab.tasks.metrics import accuracy, confusion_matrix, macro_f1

        pred, gold, loss = predictions(model, data.val, self.collate(data))
        cm = confusion_matrix(pred, gold, len(data.vocabs["labels"]))
        return {"val_loss": loss, "val_acc": accuracy(pred, gold), "val_macro_f1": macro_f1(cm)}

    def describe(self, config: ClassifyTaskConfig, data: TaskData) -> str:
        return (
            f"a {config.model.rnn.describe()} classifier on {len(data.train)} train / "
            f"{len(data.val)} validation / {len(data.test)} test examples, "
            f"{len(data.vocabs['labels'])} classes, {len(data.vocabs['tokens'])} symbols, "
            f"class weights {config.class_weights}"
        )

    def test(self, run: Run, data: TaskData, config: ClassifyTaskConfig) -> Report:
        from rnnlab.tasks.common import predictions
        from rnnlab.tasks.metrics import (
            accuracy,
            confusion_matrix,
            format_per_class,
            macro_f1,
            plot_confusion,
        )

        labels = data.vocabs["labels"].itos
        pred, gold, loss = predictions(run.model, data.test, self.collate(data))
        cm = confusion_matrix(pred, gold, len(labels))
        table = format_per_class(cm, labels)
        out = self.out_dir(run)
        (out / "test_report.txt").write_text(table + "\n", encoding="utf-8")
        title = f"test confusion ({len(data.test)} examples)"
        plot_confusion(cm, labels, out / "confusion.png", title=title)
        metrics = {
            "test_accuracy": accuracy(pred, gold),
            "test_macro_f1": macro_f1(cm),
            "test_loss": loss,
            "test_examples": len(data.test),
        }
        return Report(metrics, [table, f"confusion matrix: {out}/confusion.png"])

    # -- use --------------------------------------------------------------------------------
    def predict(self, run: Run, options: PredictConfig) -> int:
        from rnnlab.data.batching import pad_batch
        from rnnlab.tasks.classify.data import characters

        vocab, labels = run.vocabs["tokens"], run.vocabs["labels"].itos
        texts = [t.strip() for t in options.texts]
        for text in texts:
            if not text:
                raise RnnlabError("cannot classify an empty text")
            if all(c not in vocab for c in characters(text)):
                raise RnnlabError(f"{text!r} has no character the model knows")
        tokens, lengths = pad_batch([vocab.encode(characters(t)) for t in texts])
        probs = run.model.predict_proba(tokens.to(run.device), lengths)
        k = min(options.top, len(labels))
        for text, row in zip(texts, probs):
            top = row.topk(k)
            shown = "  ".join(
                f"{labels[i]} {p:.3f}" for p, i in zip(top.values.tolist(), top.indices.tolist())
            )
            print(f"{text}: {shown}")
        return 0

    # -- analysis ---------------------------------------------------------------------------
    def diagnostic_batch(
        self, run: Run, data: str | None, length: int, batch: int
    ) -> tuple[Callable[[], Any], Callable[[], torch.Tensor], str]:
        """One batch of names of one common length (the most common one), so that every
        sequence's last step is the same step; ``length`` is not used."""
        from collections import Counter

        import torch

        from rnnlab.data.batching import pad_batch
        from rnnlab.tasks.classify.data import characters
        from rnnlab.tasks.common import data_source

        vocab, labels = run.vocabs["tokens"], run.vocabs["labels"]
        examples = [e for e in read_data(data) if e.label in labels]
        if not examples:
            raise RnnlabError(f"{data_source(data, 'names')} has no example of the model's classes")
        common = Counter(len(e.text) for e in examples).most_common(1)[0][0]
        pool = [e for e in examples if len(e.text) == common]
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(len(pool), generator=g)[:batch].tolist()
        device = run.device
        tokens, lengths = pad_batch([vocab.encode(characters(pool[i].text)) for i in pick])
        tokens = tokens.to(device)
        y = torch.tensor([labels.index(pool[i].label) for i in pick], device=device)
        model = run.model
        return (
            (lambda: model(tokens, lengths)),
            (lambda: model(tokens, lengths, y)[1]),
            f"the class of {len(pick)} names of {common} characters",
        )


TASK = ClassifyTask()

__all__ = [
    "TASK",
    "ClassifyTask",
    "ClassifyTaskConfig",
    "PredictConfig",
    "read_data",
]
