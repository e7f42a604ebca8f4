"""A new task is one file: tests/fixtures/digits_task.py, registered, gets the whole machinery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnlab import register_task
from rnnlab.cli import main
from rnnlab.tasks import TASKS, get_task
from tests.fixtures.digits_task import TASK


@pytest.fixture(scope="module")
def registered() -> None:
    register_task(TASK)
    yield
    TASKS.pop("digits", None)
    from rnnlab import tasks

    tasks._LOADED.pop("digits", None)


def test_a_one_file_task_trains_tests_resumes_and_answers(
    registered: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert get_task("digits") is TASK
    out = tmp_path / "run"
    argv = ["train", "digits", "--examples", "400", "--hidden", "16", "--no-progress"]
    assert main([*argv, "--max-steps", "30", "--out", str(out)]) == 0
    for name in ("best", "last", "config.json", "metrics.csv", "test_metrics.json"):
        assert (out / name).exists(), name
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "digits" and config["model"]["rnn"]["hidden_size"] == 16
    assert config["train"]["max_steps"] == 30 and config["train"]["max_epochs"] is None
    # resume continues with the saved options (no --hidden given again)
    assert main(["train", "digits", "--out", str(out), "--resume", "--max-steps", "60"]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["test_accuracy"] > 0.5  # chance: 0.1
    capsys.readouterr()
    assert main(["first-digit", str(out), "3 1 4", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("3 1 4: ") and lines[1].startswith("7: ")
    assert main(["first-digit", str(out), "3 x"]) == 2
    assert "not a digit sequence: '3 x'" in capsys.readouterr().err
