"""One-to-many conditional generation: ``rnnlab train names`` and ``rnnlab generate-names``.

A character-level generator conditioned on the language (the bundled names by default, or any
folder of ``LABEL.txt`` class files, read by :mod:`rnnlab.tasks.classify.data`): given a language
it writes a name one character at a time until ``<eos>``, sampling with a temperature or taking
the most likely character. The test report is the loss in nats (and bits) per character and the
fraction of sampled names not in the training set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rnnlab.config import Config, nested, non_negative, option, positive
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import Report, Task, TaskData
from rnnlab.tasks.classify.config import SplitConfig
from rnnlab.tasks.names.config import NameGeneratorConfig
from rnnlab.train.config import SEED, TrainConfig

if TYPE_CHECKING:
    from torch import nn

    from rnnlab.tasks.classify.data import Example
    from rnnlab.tasks.runner import Run


@dataclass(frozen=True)
class NamesTaskConfig(Config):
    """Train a character-level name generator conditioned on the language (default: the
    bundled names, 18 languages, a GRU, up to 10 epochs or 180 s); test loss in nats per
    character."""

    title = "data"

    data: str | None = option(
        None, metavar="DIR", help="folder of LABEL.txt class files (default: the bundled names)"
    )
    split: SplitConfig = nested(SplitConfig())
    model: NameGeneratorConfig = nested(NameGeneratorConfig())
    train: TrainConfig = nested(
        TrainConfig(
            batch_size=64, lr=3e-3, schedule="cosine", eval_every=250, max_epochs=10,
            time_budget=180.0,
        )
    )  # fmt: skip


#: the most names one ``generate-names`` draws (they are drawn as one batch)
MAX_NAMES = 100_000


@dataclass(frozen=True)
class GenerateNamesConfig(Config):
    """Generate names of a language with a name-generator checkpoint, e.g.
    `rnnlab generate-names runs/names --language Russian -n 10`."""

    title = "generate-names"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    language: str | None = option(None, help="one of the languages it was trained on (required)")
    n: int = option(
        10, check=positive, flag="-n", metavar="N", help=f"how many names (at most {MAX_NAMES:,})"
    )
    temperature: float = option(
        0.8, check=non_negative, help="sampling temperature; 0 = greedy, the most likely character"
    )
    top_k: int | None = option(None, check=positive, help="sample among the K likeliest")
    start: str = option("", help="letters every name starts with")
    max_len: int = option(20, check=positive, help="longest name")
    seed: int | None = option(None, check=SEED, help="for reproducible names")

    def check(self) -> None:
        if self.language is None:
            raise RnnlabError("generate-names needs --language, one of those it was trained on")
        if self.n > MAX_NAMES:
            raise RnnlabError(f"-n {self.n} is more than {MAX_NAMES:,} names at once")
        if len(self.start) >= self.max_len:
            raise RnnlabError(f"--start is longer than --max-len {self.max_len}")


class NamesTask(Task):
    """one-to-many: generate names given a language"""

    name = "names"
    help = "one-to-many: generate names given a language"
    config = NamesTaskConfig
    commands = {"generate-names": GenerateNamesConfig}
    unit = "chars"
    model_class = "rnnlab.tasks.names.model:NameGenerator"
    model_config = NameGeneratorConfig

    # -- training ---------------------------------------------------------------------------
    def load(self, config: NamesTaskConfig) -> TaskData:
        from rnnlab.data import bundled
        from rnnlab.data.vocab import Vocab
        from rnnlab.tasks.classify.data import characters, read_class_dir
        from rnnlab.tasks.common import data_source, split_examples

        examples = read_class_dir(config.data or bundled("names"))
        source = data_source(config.data, "names")
        languages = sorted({e.label for e in examples})
        train, val, test = split_examples(examples, config.split, source, "names")
        vocab = Vocab.build(characters(e.text) for e in train)
        return TaskData(
            train, val, test, vocabs={"tokens": vocab, "languages": Vocab.of_labels(languages)},
            source=source, summary=f"{len(examples)} names",
        )  # fmt: skip

    def build_model(self, config: NamesTaskConfig, data: TaskData) -> nn.Module:
        vocab = data.vocabs["tokens"]
        return self.new_model(
            config.model.replace(
                vocab_size=len(vocab),
                num_languages=len(data.vocabs["languages"]),
                sos_id=vocab.sos_id,
                eos_id=vocab.eos_id,
            )
        )

    def collate(self, data: TaskData) -> Callable[[list[Example]], tuple]:
        """Names -> ``(languages (N,), <sos> + characters (N, T), lengths (N,), characters +
        <eos> (N, T))``, right-padded."""
        import torch

        from rnnlab.data.batching import pad_batch
        from rnnlab.tasks.classify.data import characters

        vocab, languages = data.vocabs["tokens"], data.vocabs["languages"]

        def collate(items: list[Example]) -> tuple:
            inputs = pad_batch([vocab.encode(characters(e.text), sos=True) for e in items])
            targets, _ = pad_batch([vocab.encode(characters(e.text), eos=True) for e in items])
            return torch.tensor([languages.index(e.label) for e in items]), *inputs, targets

        return collate

    def tokens(self, batch: tuple) -> int:
        """The batch's characters (``<eos>`` included): the sum of its lengths."""
        return int(batch[2].sum())

    def evaluate(
        self, model: nn.Module, data: TaskData, config: NamesTaskConfig
    ) -> dict[str, float]:
        from rnnlab.tasks.common import mean_loss

        return {"val_loss": mean_loss(model, data.val, self.collate(data), self.tokens)}

    def describe(self, config: NamesTaskConfig, data: TaskData) -> str:
        return (
            f"a {config.model.rnn.describe()} name generator on {len(data.train)} train / "
            f"{len(data.val)} validation / {len(data.test)} test names, "
            f"{len(data.vocabs['languages'])} languages, {len(data.vocabs['tokens'])} symbols"
        )

    def test(self, run: Run, data: TaskData, config: NamesTaskConfig) -> Report:
        import torch

        from rnnlab.tasks.common import mean_loss

        vocab, languages = data.vocabs["tokens"], data.vocabs["languages"]
        loss = mean_loss(run.model, data.test, self.collate(data), self.tokens)
        g = torch.Generator(device=run.device).manual_seed(0)
        known = {e.text for e in data.train}
        samples, lines = [], []
        for language in languages.itos:
            condition = torch.full((5,), languages.index(language))
            ids = run.model.generate(condition, temperature=0.8, generator=g)
            names = ["".join(vocab.decode(n)) for n in ids]
            samples += names
            lines.append(f"  {language:<11} {', '.join(names)}")
        metrics = {
            "test_loss_nats_per_char": loss,
            "test_bits_per_char": loss / math.log(2),
            "novel_fraction_of_samples": sum(s not in known for s in samples) / len(samples),
            "test_names": len(data.test),
        }
        return Report(metrics, ["samples (temperature 0.8):", *lines])

    # -- use --------------------------------------------------------------------------------
    def generate_names(self, run: Run, options: GenerateNamesConfig) -> int:
        import torch

        from rnnlab.tasks.classify.data import characters
        from rnnlab.tasks.common import seeded_generator

        vocab, languages = run.vocabs["tokens"], run.vocabs["languages"].itos
        wanted = str(options.language)
        matches = [name for name in languages if name.lower() == wanted.lower()]
        if not matches:
            raise RnnlabError(f"unknown language {wanted!r}; choose one of: {', '.join(languages)}")
        unknown = vocab.unknown(characters(options.start))
        if unknown:
            raise RnnlabError(f"--start has characters the model never saw: {''.join(unknown)!r}")
        generator = seeded_generator(run.device, options.seed)
        condition = torch.full((options.n,), languages.index(matches[0]), device=run.device)
        names = run.model.generate(
            condition, options.max_len, options.temperature, options.top_k,
            vocab.encode(characters(options.start)), generator=generator,
        )  # fmt: skip
        for ids in names:
            print("".join(vocab.decode(ids)))
        return 0


TASK = NamesTask()

__all__ = [
    "TASK",
    "GenerateNamesConfig",
    "NamesTask",
    "NamesTaskConfig",
]
