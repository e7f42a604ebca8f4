"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

A checkpoint is a directory::

    path/
      model.safetensors      the model's weights (tied weights stored once)
      training.safetensors   tensors of the training state (optimizer moments, RNG states, ...)
      training.json          the rest of the training state, tensors replaced by references
      meta.json              format version, checksums, and the caller's meta (task, config, vocab)

``meta.json`` is written last and holds the SHA-256 of the other files, so a checkpoint is complete
exactly when its ``meta.json`` is there and every checksum matches. A save writes a sibling
``.NAME.tmp`` directory, then swaps it in (``path`` -> ``.NAME.old``, tmp -> ``path``); a
process killed at any point leaves either the previous or the new checkpoint loadable
(:func:`load_checkpoint` falls back to ``.NAME.old`` in the instant between the two renames).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from rnnlab.errors import RnnlabError

#: Version of the on-disk layout; bumped on incompatible changes.
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
TRAINING_TENSORS = "training.safetensors"
TRAINING_JSON = "training.json"
META_FILE = "meta.json"


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    Attributes:
        path: the directory that was read.
        state_dict: the model's weights (tied weights restored under every name).
        meta: the caller's meta dict (task, model config, vocabulary, ...).
        training_state: the training state with its tensors restored, or None if the
            checkpoint has none.
        rnnlab_version: the version of rnnlab that wrote it.
    """

    path: Path
    state_dict: dict[str, Tensor]
    meta: dict
    training_state: dict | None = field(default=None)
    rnnlab_version: str | None = None


# -- atomic file writes ------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync, and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- JSON + tensors ----------------------------------------------------------------------------
def _flatten(obj: Any, tensors: dict[str, Tensor], prefix: str) -> Any:
    """JSON-able copy of ``obj`` with tensors moved into ``tensors`` and replaced by references.

    Dicts with non-string keys (an optimizer's ``state`` is keyed by int) become
    ``{"__items__": [[key, value], ...]}`` so that their keys survive JSON.
    """
    if isinstance(obj, Tensor):
        key = prefix or "tensor"
        while key in tensors:
            key += "_"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {
                k: _flatten(v, tensors, f"{prefix}.{k}" if prefix else k) for k, v in obj.items()
            }
        return {
            "__items__": [
                [k, _flatten(v, tensors, f"{prefix}.{k}" if prefix else str(k))]
                for k, v in obj.items()
            ]
        }
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint (at {prefix!r})")


def _unflatten(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _dedup_tied(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Store tensors that share memory (tied weights) once; return (tensors, alias -> name)."""
    tensors: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in state_dict.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().cpu().contiguous()
    return tensors, aliases


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- save ------------------------------------------------------------------------------------
def save_checkpoint(
    path: Path | str,
    model: nn.Module,
    meta: dict,
    training_state: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Save ``model`` (and optionally a training state and optimizer) as checkpoint ``path``.

    Args:
        path: the checkpoint directory; replaced atomically if it exists.
        model: its ``state_dict()`` goes to ``model.safetensors``.
        meta: JSON-serialisable description, e.g. ``{"task": "lm", "model_config": {...}}``.
        training_state: nested dicts/lists of JSON values and tensors (step, RNG, ...).
        optimizer: its ``state_dict()`` is stored as ``training_state["optimizer"]``.

    Returns:
        ``path``.
    """
    path = Path(path)
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"checkpoint meta must be JSON-serialisable: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    old = path.with_name(f".{path.name}.old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    weights, aliases = _dedup_tied(model.state_dict())
    blob = st_save(weights)
    atomic_write_bytes(tmp / MODEL_FILE, blob)
    checksums = {MODEL_FILE: _sha256(blob)}

    if training_state is not None or optimizer is not None:
        state = dict(training_state or {})
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        tensors: dict[str, Tensor] = {}
        flat = _flatten(state, tensors, "")
        blob = st_save(tensors)
        atomic_write_bytes(tmp / TRAINING_TENSORS, blob)
        text = json.dumps(flat)
        atomic_write_text(tmp / TRAINING_JSON, text)
        checksums[TRAINING_TENSORS] = _sha256(blob)
        checksums[TRAINING_JSON] = _sha256(text.encode())

    from rnnlab import __version__

    header = {
        "format_version": FORMAT_VERSION,
        "rnnlab_version": __version__,
        "sha256": checksums,
        "aliases": aliases,
    }
    # meta.json last: its presence marks a complete checkpoint.
    atomic_write_text(
        tmp / META_FILE, f'{{"checkpoint": {json.dumps(header)}, "meta": {meta_json}}}'
    )
    _fsync_dir(tmp)

    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old)
    return path


# -- load ------------------------------------------------------------------------------------
def resolve_checkpoint(path: Path | str, prefer: str = "best") -> Path:
    """The checkpoint directory meant by ``path``: a checkpoint, or a run directory holding
    ``best/`` and ``last/`` (``prefer`` picks which; the other is the fallback)."""
    path = Path(path)
    if (path / META_FILE).exists():
        return path
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and (old / META_FILE).exists():
        return old  # killed between the two renames of a save: the previous checkpoint
    for name in (prefer, "last" if prefer == "best" else "best"):
        sub = path / name
        if (sub / META_FILE).exists() or (
            not sub.exists() and (path / f".{name}.old" / META_FILE).exists()
        ):
            return resolve_checkpoint(sub, prefer)
    if not path.exists():
        raise RnnlabError(f"no checkpoint at {path}: no such file or directory")
    if not path.is_dir():
        raise RnnlabError(f"{path} is not a checkpoint (expected a directory with {META_FILE})")
    raise RnnlabError(f"{path} holds no checkpoint ({META_FILE} not found, nor best/ or last/)")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RnnlabError(
            f"checkpoint {path.parent} is incomplete: {path.name} is missing"
        ) from None


def load_checkpoint(path: Path | str, prefer: str = "best") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (or a run directory, see
    :func:`resolve_checkpoint`).

    Raises:
        RnnlabError: missing, truncated, corrupted, or from an incompatible format version.
    """
    path = resolve_checkpoint(path, prefer)
    try:
        doc = json.loads(_read(path / META_FILE).decode("utf-8"))
        header, meta = doc["checkpoint"], doc["meta"]
        version = header["format_version"]
        checksums = header["sha256"]
        aliases = header.get("aliases", {})
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise RnnlabError(f"checkpoint {path} is corrupted: {META_FILE} is not valid") from None
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RnnlabError(
            f"checkpoint {path} has format version {version!r}, newer than this rnnlab reads "
            f"({FORMAT_VERSION}); upgrade rnnlab (saved by rnnlab {header.get('rnnlab_version')})"
        )

    def checked(name: str) -> bytes:
        data = _read(path / name)
        if _sha256(data) != checksums.get(name):
            raise RnnlabError(
                f"checkpoint {path} is corrupted or truncated: {name} fails its checksum"
            )
        return data

    try:
        state_dict = st_load(checked(MODEL_FILE))
        for alias, name in aliases.items():
            state_dict[alias] = state_dict[name]
        training_state = None
        if TRAINING_JSON in checksums:
            tensors = st_load(checked(TRAINING_TENSORS))
            flat = json.loads(checked(TRAINING_JSON).decode("utf-8"))
            training_state = _unflatten(flat, tensors)
    except (SafetensorError, json.JSONDecodeError, UnicodeDecodeError, KeyError) as exc:
        raise RnnlabError(f"checkpoint {path} is corrupted: {exc}") from None
    version = header.get("rnnlab_version")
    return Checkpoint(
        path, state_dict, meta, training_state, str(version) if version is not None else None
    )


# -- resuming: the RNG streams and the model's identity -------------------------------------
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
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    random.setstate(_from_json(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_same_meta",
    "load_checkpoint",
    "resolve_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
