"""The model-agnostic trainer shared by every task.

A loop that hides nothing: forward (through the task's ``loss_fn``), backward, clip, step, with
the learning rate a pure function of training progress. Around it: periodic validation, the best
checkpoint kept separately, early stopping, a wall-clock budget, a stop on NaN/Inf, and an exact
``resume`` (weights, optimizer, RNG, position in the epoch, the loss function's carried state).

Two promises hold under any failure:

* **No NaN/Inf reaches a checkpoint.** A non-finite loss or gradient norm stops training before
  the optimizer step; the weights and the validation loss are checked before ``best/`` or
  ``last/`` is written, and a non-finite one stops training instead. Both checkpoints keep their
  last good contents, and :attr:`TrainResult.message` names the step and the kept checkpoint.
* **The time budget includes evaluation.** Training stops when the time spent plus the duration
  of the last validation (before the first: :data:`EVAL_RESERVE` of the budget) would pass the
  budget, so that the final validation and checkpoint fit in it. Building the C++ kernels (first
  use) happens before the clock starts.

What a task provides:

* ``batches(epoch) -> Iterable[batch]``: the epoch's batches, a deterministic function of the
  epoch (seed any shuffling with it) so that a resumed run sees the same batches; with a
  ``len(batches)`` (batches per epoch), an epoch limit can set the schedule's length.
* ``loss_fn(model, batch) -> (loss, n_tokens)``: default ``output, loss = model(*batch)`` with
  ``n_tokens`` the batch size. A loss function that carries state across batches (the language
  model's truncated BPTT) exposes ``state_dict()`` / ``load_state_dict()`` (tensors and JSON
  values) and it is checkpointed with the run.
* ``evaluate(model) -> {"val_loss": ..., ...}``: called in eval mode under ``torch.no_grad()``.

Files in ``out_dir``: ``last/`` and ``best/`` checkpoints, ``metrics.csv`` (training loss, learning
rate, tokens/s), ``eval.csv`` (validation metrics), ``loss.png``, ``result.json`` (the
:class:`TrainResult`), and ``tensorboard/`` if asked.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError
from rnnlab.train import distributed
from rnnlab.train.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from rnnlab.train.config import OPTIMIZERS, SCHEDULES, TrainConfig, lr_at
from rnnlab.train.precision import autocast
from rnnlab.train.regularizers import NormStabilizer, StatePenalties
from rnnlab.train.resume import check_resumable, rng_state, set_rng_state
from rnnlab.train.runlog import RunLog, plot_loss_curves

if TYPE_CHECKING:
    from rnnlab.machine import ThreadPolicy

#: Before the first validation has been timed, the share of a time budget kept for the final one.
EVAL_RESERVE = 0.1
#: A validation longer than this many seconds says so on stderr when there is no progress bar.
SLOW_EVAL_S = 5.0


class NonFinite(Exception):
    """Raised inside :meth:`Trainer.fit` when a loss, gradient or weight is NaN/Inf."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"step {step}: {what}")
        self.step, self.what = step, what


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


class LossFn(Protocol):
    def __call__(self, model: nn.Module, batch: Any) -> tuple[Tensor, int]: ...


def default_loss_fn(model: nn.Module, batch: Any) -> tuple[Tensor, int]:
    """``output, loss = model(*batch)``; tokens = the batch size (first dim of the first input)."""
    batch = batch if isinstance(batch, (tuple, list)) else (batch,)
    _, loss = model(*batch)
    first = batch[0]
    n = first.shape[0] if isinstance(first, Tensor) and first.dim() else 1
    return loss, int(n)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple):
        return tuple(_to_device(b, device) for b in batch)
    if isinstance(batch, list):
        return [_to_device(b, device) for b in batch]
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    steps: int
    epochs_completed: int
    elapsed: float
    stopped: str  # "max_steps" | "max_epochs" | "time_budget" | "early_stopping" | "nan" | "done"
    best_val_loss: float | None = None
    best_step: int | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    train_loss: float | None = None
    tokens_per_s: float | None = None
    message: str = ""  # why training stopped, when it is an error (NaN/Inf)


