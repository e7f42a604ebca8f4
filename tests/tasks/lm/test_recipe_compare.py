"""benchmarks/recipe_compare.py: the two command lines of a pair and the table it reports."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from tests.benchmark_scripts import benchmark_script


@pytest.fixture(scope="module")
def compare():
    with benchmark_script("recipe_compare") as module:
        yield module


def _option(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_a_pair_has_the_same_budget_seed_and_validation_spacing(compare, tmp_path):
    cmds = compare.commands(480.0, 2, 1, 320_000, tmp_path)
    ours, classic = cmds["rnnlab"], cmds["classic"]
    assert _option(ours, "--time-budget") == "480.0s"
    assert _option(classic, "--time-budget") == "480.0"
    assert _option(ours, "--seed") == _option(classic, "--seed") == "2"
    assert "--classic" in classic
    # the same training characters between validations: rnnlab's windows are 50, the classic's 100
    assert int(_option(ours, "--eval-every")) * compare.BATCH * 50 == 320_000
    assert int(_option(classic, "--eval-every")) * compare.BATCH * 100 == 320_000
    assert _option(ours, "--out") == str(tmp_path / "rnnlab")
    assert _option(classic, "--out") == str(tmp_path / "classic")


def _fake_pair(where: Path, ours: list[tuple[float, float]], classic: list[tuple[float, float]]):
    for name, curve in (("rnnlab", ours), ("classic", classic)):
        (where / name).mkdir(parents=True)
        with open(where / name / "eval.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "elapsed_s", "val_loss"])
            w.writerows((100 * (i + 1), t, v) for i, (t, v) in enumerate(curve))


def test_existing_reports_the_finished_pairs_and_runs_none(compare, tmp_path, monkeypatch, capsys):
    _fake_pair(tmp_path / "180s-seed0", [(60.0, 1.9), (170.0, 1.70)], [(60.0, 2.0), (175.0, 1.75)])
    _fake_pair(tmp_path / "180s-seed1", [(60.0, 1.9), (170.0, 1.80)], [(60.0, 2.0), (175.0, 1.81)])
    # a validation after the budget (and its minute of grace) is not counted
    _fake_pair(tmp_path / "480s-seed0", [(470.0, 1.60), (600.0, 1.1)], [(470.0, 1.65)])
    monkeypatch.setattr(compare, "run_pair", lambda *a: pytest.fail("ran a pair"))
    argv = ["recipe_compare.py", "--budgets", "3m,8m", "--seeds", "0,1", "--existing"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path)])
    compare.main()
    out = capsys.readouterr().out
    assert "| 3 min | 0 | 1.7000 | 1.7500 | -0.0500 |" in out
    assert "| 3 min | 1 | 1.8000 | 1.8100 | -0.0100 |" in out
    assert "| 3 min | mean | | | -0.0300 |" in out
    assert "| 8 min | 0 | 1.6000 | 1.6500 | -0.0500 |" in out
    assert "| 8 min | 1 |" not in out  # not finished: skipped, not run
    report = json.loads((tmp_path / "recipes.json").read_text())
    assert [(e["budget_s"], e["seed"]) for e in report["runs"]] == [(180, 0), (180, 1), (480, 0)]
    assert (tmp_path / "recipes.png").stat().st_size > 0


def test_existing_with_nothing_finished_is_a_one_line_error(compare, tmp_path, monkeypatch):
    argv = ["recipe_compare.py", "--budgets", "3m", "--existing", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="no finished pair"):
        compare.main()
