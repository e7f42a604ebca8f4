"""Image captioning: ``rnnlab train caption``, ``rnnlab caption`` and ``rnnlab data captions``.

With no ``--data``: rnnlab's synthetic captioning set (:mod:`rnnlab.tasks.caption.data`), generated
on the fly: training images, an in-distribution test split, and a held-out split whose every image
shows a colour-and-shape combination never seen in training. Metrics: exact caption match and
BLEU on both test splits. ``--data`` takes a folder written by ``rnnlab data captions``
(``captions.tsv`` and its PNG images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rnnlab.config import Config, nested, non_negative, option, positive
from rnnlab.errors import RnnlabError
from rnnlab.tasks.base import Report, Task, TaskData
from rnnlab.tasks.caption.config import SPLITS, CaptionerConfig
from rnnlab.tasks.runner import check_writable
from rnnlab.train.config import SEED, TrainConfig

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from rnnlab.data.vocab import Vocab
    from rnnlab.tasks.caption.model import Captioner
    from rnnlab.tasks.runner import Run

    #: an example: an image (3, S, S) in [0, 1] and its caption's words
    Example = tuple[torch.Tensor, list[str]]

START, END = "<start>", "<end>"


@dataclass(frozen=True)
class CaptionTaskConfig(Config):
    """Train a CNN-encoder / recurrent-decoder captioner (Vinyals et al. 2015) (default: the
    synthetic shapes set, generated, a 1x128 LSTM, up to 15 epochs or 240 s; exact match and
    BLEU on an in-distribution test split and on held-out attribute combinations)."""

    title = "data"

    data: str | None = option(
        None, metavar="DIR",
        help="folder with captions.tsv (file<TAB>caption) and its images (default: synthetic)",
    )  # fmt: skip
    train_size: int = option(8000, check=positive, help="synthetic: training images")
    test_size: int = option(1000, check=positive, help="synthetic: images per test split")
    split_seed: int = option(0, check=non_negative, help="seed of the data and its split")
    model: CaptionerConfig = nested(CaptionerConfig())
    train: TrainConfig = nested(
        TrainConfig(
            batch_size=64, lr=2e-3, schedule="cosine", eval_every=250, max_epochs=15,
            time_budget=240.0,
        )
    )  # fmt: skip


@dataclass(frozen=True)
class CaptionConfig(Config):
    """Caption images with a captioning checkpoint (images as made by ``rnnlab data
    captions``)."""

    title = "caption"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    images: tuple[str, ...] = option(positional=True, metavar="IMAGE", help="image files (PNG)")
    temperature: float = option(0.0, check=non_negative, help="0 = the most likely word")
    seed: int | None = option(None, check=SEED, help="for reproducible sampling")


@dataclass(frozen=True)
class CaptionsDataConfig(Config):
    """Write synthetic captioning images (PNG) and captions.tsv: images of 1-3 coloured shapes
    and their captions; split heldout uses colour-and-shape combinations never in train."""

    title = "captions"

    out: str | None = option(None, metavar="DIR", help="folder to write (required)")
    n: int = option(100, check=positive, flag="-n", help="number of images")
    split: str = option("test", choices=SPLITS, help="which split")
    seed: int = option(0, check=non_negative, help="seed of the images")


def images_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _splits(config: CaptionTaskConfig) -> dict[str, tuple[np.ndarray, list[list[str]]]]:
    import numpy as np

    from rnnlab.tasks.caption.data import generate, load_dataset

    if config.data is None:
        seed = config.split_seed
        return {
            "train": generate(config.train_size, "train", seed),
            "val": generate(min(500, config.test_size), "test", seed + 1),
            "test": generate(config.test_size, "test", seed),
            "heldout": generate(config.test_size, "heldout", seed),
        }
    images, captions = load_dataset(config.data)
    order = np.random.default_rng(config.split_seed).permutation(len(images))
    n = max(1, len(images) // 10)
    if len(images) < 3 * n or len(images) < 3:
        raise RnnlabError(f"{config.data}: {len(images)} images are too few to split")
    parts = {"val": order[:n], "test": order[n : 2 * n], "train": order[2 * n :]}
    return {k: (images[idx], [captions[i] for i in idx]) for k, idx in parts.items()}


def captions_of(model: Captioner, examples: Sequence[Example], vocab: Vocab) -> list[list[str]]:
    """The greedy captions of ``examples``' images, as words."""
    import torch

    from rnnlab.data.batching import chunks
    from rnnlab.train import distributed

    device = next(model.parameters()).device
    out = []
    for chunk in chunks(distributed.shard(examples), 256):
        images = torch.stack([im for im, _ in chunk]).to(device)
        out += [vocab.decode(ids) for ids in model.generate(images)]
    return distributed.gather_list(out)


