"""``clipping``: an exploding configuration trained with and without gradient-norm clipping.

A tanh Elman network whose recurrent matrix starts as ``gain`` times a random orthogonal matrix
(gain > 1: the chaotic regime, where the step Jacobians expand and the gradient grows
exponentially with the lag; Pascanu, Mikolov & Bengio 2013) is trained with plain SGD on the
adding problem, from the same seeds, once without clipping and once with the gradient norm
clipped to ``clip``. Reported: the loss curves, the gradient norms before clipping, and the
number of steps whose loss or gradient was not finite (those updates are skipped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from rnnlab.analysis import diagnostics
from rnnlab.analysis.experiments.results import Result, config_dict
from rnnlab.analysis.experiments.seeds import SeedEnsemble, SequenceModel, TrainSettings, train
from rnnlab.analysis.experiments.tasks import Adding
from rnnlab.analysis.plots import finish_axes, pyplot, save_figure
from rnnlab.core.registry import CELLS
from rnnlab.errors import RnnlabError

DESCRIPTION = "an exploding tanh RNN trained with and without gradient-norm clipping"


@dataclass(frozen=True)
class ClippingConfig:
    cell: str = "elman"
    hidden: int = 64
    gain: float = 1.5
    T: int = 100
    seeds: int = 5
    clip: float = 1.0
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(
            steps=2000, lr=0.05, optimizer="sgd", eval_every=100, stop_when_solved=False
        )
    )


SETTINGS = {
    "full": ClippingConfig(),
    "quick": ClippingConfig(
        seeds=3, T=50, train=TrainSettings(steps=300, lr=0.05, optimizer="sgd", eval_every=50,
                                           test_size=256, stop_when_solved=False)
    ),
    "test": ClippingConfig(
        seeds=2, T=40, train=TrainSettings(steps=100, lr=0.05, optimizer="sgd", eval_every=50,
                                           test_size=256, stop_when_solved=False)
    ),
}  # fmt: skip


def _exploding_init(gain: float):
    def init(model: SequenceModel) -> None:
        cell = model.rnn.cell_at(0)
        if cell.weight_hh is None:
            raise RnnlabError(f"{type(cell).__name__} has no recurrent weights to initialise")
        with torch.no_grad():
            torch.nn.init.orthogonal_(cell.weight_hh, gain=gain)

    return init


def run(config: ClippingConfig, out_dir: Path) -> Result:
    task = Adding(config.T)
    cell = CELLS[config.cell]
    arms = {"no clipping": None, f"clip {config.clip:g}": config.clip}
    histories: dict[str, list] = {arm: [] for arm in arms}
    for seed in range(config.seeds):
        for arm, clip in arms.items():
            # one model per run: a non-finite value in one seed would reach the others
            ensemble = SeedEnsemble(
                cell, task.input_size, config.hidden, task.output_size, [seed],
                init=_exploding_init(config.gain),
            )  # fmt: skip
            histories[arm].append(train(ensemble, task, replace(config.train, clip=clip), seed))
    probe = SeedEnsemble(
        cell, task.input_size, config.hidden, task.output_size, [0],
        init=_exploding_init(config.gain),
    ).member(0)  # fmt: skip
    x, y = task.sample(64, torch.Generator().manual_seed(1))
    flow = diagnostics.gradient_flow(probe, lambda: task.loss(probe(x)[None], y[None])[0])["layer0"]

    rows = []
    for arm, hs in histories.items():
        finals = [h.metrics[-1]["mse"][0] for h in hs]
        norms = np.array([[g[0] for g in h.grad_norm] for h in hs])
        rows.append(
            {
                "arm": arm,
                "nonfinite_steps": int(sum(h.nonfinite_steps for h in hs)),
                "steps": config.train.steps * config.seeds,
                "runs_with_nonfinite": sum(h.nonfinite_steps > 0 for h in hs),
                "final_test_mse_median": float(np.median(finals)),
                "best_test_mse_median": float(np.median([h.best["mse"][0] for h in hs])),
                "max_grad_norm": float(np.nanmax(np.where(np.isinf(norms), np.nan, norms)))
                if np.isfinite(norms).any()
                else math.inf,
            }
        )
    columns = list(rows[0])
    result = Result("clipping", "", config_dict(config), columns, rows)
    result.summary = {
        "non-finite steps": {r["arm"]: r["nonfinite_steps"] for r in rows},
        "gradient growth at init, ||dL/ds_0|| / ||dL/ds_T||": float(
            flow.by_lag[-1] / flow.by_lag[0]
        ),
    }
    result.notes = [
        f"tanh {config.cell}, H = {config.hidden}, W_hh = {config.gain} x orthogonal, SGD lr "
        f"{config.train.lr}, adding T = {config.T}, {config.seeds} seeds x "
        f"{config.train.steps} steps; baseline MSE 0.167"
    ]
    result.plots.append(_plot(config, histories, out_dir / "clipping.png"))
    return result


def _plot(config: ClippingConfig, histories: dict, path: Path) -> str:
    plt = pyplot()
    fig, (loss_ax, norm_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for arm, hs in histories.items():
        color = None
        for i, h in enumerate(hs):
            loss = np.array([v[0] for v in h.train_loss], dtype=float)
            steps = np.arange(1, len(loss) + 1)
            bad = ~np.isfinite(loss)
            label = arm if i == 0 else None
            (line,) = loss_ax.semilogy(steps, np.where(bad, np.nan, loss), lw=0.8, alpha=0.8,
                                       color=color, label=label)  # fmt: skip
            color = line.get_color()
            if bad.any():
                top = np.nanmax(np.where(bad, np.nan, loss)) if (~bad).any() else 1.0
                loss_ax.plot(steps[bad], np.full(bad.sum(), top), "x", color=color, ms=3)
            norm = np.array([v[0] for v in h.grad_norm], dtype=float)
            norm_ax.semilogy(np.arange(1, len(norm) + 1), np.where(np.isfinite(norm), norm, np.nan),
                             lw=0.8, alpha=0.8, color=color, label=label)  # fmt: skip
    loss_ax.axhline(Adding.baseline, color="k", ls="--", lw=1, label="baseline 0.167")
    loss_ax.set_title("training loss (x: non-finite step, skipped)")
    norm_ax.axhline(config.clip, color="gray", ls=":", lw=1, label=f"threshold {config.clip:g}")
    norm_ax.set_title("gradient norm before clipping")
    finish_axes((loss_ax, norm_ax), "training step")
    fig.suptitle(f"exploding gradients: tanh RNN, W_hh = {config.gain} x orthogonal, SGD")
    return save_figure(fig, path).name
