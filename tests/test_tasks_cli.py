"""Every task command smoke-run for a few steps, and bad input giving one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.tasks.caption.data import save_image

FAST = ["--max-steps", "4", "--eval-every", "2", "--hidden", "8", "--no-progress"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny training run per task, on the default (bundled or synthetic) data."""
    root = tmp_path_factory.mktemp("runs")
    pairs = root / "pairs.tsv"
    pairs.write_text("".join(f"i am {w} .\tje suis {w} .\n" for w in "abcdefghijklmnopqrst"))
    argv = {
        "classify": ["classify"],
        "tag": ["tag"],
        "seq2seq": ["seq2seq", "--data", str(pairs), "--beam", "2", "--max-len", "6"],
        "names": ["names"],
        "caption": ["caption", "--train-size", "64", "--test-size", "16"],
    }
    out = {}
    for task, args in argv.items():
        out[task] = root / task
        assert main(["train", *args, *FAST, "--out", str(out[task])]) == 0, task
        metrics = json.loads((out[task] / "test_metrics.json").read_text())
        assert metrics["steps"] == 4 and metrics["parameters"] > 0
    assert (out["classify"] / "confusion.png").exists()
    assert (out["classify"] / "test_report.txt").read_text().count("\n") == 18 + 3
    return out


def test_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "classify", "--hidden", "8", "--eval-every", "2", "--no-progress"]
    out = ["--out", str(tmp_path / "run")]
    assert main([*argv, *out, "--max-steps", "2"]) == 0
    assert main([*argv, *out, "--max-steps", "4", "--resume"]) == 0
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text())["steps"] == 4
    one_line_error([*argv, *out, "--max-steps", "6", "--resume", "--cell", "gru"], capsys, "differ")


def test_predict(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["predict", str(runs["classify"]), "Dostoevsky", "Smith"], capsys)
    assert code == 0
    line = out.splitlines()[0]
    assert line.startswith("Dostoevsky: ") and len(line.split()) == 1 + 2 * 3
    probs = [float(x) for x in line.split()[2::2]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_tag(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["tag", str(runs["tag"]), "what say you my lord"], capsys)
    assert code == 0
    words = re.sub(r"[,.?!:;]", "", out).lower().split()
    assert words == ["what", "say", "you", "my", "lord"]


def test_translate(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    for extra in ([], ["--beam", "3", "--nbest", "2"]):
        code, out, _ = run(["translate", str(runs["seq2seq"]), "i am c .", *extra], capsys)
        assert code == 0 and len(out.splitlines()) == (2 if extra else 1)


def test_generate_names(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate-names", str(runs["names"]), "--language", "Russian", "-n", "4", "--seed", "1"]
    code, out, _ = run(argv, capsys)
    assert code == 0 and len(out.splitlines()) == 4
    assert run(argv, capsys)[1] == out  # seeded: reproducible
    code, out, _ = run([*argv, "--start", "Ab", "--temperature", "0"], capsys)
    assert code == 0 and all(name.startswith("Ab") for name in out.splitlines())


def test_caption_and_data_commands(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["data", "captions", "--out", str(tmp_path / "img"), "-n", "2"], capsys)
    assert code == 0 and (tmp_path / "img" / "captions.tsv").exists()
    images = [str(tmp_path / "img" / "00000.png"), str(tmp_path / "img" / "00001.png")]
    code, out, _ = run(["caption", str(runs["caption"]), *images], capsys)
    assert code == 0 and len(out.splitlines()) == 2
    code, out, _ = run(["data", "punct-tags", "--out", str(tmp_path / "p.conll")], capsys)
    assert code == 0 and "32777 sequences" in out
    assert (tmp_path / "p.conll").read_text().startswith("first\t^O\ncitizen\t^:\n\n")


# -- bad input: one line, non-zero exit ---------------------------------------------------------
def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("rnnlab: error:")]
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err


def test_bad_training_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = tmp_path / "classes"
    classes.mkdir()
    (classes / "A.txt").write_text("x\ny\n")
    (classes / "B.txt").write_text("")
    out = ["--out", str(tmp_path / "o"), *FAST]
    one_line_error(["train", "classify", "--data", str(classes), *out], capsys, "B.txt is empty")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("Smith\tEnglish\nIvanov Russian\n")
    one_line_error(["train", "classify", "--data", str(tsv), *out], capsys, "d.tsv:2: expected")
    conll = tmp_path / "d.conll"
    conll.write_text("a\tX\n\nb X Y\n")
    one_line_error(["train", "tag", "--data", str(conll), *out], capsys, "d.conll:3: expected")
    tsv.write_text("go .\tva !\n\nhello\n")
    one_line_error(["train", "seq2seq", "--data", str(tsv), *out], capsys, "d.tsv:3: expected")
    one_line_error(["train", "names", "--data", str(tmp_path / "missing"), *out], capsys, "missing")


def test_bad_inference_input(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(
        ["generate-names", str(runs["names"]), "--language", "Klingon"],
        capsys,
        "unknown language 'Klingon'; choose one of: Arabic, Chinese",
    )
    save_image(np.zeros((20, 30, 3), np.uint8), tmp_path / "small.png")
    one_line_error(
        ["caption", str(runs["caption"]), str(tmp_path / "small.png")],
        capsys,
        "expected a 36x36 image, got 30x20",
    )
    one_line_error(
        ["predict", str(runs["tag"]), "Smith"], capsys, "is a 'tag' checkpoint, not classify"
    )
    one_line_error(["translate", str(runs["seq2seq"]), "   "], capsys, "nothing to translate")
    one_line_error(["predict", str(tmp_path / "nothing"), "Smith"], capsys, "nothing")
