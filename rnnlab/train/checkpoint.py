"""Checkpoints: safetensors for tensors, JSON for everything else, never pickle.

A checkpoint is a directory::

    path/
      model.safetensors      the model's weights (tied weights stored once)
      training.safetensors   tensors of the training state (optimizer moments, RNG states, ...)
      training.json          the rest of the training state, tensors replaced by references
      meta.json              format version, checksums, and the caller's meta (task, config, vocab)

``meta.json`` is written last and holds the SHA-256 of the other files, so a checkpoint is complete
exactly when its ``meta.json`` is there and every checksum matches.

A save survives being killed at any point, any number of times in a row. It writes the new
checkpoint into a fresh sibling ``.NAME.rnnlab-new-<random>`` (created exclusively, so it never
reuses a user's directory), then moves ``path`` aside to ``.NAME.rnnlab-old-<random>`` and the new
one into ``path``, then deletes the old one (``meta.json`` first, so a half-deleted directory is
never taken for a checkpoint). ``path`` only ever appears complete, and while it is missing the
moved-aside previous checkpoint is complete: :func:`resolve_checkpoint` falls back to it, and the
next save moves it back before doing anything else, then deletes every stale temporary.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
CHECKPOINT_FILES = frozenset({MODEL_FILE, TRAINING_TENSORS, TRAINING_JSON, META_FILE})
#: JSON files larger than this are refused unread (a real meta.json is kilobytes to megabytes).
MAX_JSON_BYTES = 256 * 2**20
_WRITE_CHUNK = 2**24
#: Test hook: seconds to sleep between the steps of a save (each file written, each rename), so
#: that a kill harness (benchmarks/kill_harness.py) lands kills inside checkpoint writes.
STEP_DELAY_ENV = "RNNLAB_TEST_SAVE_STEP_DELAY"
# sibling temporaries of checkpoint NAME: ours, and those of rnnlab <= 0.2 (".NAME.tmp/.old")
_TEMP_SUFFIX = re.compile(r"rnnlab-(new|old)-[0-9a-f]{12}|tmp|old")
# names a temporary directory may hold: checkpoint files and rnnlab <= 0.2's ".FILE.tmp-PID"
_TEMP_CONTENT = re.compile(
    "|".join(re.escape(n) for n in sorted(CHECKPOINT_FILES))
    + "|"
    + "|".join(rf"\.{re.escape(n)}\.tmp-\d+" for n in sorted(CHECKPOINT_FILES))
)


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


# -- file-system errors --------------------------------------------------------------------
_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "not writable (permission denied)",
    errno.EPERM: "not writable (operation not permitted)",
    errno.EROFS: "not writable (read-only file system)",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "is a directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EFBIG: "file too large for this file system",
    errno.EIO: "input/output error",
}


def _reason(exc: OSError) -> str:
    """A short, one-line reason for ``exc`` (``disk full``, ``not writable ...``)."""
    reason = _REASONS.get(exc.errno) or exc.strerror or type(exc).__name__
    return " ".join(str(reason).split())


# -- atomic file writes ------------------------------------------------------------------------
def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist), write ``data``, fsync."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:_WRITE_CHUNK]) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync, and ``os.replace``.

    Raises:
        RnnlabError: the file cannot be written (disk full, not writable, ...); ``path`` is
            then unchanged and no temporary file is left behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        try:
            _write_file(tmp, data)
            os.replace(tmp, path)
        except OSError:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise RnnlabError(f"cannot write {path}: {_reason(exc)}") from None


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


class _Corrupt(Exception):
    """Raised inside the loader; turned into an RnnlabError naming the checkpoint."""


class _Newer(Exception):
    """A checkpoint from a newer rnnlab (not corrupted: say so differently)."""


#: JSON values that can be dict keys in ``{"__items__": [[key, value], ...]}``.
_KEY_TYPES = (str, int, float, bool, type(None))


def _unflatten(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`_flatten`; raises :class:`_Corrupt` on anything it did not write."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            key = obj["__tensor__"]
            if not isinstance(key, str) or key not in tensors:
                raise _Corrupt(f"{TRAINING_JSON} refers to a missing tensor {_short(key)}")
            return tensors[key]
        if set(obj) == {"__items__"}:
            items = obj["__items__"]
            if not isinstance(items, list) or not all(
                isinstance(i, list) and len(i) == 2 and isinstance(i[0], _KEY_TYPES) for i in items
            ):
                raise _Corrupt(
                    f"{TRAINING_JSON} has an __items__ that is not a list of [key, value]"
                )
            return {k: _unflatten(v, tensors) for k, v in items}
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

    Raises:
        RnnlabError: the checkpoint cannot be written (disk full, not writable, a file in the
            way, ...). The previous checkpoint at ``path`` is then intact and no temporary file
            or directory is left behind.
    """
    path = Path(path)
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise TypeError(f"checkpoint meta must be JSON-serialisable: {exc}") from None
    # Everything is serialised in memory first: a failure there touches no file.
    weights, aliases = _dedup_tied(model.state_dict())
    files = {MODEL_FILE: st_save(weights)}
    if training_state is not None or optimizer is not None:
        state = dict(training_state or {})
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
        tensors: dict[str, Tensor] = {}
        flat = _flatten(state, tensors, "")
        files[TRAINING_TENSORS] = st_save(tensors)
        files[TRAINING_JSON] = json.dumps(flat).encode()

    from rnnlab import __version__

    header = {
        "format_version": FORMAT_VERSION,
        "rnnlab_version": __version__,
        "sha256": {name: _sha256(data) for name, data in files.items()},
        "aliases": aliases,
    }
    # meta.json last: its presence marks a complete checkpoint.
    files[META_FILE] = f'{{"checkpoint": {json.dumps(header)}, "meta": {meta_json}}}'.encode()
    try:
        _install(path, files)
    except OSError as exc:
        kept = "; the previous checkpoint is kept" if _committed(path) is not None else ""
        raise RnnlabError(f"cannot save checkpoint {path}: {_reason(exc)}{kept}") from None
    return path


