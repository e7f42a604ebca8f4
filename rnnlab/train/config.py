"""How to train: :class:`TrainConfig`, the learning-rate schedule and the optimizer.

Kept apart from the loop in :mod:`rnnlab.train.trainer` so that a config can be built, validated and
stored with a checkpoint without importing the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from rnnlab.errors import RnnlabError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear", "step")


@dataclass(frozen=True)
class TrainConfig:
    """Everything about how to train (not what): stored with every checkpoint.

    Args:
        optimizer: "adam", "adamw" or "sgd".
        lr: peak learning rate.
        weight_decay: L2 (adam, sgd) or decoupled (adamw) weight decay.
        beta2: Adam's/AdamW's second-moment decay (0.99 adapts faster on short runs).
        momentum: SGD momentum.
        schedule: "constant", "cosine" (to ``min_lr``), "linear" (to ``min_lr``) or "step"
            (times ``step_gamma`` every ``step_every`` of the run), after ``warmup_steps``.
        warmup_steps: linear warm-up from 0 over this many steps.
        min_lr: the floor of the cosine and linear schedules.
        step_gamma, step_every: the step schedule's factor and period (a fraction of the run).
        max_steps: stop after this many optimizer steps (None: no limit).
        max_epochs: stop after this many epochs (None: no limit).
        time_budget: stop after this many seconds of training, counted across resumes (None: no
            limit). The schedules decay over the tightest of the three limits.
        clip_norm: clip the global gradient norm to this (Pascanu et al., 2013); None or 0: off.
        norm_stabilizer: beta of Krueger & Memisevic's (2016) penalty
            ``beta * mean_t (||h_t|| - ||h_{t-1}||)^2`` on every ``Recurrent`` output; 0: off.
        eval_every: validate every this many steps (and at the end).
        patience: stop after this many validations without improvement (None: never).
        seed: seeds torch, numpy and random at the start of a fresh run.
        log_every: write a row of ``metrics.csv`` every this many steps.
        tensorboard: also log to ``out_dir/tensorboard``.
        progress: show a tqdm progress bar.
    """

    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    beta2: float = 0.999
    momentum: float = 0.9
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr: float = 0.0
    step_gamma: float = 0.5
    step_every: float = 0.25
    max_steps: int | None = None
    max_epochs: int | None = None
    time_budget: float | None = None
    clip_norm: float | None = 5.0
    norm_stabilizer: float = 0.0
    eval_every: int = 200
    patience: int | None = None
    seed: int = 0
    log_every: int = 10
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise RnnlabError(f"unknown optimizer {self.optimizer!r}; choose {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise RnnlabError(f"unknown schedule {self.schedule!r}; choose {SCHEDULES}")
        positive = {"lr": self.lr, "eval_every": self.eval_every, "log_every": self.log_every}
        for name in ("max_steps", "max_epochs", "time_budget", "patience"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if not value > 0:
                raise RnnlabError(f"{name} must be > 0, got {value!r}")
        nonneg = {
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "warmup_steps": self.warmup_steps,
            "min_lr": self.min_lr,
            "norm_stabilizer": self.norm_stabilizer,
            "clip_norm": self.clip_norm or 0.0,
        }
        for name, value in nonneg.items():
            if not value >= 0:
                raise RnnlabError(f"{name} must be >= 0, got {value!r}")
        if not 0 < self.beta2 < 1:
            raise RnnlabError(f"beta2 must be in (0, 1), got {self.beta2!r}")
        if not 0 < self.step_gamma <= 1 or not 0 < self.step_every <= 1:
            raise RnnlabError("step_gamma and step_every must be in (0, 1]")


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


def make_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer``."""
    params = list(params)
    betas = (0.9, config.beta2)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=betas, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=config.lr, betas=betas, weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


__all__ = ["OPTIMIZERS", "SCHEDULES", "TrainConfig", "lr_at", "make_optimizer"]
