"""The language model's command line, and the options shared by every training command."""

from __future__ import annotations

import argparse

import pytest

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
    ],
)
def test_shared_options_reject_out_of_range(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("t: error: argument")
