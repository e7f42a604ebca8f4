"""Resuming a run exactly: the random generators' states (as tensors and JSON values, stored in a
checkpoint's training state) and the checks that refuse to resume a checkpoint into a run that
differs from it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import _short

if TYPE_CHECKING:
    from rnnlab.train.checkpoint import Checkpoint
    from rnnlab.train.config import TrainConfig


def rng_state() -> dict:
    """The torch, numpy, random (and CUDA) generator states, as tensors and JSON values."""
    name, keys, *rest = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.copy()), *rest],
        "python": _to_json(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured.

    Raises:
        RnnlabError: ``state`` is not what :func:`rng_state` returns (a damaged checkpoint).
    """
    try:
        torch.set_rng_state(state["torch"])
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy(), *rest))
        random.setstate(_from_json(state["python"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise RnnlabError(f"the random-generator state is not valid ({detail})") from None


def _to_json(obj: Any) -> Any:
    return [_to_json(o) for o in obj] if isinstance(obj, (tuple, list)) else obj


def _from_json(obj: Any) -> Any:
    return tuple(_from_json(o) for o in obj) if isinstance(obj, list) else obj


def check_same_meta(saved: dict, current: dict, where: Path) -> None:
    """Refuse to resume when the model (task, config, vocabulary) differs from the checkpoint's."""
    diffs: list[str] = []

    def compare(a: Any, b: Any, path: str) -> None:
        if a == b:
            return
        if isinstance(a, dict) and isinstance(b, dict):  # down to the leaves that differ
            for k in sorted(set(a) | set(b)):
                compare(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        else:
            diffs.append(f"{path}: {_short(a)} in checkpoint, {_short(b)} now")

    compare(saved, current, "")
    if diffs:
        raise RnnlabError(
            f"cannot resume {where}: the model options differ from the checkpoint's ("
            + "; ".join(diffs[:3])
            + ("; ..." if len(diffs) > 3 else "")
            + ")"
        )


def check_resumable(
    ckpt: Checkpoint,
    meta: dict,
    identity: Sequence[str] | None,
    config: TrainConfig,
    world: int,
) -> None:
    """Refuse to resume ``ckpt`` (a run's ``last/`` checkpoint) when it holds no training state,
    or into a run whose model, optimizer, batch size or number of processes differ from its own.

    ``identity`` names the keys of ``meta`` that must match (None: the whole of it); a
    checkpoint written before ``meta`` held the vocabularies is refused with the version that
    wrote it.

    Raises:
        RnnlabError: one line that says what differs and how to resume (or to start anew).
    """
    s = ckpt.training_state
    if s is None or "rng" not in s:
        raise RnnlabError(f"cannot resume from {ckpt.path}: it holds no training state")
    saved, current = ckpt.meta, meta
    if identity is not None:
        if not isinstance(saved, dict) or "vocabs" not in saved:
            version = ckpt.rnnlab_version or "an older version"
            raise RnnlabError(
                f"cannot resume {ckpt.path}: it was written by rnnlab {version}, which this "
                "rnnlab does not resume (its checkpoints still load for sampling and "
                "evaluation); start a new run"
            )
        saved = {k: saved.get(k) for k in identity}
        current = {k: current.get(k) for k in identity}
    check_same_meta(saved, current, ckpt.path)
    train_config = s.get("train_config")
    train_config = train_config if isinstance(train_config, dict) else {}
    optimizer = train_config.get("optimizer")
    if optimizer != config.optimizer:
        raise RnnlabError(
            f"cannot resume {ckpt.path} with optimizer {config.optimizer!r}: it was "
            f"trained with {optimizer!r} (its state would not carry over)"
        )
    batch = train_config.get("batch_size")
    if batch is not None and batch != config.batch_size:
        raise RnnlabError(
            f"cannot resume {ckpt.path} with --batch (batch_size) {config.batch_size}: "
            f"it was trained with {batch} (the batches and the carried state depend on it); "
            f"resume with --batch {batch}, or start a new run"
        )
    processes = s.get("world_size", 1)
    if processes != world:
        raise RnnlabError(
            f"cannot resume {ckpt.path} on {world} process(es): it was trained on {processes} "
            "(each holds its own part of the streams and random generators); resume with "
            f"torchrun --nproc_per_node={processes}"
            if isinstance(processes, int) and processes > 1
            else f"cannot resume {ckpt.path} on {world} processes: it was trained on one; "
            "resume it without torchrun"
        )


__all__ = ["check_resumable", "check_same_meta", "rng_state", "set_rng_state"]