def _pause() -> None:
    """Between two steps of a save: sleeps for :data:`STEP_DELAY_ENV` seconds, if set."""
    try:
        delay = float(os.environ.get(STEP_DELAY_ENV) or 0.0)
    except ValueError:
        return
    if delay > 0:
        time.sleep(delay)


def _install(path: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (``meta.json`` last) as checkpoint ``path``; see the module docstring."""
    parent = path.parent
    os.makedirs(parent, exist_ok=True)
    if os.path.lexists(path) and not _replaceable(path):
        raise RnnlabError(
            f"cannot save checkpoint {path}: it exists and is not a checkpoint (refusing to "
            "replace it)"
        )
    if not os.path.lexists(path):
        previous = _committed(path)
        if previous is not None:  # killed between the two renames: put it back first
            os.replace(previous, path)
    for stale, _ in _temporaries(path):
        _remove_checkpoint_dir(stale)

    new: Path | None = parent / f".{path.name}.rnnlab-new-{secrets.token_hex(6)}"
    aside: Path | None = None
    try:
        os.mkdir(new)  # exclusive: never reuses an existing directory
        for name, data in files.items():  # meta.json is the last key
            _pause()
            _write_file(new / name, data)
        _fsync_dir(new)
        if os.path.lexists(path):
            aside = parent / f".{path.name}.rnnlab-old-{secrets.token_hex(6)}"
            _pause()
            os.replace(path, aside)
        _pause()
        os.replace(new, path)
        new = None
        _fsync_dir(parent)
    except OSError:  # disk full, not writable: undo (a kill does not get here; the next save does)
        with contextlib.suppress(OSError):
            if aside is not None and not os.path.lexists(path):
                os.replace(aside, path)
        with contextlib.suppress(OSError):
            if new is not None and os.path.lexists(new):
                _remove_checkpoint_dir(new, force=True)
        raise
    if aside is not None:  # the new checkpoint is in place; on failure the next save retries
        _pause()
        with contextlib.suppress(OSError):
            _remove_checkpoint_dir(aside)


def _replaceable(path: Path) -> bool:
    """Whether ``path`` may be replaced: a directory holding only checkpoint files."""
    if not path.is_dir() or path.is_symlink():
        return False
    return all(_TEMP_CONTENT.fullmatch(name) for name in os.listdir(path))


def _temporaries(path: Path) -> list[tuple[Path, str]]:
    """The sibling temporaries of checkpoint ``path`` that saves left: ``(dir, "new"|"old")``."""
    prefix = f".{path.name}."
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found = []
    for name in sorted(names):
        match = _TEMP_SUFFIX.fullmatch(name[len(prefix) :]) if name.startswith(prefix) else None
        if match and (path.parent / name).is_dir() and not (path.parent / name).is_symlink():
            kind = match.group(1) or ("new" if name.endswith(".tmp") else "old")
            found.append((path.parent / name, kind))
    return found


def _remove_checkpoint_dir(directory: Path, force: bool = False) -> None:
    """Delete a checkpoint (temporary) directory, ``meta.json`` first so that a directory
    half-deleted by a kill is never taken for a checkpoint. Directories holding anything but
    checkpoint files are left alone (unless ``force``: one this save created)."""
    names = os.listdir(directory)
    if not force and not all(_TEMP_CONTENT.fullmatch(n) for n in names):
        return
    for name in sorted(names, key=lambda n: n != META_FILE):
        os.unlink(directory / name)
    os.rmdir(directory)


def _committed(path: Path) -> Path | None:
    """Where the committed checkpoint ``path`` is: ``path`` itself, or, while a save that was
    killed between its two renames left ``path`` missing, the previous checkpoint moved aside."""
    if (path / META_FILE).is_file():
        return path
    if os.path.lexists(path):
        return None
    aside = [d for d, kind in _temporaries(path) if kind == "old" and (d / META_FILE).is_file()]
    # one at most when saves follow the protocol; else the most recently written
    return max(aside, key=lambda d: (d / META_FILE).stat().st_mtime_ns, default=None)


# -- load ------------------------------------------------------------------------------------
def resolve_checkpoint(path: Path | str, prefer: str = "best") -> Path:
    """The checkpoint directory meant by ``path``: a checkpoint, or a run directory holding
    ``best/`` and ``last/`` (``prefer`` picks which; the other is the fallback). A checkpoint
    whose save was killed between its two renames resolves to the previous one, moved aside."""
    path = Path(path)
    for candidate in (path, path / prefer, path / ("last" if prefer == "best" else "best")):
        found = _committed(candidate)
        if found is not None:
            return found
    if not os.path.lexists(path):
        raise RnnlabError(f"no checkpoint at {path}: no such file or directory")
    if not path.is_dir():
        raise RnnlabError(f"{path} is not a checkpoint (expected a directory with {META_FILE})")
    raise RnnlabError(f"{path} holds no checkpoint ({META_FILE} not found, nor best/ or last/)")


def _read(path: Path, limit: int | None = None) -> bytes:
    """The bytes of regular file ``path`` (never a FIFO or device: those could hang)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _Corrupt(f"{path.name} is not a regular file")
        if limit is not None and info.st_size > limit:
            raise _Corrupt(f"{path.name} is {info.st_size} bytes, more than {limit} allowed")
        with open(path, "rb") as f:
            return f.read(info.st_size if limit is None else limit + 1)
    except FileNotFoundError:
        raise _Corrupt(f"{path.name} is missing (incomplete)") from None
    except OSError as exc:
        raise _Corrupt(f"cannot read {path.name}: {_reason(exc)}") from None


def _looks_like_pickle(data: bytes) -> bool:
    """A pickle (protocol 2 to 5) or a ``torch.save`` zip archive."""
    return data.startswith(b"PK\x03\x04") or (
        data[:1] == b"\x80" and data[1:2] in b"\x02\x03\x04\x05"
    )


def _not_valid(name: str, data: bytes, detail: str) -> _Corrupt:
    if _looks_like_pickle(data):
        return _Corrupt(f"{name} is a pickle, which rnnlab never loads (it could run code)")
    return _Corrupt(f"{name} is not valid ({detail})")


def _parse_json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else "not JSON"
        raise _not_valid(name, data, detail) from None


# safetensors dtype -> bytes per element
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip


def _load_safetensors(name: str, data: bytes) -> dict[str, Tensor]:
    """Parse a safetensors file, checking every size, shape and offset against the bytes
    actually there before anything is allocated."""
    if len(data) < 8:
        raise _not_valid(name, data, f"{len(data)} bytes, shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise _not_valid(name, data, f"its header claims {size} bytes, the file has {len(data)}")
    header = _parse_json(name, data[8 : 8 + size])
    room = len(data) - 8 - size
    if not isinstance(header, dict):
        raise _not_valid(name, data, "its header is not a JSON object")
    for key, info in header.items():
        if key == "__metadata__":
            continue
        ok = (
            isinstance(info, dict)
            and info.get("dtype") in _DTYPE_BYTES
            and isinstance(info.get("shape"), list)
            and len(info["shape"]) <= 64
            and all(type(d) is int and d >= 0 for d in info["shape"])
            and isinstance(info.get("data_offsets"), list)
            and len(info["data_offsets"]) == 2
            and all(type(o) is int for o in info["data_offsets"])
        )
        if not ok:
            raise _not_valid(name, data, f"tensor {_short(key)} has a malformed entry")
        begin, end = info["data_offsets"]
        nbytes = math.prod(info["shape"]) * _DTYPE_BYTES[info["dtype"]]
        if not 0 <= begin <= end <= room or end - begin != nbytes:
            raise _not_valid(
                name, data, f"tensor {_short(key)} claims {nbytes} bytes at {begin}..{end}"
            )
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError, TypeError, OverflowError) as exc:
        raise _not_valid(name, data, " ".join(str(exc).split())[:200]) from None


def _parse_meta(data: bytes) -> tuple[dict, dict[str, str], dict[str, str], Any]:
    """(header, checksums, aliases, meta) of a ``meta.json``, every type checked."""
    doc = _parse_json(META_FILE, data)
    if not isinstance(doc, dict) or not isinstance(doc.get("checkpoint"), dict):
        raise _not_valid(META_FILE, data, 'no "checkpoint" object')
    header = doc["checkpoint"]
    version = header.get("format_version")
    if type(version) is not int or version < 1:
        raise _Corrupt(f"{META_FILE} has format version {_short(version)}, not a version number")
    if version > FORMAT_VERSION:
        raise _Newer(
            f"has format version {version}, newer than this rnnlab reads ({FORMAT_VERSION}); "
            f"upgrade rnnlab (saved by rnnlab {_short(header.get('rnnlab_version'))})"
        )
    checksums, aliases = header.get("sha256"), header.get("aliases", {})
    for field_name, value in (("sha256", checksums), ("aliases", aliases)):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise _Corrupt(f'{META_FILE} is not valid ("{field_name}" is not a map of strings)')
    if MODEL_FILE not in checksums:
        raise _Corrupt(f"{META_FILE} has no checksum for {MODEL_FILE}")
    if not isinstance(header.get("rnnlab_version"), (str, type(None))):
        raise _Corrupt(f'{META_FILE} is not valid ("rnnlab_version" is not a string)')
    if not isinstance(doc.get("meta"), dict):
        raise _Corrupt(f'{META_FILE} is not valid ("meta" is not an object)')
    return header, checksums, aliases, doc["meta"]


def load_checkpoint(path: Path | str, prefer: str = "best") -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (or a run directory, see
    :func:`resolve_checkpoint`). Runs no code from the files (no pickle) and allocates nothing
    that the files' sizes do not back.

    Raises:
        RnnlabError: missing, truncated, corrupted, hostile, or from an incompatible format
            version; always a one-line message naming the checkpoint.
    """
    path = resolve_checkpoint(path, prefer)
    try:
        header, checksums, aliases, meta = _parse_meta(_read(path / META_FILE, MAX_JSON_BYTES))

        def checked(name: str, limit: int | None = None) -> bytes:
            data = _read(path / name, limit)
            if name not in checksums:
                raise _Corrupt(f"{META_FILE} has no checksum for {name}")
            if _sha256(data) != checksums[name]:
                if _looks_like_pickle(data):
                    raise _not_valid(name, data, "")
                raise _Corrupt(f"{name} fails its checksum (corrupted or truncated)")
            return data

        state_dict = _load_safetensors(MODEL_FILE, checked(MODEL_FILE))
        for alias, name in aliases.items():
            if name not in state_dict:
                raise _Corrupt(f"{META_FILE} aliases {_short(alias)} to a missing tensor")
            state_dict[alias] = state_dict[name]
        training_state = None
        if TRAINING_JSON in checksums:
            tensors = _load_safetensors(TRAINING_TENSORS, checked(TRAINING_TENSORS))
            flat = _parse_json(TRAINING_JSON, checked(TRAINING_JSON, MAX_JSON_BYTES))
            training_state = _unflatten(flat, tensors)
    except RecursionError:
        raise RnnlabError(f"checkpoint {path} is corrupted: nested too deeply") from None
    except _Corrupt as exc:
        raise RnnlabError(f"checkpoint {path} is corrupted: {exc}") from None
    except _Newer as exc:
        raise RnnlabError(f"checkpoint {path} {exc}") from None
    version = header.get("rnnlab_version")
    return Checkpoint(path, state_dict, meta, training_state, version)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "FORMAT_VERSION",
    "STEP_DELAY_ENV",
    "Checkpoint",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]
