"""Helpers shared by the task tests: command-line runs, one-line errors, small models, batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from rnnlab.cli import main
from rnnlab.core.registry import RecurrentConfig
from rnnlab.errors import RnnlabError

FAST = ["--max-steps", "4", "--eval-every", "2", "--hidden", "8", "--no-progress"]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_0"
EXAMPLES = int(os.environ.get("RNNLAB_FUZZ_EXAMPLES", 200))
FUZZ = settings(max_examples=EXAMPLES, deadline=None)
RNNLAB_ERROR = "rnnlab: error:"

# (cell, layers, bidirectional): torch's fused kernel, rnnlab's own loop, stacked, both ways
RNNS = [("lstm", 1, False), ("gru", 2, True), ("minimal-gru", 1, True), ("elman", 2, False)]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command line; its exit code (argparse's too), stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects a flag's value
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(
    argv: list[str], capsys: pytest.CaptureFixture[str], match: str, prefix: str = ""
) -> None:
    """Assert the command exits 2 with one error line (starting with prefix) naming match."""
    code, _, err = run(argv, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith(prefix) and "error:" in line]
    assert len(lines) == 1 and match in lines[0], err
    assert "Traceback" not in err


def one_line(exc: BaseException) -> str:
    """Assert exc is an RnnlabError with a one-line message; return the message."""
    assert isinstance(exc, RnnlabError), repr(exc)
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, message
    return message


def rnn(cell: str, layers: int, bi: bool = False, hidden: int = 12) -> RecurrentConfig:
    """A small recurrent config."""
    return RecurrentConfig(cell, hidden, num_layers=layers, bidirectional=bi)


def ragged(lengths: list[int], vocab: int, seed: int = 0) -> list[torch.Tensor]:
    """Seeded random token sequences of the given lengths (ids from 3 up)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g) for n in lengths]


def pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded batch of the sequences and their lengths."""
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def fit(model: torch.nn.Module, batch: tuple, steps: int, lr: float = 0.02) -> float:
    """Train the model on one batch with Adam; the last loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        _, loss = model(*batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())
