"""``--precision bf16``: forward passes under torch.autocast, recurrent layers in fp32."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError
from rnnlab.nn import LSTM as DropInLSTM
from rnnlab.train.config import TrainConfig
from rnnlab.train.precision import autocast
from rnnlab.train.trainer import Trainer

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 8
LM = [
    "--hidden", "32", "--layers", "1", "--embedding", "8", "--seq-len", "16", "--batch", "4",
    "--dropout", "0", "--warmup", "0", "--lr", "0.01", "--log-every", "1", "--max-steps", "8",
    "--eval-every", "4", "--no-progress", "--sample", "0",
]  # fmt: skip


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole", "elman"])
def test_a_recurrent_layer_under_autocast_runs_in_its_weights_dtype(cell: str) -> None:
    """torch's kernel (lstm) and the C++ loop (the others): fp32 in, fp32 out, equal to the
    fp32 layer; a bf16 input or carried state is cast up, not refused."""
    torch.manual_seed(0)
    layer = RecurrentConfig(cell, 12, num_layers=2).build(6)
    x = torch.randn(3, 7, 6)
    out, state = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_state = layer(x)
        again, _ = layer(x.bfloat16(), got_state)  # bf16 input, carried state
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, out, rtol=0, atol=0)
    for a, b in zip(got_state if isinstance(got_state, tuple) else [got_state],
                    state if isinstance(state, tuple) else [state], strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert again.dtype == torch.float32 and torch.isfinite(again).all()


def test_gradients_flow_through_the_cast() -> None:
    layer = RecurrentConfig("gru", 8).build(4)
    x = torch.randn(2, 5, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = layer(x)
        loss = torch.nn.functional.linear(out, torch.ones(1, 8)).sum()  # bf16 matmul
    loss.backward()
    assert x.grad is not None and layer.cells[0].weight_hh.grad is not None
    assert torch.isfinite(x.grad).all()


def test_the_drop_ins_leave_their_dtype_to_autocast() -> None:
    assert DropInLSTM.recur_in_weight_dtype is False and Recurrent.recur_in_weight_dtype


def test_autocast_choices() -> None:
    cpu = torch.device("cpu")
    assert not isinstance(autocast(cpu, "fp32"), torch.autocast)
    assert isinstance(autocast(cpu, "bf16"), torch.autocast)
    with pytest.raises(RnnlabError, match="unknown precision 'fp16'"):
        autocast(cpu, "fp16")


def test_the_trainer_runs_the_forward_under_autocast() -> None:
    seen: list[tuple[bool, torch.dtype]] = []
    model = torch.nn.Linear(3, 1)

    def loss_fn(m: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
        y = m(batch)
        seen.append((torch.is_autocast_enabled("cpu"), y.dtype))
        return y.float().pow(2).mean(), len(batch)

    config = TrainConfig(max_steps=2, progress=False, precision="bf16")
    Trainer(model, config, loss_fn=loss_fn).fit(lambda epoch: [torch.randn(4, 3)] * 2)
    assert seen == [(True, torch.bfloat16)] * 2
    assert model.weight.dtype == torch.float32  # the weights and the optimizer stay fp32


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(r["train_loss"]) for r in csv.DictReader(f)]


def test_a_bf16_language_model_trains_close_to_fp32_and_samples_in_bf16(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    for precision in ("fp32", "bf16"):
        argv = ["train", "lm", "--data", str(corpus), *LM, "--precision", precision]
        assert main([*argv, "--out", str(tmp_path / precision)]) == 0
    fp32, bf16 = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert bf16 != fp32  # the output layer really ran in bf16
    assert bf16 == pytest.approx(fp32, rel=2e-2)  # bf16 has 8 bits of mantissa
    assert bf16[-1] < bf16[0]
    capsys.readouterr()
    code = main(["sample", str(tmp_path / "bf16"), "--precision", "bf16", "--length", "30"])
    assert code == 0 and len(capsys.readouterr().out) >= 30
    assert '"precision": "bf16"' in (tmp_path / "bf16" / "config.json").read_text()


def test_an_unknown_precision_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "lm", "--precision", "fp16"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'fp16'" in err and len(err.strip().splitlines()) == 1
