"""One-to-many conditional generation: ``rnnlab train names`` and ``rnnlab generate-names``.

A character-level generator conditioned on the language (the bundled names by default, or any
folder of ``LABEL.txt`` class files, read by :mod:`rnnlab.tasks.classify.data`): given a language
it writes a name one character at a time until ``<eos>``, sampling with a temperature or taking
the most likely character. The test report is the loss in nats (and bits) per character and the
fraction of sampled names not in the training set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnlab.config import Config, at_least, nested, non_negative, option, positive
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import Report, Task, TaskData
from rnnlab.tasks.classify.config import SplitConfig
from rnnlab.tasks.names.config import NameGeneratorConfig
from rnnlab.train.config import TrainConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rnnlab.data.vocab import Vocab
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


@dataclass(frozen=True)
class GenerateNamesConfig(Config):
    """Generate names of a language with a name-generator checkpoint, e.g.
    `rnnlab generate-names runs/names --language Russian -n 10`."""

    title = "generate-names"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    language: str | None = option(None, help="one of the languages it was trained on (required)")
    n: int = option(10, check=positive, flag="-n", metavar="N", help="how many names")
    temperature: float = option(
        0.8, check=non_negative, help="sampling temperature; 0 = greedy, the most likely character"
    )
    top_k: int | None = option(None, check=positive, help="sample among the K likeliest")
    start: str = option("", help="letters every name starts with")
    max_len: int = option(20, check=positive, help="longest name")
    seed: int | None = option(None, check=at_least(0), help="for reproducible names")

    def check(self) -> None:
        if self.language is None:
            raise RnnlabError("generate-names needs --language, one of those it was trained on")
        if len(self.start) >= self.max_len:
            raise RnnlabError(f"--start is longer than --max-len {self.max_len}")


def make_collate(vocab: Vocab, languages: Vocab) -> Callable[[list[Example]], tuple]:
    """Names -> ``(languages (N,), <sos> + characters (N, T), lengths (N,), characters + <eos>
    (N, T))``, right-padded."""
    import torch

    from rnnlab.data.batching import pad_batch
    from rnnlab.tasks.classify.data import characters

    def collate(items: list[Example]) -> tuple:
        inputs = pad_batch([vocab.encode(characters(e.text), sos=True) for e in items])
        targets, _ = pad_batch([vocab.encode(characters(e.text), eos=True) for e in items])
        return torch.tensor([languages.index(e.label) for e in items]), *inputs, targets

    return collate


def characters_loss(model: nn.Module, batch: tuple) -> tuple[torch.Tensor, int]:
    """The trainer's ``loss_fn``: the mean loss per character, and the batch's characters."""
    _, loss = model(*batch)
    return loss, int(batch[2].sum())


def mean_loss(
    model: nn.Module, items: Sequence[Example], collate: Callable[[list[Example]], tuple]
) -> float:
    """The mean loss per character (``<eos>`` included) of ``items``."""
    import torch

    from rnnlab.data.batching import chunks

    device = next(model.parameters()).device
    total, n = 0.0, 0
    with torch.no_grad():
        for chunk in chunks(items, 256):
            batch = tuple(t.to(device) for t in collate(chunk))
            _, loss = model(*batch)
            count = int(batch[2].sum())
            total += float(loss) * count
            n += count
    return total / max(n, 1)


class NamesTask(Task):
    """one-to-many: generate names given a language"""

    name = "names"
    help = "one-to-many: generate names given a language"
    config = NamesTaskConfig
    commands = {"generate-names": GenerateNamesConfig}
    unit = "chars"

    # -- training ---------------------------------------------------------------------------
    def load(self, config: NamesTaskConfig) -> TaskData:
        from rnnlab.data import bundled
        from rnnlab.data.vocab import Vocab
        from rnnlab.tasks.classify.data import characters, read_class_dir, stratified_split

        examples = read_class_dir(config.data or bundled("names"))
        source = str(Path(config.data).resolve()) if config.data else "bundled:names"
        languages = sorted({e.label for e in examples})
        split = config.split
        tr, va, te = stratified_split(
            [e.label for e in examples], (split.val_fraction, split.test_fraction),
            split.split_seed,
        )  # fmt: skip
        train, val, test = ([examples[i] for i in idx] for idx in (tr, va, te))
        if not val or not test:
            raise RnnlabError(f"{source}: too few names for a validation and a test split")
        vocab = Vocab.build(characters(e.text) for e in train)
        return TaskData(
            train, val, test, vocabs={"tokens": vocab, "languages": Vocab.of_labels(languages)},
            source=source, summary=f"{len(examples)} names",
        )  # fmt: skip

    def build_model(self, config: NamesTaskConfig, data: TaskData) -> nn.Module:
        from rnnlab.tasks.names.model import NameGenerator

        vocab = data.vocabs["tokens"]
        return NameGenerator(
            config.model.replace(
                vocab_size=len(vocab),
                num_languages=len(data.vocabs["languages"]),
                sos_id=vocab.sos_id,
                eos_id=vocab.eos_id,
            )
        )

    def model_from_meta(self, model_config: dict[str, Any]) -> nn.Module:
        from rnnlab.tasks.names.model import NameGenerator

        return NameGenerator(NameGeneratorConfig.from_meta(model_config, "model_config"))

    def batches(self, config: NamesTaskConfig, data: TaskData) -> Any:
        from rnnlab.data.batching import Batches

        collate = make_collate(data.vocabs["tokens"], data.vocabs["languages"])
        return Batches(data.train, config.train.batch_size, collate, seed=config.train.seed)

    def loss_fn(self, config: NamesTaskConfig, data: TaskData) -> Any:
        return characters_loss

    def evaluate(
        self, model: nn.Module, data: TaskData, config: NamesTaskConfig
    ) -> dict[str, float]:
        collate = make_collate(data.vocabs["tokens"], data.vocabs["languages"])
        return {"val_loss": mean_loss(model, data.val, collate)}

    def describe(self, config: NamesTaskConfig, data: TaskData) -> str:
        return (
            f"a {config.model.rnn.describe()} name generator on {len(data.train)} train / "
            f"{len(data.val)} validation / {len(data.test)} test names, "
            f"{len(data.vocabs['languages'])} languages, {len(data.vocabs['tokens'])} symbols"
        )

    def test(self, run: Run, data: TaskData, config: NamesTaskConfig) -> Report:
        import torch

        vocab, languages = data.vocabs["tokens"], data.vocabs["languages"]
        loss = mean_loss(run.model, data.test, make_collate(vocab, languages))
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

        vocab, languages = run.vocabs["tokens"], run.vocabs["languages"].itos
        wanted = str(options.language)
        matches = [name for name in languages if name.lower() == wanted.lower()]
        if not matches:
            raise RnnlabError(f"unknown language {wanted!r}; choose one of: {', '.join(languages)}")
        unknown = vocab.unknown(characters(options.start))
        if unknown:
            raise RnnlabError(f"--start has characters the model never saw: {''.join(unknown)!r}")
        generator = torch.Generator(device=run.device)
        if options.seed is not None:
            generator.manual_seed(options.seed)
        else:
            generator.seed()
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
    "characters_loss",
    "make_collate",
    "mean_loss",
]
