"""The language model's command line, and the options shared by every training command."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.cli.common import (
    add_model_options,
    add_trainer_options,
    parse_duration,
    recurrent_config_from_args,
    trainer_config_from_args,
)
from rnnlab.errors import RnnlabError


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90),
        ("90s", 90),
        ("1.5m", 90),
        ("10m", 600),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2min", 120),
        (" 20 s ", 20),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "10x", "-5m", "0", "m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(RnnlabError, match="invalid duration"):
        parse_duration(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    add_model_options(p, {"hidden": 64, "layers": 2}, bidirectional=True)
    add_trainer_options(p, {"lr": 1e-3, "schedule": "cosine"})
    return p


def test_shared_options_build_configs() -> None:
    args = _parser().parse_args(
        ["--cell", "gru", "--layer-norm", "--time-budget", "2m", "--clip", "0", "--bidirectional"]
    )
    config = trainer_config_from_args(args, max_epochs=3)
    assert config.time_budget == 120 and config.clip_norm is None and config.max_epochs == 3
    assert config.lr == 1e-3 and config.schedule == "cosine"
    rc = recurrent_config_from_args(args, input_size=5)
    assert (rc.cell, rc.hidden_size, rc.num_layers, rc.layer_norm, rc.bidirectional) == (
        "gru",
        64,
        2,
        True,
        True,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--hidden", "0"],
        ["--hidden", "x"],
        ["--dropout", "1"],
        ["--lr", "-1"],
        ["--lr", "nan"],
        ["--time-budget", "soon"],
        ["--cell", "transformer"],
        ["--batch", "-2"],
        ["--threads", "0"],
    ],
)
def test_shared_options_reject_out_of_range(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("t: error: argument")


def test_threads_option_sets_torch_threads() -> None:
    from rnnlab.cli.common import resolve_device

    before = torch.get_num_threads()
    try:
        args = _parser().parse_args(["--threads", "1", "--device", "cpu"])
        assert resolve_device(args) == torch.device("cpu")
        assert torch.get_num_threads() == 1
        torch.set_num_threads(3)
        args = _parser().parse_args(["--device", "cpu"])  # no --threads: torch's own setting
        resolve_device(args)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# -- rnnlab train lm / sample / eval ------------------------------------------------------------
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
    for name in ("best/meta.json", "last/model.safetensors", "metrics.csv", "eval.csv", "loss.png"):
        assert (out / name).exists(), name


def test_train_lm_word_level_one_hot_and_norm_stabilizer(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    corpus = tmp_path / "corpus.txt"
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
        str(tmp_path / "w"),
        "--no-progress",
        "--sample",
        "5",
    ]
    assert main(argv) == 0
    assert "words/s" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "w"), "--prime", "All", "--length", "5"]) == 0


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
        "changed options on resume": (
            [*train, "--data", str(corpus), "--out", str(run), "--resume", "--hidden", "48"],
            "hidden_size: 32 in checkpoint, 48 now",
        ),
        "changed optimizer on resume": (
            [*train, "--data", str(corpus), "--out", str(run), "--resume", "--optimizer", "sgd"],
            "trained with 'adamw'",
        ),
        "resume nothing": ([*train, "--out", str(tmp / "none"), "--resume"], "no checkpoint"),
        "missing checkpoint": (["sample", str(tmp / "nothing")], "no checkpoint"),
        "truncated checkpoint": (["sample", str(truncated)], "checksum"),
        "future checkpoint": (["eval", str(future)], "newer than this rnnlab"),
        "corrupted checkpoint": (["sample", str(corrupt)], "corrupted"),
        "prime outside vocabulary": (["sample", str(run), "--prime", "XQZ"], "'X', 'Q', 'Z'"),
        "tied sizes": ([*train, "--data", str(corpus), "--tie-weights"], "tied weights need"),
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
    assert _digest(run_dir) == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "lm", "--cell", "transformer"], "invalid choice: 'transformer'"),
        (["train", "lm", "--hidden", "0"], "--hidden: expected a positive integer"),
        (["train", "lm", "--dropout", "1.5"], "--dropout: expected a probability"),
        (["train", "lm", "--time-budget", "10 parsecs"], "invalid duration"),
        (["train", "lm", "--val-fraction", "1"], "--val-fraction: expected a fraction"),
        (["sample", "x", "--temperature", "-1"], "--temperature: expected a number >= 0"),
        (["sample", "x", "--length", "-5"], "--length: expected an integer >= 0"),
    ],
)
def test_out_of_range_options(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


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
    from rnnlab.cli import build_parser

    spec = importlib.util.spec_from_file_location(
        "plain_lm", Path(__file__).parent.parent / "benchmarks" / "plain_lm.py"
    )
    plain_lm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plain_lm)
    plain = plain_lm.build_parser().parse_args([])
    ours = build_parser().parse_args(["train", "lm"])
    shared = [
        "hidden",
        "layers",
        "embedding",
        "dropout",
        "io_dropout",
        "seq_len",
        "batch",
        "optimizer",
        "weight_decay",
        "beta2",
        "lr",
        "warmup",
        "min_lr",
        "schedule",
        "clip",
        "no_shift",
        "eval_every",
        "seed",
    ]
    assert {k: getattr(plain, k) for k in shared} == {k: getattr(ours, k) for k in shared}
    assert ours.cell == "lstm" and not ours.layer_norm
