"""Options shared by every ``rnnlab train TASK`` command: the model's cell and sizes, the trainer.

Each task calls :func:`add_model_options` and :func:`add_trainer_options` with its own defaults,
then :func:`trainer_config_from_args` and :func:`recurrent_config_from_args`. Out-of-range
numbers are rejected by argparse with a one-line message naming the option.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

import torch

from rnnlab.core.registry import CELL_HELP, CELLS, RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.train.config import OPTIMIZERS, SCHEDULES, TrainConfig

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"1.5m"``, ``"10m"``, ``"1h"``, ``"1h30m"``."""
    s = str(text).strip().lower()
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)\s*(h|min|m|s|)", s)
    if not s or "".join(n + u for n, u in parts) != s.replace(" ", ""):
        raise RnnlabError(f"invalid duration {text!r}: expected e.g. 90, 90s, 10m, 1h or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds > 0:
        raise RnnlabError(f"invalid duration {text!r}: must be more than 0 seconds")
    return seconds


def _number(
    kind: Callable[[str], float],
    low: float | None,
    high: float | None,
    what: str,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """An argparse ``type`` that parses ``kind`` and checks a range, with a one-line error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, 1, None, "a positive integer")
nonneg_int = _number(int, 0, None, "an integer >= 0")
positive_float = _number(float, 0, None, "a number > 0", low_open=True)
nonneg_float = _number(float, 0, None, "a number >= 0")
probability = _number(float, 0, 1, "a probability in [0, 1)", high_open=True)
fraction = _number(float, 0, 1, "a fraction in (0, 1)", low_open=True, high_open=True)


def duration(text: str) -> float:
    """argparse ``type`` for ``--time-budget``."""
    try:
        return parse_duration(text)
    except RnnlabError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report bad arguments in one line (no usage block), exit code 2."""

    def error(message: str) -> NoReturn:
        parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def add_model_options(
    parser: argparse.ArgumentParser,
    defaults: Mapping[str, object] | None = None,
    bidirectional: bool = False,
) -> None:
    """--cell, --layer-norm, --layers, --hidden, --dropout, --forget-bias (and --bidirectional)."""
    d = {"cell": "lstm", "layers": 1, "hidden": 128, "dropout": 0.0, **(defaults or {})}
    g = parser.add_argument_group("model")
    cells = ", ".join(f"{name} ({CELL_HELP.get(name, '')})" for name in CELLS)
    g.add_argument(
        "--cell",
        choices=list(CELLS),
        default=d["cell"],
        metavar="CELL",
        help=f"recurrent cell (default {d['cell']}): {cells}",
    )
    g.add_argument("--layer-norm", action="store_true", help="layer-normalised cells (Ba 2016)")
    g.add_argument(
        "--layers",
        type=positive_int,
        default=d["layers"],
        help=f"stacked recurrent layers (default {d['layers']})",
    )
    g.add_argument(
        "--hidden",
        type=positive_int,
        default=d["hidden"],
        help=f"hidden units per layer (default {d['hidden']})",
    )
    g.add_argument(
        "--dropout",
        type=probability,
        default=d["dropout"],
        help=f"dropout between layers (default {d['dropout']})",
    )
    g.add_argument(
        "--forget-bias",
        type=float,
        default=d.get("forget_bias"),
        help="initial LSTM forget-gate bias (default: the cell's, 1.0)",
    )
    if bidirectional:
        g.add_argument("--bidirectional", action="store_true", help="also run right to left")


def recurrent_config_from_args(args: argparse.Namespace, input_size: int) -> RecurrentConfig:
    """The :class:`~rnnlab.core.registry.RecurrentConfig` described by the model options."""
    return RecurrentConfig(
        cell=args.cell,
        input_size=input_size,
        hidden_size=args.hidden,
        num_layers=args.layers,
        bidirectional=getattr(args, "bidirectional", False),
        dropout=args.dropout,
        layer_norm=args.layer_norm,
        forget_bias=args.forget_bias,
    )


def add_trainer_options(
    parser: argparse.ArgumentParser, defaults: Mapping[str, object] | None = None
) -> None:
    """The trainer's options (see :class:`~rnnlab.train.trainer.TrainConfig`), --batch, --out and
    --resume; ``defaults`` overrides any default by its option's dest name (e.g. ``lr``)."""
    base = TrainConfig()
    d = {
        "batch": 32,
        "optimizer": base.optimizer,
        "lr": base.lr,
        "weight_decay": base.weight_decay,
        "beta2": base.beta2,
        "schedule": base.schedule,
        "warmup": base.warmup_steps,
        "min_lr": base.min_lr,
        "clip": base.clip_norm,
        "norm_stabilizer": base.norm_stabilizer,
        "time_budget": None,
        "max_steps": None,
        "epochs": None,
        "eval_every": base.eval_every,
        "patience": None,
        "seed": base.seed,
        "out": None,
        **(defaults or {}),
    }
    g = parser.add_argument_group("training")
    g.add_argument(
        "--batch", type=positive_int, default=d["batch"], help=f"batch size (default {d['batch']})"
    )
    g.add_argument(
        "--optimizer", choices=OPTIMIZERS, default=d["optimizer"], help=f"default {d['optimizer']}"
    )
    g.add_argument(
        "--lr", type=positive_float, default=d["lr"], help=f"peak learning rate (default {d['lr']})"
    )
    g.add_argument(
        "--weight-decay",
        type=nonneg_float,
        default=d["weight_decay"],
        help=f"default {d['weight_decay']}",
    )
    g.add_argument(
        "--beta2",
        type=float,
        default=d["beta2"],
        help=f"Adam/AdamW second-moment decay, in (0, 1) (default {d['beta2']})",
    )
    g.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=d["schedule"],
        help=f"learning-rate schedule over the run's length (default {d['schedule']})",
    )
    g.add_argument(
        "--warmup",
        type=nonneg_int,
        default=d["warmup"],
        help=f"linear warm-up steps (default {d['warmup']})",
    )
    g.add_argument(
        "--min-lr",
        type=nonneg_float,
        default=d["min_lr"],
        help=f"floor of the cosine/linear schedules (default {d['min_lr']})",
    )
    g.add_argument(
        "--clip",
        type=nonneg_float,
        default=d["clip"],
        help=f"gradient-norm clipping, 0 = off (default {d['clip']})",
    )
    g.add_argument(
        "--norm-stabilizer",
        type=nonneg_float,
        default=d["norm_stabilizer"],
        metavar="BETA",
        help="Krueger & Memisevic's penalty on changes of ||h_t|| (default 0 = off)",
    )
    g.add_argument(
        "--time-budget",
        type=duration,
        default=d["time_budget"],
        metavar="DURATION",
        help="stop after this much training time, e.g. 90s, 10m, 1h",
    )
    g.add_argument(
        "--max-steps",
        type=positive_int,
        default=d["max_steps"],
        help="stop after this many optimizer steps",
    )
    g.add_argument(
        "--epochs", type=positive_int, default=d["epochs"], help="stop after this many epochs"
    )
    g.add_argument(
        "--eval-every",
        type=positive_int,
        default=d["eval_every"],
        help=f"validate and checkpoint every N steps (default {d['eval_every']})",
    )
    g.add_argument(
        "--patience",
        type=positive_int,
        default=d["patience"],
        help="early stopping after N validations without improvement",
    )
    g.add_argument("--seed", type=nonneg_int, default=d["seed"], help=f"default {d['seed']}")
    g.add_argument(
        "--out",
        default=d["out"],
        metavar="DIR",
        help="run directory for checkpoints, metrics and plots",
    )
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out exactly where it stopped"
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even if --out already holds a run (deletes it)",
    )
    g.add_argument("--tensorboard", action="store_true", help="also log to DIR/tensorboard")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    g.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: torch's, one per core; use 1 on a busy machine)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def trainer_config_from_args(args: argparse.Namespace, **overrides: object) -> TrainConfig:
    """The :class:`~rnnlab.train.trainer.TrainConfig` described by the trainer options."""
    values = {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "beta2": args.beta2,
        "schedule": args.schedule,
        "warmup_steps": args.warmup,
        "min_lr": args.min_lr,
        "clip_norm": args.clip or None,
        "norm_stabilizer": args.norm_stabilizer,
        "time_budget": args.time_budget,
        "max_steps": args.max_steps,
        "max_epochs": args.epochs,
        "eval_every": args.eval_every,
        "patience": args.patience,
        "seed": args.seed,
        "tensorboard": args.tensorboard,
        "progress": not args.no_progress,
        **overrides,
    }
    return TrainConfig(**values)


