"""``rnnlab train seq2seq`` and ``rnnlab translate`` through the command line: a tiny run, its
test report, the use command, rnnlab 0.1.0 checkpoints, and bad input giving one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnlab.cli import build_parser, main
from rnnlab.config import resolve
from rnnlab.errors import RnnlabError
from rnnlab.flags import given
from rnnlab.tasks.seq2seq.task import TASK, Seq2SeqTaskConfig
from tests.tasks.helpers import FAST, FIXTURES, one_line_error, run


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pairs.tsv"
    path.write_text("".join(f"i am {w} .\tje suis {w} .\n" for w in "abcdefghijklmnopqrst"))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, pairs: Path) -> tuple[Path, str]:
    """One tiny training run; its directory and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("runs") / "seq2seq"
    argv = ["train", "seq2seq", "--data", str(pairs), "--beam", "2", "--max-len", "6", *FAST]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([*argv, "--out", str(out)]) == 0
    return out, stdout.getvalue()


def test_training_writes_the_test_report(trained: tuple[Path, str]) -> None:
    out, stdout = trained
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["parameters"] > 0
    reported = ["test_bleu_greedy", "test_bleu_beam2", "test_exact_greedy", "test_exact_beam2"]
    reported += ["test_loss", "test_pairs", "tested_checkpoint"]
    assert list(metrics)[: len(reported)] == reported
    assert metrics["tested_checkpoint"] in ("best", "last") and metrics["test_pairs"] == 2
    lines = stdout.splitlines()
    start = lines.index("test examples (beam):")
    examples = lines[start + 1 : start + 1 + metrics["test_pairs"]]
    assert all(" -> " in line and "(reference: je suis" in line for line in examples)
    assert json.loads((out / "config.json").read_text())["beam"] == 2


def test_translate(trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = trained
    for extra in ([], ["--beam", "3", "--nbest", "2"]):
        code, stdout, _ = run(["translate", str(out), "i am c .", *extra], capsys)
        assert code == 0 and len(stdout.splitlines()) == (2 if extra else 1)
    code, stdout, err = run(["translate", str(out), "i am zzz .", "--beam", "2"], capsys)
    assert code == 0 and "unknown to the model (read as <unk>): zzz" in err


def test_translate_errors(
    trained: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = trained
    one_line_error(["translate", str(out), "   "], capsys, "nothing to translate")
    one_line_error(
        ["translate", str(out), "i am c .", "--beam", "2", "--nbest", "3"],
        capsys,
        "--nbest 3 is more than --beam 2",
    )
    one_line_error(["translate", str(out), "i am c .", "--nbest", "2"], capsys, "--nbest 2")
    one_line_error(["translate", str(tmp_path / "nothing"), "i am"], capsys, "nothing")


def test_translate_reads_rnnlab_0_1_0_checkpoints(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())["seq2seq"]
    monkeypatch.chdir(FIXTURES)
    code, stdout, _ = run(expected["argv"], capsys)
    assert code == 0 and stdout == expected["stdout"]


def test_synthetic_run_translates_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sort"
    argv = ["train", "seq2seq", "--synthetic", "sort", "--digits", "3", "--beam", "2"]
    argv += ["--max-len", "4", *FAST, "--max-steps", "2", "--out", str(out)]
    code, stdout, _ = run(argv, capsys)
    assert code == 0 and "test_pairs 500" in stdout
    meta = json.loads((out / "best" / "meta.json").read_text())["meta"]
    assert meta["data"] == {"source": "synthetic:sort3", "tokenizer": "whitespace"}
    assert set(meta["vocabs"]) == {"source", "target"}
    code, stdout, _ = run(["translate", str(out), "3 1 2", "--max-len", "4"], capsys)
    assert code == 0 and set(stdout.split()) <= set("0123456789")


def test_bad_training_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "o"), *FAST]
    tsv = tmp_path / "d.tsv"
    tsv.write_text("go .\tva !\n\nhello\n")
    one_line_error(["train", "seq2seq", "--data", str(tsv), *out], capsys, "d.tsv:3: expected")
    one_line_error(
        ["train", "seq2seq", "--data", str(tsv), "--synthetic", "sort", *out],
        capsys,
        "--data and --synthetic contradict each other",
    )
    one_line_error(
        ["train", "seq2seq", "--teacher-forcing", "1.5", *out], capsys, "--teacher-forcing"
    )


# -- options ------------------------------------------------------------------------------------
def options(*argv: str) -> Seq2SeqTaskConfig:
    """The task config ``rnnlab train seq2seq ARGV`` resolves to."""
    ns = build_parser().parse_args(["train", "seq2seq", *argv])
    return resolve(Seq2SeqTaskConfig, explicit=[given(ns, Seq2SeqTaskConfig)])


def test_defaults_and_old_flag_spellings() -> None:
    config = Seq2SeqTaskConfig()
    assert config.model.encoder.describe() == "1x256 gru" and config.model.embed_dim == 128
    assert config.model.attention is None and config.model.teacher_forcing == 1.0
    train = config.train
    assert (train.batch_size, train.lr, train.schedule, train.eval_every) == (
        32,
        2e-3,
        "cosine",
        250,
    )
    assert (train.max_epochs, train.time_budget, train.max_steps) == (30, 240.0, None)
    assert (config.beam, config.max_len) == (5, 30)
    config = options("--embedding", "64", "--hidden", "32", "--layers", "2", "--batch", "8")
    assert config.model.embed_dim == 64 and config.model.encoder.hidden_size == 32
    assert config.model.encoder.num_layers == 2 and config.train.batch_size == 8
    config = options("--dropout", "0.3", "--io-dropout", "0.2")
    assert config.model.encoder.dropout == 0.3 and config.model.dropout == 0.2


def test_attention_option() -> None:
    assert options("--attention", "bahdanau").model.attention == "bahdanau"
    assert options("--attention", "luong").model.attention == "luong"
    assert options("--attention", "none").model.attention is None
    with pytest.raises(SystemExit):
        options("--attention", "dot")


def test_synthetic_runs_are_short_unless_a_limit_is_given() -> None:
    config = Seq2SeqTaskConfig(synthetic="reverse")
    short = TASK.adjust(config, frozenset({"synthetic"})).train
    assert (short.max_steps, short.max_epochs, short.time_budget) == (600, None, 120.0)
    kept = TASK.adjust(config, frozenset({"synthetic", "train.max_epochs"}))
    assert kept == config
    assert TASK.adjust(Seq2SeqTaskConfig(), frozenset()) == Seq2SeqTaskConfig()
    with pytest.raises(RnnlabError, match="contradict"):
        Seq2SeqTaskConfig(data="x.tsv", synthetic="sort")
