"""The generic runner: trains any task through the shared trainer, and loads any task's run.

``rnnlab train TASK`` is :func:`train`: read the task's data, build its model, write the
resolved config (``RUN/config.json``, so that ``--config RUN/config.json`` repeats the run), train
with :class:`~rnnlab.train.trainer.Trainer`, reload the best checkpoint and let the task score it
on its test split (``RUN/test_metrics.json``). :func:`load_run` reads back any task's checkpoint
as a :class:`Run`: the task, its model (eval mode), vocabularies and config.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnlab.config import Check, Config, option
from rnnlab.configfile import write_config_file
from rnnlab.data.vocab import Vocab
from rnnlab.errors import RnnlabError
from rnnlab.train.config import PRECISIONS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rnnlab.tasks.base import Task
    from rnnlab.train.checkpoint import Checkpoint

#: the meta keys that must match for a run to be resumed (the model and its data)
IDENTITY = ("task", "model_config", "vocabs", "data")

#: a seed a torch.Generator takes (``manual_seed`` overflows at 2**63)
#: the most CPU threads ``--threads`` may ask for (torch's own limit is a C int)
MAX_THREADS = 1024
THREADS = Check(lambda v: 1 <= v <= MAX_THREADS, f"in [1, {MAX_THREADS}]")


@dataclass(frozen=True)
class RunConfig(Config):
    """Run: where the run goes, and the machine it runs on (not stored with the run's options)."""

    title = "run"

    out: str | None = option(
        None, metavar="DIR", help="run directory for checkpoints, metrics and plots (default: "
        "the first free runs/TASK, runs/TASK-2, ...)"
    )  # fmt: skip
    resume: bool = option(
        False, help="continue the run in --out exactly where it stopped (its config.json is the "
        "starting point; options given now change it)"
    )  # fmt: skip
    overwrite: bool = option(False, help="start afresh even if --out holds a run (deletes it)")
    device: str = option("auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    threads: int | None = option(
        None, check=THREADS, help="torch CPU threads (default: the cores that other processes "
        "leave free, checked every few seconds)"
    )  # fmt: skip


@dataclass(frozen=True)
class UseConfig(Config):
    """Machine: where a command that runs a trained model runs."""

    title = "machine"

    device: str = option("auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    threads: int | None = option(
        None, check=THREADS, help="torch CPU threads (default: the cores that other processes "
        "leave free)"
    )  # fmt: skip
    precision: str = option(
        "fp32", choices=PRECISIONS, help="bf16: run the model under torch.autocast with bfloat16"
    )


@dataclass
class Run:
    """A loaded checkpoint: what every "use" command works with.

    Attributes:
        task: the task object.
        model: the model, on its device, in eval mode.
        vocabs: its vocabularies by name.
        config: the task config it was trained with (None for an rnnlab 0.1.0 checkpoint).
        meta: the checkpoint's meta (upgraded to the current layout).
        checkpoint: the checkpoint itself (path, training state).
    """

    task: Task
    model: nn.Module
    vocabs: dict[str, Vocab]
    config: Any
    meta: dict[str, Any]
    checkpoint: Checkpoint

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


# -- machine and run directory ------------------------------------------------------------------
def resolve_device(name: str = "auto", threads: int | None = None) -> torch.device:
    """``--device``: "auto" is cuda when available, else cpu; an unavailable device is an error.

    Also applies ``--threads`` (torch's CPU threads): with one thread per core on a machine whose
    cores are busy, OpenMP workers wait on each other and training can run many times slower.
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise RnnlabError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RnnlabError(f"--device {name}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise RnnlabError(f"--device {name}: this machine has {count} CUDA device(s)")
    return device


def check_writable(path: str | Path, what: str, directory: bool = True) -> Path:
    """Refuse, before any work is done, an output that cannot be written: ``path`` (a directory,
    or with ``directory=False`` a file) under a file, or in a directory that is read-only or
    not writable. ``what`` names the option in the one-line error (``"--out"``).

    Nothing is created; returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise RnnlabError(f"{what} {path} is a file, not a directory")
    if not directory and path.is_dir():
        raise RnnlabError(f"{what} {path} is a directory, not a file")
    existing = path if directory else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RnnlabError(f"{what} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only(existing) else "not writable"
        raise RnnlabError(f"{what} {path}: cannot write in {existing} ({why})")
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def prepare_out_dir(run: RunConfig, task: str) -> Path:
    """The run directory: ``--out``, or the first free ``runs/TASK``, ``runs/TASK-2``, ...

    Never deletes a run by accident: an explicit ``--out`` holding a run needs ``--resume`` or
    ``--overwrite``.
    """
    from rnnlab.train.checkpoint import resolve_checkpoint

    if run.resume and run.overwrite:
        raise RnnlabError("--resume and --overwrite contradict each other: choose one")
    if run.out is None:
        if run.resume:
            raise RnnlabError("--resume needs --out DIR, the run to continue")
        n, out = 1, Path("runs") / task
        while out.exists():
            n += 1
            out = Path("runs") / f"{task}-{n}"
        return out
    out = check_writable(run.out, "--out")
    if run.resume:
        resolve_checkpoint(out, prefer="last")  # a clear error if there is nothing to resume
        return out
    holds_run = out.exists() and any(
        (out / name).exists() for name in ("last", "best", "metrics.csv")
    )
    if holds_run:
        if not run.overwrite:
            raise RnnlabError(
                f"{out} already holds a run: add --resume to continue it, --overwrite to "
                "replace it, or choose another --out"
            )
        shutil.rmtree(out)
    return out


def saved_config(out: str | None) -> dict[str, Any]:
    """The options of the run in ``out`` (its ``config.json``), for ``--resume``; {} if none."""
    path = Path(out) / "config.json" if out else None
    if path is None or not path.is_file():
        return {}
    from rnnlab.configfile import read_config_file

    data = read_config_file(path)
    data.pop("task", None)
    return data


# -- training -----------------------------------------------------------------------------------
def count_parameters(model: nn.Module) -> int:
    """Number of parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def check_model_size(model: nn.Module, what: str) -> None:
    """Refuse a model above rnnlab's parameter limit (:data:`~rnnlab.core.registry.
    MAX_PARAMETERS`); build it on the meta device first, so that nothing is allocated."""
    from rnnlab.core.registry import check_parameter_count

    check_parameter_count(count_parameters(model), what)


def train(task: Task, config: Any, run: RunConfig) -> int:
    """Train ``task`` with ``config``; print how it went; score the best checkpoint.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the processes train one model together
    (:mod:`rnnlab.train.distributed`): rank 0 chooses and writes the run directory, prints, and
    scores the best checkpoint; the other ranks return 0 after training.
    """
    from rnnlab.train import distributed

    group = distributed.init(run.device)
    try:
        return _train(task, config, run, group)
    except RuntimeError as exc:
        if group is None or not distributed.is_collective_failure(exc):
            raise
        raise distributed.lost_peer(exc) from None
    finally:
        distributed.close()


def _train(task: Task, config: Any, run: RunConfig, group: Any) -> int:
    import torch

    from rnnlab.machine import choose_threads
    from rnnlab.train import distributed
    from rnnlab.train.precision import autocast
    from rnnlab.train.trainer import Trainer

    device = group.device if group is not None else resolve_device(run.device)
    threads = choose_threads(run.threads)
    out = distributed.on_main(lambda: prepare_out_dir(run, task.name))  # one directory, rank 0's
    data = task.load(config)
    with torch.device("meta"):  # its size, before anything is allocated
        check_model_size(task.build_model(config, data), f"the {task.name} model")
    torch.manual_seed(config.train.seed)
    model = task.build_model(config, data).to(device)
    meta = {
        "task": task.name,
        "model_config": model.config.to_meta(),
        "vocabs": {name: v.to_meta() for name, v in data.vocabs.items()},
        "data": {"source": data.source, **data.provenance},
        "config": config.to_meta(),
    }
    batches = distributed.shard_batches(task.batches(config, data), group)
    trainer = Trainer(
        model,
        config.train,
        out,
        loss_fn=task.loss_fn(config, data),
        evaluate=lambda m: task.evaluate(m, data, config),
        meta=meta,
        resume=run.resume,
        identity=IDENTITY,
        group=group,
        threads=threads,
    )
    if run.resume:
        trainer.restore()  # refuses a run of other options before its config.json changes
    verb = "resuming" if run.resume else "training"  # after the checks: an error is one line
    distributed.print_main(
        f"{verb} {task.describe(config, data)} ({count_parameters(model):,} parameters)"
        f"{distributed.describe(group)}; {len(batches)} batches per epoch; "
        f"{config.train.describe_limits()}; -> {out}",
        file=sys.stderr,
    )

    def write_config() -> None:
        out.mkdir(parents=True, exist_ok=True)
        write_config_file(out / "config.json", config, task=task.name)

    distributed.on_main(write_config)
    result = trainer.fit(batches)
    if result.stopped == "nan":
        distributed.print_main(f"rnnlab: error: {result.message}", file=sys.stderr)
        return 1
    if group is not None and not group.main:
        return 0  # rank 0 reports and scores the best checkpoint
    summary = f"done ({result.stopped}) after {result.steps} steps, {result.elapsed:.0f}s"
    if result.tokens_per_s:
        summary += f", {result.tokens_per_s:,.0f} {data.unit or task.unit}/s"
    if result.best_val_loss is not None:
        summary += f"; best validation loss {result.best_val_loss:.4f} at step {result.best_step}"
    print(summary, file=sys.stderr)
    best = load_run(out, device)
    with autocast(device, config.train.precision):
        report = task.test(best, data, config)
    if report is not None:
        record = {
            **report.metrics,
            "parameters": count_parameters(best.model),
            "train_seconds": round(result.elapsed, 1),
            "steps": result.steps,
            "best_val_loss": result.best_val_loss,
            "stopped": result.stopped,
        }
        path = out / "test_metrics.json"
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for line in report.lines:
            print(line)
        shown = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) and math.isfinite(v) else f"{k} {v}"
            for k, v in report.metrics.items()
        )
        print(f"test: {shown}")
        print(f"results in {path}; checkpoints in {out}/best and {out}/last")
    else:
        print(
            f"checkpoints in {out}/best and {out}/last; curves in {out}/loss.png", file=sys.stderr
        )
    return 0


# -- loading ------------------------------------------------------------------------------------
def load_run(
    path: str | Path,
    device: str | torch.device = "cpu",
    prefer: str = "best",
    task: str | tuple[str, ...] | None = None,
) -> Run:
    """The model of checkpoint ``path`` (of a run directory: its ``prefer`` checkpoint, best or
    last), rebuilt by its task, on ``device``, in eval mode.

    Args:
        task: the task (or tasks) the checkpoint must be of (None: any).

    Raises:
        RnnlabError: missing or corrupted checkpoint, unknown task, another task than ``task``,
            weights that do not fit the stored config.
    """
    import torch

    from rnnlab.tasks import get_task
    from rnnlab.tasks.compat import upgrade_meta
    from rnnlab.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, prefer)
    meta = upgrade_meta(ckpt.meta, ckpt.path)
    wanted = (task,) if isinstance(task, str) else task
    if wanted is not None and meta["task"] not in wanted:
        raise RnnlabError(
            f"{ckpt.path} is a {meta['task']!r} checkpoint, not {' or '.join(wanted)}"
        )
    owner = get_task(meta["task"])
    with torch.device("meta"):  # a hostile config asking for a huge model: refused, not built
        check_model_size(owner.model_from_meta(meta["model_config"]), f"{ckpt.path}'s model")
    model = owner.model_from_meta(meta["model_config"])
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in lines[:3])
        raise RnnlabError(
            f"checkpoint {ckpt.path} does not match its model config: {detail}"
        ) from None
    vocabs = {name: Vocab.from_meta(v) for name, v in meta.get("vocabs", {}).items()}
    config = None
    if meta.get("config") is not None:
        config = owner.config.from_meta(meta["config"], f"{ckpt.path} config")
    return Run(owner, model.to(device).eval(), vocabs, config, meta, ckpt)


__all__ = [
    "IDENTITY",
    "MAX_THREADS",
    "THREADS",
    "Run",
    "RunConfig",
    "UseConfig",
    "check_model_size",
    "check_writable",
    "count_parameters",
    "load_run",
    "prepare_out_dir",
    "resolve_device",
    "saved_config",
    "train",
]
