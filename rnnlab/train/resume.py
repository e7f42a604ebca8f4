"""Resuming a run exactly: the random generators' states (as tensors and JSON values, stored in a
checkpoint's training state) and the check that a run is resumed with the same model."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import _short


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


__all__ = ["check_same_meta", "rng_state", "set_rng_state"]