class Trainer:
    """Trains ``model`` with ``config``; see the module docstring for the contract.

    Args:
        model: any ``nn.Module``, already on its device.
        config: a :class:`TrainConfig`.
        out_dir: where checkpoints, CSVs and plots go (None: nothing is written).
        loss_fn: ``loss_fn(model, batch) -> (loss, n_tokens)``; see :func:`default_loss_fn`.
        evaluate: ``evaluate(model) -> {"val_loss": ..., ...}`` (None: no validation; the last
            checkpoint is still written every ``eval_every`` steps).
        meta: JSON-serialisable, saved with every checkpoint (``task``, ``model_config``, ...).
        resume: continue the run in ``out_dir/last`` exactly where it stopped.
        identity: the keys of ``meta`` that must equal the checkpoint's for a resume (the
            model and its data; default: all of them).
        group: the process group of a distributed run (:func:`rnnlab.train.distributed.init`):
            the model is trained in DistributedDataParallel, ``batches`` must already be this
            rank's part (:func:`~rnnlab.train.distributed.shard_batches`), ``evaluate`` runs
            inside :func:`~rnnlab.train.distributed.evaluation`, and rank 0 alone writes.
        threads: a :class:`~rnnlab.machine.ThreadPolicy` updated after every step (the CPU
            threads follow the cores that other processes leave free).

    Example::

        trainer = Trainer(model, TrainConfig(max_steps=1000), Path("runs/x"), evaluate=val)
        result = trainer.fit(lambda epoch: loader(epoch))
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        out_dir: Path | str | None = None,
        loss_fn: LossFn | None = None,
        evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
        meta: dict | None = None,
        resume: bool = False,
        identity: Sequence[str] | None = None,
        group: distributed.Group | None = None,
        threads: ThreadPolicy | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.loss_fn = loss_fn or default_loss_fn
        self.evaluate = evaluate
        self.meta = dict(meta or {})
        self.resume = resume
        self.identity = tuple(identity) if identity is not None else None
        if resume and self.out_dir is None:
            raise RnnlabError("resume needs an output directory")
        self.device = next(model.parameters()).device
        self.group = group
        self.threads = threads
        self.main = group is None or group.main  # writes files, logs, shows progress
        # what the training forward runs through: DDP averages the gradients in backward
        self.net = group.wrap(model) if group is not None else model
        if config.compile:  # --compile: rnnlab's layers compile without graph breaks
            self.net = torch.compile(self.net, dynamic=True)
        self.autocast = autocast(self.device, config.precision)  # --precision
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, config)
        self.penalties: StatePenalties | None = None
        self.log = RunLog(None)
        # the run's position and record: all of it is checkpointed
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.elapsed = 0.0  # seconds of training and validation, across resumes
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.last_metrics: dict[str, float] = {}
        self.steps_per_epoch: int | None = None
        self.restored = False
        self.saved_step: int | None = None  # the step of the ``last/`` checkpoint on disk
        self.eval_seconds: float | None = None  # how long the last validation took
        self.failure: NonFinite | None = None
        self._bar: Any = None

    # -- progress and schedule ---------------------------------------------------------
    def progress(self) -> float | None:
        """Fraction of the run done: the largest of the step, epoch and time fractions."""
        c = self.config
        fractions = []
        if c.max_steps:
            fractions.append(self.step / c.max_steps)
        if c.max_epochs and self.steps_per_epoch:
            fractions.append(self.step / (c.max_epochs * self.steps_per_epoch))
        if c.time_budget:
            fractions.append(self.elapsed / c.time_budget)
        return max(fractions) if fractions else None

    def _check_horizon(self) -> None:
        c = self.config
        if c.schedule == "constant":
            return
        if not (c.max_steps or c.time_budget or (c.max_epochs and self.steps_per_epoch)):
            raise RnnlabError(
                f"schedule {c.schedule!r} needs a length to decay over: give max_steps, a time "
                "budget, or max_epochs with batches that have a len()"
            )

    def _stop_reason(self) -> str | None:
        c = self.config
        if self.group is not None and c.time_budget:  # every rank stops at the same step
            self.elapsed, seconds = distributed.broadcast(
                [self.elapsed, -1.0 if self.eval_seconds is None else self.eval_seconds]
            )
            self.eval_seconds = None if seconds < 0 else seconds
        if c.max_steps and self.step >= c.max_steps:
            return "max_steps"
        if c.time_budget and self.elapsed + self._eval_reserve() >= c.time_budget:
            return "time_budget"
        if c.max_epochs and self.epoch >= c.max_epochs:
            return "max_epochs"
        return None

    def _eval_reserve(self) -> float:
        """Seconds to keep for the final validation and checkpoint: the last one's duration,
        or :data:`EVAL_RESERVE` of the budget before the first has been timed."""
        if self.eval_seconds is not None:
            return self.eval_seconds
        if self.out_dir is None and self.evaluate is None:
            return 0.0
        return EVAL_RESERVE * (self.config.time_budget or 0.0)

    # -- state -------------------------------------------------------------------------
    def training_state(self) -> dict:
        """Everything besides the weights that an exact resume needs."""
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed": self.elapsed,
            "best_val": self.best_val,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "last_metrics": self.last_metrics,
            "train_config": self.config.to_meta(),
            "rng": rng_state(),
        }
        if hasattr(self.loss_fn, "state_dict"):
            state["loss_fn"] = self.loss_fn.state_dict()
        return state

    def _save(self, name: str, with_state: bool) -> None:
        """Write checkpoint ``name`` (rank 0; in a distributed run every rank calls this: the
        training state holds every rank's random generators and carried state)."""
        if self.out_dir is None:
            return
        if with_state:
            state, optimizer = self.training_state(), self.optimizer
            if self.group is not None:
                mine = {k: state[k] for k in ("rng", "loss_fn") if k in state}
                ranks = distributed.gather_objects(mine)
                state["world_size"] = self.group.world
                state["ranks"] = ranks[1:] if ranks is not None else []
        else:
            state, optimizer = {"step": self.step, "metrics": self.last_metrics}, None
        out = self.out_dir / name
        distributed.on_main(lambda: save_checkpoint(out, self.model, self.meta, state, optimizer))
        if with_state:
            self.saved_step = self.step

    def check_finite(self) -> None:
        """Raise :class:`NonFinite` if a weight is NaN/Inf (called before every checkpoint)."""
        for name, t in self.model.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise NonFinite(self.step, f"the weights are NaN/Inf ({name})")

    def restore(self) -> None:
        """Load the run in ``out_dir/last`` (weights, optimizer, position, RNG, the loss
        function's state), refusing a checkpoint whose model or optimizer differ. :meth:`fit`
        calls it when resuming, unless it was called already."""
        assert self.out_dir is not None
        out = self.out_dir
        ckpt = distributed.on_main(lambda: load_checkpoint(out, prefer="last"))  # rank 0 reads
        world = self.group.world if self.group is not None else 1
        check_resumable(ckpt, self.meta, self.identity, self.config, world)
        s = ckpt.training_state
        assert s is not None  # check_resumable refused a checkpoint without one
        try:
            self.model.load_state_dict(ckpt.state_dict)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise RnnlabError(f"cannot resume from {ckpt.path}: {first}") from None
        self.optimizer.load_state_dict(s["optimizer"])
        for key in ("step", "epoch", "batch_in_epoch", "elapsed", "best_val", "best_step"):
            setattr(self, key, s[key])
        self.bad_evals = s["bad_evals"]
        self.last_metrics = s["last_metrics"]
        mine = s if self.group is None or self.group.main else s["ranks"][self.group.rank - 1]
        if "loss_fn" in mine and hasattr(self.loss_fn, "load_state_dict"):
            self.loss_fn.load_state_dict(_to_device(mine["loss_fn"], self.device))
        set_rng_state(mine["rng"])
        self.saved_step = self.step
        self.restored = True
        if self.best_step == self.step and distributed.on_main(self._best_on_disk) != self.step:
            self._save("best", with_state=False)  # killed after saving last/, before best/

    def _best_on_disk(self) -> int | None:
        """The step of the ``best/`` checkpoint (None: none loads)."""
        assert self.out_dir is not None
        try:
            state = load_checkpoint(self.out_dir / "best").training_state or {}
        except RnnlabError:
            return None
        step = state.get("step")
        return step if isinstance(step, int) else None

    # -- one step, one validation ------------------------------------------------------
    def train_step(self, batch: Any) -> tuple[float, int, float | None]:
        """One optimizer step on ``batch``: (loss, tokens, grad norm).

        Raises:
            NonFinite: the loss or the gradient is NaN/Inf (the weights are left untouched).
        """
        c = self.config
        lr = lr_at(self.step, c, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            loss, n_tokens = self.loss_fn(self.net, _to_device(batch, self.device))
        total = loss
        if self.penalties is not None:
            penalty = self.penalties.penalty()
            if penalty is not None:
                total = loss + penalty
        loss_value = float(loss.detach())
        total_finite = math.isfinite(float(total.detach()))
        if self.group is not None:
            # the global batch's mean loss: this rank's loss weighted by its share of the
            # tokens (DDP then averages the gradients over the ranks); every rank learns here
            # whether any rank's loss is NaN/Inf, so that all of them stop at the same step
            weighted, tokens, bad = distributed.sum_all(
                [loss_value * n_tokens if total_finite else 0.0, n_tokens, not total_finite]
            )
            if bad:
                raise NonFinite(self.step + 1, "the loss is NaN/Inf on one of the processes")
            if tokens > 0:
                total = total * (self.group.world * n_tokens / tokens)
            loss_value, n_tokens = weighted / max(tokens, 1), int(tokens)
        if not total_finite:
            what = "the loss" if not math.isfinite(loss_value) else "the regularized loss"
            raise NonFinite(self.step + 1, f"{what} is NaN/Inf ({loss_value})")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        if c.clip_norm:
            grad_norm = float(nn.utils.clip_grad_norm_(self.params, c.clip_norm))
        else:  # nothing to clip, but a NaN/Inf gradient must still never reach the weights
            grad_norm = float(nn.utils.get_total_norm(grads)) if grads else 0.0
        if not math.isfinite(grad_norm):
            raise NonFinite(self.step + 1, f"the gradient norm is NaN/Inf ({grad_norm})")
        self.optimizer.step()
        self.step += 1
        return loss_value, n_tokens, grad_norm if c.clip_norm else None

    def validate(self) -> bool:
        """Validate, record, checkpoint (best and last); True if early stopping says stop.

        Raises:
            NonFinite: the weights or the validation loss are NaN/Inf (nothing is written).
        """
        start = time.perf_counter()
        self.check_finite()
        metrics: dict[str, float] = {}
        if self.evaluate is not None:
            was_training = self.model.training
            self.model.eval()
            self._show("validating")
            try:
                with torch.no_grad(), distributed.evaluation(), self.autocast:
                    metrics = {k: float(v) for k, v in self.evaluate(self.model).items()}
            finally:
                self._show("")
                self.model.train(was_training)
            if "val_loss" not in metrics:
                raise RnnlabError("evaluate() must return a dict with 'val_loss'")
            if not math.isfinite(metrics["val_loss"]):
                raise NonFinite(
                    self.step, f"the validation loss is NaN/Inf ({metrics['val_loss']})"
                )
        self.last_metrics = metrics
        improved = False
        if metrics:
            val = metrics["val_loss"]
            self.log.eval(
                {"step": self.step, "epoch": self.epoch, "elapsed_s": round(self.elapsed, 2)}
                | metrics
            )
            if self.best_val is None or val < self.best_val:
                self.best_val, self.best_step, self.bad_evals = val, self.step, 0
                improved = True
            else:
                self.bad_evals += 1
        # last/ first: a run killed between the two saves resumes, and restore() writes best/
        self._save("last", with_state=True)
        if improved:
            self._save("best", with_state=False)
        if self.main:
            self.log.plot()
        self.eval_seconds = time.perf_counter() - start
        slow = self.evaluate is not None and self.eval_seconds > SLOW_EVAL_S
        if self.main and self._bar is None and slow:
            print(
                f"rnnlab: validation at step {self.step} took {self.eval_seconds:.0f}s",
                file=sys.stderr,
            )
        patience = self.config.patience
        return bool(patience and self.bad_evals >= patience)

    def _show(self, what: str) -> None:
        """Say on the progress bar what the trainer is doing besides training steps."""
        if self._bar is not None:
            self._bar.set_description_str(what, refresh=True)

    # -- the loop ----------------------------------------------------------------------
    def fit(self, batches: Callable[[int], Iterable[Any]]) -> TrainResult:
        """Train until a limit (steps, epochs, time), early stopping, or a NaN/Inf loss."""
        c = self.config
        if not (c.max_steps or c.max_epochs or c.time_budget):
            raise RnnlabError("give a limit: max_steps, max_epochs or a time budget")
        if self.resume and not self.restored:
            self.restore()
        else:
            # rank r > 0 of a distributed run: its own dropout masks (rank 0 draws those of a
            # one-process run); the weights are rank 0's, broadcast by DDP
            seed = c.seed + (self.group.rank * 1_000_003 if self.group is not None else 0)
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        try:
            self.steps_per_epoch = len(batches)  # type: ignore[arg-type]
        except TypeError:
            self.steps_per_epoch = None
        self._check_horizon()
        _build_kernels(self.model)  # a first-use build is not charged to the time budget
        out_dir = self.out_dir if self.main else None
        self.log = RunLog(out_dir, self.step if self.resume else None, c.tensorboard)
        if c.norm_stabilizer or c.ar or c.tar:
            self.penalties = StatePenalties(self.model, c.norm_stabilizer, c.ar, c.tar)
        bar = self._bar = _progress_bar(c, self.step) if self.main else None
        meter = _Meter()
        stopped = self._stop_reason()
        evaluated_at = None
        first_step = self.step
        self.failure = None
        self.model.train()
        mark = time.perf_counter()
        try:
            while stopped is None:
                for i, batch in enumerate(batches(self.epoch)):
                    if i < self.batch_in_epoch:
                        mark = time.perf_counter()
                        continue  # resumed inside this epoch: skip what was already trained
                    outcome = self.train_step(batch)
                    if self.threads is not None:
                        self.threads.update()
                    self.batch_in_epoch = i + 1
                    now = time.perf_counter()
                    dt, mark = now - mark, now  # this step, its batch included
                    self.elapsed += dt
                    meter.add(outcome[0], outcome[1], dt)
                    if self.step % c.log_every == 0:
                        self._log_train(meter, outcome[2], bar)
                    if bar is not None:
                        bar.update(1)
                    stopped = self._stop_reason()
                    if self.step % c.eval_every == 0 or stopped is not None:
                        if self.validate():
                            stopped = stopped or "early_stopping"
                        evaluated_at = self.step
                        now = time.perf_counter()
                        self.elapsed += now - mark  # validation counts against the budget
                        mark = now
                        stopped = stopped or self._stop_reason()
                    if stopped is not None:
                        break
                else:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    stopped = self._stop_reason()
            if evaluated_at != self.step and self.step != first_step:
                # stopped at an epoch's end (epoch limit, time): the last steps still count
                self.validate()
                self.elapsed += time.perf_counter() - mark
        except NonFinite as failure:
            self.failure, stopped = failure, "nan"
        finally:
            if bar is not None:
                bar.close()
            self._bar = None
            if self.penalties is not None:
                self.penalties.remove()
                self.penalties = None
            self.log.close()
        return self._result(stopped, meter)

    def _log_train(self, meter: _Meter, grad_norm: float | None, bar: Any) -> None:
        row = {
            "step": self.step,
            "epoch": self.epoch,
            "elapsed_s": round(self.elapsed, 2),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": meter.window_loss(),
            "tokens_per_s": meter.window_rate(),
            "grad_norm": grad_norm if grad_norm is not None else "",
        }
        meter.reset_window()
        self.log.train(row)
        if bar is not None:
            shown = {"loss": f"{row['train_loss']:.3f}", "tok/s": f"{row['tokens_per_s']:.0f}"}
            if "val_loss" in self.last_metrics:
                shown["val"] = f"{self.last_metrics['val_loss']:.3f}"
            bar.set_postfix(shown, refresh=False)

    def _result(self, stopped: str | None, meter: _Meter) -> TrainResult:
        message = ""
        if stopped == "nan":
            failure = self.failure or NonFinite(self.step, "the loss or gradient is NaN/Inf")
            message = (
                f"training stopped at step {failure.step}: {failure.what} (try a lower learning "
                "rate or gradient clipping)"
            )
            if self.out_dir is not None:
                if self.saved_step is not None:
                    message += (
                        f"; the last good checkpoint (step {self.saved_step}) is kept in "
                        f"{self.out_dir / 'last'}"
                    )
                else:
                    message += "; no checkpoint was written"
        result = TrainResult(
            steps=self.step,
            epochs_completed=self.epoch,
            elapsed=self.elapsed,
            stopped=stopped or "done",
            best_val_loss=self.best_val,
            best_step=self.best_step,
            final_metrics=self.last_metrics,
            train_loss=meter.last_loss,
            tokens_per_s=meter.total_rate(),
            message=message,
        )
        if self.out_dir is not None and self.main:
            atomic_write_text(self.out_dir / "result.json", json.dumps(asdict(result), indent=2))
        return result


class _Meter:
    """Running sums for the logged window and the whole run (loss, tokens, seconds)."""

    def __init__(self) -> None:
        self.last_loss: float | None = None
        self.tokens = self.seconds = 0.0
        self.reset_window()

    def reset_window(self) -> None:
        self.w_loss, self.w_steps, self.w_tokens, self.w_seconds = 0.0, 0, 0, 0.0

    def add(self, loss: float, tokens: int, seconds: float) -> None:
        self.last_loss = loss
        self.w_loss += loss
        self.w_steps += 1
        self.w_tokens += tokens
        self.w_seconds += seconds
        self.tokens += tokens
        self.seconds += seconds

    def window_loss(self) -> float:
        return self.w_loss / max(self.w_steps, 1)

    def window_rate(self) -> float:
        return self.w_tokens / max(self.w_seconds, 1e-9)

    def total_rate(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None


def _build_kernels(model: nn.Module) -> None:
    """Build (first use) or load the C++ kernels now if a recurrent layer of ``model`` will run
    them (asking the layer, as its forward does: the standard LSTM runs torch's kernel)."""
    from rnnlab.core.layers import Recurrent

    for module in model.modules():
        params = list(module.parameters()) if isinstance(module, Recurrent) else []
        if params and params[0].device.type == "cpu":
            # only device, dtype and size matter (T = 2: a sequence, not a single step)
            probe = torch.zeros(2, 1, 1, dtype=params[0].dtype)
            # builds the kernels if it would choose them; an impossible explicit backend
            # raises, and the first forward says so
            with contextlib.suppress(RnnlabError):
                module.backend_for(probe)


def _progress_bar(config: TrainConfig, initial: int) -> Any:
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=config.max_steps,
        initial=initial,
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )


__all__ = [
    "EVAL_RESERVE",
    "OPTIMIZERS",
    "SCHEDULES",
    "NormStabilizer",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "default_loss_fn",
    "lr_at",
    "make_optimizer",
    "plot_loss_curves",
]
