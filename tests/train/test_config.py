"""How to train: durations, :class:`TrainConfig` (its checks, its flags) and the learning-rate
schedules."""

from __future__ import annotations

import argparse

import pytest

from rnnlab.config import resolve
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.flags import add_arguments, given
from rnnlab.tasks.runner import RunConfig
from rnnlab.train.config import TrainConfig, lr_at, parse_duration


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


# -- the flags derived from the configs ---------------------------------------------------------
RNN_DEFAULTS = RecurrentConfig(hidden_size=64, num_layers=2)
TRAIN_DEFAULTS = TrainConfig(lr=1e-3, schedule="cosine", max_epochs=3)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t")
    seen: set[str] = set()
    add_arguments(p, RecurrentConfig, RNN_DEFAULTS, seen=seen)
    add_arguments(p, TrainConfig, TRAIN_DEFAULTS, seen=seen)
    add_arguments(p, RunConfig, seen=seen)
    return p


def _configs(argv: list[str]) -> tuple[RecurrentConfig, TrainConfig]:
    ns = _parser().parse_args(argv)
    rc = resolve(RecurrentConfig, explicit=[given(ns, RecurrentConfig)], defaults=RNN_DEFAULTS)
    tc = resolve(TrainConfig, explicit=[given(ns, TrainConfig)], defaults=TRAIN_DEFAULTS)
    return rc, tc


def test_shared_options_build_configs() -> None:
    rc, config = _configs(
        ["--cell", "gru", "--layer-norm", "--time-budget", "2m", "--clip", "0", "--bidirectional"]
    )
    # a limit given replaces the default limits; --clip 0 is off (the trainer clips only > 0)
    assert config.time_budget == 120 and not config.clip_norm and config.max_epochs is None
    assert config.lr == 1e-3 and config.schedule == "cosine"
    assert (rc.cell, rc.hidden_size, rc.num_layers, rc.layer_norm, rc.bidirectional) == (
        "gru",
        64,
        2,
        True,
        True,
    )
    _, config = _configs(["--lr", "0.5"])  # no limit given: the default ones stay
    assert config.max_epochs == 3 and config.time_budget is None and config.lr == 0.5
    assert config.clip_norm == 5.0


def test_old_flag_spellings_are_aliases() -> None:
    rc, config = _configs(
        ["--hidden", "7", "--layers", "3", "--warmup", "4", "--epochs", "2", "--batch", "5"]
    )
    assert (rc.hidden_size, rc.num_layers) == (7, 3)
    assert (config.warmup_steps, config.max_epochs, config.batch_size) == (4, 2, 5)


@pytest.mark.parametrize(
    "argv",
    [
        ["--hidden", "0"],
        ["--hidden", "x"],
        ["--dropout", "1"],
        ["--lr", "-1"],
        ["--lr", "nan"],
        ["--time-budget", "soon"],
        ["--batch", "-2"],
        ["--threads", "0"],
        ["--optimizer", "rmsprop"],
    ],
)
def test_shared_options_reject_out_of_range(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("t: error: argument")


def test_an_unknown_cell_is_rejected_when_the_config_is_built() -> None:
    # the cell table is open (register_cell), so the flag has no fixed choices: the config checks
    with pytest.raises(RnnlabError, match="unknown cell 'transformer'; choose one of: lstm"):
        _configs(["--cell", "transformer"])


# -- TrainConfig and the schedules ----------------------------------------------------------------
def test_lr_schedules_are_pure_functions_of_progress() -> None:
    c = TrainConfig(lr=1.0, min_lr=0.1, schedule="cosine", max_steps=100)
    assert lr_at(0, c) == pytest.approx(1.0)
    assert lr_at(50, c) == pytest.approx(0.55)
    assert lr_at(100, c) == pytest.approx(0.1)
    assert lr_at(30, c, progress=0.5) == pytest.approx(0.55)  # progress overrides the steps
    lin = TrainConfig(lr=1.0, min_lr=0.0, schedule="linear", max_steps=10)
    assert [lr_at(s, lin) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    step = TrainConfig(lr=1.0, schedule="step", step_gamma=0.5, step_every=0.25, max_steps=100)
    assert [lr_at(s, step) for s in (0, 24, 25, 60, 100)] == pytest.approx(
        [1.0, 1.0, 0.5, 0.25, 0.0625]
    )
    warm = TrainConfig(lr=1.0, warmup_steps=4, schedule="constant")
    assert [lr_at(s, warm) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "rmsprop"}, "optimizer must be one of adam, adamw, sgd; got 'rmsprop'"),
        ({"schedule": "wavy"}, "schedule must be one of constant, cosine"),
        ({"lr": -1.0}, r"lr must be in \(0, 1e38\]"),
        ({"max_steps": 0}, "max_steps must be > 0"),
        ({"clip_norm": -1.0}, "clip_norm must be >= 0"),
        ({"lr": float("nan")}, "lr must be a number, got nan"),
        ({"beta2": 1.0}, "beta2 must be in"),
        ({"beta2": 0.0}, "beta2 must be in"),
        ({"batch_size": 0}, "batch_size must be > 0"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(RnnlabError, match=message):
        TrainConfig(**kwargs)


def test_config_round_trips_through_meta() -> None:
    config = TrainConfig(batch_size=7, lr=0.5, schedule="step", time_budget=90.0, clip_norm=None)
    assert TrainConfig.from_meta(config.to_meta()) == config
    with pytest.raises(RnnlabError, match="unknown option 'learning_rate'"):
        TrainConfig.from_meta({"learning_rate": 1.0})
