"""The language model's commands: ``rnnlab train lm``, ``rnnlab sample``, ``rnnlab eval``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rnnlab.cli import main
from tests.benchmark_scripts import benchmark_script

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
) * 12
TINY = ["--hidden", "32", "--layers", "1", "--embedding", "8", "--seq-len", "20", "--batch", "4"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny trained run, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("lm")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    out = root / "run"
    argv = [
        "train",
        "lm",
        "--data",
        str(corpus),
        *TINY,
        "--max-steps",
        "20",
        "--eval-every",
        "10",
        "--out",
        str(out),
        "--no-progress",
        "--sample",
        "0",
    ]
    assert main(argv) == 0
    return out


def _digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_train_lm_smoke_through_the_real_cli(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnlab",
            "train",
            "lm",
            "--data",
            str(corpus),
            *TINY,
            "--max-steps",
            "12",
            "--eval-every",
            "6",
            "--out",
            str(out),
            "--sample",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "best validation loss" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.startswith("\n") and len(proc.stdout) >= 40
    for name in (
        "best/meta.json",
        "last/model.safetensors",
        "metrics.csv",
        "eval.csv",
        "loss.png",
        "config.json",
    ):
        assert (out / name).exists(), name


@pytest.fixture(scope="module")
def word_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A word-level, one-hot run with the norm stabilizer: its directory and its stderr."""
    root = tmp_path_factory.mktemp("word")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT * 3)
    argv = [
        "train",
        "lm",
        "--data",
        str(corpus),
        *TINY,
        "--embedding",
        "0",
        "--word",
        "--vocab-size",
        "12",
        "--norm-stabilizer",
        "1.0",
        "--max-steps",
        "4",
        "--out",
        str(root / "w"),
        "--no-progress",
        "--sample",
        "5",
    ]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return root / "w", err.getvalue()


def test_train_lm_word_level_one_hot_and_norm_stabilizer(
    word_run: tuple[Path, str], capsys: pytest.CaptureFixture
) -> None:
    out, err = word_run
    assert "words" in err and "Traceback" not in err
    assert main(["sample", str(out), "--prime", "All", "--length", "5"]) == 0
    assert capsys.readouterr().out.startswith("All")


def test_train_lm_word_level_reports_words_per_second(word_run: tuple[Path, str]) -> None:
    assert "words/s" in word_run[1]


