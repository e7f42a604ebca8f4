"""``adding``: add two marked numbers of a long sequence (Hochreiter & Schmidhuber 1997).

Modern variant: values U[0, 1] and two markers, one in each half of the sequence; the target
is the sum of the two marked values. Predicting 1.0 always scores MSE 0.167 (the variance of
the sum): a model below it has learnt something, below 0.01 it has solved the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnlab.analysis.experiments.results import Result, config_dict
from rnnlab.analysis.experiments.seeds import TrainSettings
from rnnlab.analysis.experiments.synthetic import LECTURE_CELLS, sweep
from rnnlab.analysis.experiments.tasks import Adding
from rnnlab.analysis.experiments.units import UnitStore
from rnnlab.analysis.plots import line_style, pyplot, save_figure

DESCRIPTION = "add two marked values: test MSE vs T per cell, against the 0.167 baseline"


@dataclass(frozen=True)
class AddingConfig:
    cells: tuple[str, ...] = LECTURE_CELLS
    lengths: tuple[int, ...] = (50, 100, 200, 400)
    seeds: int = 5
    budget: int = 4500  # LSTM H = 32
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=6000, lr=3e-3, eval_every=250, test_size=1000)
    )


SETTINGS = {
    "full": AddingConfig(),
    "quick": AddingConfig(
        cells=("elman", "gru", "lstm"),
        lengths=(50,),
        seeds=4,
        budget=1200,
        train=TrainSettings(steps=800, lr=1e-2, eval_every=100, test_size=500),
    ),
    "test": AddingConfig(
        cells=("elman", "lstm"),
        lengths=(30,),
        seeds=3,
        budget=1200,
        train=TrainSettings(steps=300, lr=1e-2, eval_every=100, test_size=500),
    ),
}


def run(config: AddingConfig, out_dir: Path, jobs: int = 1) -> Result:
    store = UnitStore(out_dir / "units", config_dict(config))
    runs = sweep(
        Adding, config.cells, config.lengths, config.seeds, config.budget, config.train,
        store=store, prefix="adding", jobs=jobs,
    )  # fmt: skip
    columns = [
        "cell", "T", "hidden", "params", "mse_median", "mse_min", "mse_max", "p_success", "baseline"
    ]  # fmt: skip
    rows = []
    for r in runs:
        mse = r.history.best["mse"]
        rows.append(
            {
                "cell": r.cell,
                "T": r.T,
                "hidden": r.hidden,
                "params": r.params,
                "mse_median": float(np.median(mse)),
                "mse_min": float(np.min(mse)),
                "mse_max": float(np.max(mse)),
                "p_success": sum(r.history.solved) / config.seeds,
                "baseline": Adding.baseline,
            }
        )
    result = Result("adding", "", config_dict(config), columns, rows)
    by = {(r["cell"], r["T"]): r for r in rows}
    result.summary = {
        f"median test MSE at T={T}": {c: round(by[(c, T)]["mse_median"], 4) for c in config.cells}
        for T in config.lengths
    }
    result.notes = [
        "MSE: best test MSE per seed over training; baseline 0.167 = Var(sum); success MSE < 0.01"
    ]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 4.2))
    for i, cell in enumerate(config.cells):
        med = [by[(cell, T)]["mse_median"] for T in config.lengths]
        lo = [by[(cell, T)]["mse_min"] for T in config.lengths]
        hi = [by[(cell, T)]["mse_max"] for T in config.lengths]
        (line,) = ax.plot(config.lengths, med, label=cell, **line_style(i))
        ax.fill_between(config.lengths, lo, hi, color=line.get_color(), alpha=0.12)
    ax.axhline(Adding.baseline, color="k", ls="--", lw=1, label="baseline 0.167")
    ax.axhline(0.01, color="gray", ls=":", lw=1, label="success 0.01")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xticks(config.lengths, [str(T) for T in config.lengths])
    ax.xaxis.set_minor_locator(plt.NullLocator())  # label only the lengths that were run
    ax.set_xlabel("T (sequence length)")
    ax.set_ylabel(f"test MSE (median, min-max over {config.seeds} seeds)")
    ax.set_title("adding problem")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    result.plots.append(save_figure(fig, out_dir / "adding.png").name)
    return result
