"""benchmarks/regularised_compare.py: the two command lines and the summary it reports."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from tests.benchmark_scripts import benchmark_script


@pytest.fixture(scope="module")
def compare():
    with benchmark_script("regularised_compare") as module:
        yield module


def test_the_two_runs_differ_only_by_the_regularisers(compare, tmp_path):
    cmds = compare.commands("2h", 3, compare.AWD, tmp_path)
    plain, reg = cmds["plain"], cmds["regularised"]
    assert plain[plain.index("--out") + 1] == str(tmp_path / "plain")
    assert reg[reg.index("--out") + 1] == str(tmp_path / "awd")
    strip = lambda c: c[: c.index("--out")]  # noqa: E731
    assert strip(plain) == strip(reg)
    assert reg[reg.index("--out") + 2 :] == compare.AWD.split()
    assert plain[plain.index("--threads") : plain.index("--threads") + 2] == ["--threads", "1"]
    assert "--weight-drop" not in plain and "--locked-dropout" not in plain


def _fake_run(run: Path, val: list[tuple[float, float]], train: list[float]) -> None:
    run.mkdir()
    with open(run / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "epoch", "elapsed_s", "val_loss", "val_bpc", "val_ppl"])
        for i, (t, v) in enumerate(val):
            w.writerow([100 * (i + 1), 0, t, v, 0, 0])
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "epoch", "elapsed_s", "lr", "train_loss", "tokens_per_s", "grad_norm"])
        for i, v in enumerate(train):
            w.writerow([i, 0, float(i), 1e-3, v, 1000.0 + i, 0.1])
    best = min(v for _, v in val)
    result = {"steps": 300, "epochs_completed": 2, "best_val_loss": best, "best_step": 200}
    (run / "result.json").write_text(json.dumps(result))


def test_summary_reads_best_final_and_gap(compare, tmp_path):
    train = [2.0] * 50 + [1.0] * compare.TRAIN_TAIL
    _fake_run(tmp_path / "r", [(60.0, 1.9), (120.0, 1.5), (180.0, 1.7)], train)
    s = compare.summarise(tmp_path / "r")
    assert s["best_val"] == 1.5 and s["best_minutes"] == 2.0
    assert s["final_val"] == 1.7
    assert s["train_end"] == 1.0  # the mean of the last TRAIN_TAIL logged steps only
    assert s["tokens_per_s"] == 1000.0 + (len(train) - 1) / 2


def test_finished_runs_are_read_not_rerun(compare, tmp_path, monkeypatch, capsys):
    for name, best in (("plain", 1.45), ("awd", 1.34)):
        _fake_run(tmp_path / name, [(60.0, best + 0.1), (120.0, best)], [1.2] * 10)
    monkeypatch.setattr(compare, "launch", lambda *a, **k: pytest.fail("re-ran a finished run"))
    monkeypatch.setattr(sys, "argv", ["regularised_compare.py", "--out", str(tmp_path)])
    compare.main()
    out = capsys.readouterr().out
    assert "| plain | 300 |" in out and "**1.4500**" in out and "**1.3400**" in out
    report = json.loads((tmp_path / "regularised.json").read_text())
    assert report["runs"]["regularised"]["best_val"] == 1.34
    assert (tmp_path / "regularised.png").stat().st_size > 0