class CaptionTask(Task):
    """one-to-many: caption images (default: synthetic shapes)"""

    name = "caption"
    help = "one-to-many: caption images (default: synthetic shapes)"
    config = CaptionTaskConfig
    commands = {"caption": CaptionConfig}
    converters = {"captions": CaptionsDataConfig}
    unit = "words"
    model_class = "rnnlab.tasks.caption.model:Captioner"
    model_config = CaptionerConfig

    # -- training ---------------------------------------------------------------------------
    def load(self, config: CaptionTaskConfig) -> TaskData:
        from rnnlab.data.vocab import Vocab

        splits = _splits(config)
        vocab = Vocab.build(splits["train"][1], sos=START, eos=END)
        items = {k: list(zip(images_tensor(im), caps)) for k, (im, caps) in splits.items()}
        where = "synthetic" if config.data is None else config.data
        summary = (
            f"{len(items['train'])} train / {len(items['val'])} validation images ({where}), "
            f"{len(vocab)} words"
        )
        source = "synthetic" if config.data is None else str(Path(config.data).resolve())
        return TaskData(
            items["train"], items["val"], items["test"], vocabs={"tokens": vocab},
            source=source, summary=summary,
            extra={"heldout": items.get("heldout"),
                   "image_size": int(splits["train"][0].shape[1])},
        )  # fmt: skip

    def build_model(self, config: CaptionTaskConfig, data: TaskData) -> nn.Module:
        vocab = data.vocabs["tokens"]
        return self.new_model(
            config.model.replace(
                vocab_size=len(vocab), image_size=data.extra["image_size"],
                sos_id=vocab.sos_id, eos_id=vocab.eos_id,
            )
        )  # fmt: skip

    def collate(self, data: TaskData) -> Callable[[list[Example]], tuple]:
        """Examples -> ``(images (N, 3, S, S), inputs (N, T), lengths (N,), targets (N, T))``."""
        import torch

        from rnnlab.data.batching import pad_batch

        vocab = data.vocabs["tokens"]

        def collate(batch: list[Example]) -> tuple:
            images = torch.stack([im for im, _ in batch])
            inputs = pad_batch([vocab.encode(c, sos=True) for _, c in batch])
            targets, _ = pad_batch([vocab.encode(c, eos=True) for _, c in batch])
            return images, *inputs, targets

        return collate

    def tokens(self, batch: tuple) -> int:
        """The batch's words (``<end>`` included): the sum of its caption lengths."""
        return int(batch[2].sum())

    def evaluate(
        self, model: nn.Module, data: TaskData, config: CaptionTaskConfig
    ) -> dict[str, float]:
        from rnnlab.tasks.common import mean_loss
        from rnnlab.tasks.metrics import exact_match

        loss = mean_loss(model, data.val, self.collate(data), self.tokens)
        hyps = captions_of(model, data.val, data.vocabs["tokens"])
        refs = [c for _, c in data.val]
        return {"val_loss": loss, "val_exact": exact_match(hyps, refs)}

    def describe(self, config: CaptionTaskConfig, data: TaskData) -> str:
        return f"a CNN + {config.model.rnn.describe()} captioner on {data.summary}"

    def test(self, run: Run, data: TaskData, config: CaptionTaskConfig) -> Report:
        """Exact match and BLEU of greedy captions on the test split (and the held-out one)."""
        from rnnlab.tasks.metrics import bleu, exact_match

        splits = {"test": data.test, "heldout": data.extra.get("heldout")}
        metrics: dict[str, float | int | str] = {}
        lines = []
        for split, examples in splits.items():
            if examples is None:
                continue
            hyps = captions_of(run.model, examples, data.vocabs["tokens"])
            refs = [c for _, c in examples]
            metrics[f"{split}_exact"] = exact_match(hyps, refs)
            metrics[f"{split}_bleu"] = bleu(hyps, refs)
            lines += [
                f"  [{split}] {' '.join(h)}   (truth: {' '.join(r)})"
                for h, r in zip(hyps[:4], refs)
            ]
        return Report(metrics, ["examples:", *lines])

    # -- use --------------------------------------------------------------------------------
    def caption(self, run: Run, options: CaptionConfig) -> int:
        import numpy as np

        from rnnlab.tasks.caption.data import load_image
        from rnnlab.tasks.common import seeded_generator

        vocab = run.vocabs["tokens"]
        size = run.model.config.image_size
        arrays = [load_image(path, size) for path in options.images]
        images = images_tensor(np.stack(arrays)).to(run.device)
        generator = seeded_generator(run.device, options.seed)
        captions = run.model.generate(images, temperature=options.temperature, generator=generator)
        for path, ids in zip(options.images, captions):
            text = " ".join(vocab.decode(ids))
            print(f"{path}: {text}" if len(options.images) > 1 else text)
        return 0

    def captions(self, options: CaptionsDataConfig) -> int:
        from rnnlab.tasks.caption.data import generate, save_dataset

        if options.out is None:
            raise RnnlabError("rnnlab data captions needs --out DIR, the folder to write")
        if not Path(options.out).is_file():  # a file there: save_dataset names it
            check_writable(options.out, "--out")
        images, captions = generate(options.n, options.split, options.seed)
        out = save_dataset(images, captions, options.out)
        print(f"wrote {len(images)} images and {out}/captions.tsv, e.g. {' '.join(captions[0])!r}")
        return 0


TASK = CaptionTask()

__all__ = ["TASK", "CaptionConfig", "CaptionTask", "CaptionTaskConfig", "CaptionsDataConfig"]
