"""What the task commands share: default run lengths, the training run, batches, checkpoints.

Every ``rnnlab train TASK`` follows the same steps: read its data (the bundled set by default),
split it with a seed, build vocabularies, build the model from the shared model options, train
with the shared :class:`~rnnlab.train.trainer.Trainer`, then score the best checkpoint on the
held-out test split and write ``test_metrics.json`` beside the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

import torch
from torch import nn

from rnnlab.cli.common import prepare_out_dir, trainer_config_from_args
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import Checkpoint, load_model
from rnnlab.train.trainer import Trainer, TrainResult

T = TypeVar("T")


def add_split_options(parser: argparse.ArgumentParser, val: float = 0.1, test: float = 0.1) -> None:
    from rnnlab.cli.common import fraction, nonneg_int

    g = parser.add_argument_group("split")
    g.add_argument(
        "--val-fraction", type=fraction, default=val, help=f"validation part (default {val})"
    )
    g.add_argument(
        "--test-fraction", type=fraction, default=test, help=f"held-out test part (default {test})"
    )
    g.add_argument(
        "--split-seed",
        type=nonneg_int,
        default=0,
        help="seed of the split, kept apart from --seed so that runs share a test set (default 0)",
    )


def default_limits(args: argparse.Namespace, epochs: int, budget: float) -> dict[str, object]:
    """With no --epochs, --max-steps or --time-budget: ``epochs`` epochs, at most ``budget`` s."""
    if args.time_budget is None and args.max_steps is None and args.epochs is None:
        return {"max_epochs": epochs, "time_budget": budget}
    return {}


def batches_of(
    items: Sequence[T], batch_size: int, seed: int, collate: Callable[[list[T]], tuple]
) -> Callable[[int], list[tuple]]:
    """``batches(epoch)`` for the trainer: ``items`` shuffled by ``seed + epoch``, collated."""

    def batches(epoch: int) -> list[tuple]:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(items), generator=g).tolist()
        return [
            collate([items[i] for i in order[k : k + batch_size]])
            for k in range(0, len(items), batch_size)
        ]

    return batches


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for k in range(0, len(items), size):
        yield list(items[k : k + size])


def to_device(batch: tuple, device: torch.device) -> tuple:
    return tuple(b.to(device) if isinstance(b, torch.Tensor) else b for b in batch)


def mean_loss(
    model: nn.Module, batches: Sequence[tuple], weight: Callable[[tuple], int], device: torch.device
) -> float:
    """The mean of the model's loss over ``batches``, each weighted by ``weight(batch)``."""
    total, n = 0.0, 0
    for batch in batches:
        _, loss = model(*to_device(batch, device))
        w = weight(batch)
        total += float(loss) * w
        n += w
    return total / max(n, 1)


class TrainedRun(NamedTuple):
    """What :func:`run_training` returns: the trainer's result, the run directory, and the model
    of its best checkpoint (lowest validation loss), in eval mode."""

    result: TrainResult
    out: Path
    best: nn.Module


def describe_rnn(rnn: RecurrentConfig) -> str:
    """``"2x128 bidirectional gru"``: the recurrent part of a model, for the run's first line."""
    both = "bidirectional " if rnn.bidirectional else ""
    return f"{rnn.num_layers}x{rnn.hidden_size} {both}{rnn.cell}"


def run_training(
    args: argparse.Namespace,
    task: str,
    model: nn.Module,
    meta: dict,
    train: Sequence[T],
    collate: Callable[[list[T]], tuple],
    evaluate: Callable[[nn.Module], dict[str, float]],
    describe: str,
    limits: dict[str, object],
    loss_fn: Callable | None = None,
) -> TrainedRun | None:
    """Train on ``train`` (shuffled every epoch by ``--seed``, batches of ``--batch``) with the
    shared trainer; print what is trained and how it ended; load the best checkpoint.

    Returns None if training stopped on a NaN/Inf loss (reported; the last good checkpoint kept).
    """
    batches = batches_of(train, args.batch, args.seed, collate)
    config = trainer_config_from_args(args, **limits)
    out = prepare_out_dir(args, task)
    n_params = sum(p.numel() for p in model.parameters())
    limit = ", ".join(
        f"{name} {value}"
        for name, value in (
            ("time budget", f"{config.time_budget:g}s" if config.time_budget else None),
            ("max steps", config.max_steps),
            ("epochs", config.max_epochs),
        )
        if value
    )
    verb = "resuming" if args.resume else "training"
    print(
        f"{verb} {describe} ({n_params:,} parameters); {len(batches(0))} batches per epoch; "
        f"{limit}; -> {out}",
        file=sys.stderr,
    )
    trainer = Trainer(
        model, config, out, loss_fn=loss_fn, evaluate=evaluate, meta=meta, resume=args.resume
    )
    result = trainer.fit(batches)
    if result.stopped == "nan":
        print(f"rnnlab: error: {result.message}", file=sys.stderr)
        return None
    summary = f"done ({result.stopped}) after {result.steps} steps, {result.elapsed:.0f}s"
    if result.best_val_loss is not None:
        summary += f"; best validation loss {result.best_val_loss:.4f} at step {result.best_step}"
    print(summary, file=sys.stderr)
    device = next(model.parameters()).device
    best, _ = load_task_model(out, task, device)
    return TrainedRun(result, out, best)


def collated(items: Sequence[T], collate: Callable[[list[T]], tuple], size: int = 256) -> list:
    """``items`` as collated batches of ``size``, in order (for evaluation)."""
    return [collate(c) for c in chunks(items, size)]


def load_task_model(
    path: str | Path,
    task: str | tuple[str, ...],
    device: str | torch.device = "cpu",
    prefer: str = "best",
) -> tuple[nn.Module, Checkpoint]:
    """The model of checkpoint ``path`` (of a run directory: its ``prefer`` checkpoint, best or
    last), checking that it is ``task``."""
    model, ckpt = load_model(path, device=device, prefer=prefer)
    tasks = (task,) if isinstance(task, str) else task
    if ckpt.meta.get("task") not in tasks:
        raise RnnlabError(
            f"{ckpt.path} is a {ckpt.meta.get('task')!r} checkpoint, not {' or '.join(tasks)}"
        )
    return model, ckpt


def finish(
    out: Path,
    result: TrainResult,
    model: nn.Module,
    metrics: dict[str, float | int | str],
    lines: Sequence[str] = (),
) -> None:
    """Print the test results and write them to ``out/test_metrics.json``."""
    n_params = sum(p.numel() for p in model.parameters())
    record = {
        **metrics,
        "parameters": n_params,
        "train_seconds": round(result.elapsed, 1),
        "steps": result.steps,
        "best_val_loss": result.best_val_loss,
        "stopped": result.stopped,
    }
    (out / "test_metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    for line in lines:
        print(line)
    shown = ", ".join(
        f"{k} {v:.4f}" if isinstance(v, float) and math.isfinite(v) else f"{k} {v}"
        for k, v in metrics.items()
    )
    print(f"test: {shown}")
    print(f"results in {out}/test_metrics.json; checkpoints in {out}/best and {out}/last")


__all__ = [
    "TrainedRun",
    "add_split_options",
    "batches_of",
    "chunks",
    "collated",
    "default_limits",
    "describe_rnn",
    "finish",
    "load_task_model",
    "mean_loss",
    "run_training",
    "to_device",
]
