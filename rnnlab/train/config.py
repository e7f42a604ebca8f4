"""How to train: :class:`TrainConfig` and the learning-rate schedule, a pure function of progress.

Torch-free, so that a config can be built, validated, stored with a checkpoint and turned into
command-line flags without importing torch; the trainer (:mod:`rnnlab.train.trainer`) builds the
optimizer from it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rnnlab.config import Check, Config, fraction, non_negative, option, positive
from rnnlab.errors import RnnlabError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "step")
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


#: ``--precision``: fp32, or bf16 autocast (see docs/SCALING.md for what runs in which)
PRECISIONS = ("fp32", "bf16")

#: (0, 1]: the step schedule's factor and period
_UP_TO_ONE = Check(lambda v: 0 < v <= 1, "in (0, 1]")
#: a seed torch.manual_seed takes
SEED = Check(lambda v: 0 <= v < 2**63, "in [0, 2**63)")
#: a learning rate within float32's range (a larger one overflows inside the optimizer)
_LR = Check(lambda v: 0 < v <= 1e38, "in (0, 1e38]")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Training: how to train (not what); stored with every checkpoint.

    The schedules decay over the tightest of the run's limits (``max_steps``, ``max_epochs``,
    ``time_budget``); giving any limit on the command line or in a config file replaces the
    default limits.
    """

    title = "training"

    batch_size: int = option(
        32, check=positive, aliases=("--batch",), help="batch size (of the whole run: under "
        "torchrun each process trains on its part)"
    )  # fmt: skip
    optimizer: str = option("adam", choices=OPTIMIZERS, help="the optimizer")
    lr: float = option(2e-3, check=_LR, help="peak learning rate")
    weight_decay: float = option(
        0.0, check=non_negative, help="L2 (adam, sgd) or decoupled (adamw) weight decay"
    )
    beta2: float = option(
        0.999,
        check=fraction,
        help="Adam/AdamW second-moment decay (0.99 adapts faster on short runs)",
    )
    momentum: float = option(0.9, check=non_negative, help="SGD momentum")
    schedule: str = option(
        "constant",
        choices=SCHEDULES,
        help="learning-rate schedule after the warm-up: cosine and linear decay to --min-lr, "
        "step multiplies by --step-gamma every --step-every of the run",
    )
    warmup_steps: int = option(
        0, check=non_negative, aliases=("--warmup",), help="linear warm-up steps from 0"
    )
    min_lr: float = option(0.0, check=non_negative, help="floor of the cosine/linear schedules")
    step_gamma: float = option(
        0.5,
        check=_UP_TO_ONE,
        help="factor of the step schedule",
    )
    step_every: float = option(
        0.25,
        check=_UP_TO_ONE,
        help="period of the step schedule, a fraction of the run",
    )
    max_steps: int | None = option(
        None, check=positive, group="limit", help="stop after this many optimizer steps"
    )
    max_epochs: int | None = option(
        None,
        check=positive,
        group="limit",
        aliases=("--epochs",),
        help="stop after this many epochs",
    )
    time_budget: float | None = option(
        None,
        check=positive,
        group="limit",
        parse=parse_duration,
        metavar="DURATION",
        help="stop after this much training time (counted across resumes), e.g. 90s, 10m, 1h",
    )
    clip_norm: float | None = option(
        5.0,
        check=non_negative,
        aliases=("--clip",),
        help="clip the global gradient norm to this (Pascanu et al. 2013); 0 = off",
    )
    norm_stabilizer: float = option(
        0.0,
        check=non_negative,
        metavar="BETA",
        help="Krueger & Memisevic's (2016) penalty beta * mean_t (||h_t|| - ||h_{t-1}||)^2 on "
        "every recurrent layer's outputs; 0 = off",
    )
    ar: float = option(
        0.0,
        check=non_negative,
        metavar="ALPHA",
        help="activation regularisation alpha * mean(h_t^2) on every recurrent layer's output "
        "(Merity et al. 2018); 0 = off",
    )
    tar: float = option(
        0.0,
        check=non_negative,
        metavar="BETA",
        help="temporal activation regularisation beta * mean((h_t - h_{t-1})^2) on every "
        "recurrent layer's output before its output dropout (Merity et al. 2018); 0 = off",
    )
    eval_every: int = option(200, check=positive, help="validate and checkpoint every N steps")
    patience: int | None = option(
        None, check=positive, help="early stopping after N validations without improvement"
    )
    seed: int = option(
        0,
        check=SEED,
        help="seeds torch, numpy and random at the start of a fresh run",
    )
    precision: str = option(
        "fp32", choices=PRECISIONS, help="bf16: forward passes under torch.autocast with "
        "bfloat16 (matrix products in bf16, the recurrent kernels and the losses in fp32)"
    )  # fmt: skip
    compile: bool = option(
        False, help="run the training forward and backward through torch.compile (dynamic "
        "shapes; the first step pays the compilation; as fast as eager for the LM on the CPU: "
        "docs/PERFORMANCE.md)"
    )  # fmt: skip
    log_every: int = option(10, check=positive, help="write a row of metrics.csv every N steps")
    tensorboard: bool = option(False, help="also log to RUN/tensorboard")
    progress: bool = option(True, help="show a progress bar")

    def limited(self) -> bool:
        """Whether the run has a length (steps, epochs or time)."""
        return bool(self.max_steps or self.max_epochs or self.time_budget)

    def describe_limits(self) -> str:
        """``"time budget 180s, epochs 12"``: the run's limits, for its first line."""
        parts = [
            ("time budget", f"{self.time_budget:g}s" if self.time_budget else None),
            ("max steps", self.max_steps),
            ("epochs", self.max_epochs),
        ]
        return ", ".join(f"{name} {value}" for name, value in parts if value)


def lr_at(step: int, config: TrainConfig, progress: float | None = None) -> float:
    """The learning rate of optimizer step ``step`` (0-based): a pure function.

    Args:
        step: the number of optimizer steps taken so far.
        config: the schedule's parameters.
        progress: the fraction of the run done, in [0, 1]; by default ``step / max_steps``
            (0 when there is no ``max_steps``). The trainer passes the largest of the step,
            epoch and time fractions.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if progress is None:
        progress = step / config.max_steps if config.max_steps else 0.0
    p = min(max(progress, 0.0), 1.0)
    lo, hi = config.min_lr, config.lr
    if config.schedule == "cosine":
        return lo + (hi - lo) * 0.5 * (1.0 + math.cos(math.pi * p))
    if config.schedule == "linear":
        return hi + (lo - hi) * p
    if config.schedule == "step":
        return hi * config.step_gamma ** math.floor(p / config.step_every + 1e-9)
    return hi


__all__ = [
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "SEED",
    "TrainConfig",
    "lr_at",
    "parse_duration",
]
