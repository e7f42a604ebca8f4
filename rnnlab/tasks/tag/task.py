"""Sequence tagging: ``rnnlab train tag``, ``rnnlab tag`` and ``rnnlab data punct-tags``.

With no ``--data``: punctuation and case restoration on the bundled Shakespeare (one sequence per
line; see :mod:`rnnlab.tasks.tag.data`). ``--data`` takes any CoNLL-style file (``token<TAB>tag``
lines, a blank line between sequences); ``rnnlab data punct-tags`` writes the default task as one.
The test report is token accuracy, macro-F1 and a per-tag table (``RUN/test_report.txt``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rnnlab.config import Config, nested, option, positive
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import Report, Task, TaskData
from rnnlab.tasks.classify.config import SplitConfig
from rnnlab.tasks.runner import check_writable
from rnnlab.tasks.tag.config import TaggerConfig
from rnnlab.train.config import TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rnnlab.tasks.runner import Run
    from rnnlab.tasks.tag.data import Tagged

#: the tagging scheme of the default data: punctuation and case restoration
PUNCT = "punct-case"


@dataclass(frozen=True)
class TagTaskConfig(Config):
    """Train a (bidirectional by default) sequence tagger (default: restore punctuation and case
    in the bundled Shakespeare, line by line); test token accuracy and per-tag
    precision/recall/F1 written to the run directory."""

    title = "data"

    data: str | None = option(
        None, metavar="FILE",
        help="CoNLL-style token<TAB>tag file (default: the punctuation task on Shakespeare)",
    )  # fmt: skip
    min_freq: int = option(
        2, check=positive, help="tokens seen fewer times in training become <unk>"
    )
    split: SplitConfig = nested(SplitConfig())
    model: TaggerConfig = nested(TaggerConfig())
    train: TrainConfig = nested(
        TrainConfig(
            batch_size=64, lr=3e-3, schedule="cosine", eval_every=250, max_epochs=8,
            time_budget=240.0,
        )
    )  # fmt: skip


@dataclass(frozen=True)
class TagConfig(Config):
    """Tag texts with a tagger checkpoint (restores punctuation and case), e.g.
    `rnnlab tag runs/tag "what say you my lord i am glad to see you"`."""

    title = "tag"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    texts: tuple[str, ...] = option(
        positional=True, metavar="TEXT", help="texts to tag (one sequence each)"
    )


@dataclass(frozen=True)
class PunctTagsConfig(Config):
    """Text -> CoNLL file of the punctuation-and-case restoration task: one sequence per
    non-empty line, the words lowercased without punctuation, tagged with the mark that followed
    each word (O , . ? ! : ;), prefixed by ^ if the word was capitalised."""

    title = "punct-tags"

    data: str | None = option(
        None, metavar="FILE", help="UTF-8 text (default: the bundled Shakespeare)"
    )
    out: str | None = option(None, metavar="FILE", help="the CoNLL file to write (required)")


def _token_mask(batch: tuple) -> torch.Tensor:
    """(N, T) bool: True at the tokens of a collated batch, False at the padding."""
    from rnnlab.tasks.common import sequence_mask

    tokens, lengths, _ = batch
    return sequence_mask(lengths, tokens.shape[1])


class TagTask(Task):
    """many-to-many: tag every token (default: punctuation and case restoration)"""

    name = "tag"
    help = "many-to-many: tag every token (default: punctuation and case restoration)"
    config = TagTaskConfig
    commands = {"tag": TagConfig}
    converters = {"punct-tags": PunctTagsConfig}
    unit = "tokens"
    model_class = "rnnlab.tasks.tag.model:Tagger"
    model_config = TaggerConfig

    # -- training ---------------------------------------------------------------------------
    def load(self, config: TagTaskConfig) -> TaskData:
        import torch

        from rnnlab.data.vocab import Vocab
        from rnnlab.tasks.common import data_source
        from rnnlab.tasks.tag.data import PUNCT_TAGS, read_conll, read_punct_case

        source = data_source(config.data, "tinyshakespeare.txt")
        if config.data:
            data, scheme = read_conll(config.data), "conll"
        else:
            data, scheme = read_punct_case(None), PUNCT
        split = config.split
        g = torch.Generator().manual_seed(split.split_seed)
        order = torch.randperm(len(data), generator=g).tolist()
        n_val = max(1, round(len(data) * split.val_fraction))
        n_test = max(1, round(len(data) * split.test_fraction))
        if len(data) < n_val + n_test + 1:
            raise RnnlabError(f"{source}: {len(data)} sequences are too few to split")
        val = [data[i] for i in order[:n_val]]
        test = [data[i] for i in order[n_val : n_val + n_test]]
        train = [data[i] for i in order[n_val + n_test :]]
        vocab = Vocab.build((s.tokens for s in train), min_freq=config.min_freq, sos=None, eos=None)
        tag_list = (
            list(PUNCT_TAGS) if scheme == PUNCT else sorted({t for s in data for t in s.tags})
        )
        return TaskData(
            train, val, test, vocabs={"tokens": vocab, "tags": Vocab.of_labels(tag_list)},
            source=source, summary=f"{len(data)} sequences", provenance={"scheme": scheme},
        )  # fmt: skip

    def build_model(self, config: TagTaskConfig, data: TaskData) -> nn.Module:
        return self.new_model(
            config.model.replace(
                vocab_size=len(data.vocabs["tokens"]), num_tags=len(data.vocabs["tags"])
            )
        )

    def collate(self, data: TaskData) -> Callable[[list[Tagged]], tuple]:
        """Sequences -> ``(tokens (N, T), lengths (N,), tag ids (N, T))``, right-padded."""
        from rnnlab.data.batching import pad_batch

        vocab, tags = data.vocabs["tokens"], data.vocabs["tags"]

        def collate(items: list[Tagged]) -> tuple:
            tokens, lengths = pad_batch([vocab.encode(s.tokens) for s in items])
            targets, _ = pad_batch([tags.encode(s.tags) for s in items])
            return tokens, lengths, targets

        return collate

    def tokens(self, batch: tuple) -> int:
        """The batch's tokens: the sum of its lengths."""
        return int(batch[1].sum())

    def evaluate(self, model: nn.Module, data: TaskData, config: TagTaskConfig) -> dict[str, float]:
        from rnnlab.tasks.common import predictions
        from rnnlab.tasks.metrics import accuracy, confusion_matrix, macro_f1

        pred, gold, loss = predictions(model, data.val, self.collate(data), _token_mask)
        cm = confusion_matrix(pred, gold, len(data.vocabs["tags"]))
        return {"val_loss": loss, "val_acc": accuracy(pred, gold), "val_macro_f1": macro_f1(cm)}

    def describe(self, config: TagTaskConfig, data: TaskData) -> str:
        n_tokens = sum(len(s.tokens) for s in data.train)
        return (
            f"a {config.model.rnn.describe()} tagger on {len(data.train)} train ({n_tokens} "
            f"tokens) / {len(data.val)} validation / {len(data.test)} test sequences, "
            f"{len(data.vocabs['tokens'])} token types, {len(data.vocabs['tags'])} tags"
        )

    def test(self, run: Run, data: TaskData, config: TagTaskConfig) -> Report:
        from rnnlab.tasks.common import predictions
        from rnnlab.tasks.metrics import accuracy, confusion_matrix, format_per_class, macro_f1

        tags = data.vocabs["tags"]
        pred, gold, loss = predictions(run.model, data.test, self.collate(data), _token_mask)
        cm = confusion_matrix(pred, gold, len(tags))
        table = format_per_class(cm, tags.itos)
        (self.out_dir(run) / "test_report.txt").write_text(table + "\n", encoding="utf-8")
        metrics: dict[str, float | int | str] = {
            "test_token_accuracy": accuracy(pred, gold),
            "test_macro_f1": macro_f1(cm),
            "test_loss": loss,
            "majority_tag_accuracy": Counter(gold).most_common(1)[0][1] / len(gold),
            "test_tokens": len(gold),
        }
        if data.provenance.get("scheme") == PUNCT:
            names = [tags.itos[i] for i in pred], [tags.itos[i] for i in gold]
            marks = zip((t.lstrip("^") for t in names[0]), (t.lstrip("^") for t in names[1]))
            cases = zip((t[0] == "^" for t in names[0]), (t[0] == "^" for t in names[1]))
            metrics["test_mark_accuracy"] = sum(a == b for a, b in marks) / len(gold)
            metrics["test_case_accuracy"] = sum(a == b for a, b in cases) / len(gold)
        return Report(metrics, [table])

    # -- use --------------------------------------------------------------------------------
    def tag(self, run: Run, options: TagConfig) -> int:
        from rnnlab.data.batching import pad_batch
        from rnnlab.tasks.tag.data import restore, strip_text

        vocab, tags = run.vocabs["tokens"], run.vocabs["tags"]
        punct = run.meta.get("data", {}).get("scheme") == PUNCT
        for text in options.texts:
            tokens = strip_text(text) if punct else text.split()
            if not tokens:
                raise RnnlabError(f"no words to tag in {text!r}")
            ids, lengths = pad_batch([vocab.encode(tokens)])
            predicted = [tags.itos[i] for i in run.model.tag(ids.to(run.device), lengths)[0]]
            if punct:
                print(restore(tokens, predicted))
            else:
                print(" ".join(f"{tok}/{tag}" for tok, tag in zip(tokens, predicted)))
        return 0

    def punct_tags(self, options: PunctTagsConfig) -> int:
        from rnnlab.tasks.tag.data import read_punct_case, write_conll

        if options.out is None:
            raise RnnlabError("rnnlab data punct-tags needs --out FILE, the CoNLL file to write")
        check_writable(options.out, "--out", directory=False)
        data = read_punct_case(options.data)
        n = write_conll(data, options.out)
        counts = Counter(t for s in data for t in s.tags)
        print(
            f"wrote {n} sequences, {sum(counts.values())} tokens to {options.out}; tags: "
            + ", ".join(f"{t} {c}" for t, c in counts.most_common())
        )
        return 0


TASK = TagTask()

__all__ = [
    "PUNCT",
    "TASK",
    "PunctTagsConfig",
    "TagConfig",
    "TagTask",
    "TagTaskConfig",
]
