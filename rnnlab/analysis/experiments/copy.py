"""``copy``: recall 10 symbols after T blanks (the copy-memory task, Arjovsky et al. 2016's form).

A memoryless model does best by predicting blanks and then guessing uniformly among the 8
symbols: cross-entropy ``10 log 8 / (T + 20)``, the baseline. A cell that carries the symbols
across T steps goes well below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnlab.analysis.experiments.results import Result, config_dict
from rnnlab.analysis.experiments.seeds import TrainSettings
from rnnlab.analysis.experiments.synthetic import LECTURE_CELLS, sweep
from rnnlab.analysis.experiments.tasks import Copy
from rnnlab.analysis.experiments.units import UnitStore
from rnnlab.analysis.plots import pyplot, save_figure

DESCRIPTION = "recall 10 symbols after T blanks: cross-entropy vs the 10 log 8 / (T+20) baseline"


@dataclass(frozen=True)
class CopyConfig:
    cells: tuple[str, ...] = LECTURE_CELLS
    lengths: tuple[int, ...] = (50, 100, 200)
    seeds: int = 3
    budget: int = 6000  # LSTM H = 34
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=8000, lr=2e-3, eval_every=250, test_size=500)
    )


SETTINGS = {
    "full": CopyConfig(),
    "quick": CopyConfig(
        cells=("elman", "gru", "lstm"),
        lengths=(20,),
        seeds=3,
        budget=3000,
        train=TrainSettings(steps=600, lr=1e-2, eval_every=100, test_size=300),
    ),
    "test": CopyConfig(
        cells=("elman", "lstm"),
        lengths=(10,),
        seeds=2,
        budget=3000,
        train=TrainSettings(steps=300, lr=1e-2, eval_every=100, test_size=300),
    ),
}


def run(config: CopyConfig, out_dir: Path, jobs: int = 1) -> Result:
    store = UnitStore(out_dir / "units", config_dict(config))
    runs = sweep(
        Copy, config.cells, config.lengths, config.seeds, config.budget, config.train,
        store=store, prefix="copy", jobs=jobs,
    )  # fmt: skip
    columns = [
        "cell",
        "T",
        "hidden",
        "params",
        "ce_median",
        "baseline",
        "recall_median",
        "p_success",
    ]
    rows = []
    for r in runs:
        rows.append(
            {
                "cell": r.cell,
                "T": r.T,
                "hidden": r.hidden,
                "params": r.params,
                "ce_median": float(np.median(r.history.best["loss"])),
                "baseline": Copy(r.T).baseline,
                "recall_median": float(np.median(r.history.best["recall"])),
                "p_success": sum(r.history.solved) / config.seeds,
            }
        )
    result = Result("copy", "", config_dict(config), columns, rows)
    by = {(r["cell"], r["T"]): r for r in rows}
    result.summary = {
        f"median CE / baseline at T={T}": {
            c: round(by[(c, T)]["ce_median"] / by[(c, T)]["baseline"], 3) for c in config.cells
        }
        for T in config.lengths
    }
    result.notes = [
        "CE: best test cross-entropy per seed over all T+20 steps; recall: fraction of the 10 "
        "symbols right; success: recall >= 0.9"
    ]
    plt = pyplot()
    n = len(config.lengths)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.8), squeeze=False)
    for ax, T in zip(axes[0], config.lengths):
        for r in runs:
            if r.T == T:
                ce = np.median([[m for m in step["loss"]] for step in r.history.metrics], axis=1)
                ax.plot(r.history.steps, ce, label=r.cell)
        ax.axhline(Copy(T).baseline, color="k", ls="--", lw=1, label="baseline")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("test cross-entropy (median over seeds)")
        ax.set_title(f"copy, T = {T}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    result.plots.append(save_figure(fig, out_dir / "copy.png").name)
    return result
