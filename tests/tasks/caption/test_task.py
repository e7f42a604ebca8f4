"""``rnnlab train caption``, ``rnnlab caption`` and ``rnnlab data captions`` through the command
line: a tiny run, its test report, the use command, the converter, rnnlab 0.1.0 checkpoints, and
bad input giving one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from rnnlab.cli import build_parser, main
from rnnlab.config import resolve
from rnnlab.flags import given
from rnnlab.tasks.caption.data import save_image
from rnnlab.tasks.caption.task import CaptionTaskConfig
from tests.tasks.helpers import FAST, FIXTURES, one_line_error, run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny training run on the synthetic set; its directory and what it printed."""
    out = tmp_path_factory.mktemp("runs") / "caption"
    argv = ["train", "caption", "--train-size", "64", "--test-size", "16", *FAST]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([*argv, "--out", str(out)]) == 0
    return out, stdout.getvalue()


def test_training_writes_the_test_report(trained: tuple[Path, str]) -> None:
    out, stdout = trained
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["parameters"] > 0
    reported = ["test_exact", "test_bleu", "heldout_exact", "heldout_bleu"]
    assert list(metrics)[: len(reported)] == reported
    lines = stdout.splitlines()
    start = lines.index("examples:")
    examples = lines[start + 1 : start + 9]
    assert [line.split()[0] for line in examples] == ["[test]"] * 4 + ["[heldout]"] * 4
    assert all("(truth: a " in line for line in examples)
    meta = json.loads((out / "best" / "meta.json").read_text())["meta"]
    assert set(meta["vocabs"]) == {"tokens"} and meta["data"] == {"source": "synthetic"}


def test_caption_and_data_commands(
    trained: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = trained
    code, stdout, _ = run(["data", "captions", "--out", str(tmp_path / "img"), "-n", "2"], capsys)
    assert code == 0 and (tmp_path / "img" / "captions.tsv").exists()
    assert stdout.startswith("wrote 2 images and ")
    images = [str(tmp_path / "img" / "00000.png"), str(tmp_path / "img" / "00001.png")]
    code, stdout, _ = run(["caption", str(out), *images], capsys)
    assert code == 0 and len(stdout.splitlines()) == 2
    assert [line.split(": ")[0] for line in stdout.splitlines()] == images
    code, stdout, _ = run(["caption", str(out), images[0]], capsys)
    assert code == 0 and len(stdout.splitlines()) == 1 and ": " not in stdout
    sampled = ["caption", str(out), *images, "--temperature", "1", "--seed", "3"]
    assert run(sampled, capsys)[1] == run(sampled, capsys)[1]  # seeded: reproducible


def test_caption_reads_rnnlab_0_1_0_checkpoints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())["caption"]
    monkeypatch.chdir(FIXTURES)
    code, stdout, _ = run(expected["argv"], capsys)
    assert code == 0 and stdout == expected["stdout"]


def test_training_on_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "set"
    assert run(["data", "captions", "--out", str(folder), "-n", "30"], capsys)[0] == 0
    out = tmp_path / "run"
    argv = ["train", "caption", "--data", str(folder), *FAST, "--max-steps", "2", "--out", str(out)]
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and "heldout" not in stdout
    assert list(json.loads((out / "test_metrics.json").read_text()))[:2] == [
        "test_exact",
        "test_bleu",
    ]


def test_bad_inference_input(
    trained: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = trained
    save_image(np.zeros((20, 30, 3), np.uint8), tmp_path / "small.png")
    image = str(tmp_path / "small.png")
    one_line_error(["caption", str(out), image], capsys, "expected a 36x36 image, got 30x20")
    one_line_error(["caption", str(out), str(tmp_path / "none.png")], capsys, "no such image")
    save_image(np.zeros((36, 36, 3), np.uint8), tmp_path / "ok.png")
    image = str(tmp_path / "ok.png")
    one_line_error(["caption", str(out), image, "--temperature", "nan"], capsys, "--temperature")
    one_line_error(["caption", str(out), image, "--temperature", "-1"], capsys, "--temperature")


def test_bad_converter_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    one_line_error(["data", "captions", "--out", str(existing)], capsys, "is a file, not a folder")
    one_line_error(["data", "captions"], capsys, "needs --out DIR")
    one_line_error(["data", "captions", "--out", str(tmp_path / "x"), "-n", "0"], capsys, "-n")


def test_defaults_and_old_flag_spellings() -> None:
    config = CaptionTaskConfig()
    assert config.model.rnn.describe() == "1x128 lstm"
    assert (config.model.embed_dim, config.model.feature_dim) == (32, 128)
    train = config.train
    assert (train.batch_size, train.lr, train.schedule, train.eval_every) == (
        64,
        2e-3,
        "cosine",
        250,
    )
    assert (train.max_epochs, train.time_budget, train.max_steps) == (15, 240.0, None)
    assert (config.train_size, config.test_size, config.split_seed) == (8000, 1000, 0)
    argv = ["train", "caption", "--embedding", "16", "--features", "64", "--io-dropout", "0.1"]
    ns = build_parser().parse_args(argv)
    config = resolve(CaptionTaskConfig, explicit=[given(ns, CaptionTaskConfig)])
    assert (config.model.embed_dim, config.model.feature_dim, config.model.dropout) == (16, 64, 0.1)
