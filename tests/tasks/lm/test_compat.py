"""Runs and checkpoints across versions: rnnlab 0.1.0's language models still sample and evaluate
exactly as they did (tests/fixtures/v0_1_0), a run's config.json repeats it, and a resumed run
keeps its own options."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.tasks.runner import load_run
from tests.tasks.helpers import FIXTURES

EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
LM_CASES = ["lm", "lm-gru-before-ln", "lm-peephole-ln", "lm-mut2-ln", "lm-word", "lm-eval"]


@pytest.mark.parametrize("name", LM_CASES)
def test_rnnlab_0_1_0_checkpoints_print_what_they_printed(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    case = EXPECTED[name]
    monkeypatch.chdir(FIXTURES)
    assert main(case["argv"]) == 0
    assert capsys.readouterr().out == case["stdout"]


def test_rnnlab_0_1_0_runs_are_not_resumed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lm"
    shutil.copytree(FIXTURES / "lm", out)
    code = main(["train", "lm", "--resume", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("rnnlab: error: cannot resume"), err
    assert "written by rnnlab 0.1.0" in err[-1], err
    assert not any("Traceback" in line for line in err)
    # and it still samples
    assert main(["sample", str(out), "--greedy", "--length", "5"]) == 0


# -- a run's config.json --------------------------------------------------------------------------
TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 12
OPTIONS = [
    *("--hidden", "24", "--layers", "2", "--embedding", "8", "--seq-len", "16", "--batch", "4"),
    *("--cell", "gru", "--dropout", "0.1", "--io-dropout", "0.1", "--lr", "0.01"),
    *("--max-steps", "8", "--eval-every", "4", "--log-every", "2", "--seed", "3"),
    *("--no-progress", "--sample", "0"),
]


def _train_losses(run: Path) -> list[str]:
    with open(run / "metrics.csv", newline="") as f:
        return [row["train_loss"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("config")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    out = root / "R"
    assert main(["train", "lm", "--data", str(corpus), *OPTIONS, "--out", str(out)]) == 0
    return out


def test_a_run_config_repeats_the_run(first_run: Path, tmp_path: Path) -> None:
    saved = json.loads((first_run / "config.json").read_text())
    assert saved["task"] == "lm"
    assert saved["model"]["rnn"]["hidden_size"] == 24 and saved["model"]["rnn"]["cell"] == "gru"
    assert saved["train"]["max_steps"] == 8 and saved["train"]["max_epochs"] is None
    again = tmp_path / "R2"
    assert (
        main(["train", "lm", "--config", str(first_run / "config.json"), "--out", str(again)]) == 0
    )
    assert json.loads((again / "config.json").read_text()) == saved
    losses = _train_losses(first_run)
    assert len(losses) == 4 and _train_losses(again) == losses


def test_resume_continues_with_the_runs_own_options(first_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "R"
    shutil.copytree(first_run, out)
    saved = (out / "config.json").read_text()
    assert main(["train", "lm", "--out", str(out), "--resume", "--max-steps", "12"]) == 0
    run = load_run(out, prefer="last")
    assert run.model.config.rnn.hidden_size == 24 and run.model.config.rnn.cell == "gru"
    assert run.checkpoint.training_state["step"] == 12
    resumed = json.loads((out / "config.json").read_text())
    expected = json.loads(saved)
    expected["train"]["max_steps"] = 12
    assert resumed == expected
    steps = [int(r.split(",")[0]) for r in (out / "eval.csv").read_text().splitlines()[1:]]
    assert steps == [4, 8, 12]
