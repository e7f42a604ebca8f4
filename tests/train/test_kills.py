"""SIGKILL a real ``rnnlab train lm`` a few times, resume it, and get the uninterrupted weights.

The short version of ``benchmarks/kill_harness.py`` (the full one: ``--kills 20``, see
docs/RELIABILITY.md): three kills, each followed by a check that the latest checkpoint loads,
then the final weights compared bit for bit with an uninterrupted run of the same seed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "kill_harness.py"


def _harness(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("kill_harness", _HARNESS)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "kill_harness", module)  # its dataclass needs it there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_killed_and_resumed_run_equals_the_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = _harness(monkeypatch)
    args = harness.parse_args(
        [
            "--kills",
            "3",
            "--max-steps",
            "20",
            "--eval-every",
            "4",
            "--window",
            "1.2",
            "--seed",
            "3",
            "--workdir",
            str(tmp_path),
        ]
    )
    report = harness.harness(args)
    assert report.kills == 3
    assert report.resumes >= 1  # at least one kill came after a checkpoint, and resumed
    assert report.checkpoint_loads >= 1  # checked after every kill that came after a save
    assert report.steps == 20
    assert report.differing == [] and report.bit_exact
    for name in ("last", "best"):  # no temporary directory is left behind at the end
        assert not (tmp_path / "killed" / f".{name}.tmp").exists()