def test_sample_is_deterministic_for_a_seed(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    def sample(*extra: str) -> str:
        assert main(["sample", str(run_dir), "--prime", "All:", "--length", "60", *extra]) == 0
        return capsys.readouterr().out

    a, b, c = sample("--seed", "5"), sample("--seed", "5"), sample("--seed", "6")
    assert a == b != c and a.startswith("All:") and len(a) == len("All:") + 60 + 1
    greedy = sample("--greedy")
    assert greedy == sample("--temperature", "0") == sample("--greedy", "--seed", "1")
    assert sample("--top-k", "1", "--seed", "9") == greedy


def test_eval_reports_nats_bits_and_perplexity(run_dir: Path, capsys) -> None:
    assert main(["eval", str(run_dir)]) == 0
    out = capsys.readouterr().out
    nats, bits = (float(x) for x in re.findall(r"([\d.]+) (?:nats|bits)/char", out))
    assert bits == pytest.approx(nats / math.log(2), abs=1e-3)
    assert "perplexity" in out


def test_resume_via_cli_continues_the_run(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    corpus = run_dir.parent / "corpus.txt"
    argv = [
        "train",
        "lm",
        "--data",
        str(corpus),
        *TINY,
        "--max-steps",
        "30",
        "--eval-every",
        "10",
        "--out",
        str(out),
        "--no-progress",
        "--sample",
        "0",
    ]
    assert main([*argv, "--resume"]) == 0
    steps = [int(r.split(",")[0]) for r in (out / "eval.csv").read_text().splitlines()[1:]]
    assert steps == [10, 20, 30]


def _bad_inputs(run: Path, tmp: Path) -> dict[str, tuple[list[str], str]]:
    corpus = run.parent / "corpus.txt"
    (tmp / "empty.txt").write_text("")
    (tmp / "latin1.txt").write_bytes("café\n".encode("latin-1") * 20)
    (tmp / "short.txt").write_text("To be or not")
    truncated = tmp / "truncated"
    shutil.copytree(run / "best", truncated)
    blob = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(blob[: len(blob) // 3])
    future = tmp / "future"
    shutil.copytree(run / "best", future)
    doc = json.loads((future / "meta.json").read_text())
    doc["checkpoint"]["format_version"] = 99
    (future / "meta.json").write_text(json.dumps(doc))
    corrupt = tmp / "corrupt"
    shutil.copytree(run / "best", corrupt)
    (corrupt / "meta.json").write_text("{not json")
    train = ["train", "lm", *TINY, "--max-steps", "2", "--no-progress", "--sample", "0"]
    return {
        "missing file": ([*train, "--data", str(tmp / "nope.txt")], "no such file"),
        "empty file": ([*train, "--data", str(tmp / "empty.txt")], "is empty"),
        "not utf-8": ([*train, "--data", str(tmp / "latin1.txt")], "not UTF-8"),
        "too short": ([*train, "--data", str(tmp / "short.txt")], "corpus too short"),
        "existing run": ([*train, "--data", str(corpus), "--out", str(run)], "already holds"),
        "resume nothing": ([*train, "--out", str(tmp / "none"), "--resume"], "no checkpoint"),
        "missing checkpoint": (["sample", str(tmp / "nothing")], "no checkpoint"),
        "truncated checkpoint": (["sample", str(truncated)], "checksum"),
        "future checkpoint": (["eval", str(future)], "newer than this rnnlab"),
        "corrupted checkpoint": (["sample", str(corrupt)], "corrupted"),
        "prime outside vocabulary": (["sample", str(run), "--prime", "XQZ"], "'X', 'Q', 'Z'"),
        "tied sizes": ([*train, "--data", str(corpus), "--tie-weights"], "tied weights need"),
        "unknown cell": ([*train, "--data", str(corpus), "--cell", "transformer"], "unknown cell"),
    }


def test_bad_inputs_give_one_line_errors_and_leave_checkpoints_intact(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before = _digest(run_dir)
    for name, (argv, message) in _bad_inputs(run_dir, tmp_path).items():
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0, name
        assert err and err[-1].startswith("rnnlab: error:") and message in err[-1], (name, err)
        assert not any("Traceback" in line for line in err), name
        assert _digest(run_dir) == before, name


REFUSED = {
    "changed optimizer": (["--optimizer", "sgd"], "trained with 'adamw'"),
    "changed options": (["--hidden", "48"], "hidden_size: 32 in checkpoint, 48 now"),
}


@pytest.mark.parametrize("change", ["changed optimizer", "changed options"])
def test_a_refused_resume_is_one_line_naming_the_difference(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: str
) -> None:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    flags, message = REFUSED[change]
    argv = ["train", "lm", "--out", str(out), "--resume", "--max-steps", "30", *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("rnnlab: error: cannot resume"), err
    assert message in err[-1], err
    assert not any("Traceback" in line for line in err)


def test_a_refused_resume_leaves_the_run_intact(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    before = _digest(out)
    for flags, _ in REFUSED.values():
        assert main(["train", "lm", "--out", str(out), "--resume", *flags]) == 2
        assert _digest(out) == before, flags
    capsys.readouterr()
    # and the run still resumes with its own options
    assert main(["train", "lm", "--out", str(out), "--resume", "--max-steps", "30"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "lm", "--hidden", "0"], "--hidden-size/--hidden: expected a value > 0, got '0'"),
        (["train", "lm", "--dropout", "1.5"], "--dropout: expected a value in [0, 1), got '1.5'"),
        (["train", "lm", "--time-budget", "10 parsecs"], "invalid duration"),
        (
            ["train", "lm", "--val-fraction", "1"],
            "--val-fraction: expected a value in (0, 1), got '1'",
        ),
        (
            ["sample", "x", "--temperature", "-1"],
            "--temperature: expected a value >= 0, got '-1'",
        ),
        (["sample", "x", "--length", "-5"], "--length: expected a value >= 0, got '-5'"),
    ],
)
def test_out_of_range_options(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_unknown_cell_is_one_line_naming_the_cells(capsys) -> None:
    # the cell table is open (register_cell): the config rejects the name, before any data
    assert main(["train", "lm", "--cell", "transformer"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnlab: error:"), err
    assert "unknown cell 'transformer'; choose one of: lstm" in err[0], err


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(
    run_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    before = _digest(out / "last")
    corpus = run_dir.parent / "corpus.txt"
    argv = [
        "train",
        "lm",
        "--data",
        str(corpus),
        *TINY,
        "--max-steps",
        "60",
        "--eval-every",
        "100",
        "--out",
        str(out),
        "--no-progress",
        "--sample",
        "0",
        "--resume",
        "--lr",
        "1e38",
        "--clip",
        "0",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "NaN/Inf" in err[-1] and "last good checkpoint" in err[-1]
    assert _digest(out / "last") == before


def test_help_on_every_command(capsys) -> None:
    for argv in (["train", "lm"], ["sample"], ["eval"]):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--help"])
        assert exc.value.code == 0
        assert "usage: rnnlab" in capsys.readouterr().out


def test_plain_baseline_defaults_follow_rnnlab_train_lm() -> None:
    """benchmarks/plain_lm.py is the benchmark's baseline: its defaults must stay the same
    recipe as `rnnlab train lm`'s, or docs/BENCHMARKS.md compares two different things."""
    from rnnlab.tasks.lm.task import LMTaskConfig

    with benchmark_script("plain_lm") as plain_lm:
        plain = plain_lm.build_parser().parse_args([])
    ours = LMTaskConfig()
    model, train = ours.model, ours.train
    shared = {
        "hidden": model.rnn.hidden_size,
        "layers": model.rnn.num_layers,
        "embedding": model.embedding_size,
        "dropout": model.rnn.dropout,
        "io_dropout": model.io_dropout,
        "seq_len": ours.seq_len,
        "batch": train.batch_size,
        "optimizer": train.optimizer,
        "weight_decay": train.weight_decay,
        "beta2": train.beta2,
        "lr": train.lr,
        "warmup": train.warmup_steps,
        "min_lr": train.min_lr,
        "schedule": train.schedule,
        "clip": train.clip_norm,
        "no_shift": not ours.shift,
        "eval_every": train.eval_every,
        "seed": train.seed,
    }
    assert {k: getattr(plain, k) for k in shared} == shared
    assert model.rnn.cell == "lstm" and not model.rnn.layer_norm
    assert not model.tie_weights and not model.rnn.bidirectional
