"""Checkpoint saves on a full disk or an unwritable path: one line, nothing half-written, the
previous checkpoint intact; saving works again once the cause is gone."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

import rnnlab.train.checkpoint as C
from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint

CHANGES = ("makedirs", "mkdir", "open", "write", "fsync", "replace", "unlink", "rmdir")


class FailingOS:
    """``os`` whose ``fail_at``-th file-system change fails with ``OSError(code)`` (a write
    first writes half of its bytes, as a full disk does). Counts the changes in ``calls``."""

    def __init__(self, fail_at: int | None = None, code: int = errno.ENOSPC) -> None:
        self.fail_at, self.code, self.calls = fail_at, code, 0

    def __getattr__(self, name: str) -> object:
        real = getattr(os, name)
        if name not in CHANGES or isinstance(real, ModuleType):
            return real

        def call(*args: object, **kwargs: object) -> object:
            if name == "open" and not args[1] & (os.O_CREAT | os.O_WRONLY):  # type: ignore[operator]
                return real(*args, **kwargs)
            self.calls += 1
            if self.calls - 1 == self.fail_at:
                if name == "write":
                    fd, data = args
                    real(fd, bytes(data)[: len(data) // 2])  # type: ignore[arg-type]
                raise OSError(self.code, os.strerror(self.code), str(args[0]))
            return real(*args, **kwargs)

        return call


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A RAM file system where there is one (an rmdir costs ~3 ms on this machine's ext4)."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
            yield Path(d)
    else:
        yield tmp_path


@contextmanager
def _os(fs: FailingOS) -> Iterator[None]:
    saved, C.os = C.os, fs  # type: ignore[assignment]
    try:
        yield
    finally:
        C.os = saved


def _save(ck: Path, version: int) -> None:
    torch.manual_seed(version)
    model = nn.Linear(4, 3)
    save_checkpoint(
        ck, model, {"v": version}, {"step": version}, torch.optim.SGD(model.parameters())
    )


def _version(ck: Path) -> int:
    loaded = load_checkpoint(ck)
    torch.manual_seed(loaded.meta["v"])
    assert torch.equal(loaded.state_dict["weight"], nn.Linear(4, 3).weight.detach())
    return loaded.meta["v"]


def _one_line_naming(exc: pytest.ExceptionInfo[RnnlabError], path: Path, reason: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and str(path) in text and reason in text, text


@pytest.mark.parametrize(
    "code, reason",
    [
        (errno.ENOSPC, "disk full"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EACCES, "not writable"),
        (errno.EROFS, "read-only file system"),
    ],
)
def test_failure_at_every_change_keeps_the_previous_checkpoint(
    scratch: Path, code: int, reason: str
) -> None:
    counter = FailingOS()
    with _os(counter):
        _save(scratch / "count" / "ck", 1)
        _save(scratch / "count" / "ck", 2)
    counter.calls = 0
    with _os(counter):
        _save(scratch / "count" / "ck", 3)
    failed = 0
    for k in range(counter.calls):
        run = scratch / f"k{k}"
        _save(run / "ck", 1)
        try:
            with _os(FailingOS(k, code)):
                _save(run / "ck", 2)
        except RnnlabError as exc:
            failed += 1
            text = str(exc)
            assert "\n" not in text and str(run / "ck") in text and reason in text, text
            assert "previous checkpoint is kept" in text
            assert _version(run / "ck") == 1
            assert sorted(os.listdir(run)) == ["ck"], k  # nothing half-written left
            _save(run / "ck", 3)  # the cause is gone: saving works again
            assert _version(run / "ck") == 3
        else:  # failed while deleting the previous checkpoint: the new one is in place
            assert _version(run / "ck") == 2
            _save(run / "ck", 3)
            assert _version(run / "ck") == 3
            assert sorted(os.listdir(run)) == ["ck"], k
    assert failed >= 14  # every change before the new checkpoint is in place


def test_output_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RnnlabError) as exc:
        _save(tmp_path / "file" / "run" / "last", 1)
    _one_line_naming(exc, tmp_path / "file" / "run" / "last", "is a file, not a directory")


def test_a_file_where_the_checkpoint_goes(tmp_path: Path) -> None:
    (tmp_path / "last").write_text("mine")
    with pytest.raises(RnnlabError, match="not a checkpoint"):
        _save(tmp_path / "last", 1)
    assert (tmp_path / "last").read_text() == "mine"


def test_atomic_write_on_a_full_disk(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "result.json", "old")
    with _os(FailingOS(1)), pytest.raises(RnnlabError) as exc:  # the write
        atomic_write_text(tmp_path / "result.json", "new" * 1000)
    _one_line_naming(exc, tmp_path / "result.json", "disk full")
    assert (tmp_path / "result.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]


# -- on a real, tiny file system ---------------------------------------------------------------
@contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``; skips when this machine cannot mount one."""
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a tiny tmpfs (the injected ENOSPC tests run)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        why = " ".join((done.stderr or "").split()) or f"exit code {done.returncode}"
        pytest.skip(f"cannot mount a tmpfs here ({why}; needs root): injected ENOSPC tests run")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_disk_full_on_a_real_tiny_tmpfs(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        run = disk / "run"
        _save(run / "last", 1)
        filler = disk / "filler"
        with pytest.raises(OSError) as full, open(filler, "wb") as f:  # fill the disk up
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        assert full.value.errno == errno.ENOSPC
        with pytest.raises(RnnlabError) as exc:
            _save(run / "last", 2)
        _one_line_naming(exc, run / "last", "disk full")
        assert _version(run) == 1
        assert sorted(os.listdir(run)) == ["last"]
        filler.unlink()  # space freed: saving works again
        _save(run / "last", 3)
        assert _version(run) == 3 and sorted(os.listdir(run)) == ["last"]


def test_read_only_file_system(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "disk", "4m") as disk:
        _save(disk / "run" / "last", 1)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(RnnlabError) as exc:
            _save(disk / "run" / "last", 2)
        _one_line_naming(exc, disk / "run" / "last", "read-only file system")
        assert _version(disk / "run") == 1
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        _save(disk / "run" / "last", 3)
        assert _version(disk / "run") == 3
