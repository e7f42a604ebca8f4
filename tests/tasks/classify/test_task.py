"""The classification commands: ``rnnlab train classify``, ``rnnlab predict``; one-line errors;
rnnlab 0.1.0 checkpoints; ``--config RUN/config.json`` repeating a run; the diagnose batch."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from rnnlab.cli import main
from rnnlab.tasks.classify.task import TASK
from rnnlab.tasks.runner import load_run
from tests.tasks.helpers import FAST, FIXTURES, RNNLAB_ERROR, one_line_error, run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny training run on the bundled names."""
    out = tmp_path_factory.mktemp("classify") / "run"
    assert main(["train", "classify", *FAST, "--out", str(out)]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["parameters"] > 0
    assert {"test_accuracy", "test_macro_f1", "test_loss", "test_examples"} <= set(metrics)
    assert (out / "confusion.png").exists()
    assert (out / "test_report.txt").read_text().count("\n") == 18 + 3
    return out


def test_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "classify", "--hidden", "8", "--eval-every", "2", "--no-progress"]
    out = ["--out", str(tmp_path / "run")]
    assert main([*argv, *out, "--max-steps", "2"]) == 0
    assert main([*argv, *out, "--max-steps", "4", "--resume"]) == 0
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text())["steps"] == 4
    one_line_error(
        [*argv, *out, "--max-steps", "6", "--resume", "--cell", "gru"],
        capsys,
        "differ",
        prefix=RNNLAB_ERROR,
    )


def test_predict(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["predict", str(run_dir), "Dostoevsky", "Smith"], capsys)
    assert code == 0
    line = out.splitlines()[0]
    assert line.startswith("Dostoevsky: ") and len(line.split()) == 1 + 2 * 3
    probs = [float(x) for x in line.split()[2::2]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    code, out, _ = run(["predict", str(run_dir), "Smith", "--top", "1"], capsys)
    assert code == 0 and len(out.split()) == 3


def test_predict_on_a_0_1_0_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))["classify"]
    monkeypatch.chdir(FIXTURES)
    code, out, _ = run(expected["argv"], capsys)
    assert code == 0 and out == expected["stdout"]


def test_config_json_repeats_the_run(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    options = ["--hidden", "8", "--embedding", "6", "--lr", "0.01", "--batch", "16"]
    options += ["--class-weights", "inverse", "--split-seed", "3", "--io-dropout", "0.1"]
    options += ["--eval-every", "3", "--log-every", "1", "--no-progress"]
    assert main(["train", "classify", *options, "--max-steps", "6", "--out", str(first)]) == 0
    saved = json.loads((first / "config.json").read_text())
    assert saved["task"] == "classify" and saved["class_weights"] == "inverse"
    assert saved["model"]["embed_dim"] == 6 and saved["model"]["rnn"]["hidden_size"] == 8
    assert saved["split"]["split_seed"] == 3 and saved["train"]["batch_size"] == 16
    argv = ["train", "classify", "--config", str(first / "config.json"), "--out", str(second)]
    assert main([*argv, "--max-steps", "6"]) == 0
    assert json.loads((second / "config.json").read_text()) == saved

    def losses(run: Path) -> dict[int, float]:
        with (run / "metrics.csv").open() as f:
            return {int(row["step"]): float(row["train_loss"]) for row in csv.DictReader(f)}

    a, b = losses(first), losses(second)
    assert sorted(a) == list(range(1, 7)) and sorted(b) == sorted(a)
    assert [b[s] for s in a] == pytest.approx([a[s] for s in a], rel=1e-6)


def test_diagnostic_batch(run_dir: Path, tmp_path: Path) -> None:
    loaded = load_run(run_dir)
    forward, loss_fn, what = TASK.diagnostic_batch(loaded, None, 20, 8)
    logits, _ = forward()
    assert logits.shape == (8, 18)
    loss = loss_fn()
    loss.backward()  # diagnose follows its gradients
    assert math.isfinite(float(loss.detach()))
    assert what.startswith("the class of 8 names of ") and what.endswith(" characters")
    # --data: the names of the most common length, of the model's classes only
    tsv = tmp_path / "d.tsv"
    tsv.write_text("Smith\tEnglish\nBauer\tGerman\nIvanov\tRussian\nMaxim\tKlingon\n")
    forward, _, what = TASK.diagnostic_batch(loaded, str(tsv), 20, 8)
    assert forward()[0].shape == (2, 18) and what == "the class of 2 names of 5 characters"


# -- bad input: one line, non-zero exit ---------------------------------------------------------
def test_bad_training_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = tmp_path / "classes"
    classes.mkdir()
    (classes / "A.txt").write_text("x\ny\n")
    (classes / "B.txt").write_text("")
    out = ["--out", str(tmp_path / "o"), *FAST]
    one_line_error(
        ["train", "classify", "--data", str(classes), *out],
        capsys,
        "B.txt is empty",
        prefix=RNNLAB_ERROR,
    )
    tsv = tmp_path / "d.tsv"
    tsv.write_text("Smith\tEnglish\nIvanov Russian\n")
    one_line_error(
        ["train", "classify", "--data", str(tsv), *out],
        capsys,
        "d.tsv:2: expected",
        prefix=RNNLAB_ERROR,
    )
    tsv.write_text("Smith\tEnglish\nJones\tEnglish\n")
    one_line_error(
        ["train", "classify", "--data", str(tsv), *out],
        capsys,
        "at least 2 classes",
        prefix=RNNLAB_ERROR,
    )
    one_line_error(
        ["train", "classify", "--val-fraction", "0.6", "--test-fraction", "0.5", *out],
        capsys,
        "must sum below 1",
        prefix=RNNLAB_ERROR,
    )


def test_bad_inference_input(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(
        ["predict", str(FIXTURES / "tag"), "Smith"],
        capsys,
        "is a 'tag' checkpoint, not classify",
        prefix=RNNLAB_ERROR,
    )
    one_line_error(
        ["predict", str(tmp_path / "nothing"), "Smith"], capsys, "nothing", prefix=RNNLAB_ERROR
    )
    one_line_error(
        ["predict", str(run_dir), "  "],
        capsys,
        "cannot classify an empty text",
        prefix=RNNLAB_ERROR,
    )
    one_line_error(
        ["predict", str(run_dir), "Smith", "\u2603\u2603"],
        capsys,
        "'\u2603\u2603' has no character the model knows",
        prefix=RNNLAB_ERROR,
    )
