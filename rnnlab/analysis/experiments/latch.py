"""``latch``: can a cell hold one bit through T steps of noise? (Bengio, Simard & Frasconi 1994)

The first input is the bit (+-1); T steps of Gaussian noise (variance 0.2) follow; the class
is read at the end. For every cell at an equal parameter budget and every T, many seeds are
trained; a seed succeeds if its test accuracy reaches 0.95. The plot is P(success | T).

Trained with plain gradient descent (SGD), as in the paper, and, separately, with Adam: Adam
rescales every parameter's step by its recent gradient size, which hides part of the vanishing
(a tiny but consistent gradient still moves a weight), so the two tell different stories.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from rnnlab.analysis.experiments.results import Result, config_dict
from rnnlab.analysis.experiments.seeds import TrainSettings
from rnnlab.analysis.experiments.synthetic import LECTURE_CELLS, sweep
from rnnlab.analysis.experiments.tasks import Latch
from rnnlab.analysis.experiments.units import UnitStore
from rnnlab.analysis.plots import line_style, pyplot, save_figure

DESCRIPTION = "hold one bit through T steps of noise: P(success | T) per cell (Bengio et al. 1994)"


@dataclass(frozen=True)
class LatchConfig:
    cells: tuple[str, ...] = LECTURE_CELLS
    lengths: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200)
    seeds: int = 20
    budget: int = 300  # parameters per model: LSTM H = 7, GRU H = 8, Elman H = 15
    noise_var: float = 0.2
    #: (optimizer, learning rate) pairs; each is a separate sweep
    optimizers: tuple[tuple[str, float], ...] = (("sgd", 0.3), ("adam", 1e-2))
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=2000, eval_every=50, test_size=512)
    )


SETTINGS = {
    "full": LatchConfig(),
    "quick": LatchConfig(
        cells=("elman", "lstm", "lstm-nofg", "additive"),
        lengths=(5, 20, 50),
        seeds=8,
        optimizers=(("sgd", 0.3),),
        train=TrainSettings(steps=600, eval_every=50, test_size=256),
    ),
    "test": LatchConfig(
        cells=("elman", "lstm-nofg", "additive"),
        lengths=(20,),
        seeds=8,
        optimizers=(("sgd", 0.3),),
        train=TrainSettings(steps=500, eval_every=50, test_size=256),
    ),
}


def run(config: LatchConfig, out_dir: Path, jobs: int = 1) -> Result:
    columns = [
        "optimizer", "cell", "T", "hidden", "params", "p_success", "solved", "seeds",
        "best_acc_median", "steps_to_solve_median",
    ]  # fmt: skip
    rows = []
    store = UnitStore(out_dir / "units", config_dict(config))
    for optimizer, lr in config.optimizers:
        print(f" {optimizer} (lr {lr:g})", flush=True)
        settings = replace(config.train, optimizer=optimizer, lr=lr)
        runs = sweep(
            partial(Latch, noise_var=config.noise_var),
            config.cells,
            config.lengths,
            config.seeds,
            config.budget,
            settings,
            store=store,
            prefix=f"latch-{optimizer}",
            jobs=jobs,
        )
        for r in runs:
            solved_at = [s for s in r.history.solved_at if s is not None]
            rows.append(
                {
                    "optimizer": optimizer,
                    "cell": r.cell,
                    "T": r.T,
                    "hidden": r.hidden,
                    "params": r.params,
                    "p_success": sum(r.history.solved) / config.seeds,
                    "solved": sum(r.history.solved),
                    "seeds": config.seeds,
                    "best_acc_median": float(np.median(r.history.best["accuracy"])),
                    "steps_to_solve_median": float(np.median(solved_at)) if solved_at else None,
                }
            )
    result = Result("latch", "", config_dict(config), columns, rows)
    p = {(r["optimizer"], r["cell"], r["T"]): r["p_success"] for r in rows}
    result.summary = {
        f"P(success), {o}, T={T}": {c: p[(o, c, T)] for c in config.cells}
        for o, _ in config.optimizers
        for T in config.lengths
    }
    result.notes = [
        "success: test accuracy >= 0.95 at some evaluation; chance is 0.5",
        f"equal budgets of ~{config.budget} parameters (cell + read-out); see 'hidden'",
    ]
    plt = pyplot()
    n = len(config.optimizers)
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 4.2), squeeze=False)
    for ax, (optimizer, lr) in zip(axes[0], config.optimizers):
        for i, cell in enumerate(config.cells):
            ys = [p[(optimizer, cell, T)] for T in config.lengths]
            ax.plot(config.lengths, ys, label=cell, **line_style(i))
        ax.set_xscale("log")
        ax.set_xticks(config.lengths, [str(T) for T in config.lengths])
        ax.minorticks_off()
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("T (steps of noise to hold the bit through)")
        ax.set_ylabel(f"P(success) over {config.seeds} seeds")
        ax.set_title(f"latch, {optimizer} (lr {lr:g})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    result.plots.append(save_figure(fig, out_dir / "latch.png").name)
    return result