def resolve_device(args: argparse.Namespace) -> torch.device:
    """``--device``: "auto" is cuda when available, else cpu; an unavailable device is an error.

    Also applies ``--threads`` (torch's CPU threads) where the command has it: with one thread per
    core on a machine whose cores are busy, OpenMP workers wait on each other and training can
    run many times slower than with one thread.
    """
    threads = getattr(args, "threads", None)
    if threads is not None:
        torch.set_num_threads(threads)
    name = getattr(args, "device", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RnnlabError(f"unknown device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RnnlabError(f"--device {name}: CUDA is not available on this machine")
    return device


def prepare_out_dir(args: argparse.Namespace, task: str) -> Path:
    """The run directory: ``--out``, or the first free ``runs/TASK``, ``runs/TASK-2``, ...

    Never deletes a run by accident: an explicit ``--out`` holding a run needs ``--resume``
    or ``--overwrite``.
    """
    from rnnlab.train.checkpoint import resolve_checkpoint

    if args.resume and args.overwrite:
        raise RnnlabError("--resume and --overwrite contradict each other: choose one")
    if args.out is None:
        if args.resume:
            raise RnnlabError("--resume needs --out DIR, the run to continue")
        n, out = 1, Path("runs") / task
        while out.exists():
            n += 1
            out = Path("runs") / f"{task}-{n}"
        return out
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise RnnlabError(f"--out {out} is a file, not a directory")
    if args.resume:
        resolve_checkpoint(out, prefer="last")  # a clear error if there is nothing to resume
        return out
    holds_run = out.exists() and any(
        (out / name).exists() for name in ("last", "best", "metrics.csv")
    )
    if holds_run:
        if not args.overwrite:
            raise RnnlabError(
                f"{out} already holds a run: add --resume to continue it, --overwrite to "
                "replace it, or choose another --out"
            )
        shutil.rmtree(out)
    return out


__all__ = [
    "add_model_options",
    "add_trainer_options",
    "duration",
    "fraction",
    "nonneg_float",
    "nonneg_int",
    "one_line_errors",
    "parse_duration",
    "positive_float",
    "positive_int",
    "prepare_out_dir",
    "probability",
    "recurrent_config_from_args",
    "resolve_device",
    "trainer_config_from_args",
]
