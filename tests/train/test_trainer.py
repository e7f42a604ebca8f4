"""The shared trainer: optimizers, limits, NaN stop, early stopping, files, exact resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.train.checkpoint import load_checkpoint
from rnnlab.train.config import TrainConfig
from rnnlab.train.regularizers import NormStabilizer
from rnnlab.train.trainer import Trainer, make_optimizer


class Classifier(nn.Module):
    """A sequence classifier: Recurrent -> dropout -> last output -> linear."""

    def __init__(self, cell: str = "gru") -> None:
        super().__init__()
        self.rnn = RecurrentConfig(cell, hidden_size=8).build(3)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(8, 2)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        h, _ = self.rnn(x)
        logits = self.out(self.drop(h[:, -1]))
        loss = None if y is None else nn.functional.cross_entropy(logits, y)
        return logits, loss


def _data(n: int = 64) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5, 3, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long()
    return x, y


def _batches(x: Tensor, y: Tensor, size: int = 16):
    def batches(epoch: int) -> list[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        return [(x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(x), size)]

    return batches


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _evaluate(x: Tensor, y: Tensor):
    def evaluate(model: nn.Module) -> dict[str, float]:
        _, loss = model(x, y)
        return {"val_loss": float(loss)}

    return evaluate


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_optimizer_uses_the_configured_beta2(name: str) -> None:
    opt = make_optimizer([nn.Parameter(torch.zeros(3))], TrainConfig(optimizer=name, beta2=0.99))
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)


def test_fit_learns_and_writes_its_files(tmp_path: Path) -> None:
    x, y = _data()
    model = Classifier()
    config = TrainConfig(
        lr=2e-2,
        max_steps=60,
        eval_every=20,
        log_every=5,
        progress=False,
        schedule="cosine",
        optimizer="adamw",
    )
    trainer = Trainer(model, config, tmp_path, evaluate=_evaluate(x, y), meta={"task": "toy"})
    result = trainer.fit(_batches(x, y))
    assert result.stopped == "max_steps" and result.steps == 60
    assert result.best_val_loss < 0.5  # from ln 2 = 0.69
    assert result.tokens_per_s > 0
    for name in ("metrics.csv", "eval.csv", "loss.png", "best/meta.json", "last/meta.json"):
        assert (tmp_path / name).exists(), name
    rows = _read_csv(tmp_path / "eval.csv")
    assert [int(r["step"]) for r in rows] == [20, 40, 60]
    train_rows = _read_csv(tmp_path / "metrics.csv")
    assert len(train_rows) == 12 and float(train_rows[-1]["lr"]) < 1e-3
    best = load_checkpoint(tmp_path / "best")
    assert best.meta == {"task": "toy"} and best.training_state["step"] == result.best_step


class Interrupt(Exception):
    pass


def _interrupting(batches, at_call: int):
    """batches() that raises on its ``at_call``-th batch overall, as a killed process would stop."""
    count = [0]

    def wrapped(epoch: int):
        for b in batches(epoch):
            count[0] += 1
            if count[0] == at_call:
                raise Interrupt
            yield b

    return wrapped


@pytest.mark.parametrize("cell", ["gru", "peephole"])
def test_resume_continues_exactly(tmp_path: Path, cell: str) -> None:
    """N steps straight == stop after a checkpoint mid-epoch + resume: same final weights.

    Covers the schedule, the optimizer moments, dropout's RNG and the position in the epoch.
    """
    x, y = _data()
    config = TrainConfig(
        lr=1e-2, max_steps=14, eval_every=6, schedule="cosine", optimizer="sgd", progress=False
    )

    def run(out: Path, batches, resume: bool = False) -> nn.Module:
        torch.manual_seed(123)  # a different init would be overwritten by the resume anyway
        model = Classifier(cell)
        Trainer(model, config, out, evaluate=_evaluate(x, y), resume=resume).fit(batches)
        return model

    straight = run(tmp_path / "a", _batches(x, y))
    with pytest.raises(Interrupt):
        run(tmp_path / "b", _interrupting(_batches(x, y), at_call=9))  # last checkpoint: step 6
    assert load_checkpoint(tmp_path / "b" / "last").training_state["step"] == 6
    resumed = run(tmp_path / "b", _batches(x, y), resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    steps = [int(r["step"]) for r in _read_csv(tmp_path / "b" / "eval.csv")]
    assert steps == [6, 12, 14]


def test_resume_refuses_changed_model_options(tmp_path: Path) -> None:
    x, y = _data()
    config = TrainConfig(max_steps=2, eval_every=2, progress=False)
    Trainer(Classifier(), config, tmp_path, meta={"model_config": {"hidden": 8}}).fit(
        _batches(x, y)
    )
    trainer = Trainer(
        Classifier(), config, tmp_path, meta={"model_config": {"hidden": 9}}, resume=True
    )
    with pytest.raises(RnnlabError, match=r"model_config.hidden: 8 in checkpoint, 9 now"):
        trainer.fit(_batches(x, y))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    x, y = _data()
    calls = [0]

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        calls[0] += 1
        _, loss = model(*batch)
        return (loss * float("nan") if calls[0] == 6 else loss), len(batch[0])

    config = TrainConfig(max_steps=50, eval_every=2, progress=False)
    trainer = Trainer(Classifier(), config, tmp_path, loss_fn=loss_fn, evaluate=_evaluate(x, y))
    result = trainer.fit(_batches(x, y))
    assert result.stopped == "nan" and result.steps == 5
    assert "NaN/Inf" in result.message and "last" in result.message
    ck = load_checkpoint(tmp_path / "last")
    assert ck.training_state["step"] == 4
    assert all(torch.isfinite(t).all() for t in ck.state_dict.values())


def test_early_stopping_and_epoch_limit(tmp_path: Path) -> None:
    x, y = _data()
    losses = iter([1.0, 0.9, 0.95, 0.97, 0.99, 1.2, 1.3])
    config = TrainConfig(max_epochs=100, eval_every=1, patience=3, progress=False)
    trainer = Trainer(Classifier(), config, None, evaluate=lambda m: {"val_loss": next(losses)})
    result = trainer.fit(_batches(x, y))
    assert result.stopped == "early_stopping" and result.steps == 5
    assert result.best_val_loss == 0.9 and result.best_step == 2

    trainer = Trainer(Classifier(), TrainConfig(max_epochs=2, progress=False), None)
    result = trainer.fit(_batches(x, y))
    assert result.stopped == "max_epochs" and result.steps == 8 and result.epochs_completed == 2


def test_time_budget_stops_training() -> None:
    x, y = _data()
    config = TrainConfig(time_budget=0.3, progress=False, schedule="cosine")
    result = Trainer(Classifier(), config, None).fit(_batches(x, y))
    # the validation at step 200 (nothing to evaluate, nothing to write) takes a moment, which
    # the budget then keeps in reserve: training stops that much before 0.3 s
    assert result.stopped == "time_budget" and 0.28 <= result.elapsed < 2.0


def test_a_decaying_schedule_needs_a_length() -> None:
    x, y = _data()
    config = TrainConfig(schedule="cosine", max_epochs=1, progress=False)

    def no_len(epoch: int):
        return iter(_batches(x, y)(epoch))  # no len(): no horizon

    with pytest.raises(RnnlabError, match="needs a length"):
        Trainer(Classifier(), config, None).fit(no_len)


def test_norm_stabilizer_matches_its_formula() -> None:
    model = Classifier("elman")
    stab = NormStabilizer(model, beta=0.5)
    x = torch.randn(4, 6, 3)
    h, _ = model.rnn(x)
    norms = h.norm(dim=-1)
    expected = 0.5 * (norms[:, 1:] - norms[:, :-1]).pow(2).mean()
    torch.testing.assert_close(stab.penalty(), expected)
    assert stab.penalty() is None  # consumed
    model.eval()
    model.rnn(x)
    assert stab.penalty() is None  # not collected outside training
    # padded steps (zero outputs) are left out
    model.train()
    lengths = torch.tensor([6, 3, 6, 2])
    h, _ = model.rnn(x, lengths=lengths)
    norms = h.norm(dim=-1)
    mask = torch.arange(6) < lengths[:, None]
    valid = mask[:, 1:] & mask[:, :-1]
    diff = (norms[:, 1:] - norms[:, :-1]).pow(2)
    torch.testing.assert_close(stab.penalty(), 0.5 * diff[valid].mean())
    stab.remove()


def test_norm_stabilizer_trains_and_lowers_the_penalty() -> None:
    x, y = _data()
    torch.manual_seed(0)
    config = TrainConfig(max_steps=30, norm_stabilizer=5.0, progress=False, lr=1e-2)
    model = Classifier("elman")
    result = Trainer(model, config, None).fit(_batches(x, y))
    assert result.stopped == "max_steps" and math.isfinite(result.train_loss)


def test_tensorboard_logging(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    x, y = _data()
    config = TrainConfig(max_steps=4, eval_every=2, log_every=2, tensorboard=True, progress=False)
    Trainer(Classifier(), config, tmp_path, evaluate=_evaluate(x, y)).fit(_batches(x, y))
    assert any((tmp_path / "tensorboard").iterdir())
