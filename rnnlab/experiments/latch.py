"""``latch``: can a cell hold one bit through T steps of noise? (Bengio, Simard & Frasconi 1994)

The first input is the bit (+-1); T steps of Gaussian noise (variance 0.2) follow; the class
is read at the end. For every cell at an equal parameter budget and every T, many seeds are
trained; a seed succeeds if its test accuracy reaches 0.95. The plot is P(success | T).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnlab.experiments.results import Result, config_dict, pyplot, save_figure
from rnnlab.experiments.seeds import TrainSettings
from rnnlab.experiments.synthetic import LECTURE_CELLS, sweep
from rnnlab.experiments.tasks import Latch

DESCRIPTION = "hold one bit through T steps of noise: P(success | T) per cell (Bengio et al. 1994)"


@dataclass(frozen=True)
class LatchConfig:
    cells: tuple[str, ...] = LECTURE_CELLS
    lengths: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200)
    seeds: int = 20
    budget: int = 300  # parameters per model: LSTM H = 7, GRU H = 8, Elman H = 15
    noise_var: float = 0.2
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=1500, lr=1e-2, eval_every=50, test_size=512)
    )


SETTINGS = {
    "full": LatchConfig(),
    "quick": LatchConfig(
        cells=("elman", "gru", "lstm"),
        lengths=(5, 20, 50),
        seeds=8,
        train=TrainSettings(steps=400, lr=1e-2, eval_every=50, test_size=256),
    ),
    "test": LatchConfig(
        cells=("elman", "lstm"),
        lengths=(50,),
        seeds=4,
        train=TrainSettings(steps=200, lr=1e-2, eval_every=50, test_size=256),
    ),
}


def run(config: LatchConfig, out_dir: Path) -> Result:
    runs = sweep(
        lambda T: Latch(T, config.noise_var),
        config.cells,
        config.lengths,
        config.seeds,
        config.budget,
        config.train,
    )
    columns = ["cell", "T", "hidden", "params", "p_success", "solved", "seeds", "best_acc_median"]
    rows = []
    for r in runs:
        rows.append(
            {
                "cell": r.cell,
                "T": r.T,
                "hidden": r.hidden,
                "params": r.params,
                "p_success": sum(r.history.solved) / config.seeds,
                "solved": sum(r.history.solved),
                "seeds": config.seeds,
                "best_acc_median": float(np.median(r.history.best["accuracy"])),
            }
        )
    result = Result("latch", "", config_dict(config), columns, rows)
    p = {(r["cell"], r["T"]): r["p_success"] for r in rows}
    result.summary = {
        f"P(success) at T={T}": {c: p[(c, T)] for c in config.cells} for T in config.lengths
    }
    result.notes = [
        "success: test accuracy >= 0.95 at some evaluation; chance is 0.5",
        f"equal budgets of ~{config.budget} parameters (cell + read-out); see 'hidden'",
    ]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for cell in config.cells:
        ax.plot(config.lengths, [p[(cell, T)] for T in config.lengths], marker="o", label=cell)
    ax.set_xscale("log")
    ax.set_xticks(config.lengths, [str(T) for T in config.lengths])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("T (steps of noise to hold the bit through)")
    ax.set_ylabel(f"P(success) over {config.seeds} seeds")
    ax.set_title("latch (Bengio et al. 1994)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    result.plots.append(save_figure(fig, out_dir / "latch.png"))
    return result
