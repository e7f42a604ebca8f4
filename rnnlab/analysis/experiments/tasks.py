"""Synthetic long-range tasks: the latch, the adding problem, the copy-memory task.

Each task draws batches ``(x (N, L, D), y)`` from a ``torch.Generator`` and scores a model's
outputs. Losses and metrics take an extra leading seed dimension S (one independent model per
seed, see :mod:`rnnlab.analysis.experiments.seeds`) and return one value per seed: ``(S,)``.

Shapes: S seeds, N batch, L sequence length, D input size, O output size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Latch:
    """Bengio, Simard & Frasconi (1994): hold one bit through T steps of noise.

    ``x_0 = +-1`` (the bit), then T steps of Gaussian noise of variance ``noise_var`` (0.2 as in
    the paper's latch problem); the class is read from the output after the last noise step.
    Loss: binary cross-entropy; success: test accuracy >= ``threshold``. Chance: accuracy 0.5.
    """

    T: int
    noise_var: float = 0.2
    threshold: float = 0.95

    input_size = 1
    output_size = 1
    readout = "last"

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        bit = torch.randint(0, 2, (n,), generator=generator)
        x = torch.randn(n, self.T + 1, 1, generator=generator) * math.sqrt(self.noise_var)
        x[:, 0, 0] = bit.float() * 2 - 1
        return x, bit.float()

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """out (S, N, 1, 1), y (S, N) -> (S,) mean binary cross-entropy."""
        return F.binary_cross_entropy_with_logits(out[..., -1, 0], y, reduction="none").mean(-1)

    def metrics(self, out: Tensor, y: Tensor) -> dict[str, Tensor]:
        accuracy = ((out[..., -1, 0] > 0).float() == y).float().mean(-1)
        return {"loss": self.loss(out, y), "accuracy": accuracy}

    def solved(self, metrics: dict[str, Tensor]) -> Tensor:
        return metrics["accuracy"] >= self.threshold


@dataclass(frozen=True)
class Adding:
    """The adding problem (Hochreiter & Schmidhuber 1997), in its modern form.

    Two channels over T steps: values ``U[0, 1]`` and a marker that is 1 at two positions, one
    in each half of the sequence; the target is the sum of the two marked values. Predicting
    the mean 1.0 gives MSE ``Var(sum) = 2/12 = 0.167``: the baseline. Success: MSE < 0.01.
    """

    T: int
    threshold: float = 0.01

    input_size = 2
    output_size = 1
    readout = "last"
    baseline = 1.0 / 6.0

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        values = torch.rand(n, self.T, generator=generator)
        half = self.T // 2
        first = torch.randint(0, half, (n,), generator=generator)
        second = torch.randint(half, self.T, (n,), generator=generator)
        marker = torch.zeros(n, self.T)
        rows = torch.arange(n)
        marker[rows, first] = 1.0
        marker[rows, second] = 1.0
        y = values[rows, first] + values[rows, second]
        return torch.stack([values, marker], dim=-1), y

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """out (S, N, 1, 1), y (S, N) -> (S,) mean squared error."""
        return (out[..., -1, 0] - y).pow(2).mean(-1)

    def metrics(self, out: Tensor, y: Tensor) -> dict[str, Tensor]:
        mse = self.loss(out, y)
        return {"loss": mse, "mse": mse}

    def solved(self, metrics: dict[str, Tensor]) -> Tensor:
        return metrics["mse"] < self.threshold


@dataclass(frozen=True)
class Copy:
    """The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016's form).

    Symbols 1..8, blank 0, delimiter 9, one-hot inputs. The input is ``length`` (10) random
    symbols, T - 1 blanks, the delimiter, then ``length`` blanks; the target is blank for the
    first T + length steps, then the symbols. Loss: cross-entropy over all T + 2*length steps;
    the baseline (blanks, then a uniform guess) scores ``length * log 8 / (T + 2*length)``.
    Success: at least ``threshold`` of the recalled symbols right.
    """

    T: int
    length: int = 10
    symbols: int = 8
    threshold: float = 0.9

    readout = "all"

    @property
    def input_size(self) -> int:
        return self.symbols + 2

    @property
    def output_size(self) -> int:
        return self.symbols + 1

    @property
    def baseline(self) -> float:
        return self.length * math.log(self.symbols) / (self.T + 2 * self.length)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        k, L = self.length, self.T + 2 * self.length
        seq = torch.randint(1, self.symbols + 1, (n, k), generator=generator)
        tokens = torch.zeros(n, L, dtype=torch.long)
        tokens[:, :k] = seq
        tokens[:, self.T + k - 1] = self.symbols + 1  # the delimiter
        y = torch.zeros(n, L, dtype=torch.long)
        y[:, -k:] = seq
        return F.one_hot(tokens, self.symbols + 2).float(), y

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """out (S, N, L, O), y (S, N, L) -> (S,)."""
        ce = F.cross_entropy(out.transpose(1, -1), y.transpose(1, -1), reduction="none")
        return ce.flatten(1).mean(-1)

    def metrics(self, out: Tensor, y: Tensor) -> dict[str, Tensor]:
        k = self.length
        recall = (out[:, :, -k:].argmax(-1) == y[:, :, -k:]).float().flatten(1).mean(-1)
        return {"loss": self.loss(out, y), "recall": recall}

    def solved(self, metrics: dict[str, Tensor]) -> Tensor:
        return metrics["recall"] >= self.threshold


Task = Latch | Adding | Copy

__all__ = ["Adding", "Copy", "Latch", "Task"]
