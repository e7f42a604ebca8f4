"""The tagging commands: ``rnnlab train tag``, ``rnnlab tag``, ``rnnlab data punct-tags``;
one-line errors; rnnlab 0.1.0 checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rnnlab.cli import main
from tests.tasks.helpers import FAST, FIXTURES, RNNLAB_ERROR, one_line_error, run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny training run on the default task (punctuation and case on Shakespeare)."""
    out = tmp_path_factory.mktemp("tag") / "run"
    assert main(["train", "tag", *FAST, "--out", str(out)]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["parameters"] > 0
    assert {
        "test_token_accuracy", "test_macro_f1", "test_loss", "majority_tag_accuracy",
        "test_tokens", "test_mark_accuracy", "test_case_accuracy",
    } <= set(metrics)  # fmt: skip
    assert (out / "test_report.txt").read_text().count("\n") == 14 + 3
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["rnn"]["bidirectional"] is True
    return out


def test_tag(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["tag", str(run_dir), "what say you my lord"], capsys)
    assert code == 0
    words = re.sub(r"[,.?!:;]", "", out).lower().split()
    assert words == ["what", "say", "you", "my", "lord"]


def test_tag_on_a_0_1_0_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))["tag"]
    monkeypatch.chdir(FIXTURES)
    code, out, _ = run(expected["argv"], capsys)
    assert code == 0 and out == expected["stdout"]


def test_conll_data_and_tag_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conll = tmp_path / "d.conll"
    conll.write_text("".join(f"the\tD\n{w}\tN\nruns\tV\n\n" for w in "abcdefghijklmnopqrst"))
    out = tmp_path / "run"
    argv = ["train", "tag", "--data", str(conll), "--min-freq", "1", "--unidirectional"]
    assert main([*argv, *FAST, "--out", str(out)]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert "test_token_accuracy" in metrics and "test_mark_accuracy" not in metrics
    assert json.loads((out / "config.json").read_text())["model"]["rnn"]["bidirectional"] is False
    capsys.readouterr()
    code, printed, _ = run(["tag", str(out), "the b runs", "the zz"], capsys)
    assert code == 0
    lines = printed.splitlines()
    assert len(lines) == 2 and re.fullmatch(r"the/[DNV] b/[DNV] runs/[DNV]", lines[0])
    assert re.fullmatch(r"the/[DNV] zz/[DNV]", lines[1])


def test_punct_tags_converter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["data", "punct-tags", "--out", str(tmp_path / "p.conll")], capsys)
    assert code == 0 and "32777 sequences" in out
    assert (tmp_path / "p.conll").read_text().startswith("first\t^O\ncitizen\t^:\n\n")
    text = tmp_path / "t.txt"
    text.write_text("Speak, speak.\n")
    code, out, _ = run(["data", "punct-tags", "--data", str(text), "--out", str(text)], capsys)
    assert code == 0 and out.startswith("wrote 1 sequences, 2 tokens")
    assert text.read_text() == "speak\t^,\nspeak\t.\n\n"
    one_line_error(["data", "punct-tags"], capsys, "needs --out FILE", prefix=RNNLAB_ERROR)


# -- bad input: one line, non-zero exit ---------------------------------------------------------
def test_bad_training_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "o"), *FAST]
    conll = tmp_path / "d.conll"
    conll.write_text("a\tX\n\nb X Y\n")
    one_line_error(
        ["train", "tag", "--data", str(conll), *out],
        capsys,
        "d.conll:3: expected",
        prefix=RNNLAB_ERROR,
    )
    conll.write_text("a\tX\n\nb\tY\n")
    one_line_error(
        ["train", "tag", "--data", str(conll), *out],
        capsys,
        "too few to split",
        prefix=RNNLAB_ERROR,
    )


def test_bad_inference_input(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(
        ["tag", str(run_dir), " -- !"], capsys, "no words to tag in ' -- !'", prefix=RNNLAB_ERROR
    )
    one_line_error(
        ["tag", str(FIXTURES / "classify"), "a b"],
        capsys,
        "is a 'classify' checkpoint, not tag",
        prefix=RNNLAB_ERROR,
    )
