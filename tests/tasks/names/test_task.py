"""The name-generation commands: ``rnnlab train names``, ``rnnlab generate-names``; one-line
errors; rnnlab 0.1.0 checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnlab.cli import main
from tests.tasks.helpers import FAST, FIXTURES, RNNLAB_ERROR, one_line_error, run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny training run on the bundled names."""
    out = tmp_path_factory.mktemp("names") / "run"
    argv = ["train", "names", *FAST, "--embedding", "6", "--lang-embedding", "3"]
    assert main([*argv, "--out", str(out)]) == 0
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["parameters"] > 0
    assert metrics["test_bits_per_char"] == pytest.approx(
        metrics["test_loss_nats_per_char"] / 0.6931471805599453
    )
    assert 0 <= metrics["novel_fraction_of_samples"] <= 1 and metrics["test_names"] == 1883
    model = json.loads((out / "config.json").read_text())["model"]
    assert (model["embed_dim"], model["lang_dim"], model["rnn"]["cell"]) == (6, 3, "gru")
    return out


def test_train_prints_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, printed, _ = run(["train", "names", *FAST, "--out", str(out)], capsys)
    assert code == 0
    lines = printed.splitlines()
    start = lines.index("samples (temperature 0.8):")
    assert [line.split()[0] for line in lines[start + 1 : start + 19]][:2] == ["Arabic", "Chinese"]
    assert lines[start + 19].startswith("test: test_loss_nats_per_char ")


def test_generate_names(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate-names", str(run_dir), "--language", "Russian", "-n", "4", "--seed", "1"]
    code, out, _ = run(argv, capsys)
    assert code == 0 and len(out.splitlines()) == 4
    assert run(argv, capsys)[1] == out  # seeded: reproducible
    code, out, _ = run([*argv, "--start", "Ab", "--temperature", "0"], capsys)
    assert code == 0 and all(name.startswith("Ab") for name in out.splitlines())


def test_generate_names_on_a_0_1_0_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))["names"]
    monkeypatch.chdir(FIXTURES)
    code, out, _ = run(expected["argv"], capsys)
    assert code == 0 and out == expected["stdout"]


# -- bad input: one line, non-zero exit ---------------------------------------------------------
def test_bad_training_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "o"), *FAST]
    one_line_error(
        ["train", "names", "--data", str(tmp_path / "missing"), *out],
        capsys,
        "missing",
        prefix=RNNLAB_ERROR,
    )
    one_line_error(
        ["train", "names", "--bidirectional", *out],
        capsys,
        "bidirectional must be False",
        prefix=RNNLAB_ERROR,
    )


def test_bad_inference_input(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["generate-names", str(run_dir)]
    one_line_error(
        [*base, "--language", "Klingon"],
        capsys,
        "unknown language 'Klingon'; choose one of: Arabic, Chinese",
        prefix=RNNLAB_ERROR,
    )
    one_line_error(base, capsys, "needs --language", prefix=RNNLAB_ERROR)
    one_line_error(
        [*base, "--language", "Russian", "--start", "A\u2603"],
        capsys,
        "never saw: '\u2603'",
        prefix=RNNLAB_ERROR,
    )
    one_line_error(
        [*base, "--language", "Russian", "--start", "Abc", "--max-len", "3"],
        capsys,
        "--start is longer than --max-len 3",
        prefix=RNNLAB_ERROR,
    )
    # -n 0: refused by the command line, in one line
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--language", "Russian", "-n", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument -n: expected a value > 0, got '0'" in err
