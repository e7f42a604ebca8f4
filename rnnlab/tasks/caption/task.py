"""``rnnlab train caption``, ``rnnlab caption`` and ``rnnlab data captions``: image captioning.

With no ``--data``: rnnlab's synthetic captioning set (:mod:`rnnlab.tasks.caption.data`), generated
on the fly: training images, an in-distribution test split, and a held-out split whose every image
shows a colour-and-shape combination never seen in training. Metrics: exact caption match and
BLEU on both test splits. ``--data`` takes a folder written by ``rnnlab data captions``
(``captions.tsv`` and its PNG images).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rnnlab.cli.common import (
    add_model_options,
    add_trainer_options,
    nonneg_int,
    positive_int,
    resolve_device,
)
from rnnlab.cli.task_common import (
    chunks,
    collated,
    default_limits,
    describe_rnn,
    finish,
    load_task_model,
    mean_loss,
    run_training,
)
from rnnlab.errors import RnnlabError

MODEL_DEFAULTS = {"cell": "lstm", "layers": 1, "hidden": 128, "dropout": 0.0}
TRAIN_DEFAULTS = {"batch": 64, "lr": 2e-3, "schedule": "cosine", "eval_every": 250}
EPOCHS, BUDGET = 15, 240.0
START, END = "<start>", "<end>"


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    p = train.add_parser(
        "caption",
        help="one-to-many: caption images (default: synthetic shapes)",
        description="Train a CNN-encoder / recurrent-decoder captioner (Vinyals et al. 2015). "
        "With no arguments: the synthetic shapes set (generated), up to "
        f"{EPOCHS} epochs or {BUDGET:g}s; exact match and BLEU on an in-distribution test "
        "split and on held-out attribute combinations.",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="DIR",
        help="folder with captions.tsv (file<TAB>caption) and its images (default: synthetic)",
    )
    g.add_argument(
        "--train-size",
        type=positive_int,
        default=8000,
        help="synthetic: training images (8000)",
    )
    g.add_argument("--test-size", type=positive_int, default=1000, help="synthetic: per split")
    g.add_argument(
        "--split-seed", type=nonneg_int, default=0, help="seed of the data/split (default 0)"
    )
    add_model_options(p, MODEL_DEFAULTS)
    m = p.add_argument_group("captioner")
    m.add_argument("--embedding", type=positive_int, default=32, help="word embedding (32)")
    m.add_argument("--features", type=positive_int, default=128, help="image feature size (128)")
    add_trainer_options(p, TRAIN_DEFAULTS)
    p.set_defaults(func=train_caption)

    q = commands.add_parser(
        "caption",
        help="caption images with a captioning checkpoint",
        description="e.g. `rnnlab caption runs/caption image.png` (images as made by "
        "`rnnlab data captions`).",
    )
    q.add_argument("checkpoint", metavar="CKPT", help="a checkpoint or run directory")
    q.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG)")
    q.add_argument(
        "--temperature", type=float, default=0.0, help="0 = the most likely word (default)"
    )
    q.add_argument("--seed", type=nonneg_int, default=None, help="for reproducible sampling")
    q.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    q.set_defaults(func=caption_cmd)


def register_data(converters: argparse._SubParsersAction) -> None:
    from rnnlab.tasks.caption.data import SPLITS

    d = converters.add_parser(
        "captions",
        help="write synthetic captioning images (PNG) and captions.tsv",
        description="Images of 1-3 coloured shapes and their captions; split heldout uses "
        "colour-and-shape combinations never in train.",
    )
    d.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    d.add_argument("-n", type=positive_int, default=100, help="number of images (100)")
    d.add_argument("--split", choices=SPLITS, default="test", help="which split (test)")
    d.add_argument("--seed", type=nonneg_int, default=0, help="default 0")
    d.set_defaults(func=captions_cmd)


def captions_cmd(args: argparse.Namespace) -> int:
    from rnnlab.tasks.caption.data import generate, save_dataset

    images, captions = generate(args.n, args.split, args.seed)
    out = save_dataset(images, captions, args.out)
    print(f"wrote {len(images)} images and {out}/captions.tsv, e.g. {' '.join(captions[0])!r}")
    return 0


def _tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _splits(args: argparse.Namespace) -> dict[str, tuple[np.ndarray, list[list[str]]]]:
    from rnnlab.tasks.caption.data import generate, load_dataset

    if args.data is None:
        seed = args.split_seed
        return {
            "train": generate(args.train_size, "train", seed),
            "val": generate(min(500, args.test_size), "test", seed + 1),
            "test": generate(args.test_size, "test", seed),
            "heldout": generate(args.test_size, "heldout", seed),
        }
    images, captions = load_dataset(args.data)
    order = np.random.default_rng(args.split_seed).permutation(len(images))
    n = max(1, len(images) // 10)
    if len(images) < 3 * n or len(images) < 3:
        raise RnnlabError(f"{args.data}: {len(images)} images are too few to split")
    parts = {"val": order[:n], "test": order[n : 2 * n], "train": order[2 * n :]}
    return {k: (images[idx], [captions[i] for i in idx]) for k, idx in parts.items()}


def train_caption(args: argparse.Namespace) -> int:
    from rnnlab.cli.common import recurrent_config_from_args
    from rnnlab.data.vocab import Vocab, pad_batch
    from rnnlab.tasks.caption.data import IMAGE_SIZE
    from rnnlab.tasks.caption.model import Captioner, CaptionerConfig
    from rnnlab.tasks.metrics import bleu, exact_match

    splits = _splits(args)
    train_images, train_captions = splits["train"]
    vocab = Vocab.build(train_captions, sos=START, eos=END)
    items = {k: list(zip(_tensor(im), caps)) for k, (im, caps) in splits.items()}

    def collate(batch: list) -> tuple:
        images = torch.stack([im for im, _ in batch])
        inputs = pad_batch([vocab.encode(c, sos=True) for _, c in batch])
        targets, _ = pad_batch([vocab.encode(c, eos=True) for _, c in batch])
        return images, *inputs, targets

    device = resolve_device(args)
    rnn = recurrent_config_from_args(args, input_size=args.embedding)
    config = CaptionerConfig(
        len(vocab),
        image_size=IMAGE_SIZE if args.data is None else int(train_images.shape[1]),
        feature_dim=args.features,
        embed_dim=args.embedding,
        rnn=rnn,
        dropout=args.dropout,
        sos_id=vocab.sos_id,
        eos_id=vocab.eos_id,
    )
    torch.manual_seed(args.seed)
    model = Captioner(config).to(device)
    meta = {**model.to_meta(), "vocab": vocab.to_meta(), "data": {"path": args.data or "synthetic"}}
    val_batches = collated(items["val"], collate)

    def n_words(batch: tuple) -> int:
        return int(batch[2].sum())

    def captions_of(model: Captioner, split: list) -> list[list[str]]:
        out = []
        for chunk in chunks(split, 256):
            images = torch.stack([im for im, _ in chunk]).to(device)
            out += [vocab.decode(ids) for ids in model.generate(images)]
        return out

    def evaluate(model: Captioner) -> dict[str, float]:
        hyps = captions_of(model, items["val"])
        refs = [c for _, c in items["val"]]
        return {
            "val_loss": mean_loss(model, val_batches, n_words, device),
            "val_exact": exact_match(hyps, refs),
        }

    def tokens_loss(model: Captioner, batch: tuple) -> tuple[torch.Tensor, int]:
        _, loss = model(*batch)
        return loss, n_words(batch)

    describe = (
        f"a CNN + {describe_rnn(rnn)} captioner on "
        f"{len(items['train'])} train / {len(items['val'])} validation images "
        f"({'synthetic' if args.data is None else args.data}), {len(vocab)} words"
    )
    run = run_training(
        args,
        "caption",
        model,
        meta,
        items["train"],
        collate,
        evaluate,
        describe,
        default_limits(args, EPOCHS, BUDGET),
        loss_fn=tokens_loss,
    )
    if run is None:
        return 1
    result, out, best = run
    metrics: dict[str, float | int] = {}
    lines = []
    for split in [s for s in ("test", "heldout") if s in items]:
        hyps = captions_of(best, items[split])
        refs = [c for _, c in items[split]]
        metrics[f"{split}_exact"] = exact_match(hyps, refs)
        metrics[f"{split}_bleu"] = bleu(hyps, refs)
        lines += [
            f"  [{split}] {' '.join(h)}   (truth: {' '.join(r)})" for h, r in zip(hyps[:4], refs)
        ]
    finish(out, result, best, metrics, ["examples:", *lines])
    return 0


def caption_cmd(args: argparse.Namespace) -> int:
    from rnnlab.data.vocab import Vocab
    from rnnlab.tasks.caption.data import load_image

    model, ckpt = load_task_model(args.checkpoint, "caption", args.device)
    vocab = Vocab.from_meta(ckpt.meta["vocab"])
    size = model.config.image_size
    images = _tensor(np.stack([load_image(path, size) for path in args.images])).to(args.device)
    generator = torch.Generator(device=args.device)
    if args.seed is not None:
        generator.manual_seed(args.seed)
    else:
        generator.seed()
    if args.temperature < 0:
        raise RnnlabError(f"--temperature must be >= 0, got {args.temperature}")
    captions = model.generate(images, temperature=args.temperature, generator=generator)
    for path, ids in zip(args.images, captions):
        text = " ".join(vocab.decode(ids))
        print(f"{path}: {text}" if len(args.images) > 1 else text)
    return 0


__all__ = ["register", "register_data"]
