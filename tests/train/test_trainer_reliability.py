"""The trainer under failure: NaN/Inf never reaches a checkpoint, damaged logs and changed options
on resume, a time budget that includes evaluation, kernel builds kept off the clock."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError
from rnnlab.train import runlog
from rnnlab.train.checkpoint import load_checkpoint
from rnnlab.train.config import TrainConfig
from rnnlab.train.trainer import Trainer
from tests.train.test_trainer import Classifier, _batches, _data, _evaluate, _read_csv


def _digests(run: Path) -> dict[str, str]:
    return {
        str(f.relative_to(run)): hashlib.sha256(f.read_bytes()).hexdigest()
        for name in ("best", "last")
        for f in sorted((run / name).iterdir())
    }


def _assert_finite_checkpoints(run: Path) -> None:
    for name in ("best", "last"):
        ck = load_checkpoint(run / name)
        for key, t in ck.state_dict.items():
            assert torch.isfinite(t).all(), f"{name}/{key}"


def _fit(out: Path | None, cell: str = "elman-relu", resume: bool = False, **options) -> Trainer:
    x, y = _data()
    torch.manual_seed(0)
    config = TrainConfig(**{"optimizer": "sgd", "progress": False, "eval_every": 2} | options)
    trainer = Trainer(Classifier(cell), config, out, evaluate=_evaluate(x, y), resume=resume)
    trainer.result = trainer.fit(_batches(x, y))
    return trainer


# -- 1. no NaN/Inf reaches a checkpoint -----------------------------------------------------------
def test_diverging_run_from_scratch_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    # lr 100 without clipping: the weights stay finite but the validation loss is NaN at step 4
    result = _fit(tmp_path, lr=100.0, clip_norm=0, max_steps=40).result
    assert result.stopped == "nan"
    assert result.message == (
        "training stopped at step 4: the validation loss is NaN/Inf (nan) (try a lower learning "
        f"rate or gradient clipping); the last good checkpoint (step 2) is kept in {tmp_path}/last"
    )
    assert load_checkpoint(tmp_path / "last").training_state["step"] == 2
    _assert_finite_checkpoints(tmp_path)
    rows = _read_csv(tmp_path / "eval.csv")
    assert [r["step"] for r in rows] == ["2"]  # the NaN validation is not recorded either


def test_diverging_resume_leaves_the_good_run_untouched(tmp_path: Path) -> None:
    assert _fit(tmp_path, lr=0.1, max_steps=6).result.stopped == "max_steps"
    before = _digests(tmp_path)
    for lr in (1e20, 1e38):
        result = _fit(tmp_path, lr=lr, clip_norm=0, max_steps=60, resume=True).result
        assert result.stopped == "nan", lr
        found = re.search(
            r"stopped at step (\d+): the (loss|gradient norm|validation loss)", result.message
        )
        assert found and int(found.group(1)) > 6, result.message
        assert "the last good checkpoint (step 6) is kept" in result.message
        assert _digests(tmp_path) == before  # byte for byte the good run's checkpoints
        _assert_finite_checkpoints(tmp_path)


def test_a_nan_gradient_without_clipping_stops_before_the_step(tmp_path: Path) -> None:
    x, y = _data()
    calls = [0]

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        calls[0] += 1
        _, loss = model(*batch)
        if calls[0] == 3:  # a finite loss whose gradient is NaN: d sqrt(u)/du at u = 0
            loss = loss + 0.0 * torch.sqrt(model.out.bias.abs() * 0.0).sum()
        return loss, len(batch[0])

    model = Classifier()
    config = TrainConfig(max_steps=10, eval_every=1, clip_norm=0, progress=False)
    trainer = Trainer(model, config, tmp_path, loss_fn=loss_fn, evaluate=_evaluate(x, y))
    result = trainer.fit(_batches(x, y))
    assert result.stopped == "nan" and result.steps == 2
    assert result.message.startswith("training stopped at step 3: the gradient norm is NaN/Inf")
    assert "(step 2) is kept" in result.message
    last = load_checkpoint(tmp_path / "last")
    for name, t in model.state_dict().items():  # the NaN step never reached the weights
        assert torch.equal(t, last.state_dict[name]), name


class WithUnused(Classifier):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(2), requires_grad=False)  # not in the loss


def test_non_finite_weights_are_never_saved(tmp_path: Path) -> None:
    x, y = _data()
    model = WithUnused()
    config = TrainConfig(max_steps=10, eval_every=2, progress=False)

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"val_loss": 1.0}

    trainer = Trainer(model, config, tmp_path, evaluate=evaluate)
    trainer.fit(_batches(x, y))
    before = _digests(tmp_path)
    with torch.no_grad():
        model.unused[0] = float("inf")  # the loss stays finite: only the weight check sees it
    trainer.config = TrainConfig(max_steps=14, eval_every=2, progress=False)
    result = trainer.fit(_batches(x, y))
    assert result.stopped == "nan"
    assert result.message.startswith(
        "training stopped at step 12: the weights are NaN/Inf (unused)"
    )
    assert _digests(tmp_path) == before


# -- 2. resume robustness -----------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_resume_with_damaged_logs(tmp_path: Path, damage: str, capsys) -> None:
    _fit(tmp_path, cell="gru", lr=1e-2, max_steps=8, log_every=1)
    metrics, evals = tmp_path / "metrics.csv", tmp_path / "eval.csv"
    if damage == "cut":  # a kill in the middle of the last row (step 8)
        for path in (metrics, evals):
            *lines, last = path.read_text().splitlines(keepends=True)
            path.write_text("".join(lines) + last[: last.index(",") + 3])
    else:
        metrics.write_bytes(b"step,train_loss\n\x00\xff\xfe,1\nabc,def\n3,\n4,nan,5,6\n" * 3)
        evals.write_bytes(bytes(range(256)) * 4)
    for _ in range(2):  # and a later resume works the same
        max_steps = 12 if _ == 0 else 16
        trainer = _fit(tmp_path, cell="gru", lr=1e-2, max_steps=max_steps, log_every=1, resume=True)
        assert trainer.result.stopped == "max_steps"
        assert (tmp_path / "loss.png").exists()
    train_rows = _read_csv(metrics)
    steps = [int(r["step"]) for r in train_rows]
    eval_steps = [int(r["step"]) for r in _read_csv(evals)]
    assert all(float(r["train_loss"]) > 0 for r in train_rows)
    if damage == "cut":  # the valid rows before the cut are kept, the cut one is not
        assert steps == list(range(1, 8)) + list(range(9, 17))
        assert eval_steps == [2, 4, 6, 10, 12, 14, 16]
    else:
        assert steps == list(range(9, 17))
        assert eval_steps == [10, 12, 14, 16]
    assert "warning" not in capsys.readouterr().err


def test_a_failing_plot_is_one_warning_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("could not convert string to float: 'x'")

    monkeypatch.setattr(runlog, "plot_loss_curves", broken)
    result = _fit(tmp_path, cell="gru", lr=1e-2, max_steps=8, log_every=1).result
    assert result.stopped == "max_steps"
    err = capsys.readouterr().err
    assert err.count("rnnlab: warning: could not draw loss.png") == 1, err


def test_resume_refuses_a_changed_batch_size(tmp_path: Path) -> None:
    _fit(tmp_path, cell="gru", max_steps=2, batch_size=16)
    with pytest.raises(RnnlabError) as info:
        _fit(tmp_path, cell="gru", max_steps=4, batch_size=8, resume=True)
    message = str(info.value)
    assert "--batch" in message and "batch_size" in message
    assert "trained with 16" in message and "8" in message and "\n" not in message


# -- 3. the time budget includes evaluation -----------------------------------------------------
@pytest.mark.parametrize("eval_every", [3, 10_000])
def test_time_budget_includes_the_final_validation(tmp_path: Path, eval_every: int) -> None:
    """A slow validation (0.25 s) in a 1.5 s budget: measured after the first validation, or
    the reserve (10% of the budget: 0.15 s) before it, keeps the whole run within the budget."""
    x, y = _data()
    seen: list[str] = []

    def slow_evaluate(model: nn.Module) -> dict[str, float]:
        seen.append(trainer._bar.desc if trainer._bar is not None else "")
        time.sleep(0.25 if eval_every == 3 else 0.1)
        return _evaluate(x, y)(model)

    budget = 1.5
    config = TrainConfig(time_budget=budget, eval_every=eval_every, progress=True)
    out = tmp_path if eval_every == 3 else None  # (no checkpoint and plot in the estimate)
    trainer = Trainer(Classifier(), config, out, evaluate=slow_evaluate)
    start = time.perf_counter()
    result = trainer.fit(_batches(x, y))
    wall = time.perf_counter() - start
    assert result.stopped == "time_budget"
    assert result.elapsed <= budget + 0.1 and wall <= budget + 0.6, (result.elapsed, wall)
    assert result.elapsed >= budget - 0.6  # and it does use the budget
    assert seen and set(seen) == {"validating"}  # the bar says what is going on
    assert trainer._bar is None
    if out is not None:
        assert load_checkpoint(out / "last").training_state["step"] == result.steps


def test_a_slow_validation_without_a_bar_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    from rnnlab.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "SLOW_EVAL_S", 0.05)
    x, y = _data()

    def slow_evaluate(model: nn.Module) -> dict[str, float]:
        time.sleep(0.1)
        return _evaluate(x, y)(model)

    config = TrainConfig(max_steps=2, eval_every=2, progress=False)
    Trainer(Classifier(), config, tmp_path, evaluate=slow_evaluate).fit(_batches(x, y))
    assert "rnnlab: validation at step 2 took" in capsys.readouterr().err


# -- 4. a kernel build is not charged to the budget --------------------------------------------
def test_kernel_build_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnlab.core.fast import _build

    real_load, calls = _build.load, []

    def slow_load() -> bool:
        if not calls:
            time.sleep(1.0)  # a first-use build
        calls.append(1)
        return real_load()

    monkeypatch.setattr(_build, "load", slow_load)
    x, y = _data()
    config = TrainConfig(max_steps=3, progress=False)
    start = time.perf_counter()
    result = Trainer(Classifier("gru"), config, None).fit(_batches(x, y))
    assert calls and time.perf_counter() - start >= 1.0
    assert result.steps == 3 and result.elapsed < 0.7, result.elapsed


def test_the_build_says_what_it_is_doing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    from torch.utils import cpp_extension

    from rnnlab.core.fast import _build

    built: list[Path] = []

    def fake_build(build_directory: str, **kwargs: object) -> None:
        time.sleep(0.05)
        lib = Path(build_directory) / "rnnlab_fast_kernels.so"
        lib.write_bytes(b"")
        built.append(lib)

    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", fake_build)
    for _ in range(2):  # the second load finds the library built: no message
        # without the real kernels in this process, the registration check fails: not the point
        with contextlib.suppress(RuntimeError):
            _build._load()
    err = capsys.readouterr().err
    assert len(built) == 2
    assert err.count("rnnlab: building the C++ kernels for this environment (first use") == 1
    assert re.search(r"rnnlab: C\+\+ kernels built in \d+ s", err), err


def test_a_kill_between_saving_last_and_best_is_repaired_on_resume(tmp_path: Path) -> None:
    """last/ is written before best/: a run killed between them resumes, and the resume writes
    the best/ it missed (the weights of last/, where the validation improved)."""
    x, y = _data()
    losses = iter([0.9, 0.8, 0.7])
    config = TrainConfig(max_steps=4, eval_every=2, progress=False)
    Trainer(Classifier(), config, tmp_path, evaluate=lambda m: {"val_loss": next(losses)}).fit(
        _batches(x, y)
    )
    stale = tmp_path / "best-at-2"
    (tmp_path / "best").rename(stale)  # as if killed after last/ (step 4), before best/
    trainer = Trainer(
        Classifier(), TrainConfig(max_steps=6, eval_every=2, progress=False), tmp_path,
        evaluate=lambda m: {"val_loss": next(losses)}, resume=True,
    )  # fmt: skip
    trainer.restore()
    best, last = load_checkpoint(tmp_path / "best"), load_checkpoint(tmp_path / "last")
    assert best.training_state["step"] == 4 == last.training_state["step"]
    for name, t in last.state_dict.items():
        assert torch.equal(t, best.state_dict[name]), name
    assert trainer.fit(_batches(x, y)).best_step == 6
