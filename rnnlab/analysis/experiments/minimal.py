"""``minimal``: minGRU and minLSTM (Feng et al. 2024) against the LSTM and the GRU.

Two questions, one table:

* **speed**: forward+backward tokens/s of one layer at equal parameter count, at sequence
  lengths up to 10,000, in one process, interleaved (each repeat runs every model once, in
  turn, so that a slow spell of the machine hits all alike). The LSTM and the GRU run rnnlab's
  ``"auto"`` (torch's oneDNN kernel for the LSTM, rnnlab's C++ loop for the GRU), the minimal
  cells their parallel scan. Equal parameters: every layer reads D = ``speed_input`` features;
  the LSTM has H = D and the others the hidden size whose count comes nearest to its.
* **memory over long spans**: the lectures' adding and copy problems (the ``adding`` and
  ``copy`` experiments' tasks, lengths and parameter budgets) with the minimal cells next to
  the gated ones. The minimal cells' gates read the input alone, so whether they can hold a
  value over T steps is exactly what these tasks ask.

The language-model quality (the 30-minute Shakespeare benchmark) is a run of ``rnnlab train lm
--cell mingru`` (docs/BENCHMARKS.md), too long for an experiment's unit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnlab.analysis.experiments.results import Result, config_dict
from rnnlab.analysis.experiments.seeds import TrainSettings
from rnnlab.analysis.experiments.synthetic import Run, sweep
from rnnlab.analysis.experiments.tasks import Adding, Copy, Task
from rnnlab.analysis.experiments.units import UnitStore
from rnnlab.analysis.plots import line_style, pyplot, save_figure
from rnnlab.core.layers import Recurrent
from rnnlab.core.registry import cell_factory

DESCRIPTION = "minGRU/minLSTM vs LSTM/GRU: tokens/s vs T (to 10,000) and the adding/copy problems"

COLUMNS = [
    "part", "cell", "T", "hidden", "params", "tokens_per_s", "vs_lstm", "implementation",
    "metric", "median", "min", "max", "p_success", "updates_to_solve", "recall", "baseline",
]  # fmt: skip


@dataclass(frozen=True)
class MinimalConfig:
    cells: tuple[str, ...] = ("lstm", "gru", "mingru", "minlstm")
    speed_lengths: tuple[int, ...] = (100, 1000, 10000)
    speed_input: int = 128  # D, and the LSTM's H
    speed_batch: int = 4
    speed_repeats: int = 5
    adding_lengths: tuple[int, ...] = (50, 100, 200, 400)  # as ``experiment adding``
    adding_budget: int = 4500
    adding_train: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=6000, lr=3e-3, eval_every=250, test_size=1000)
    )
    copy_lengths: tuple[int, ...] = (50, 100, 200)  # as ``experiment copy``
    copy_budget: int = 6000
    copy_train: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=8000, lr=2e-3, eval_every=250, test_size=500)
    )
    seeds: int = 3


SETTINGS = {
    "full": MinimalConfig(),
    "quick": MinimalConfig(
        speed_lengths=(100, 1000),
        speed_repeats=3,
        adding_lengths=(50,),
        adding_budget=1200,
        adding_train=TrainSettings(steps=800, lr=1e-2, eval_every=100, test_size=500),
        copy_lengths=(20,),
        copy_budget=3000,
        copy_train=TrainSettings(steps=600, lr=1e-2, eval_every=100, test_size=300),
    ),
    "test": MinimalConfig(
        cells=("lstm", "mingru", "minlstm"),
        speed_lengths=(20, 60),
        speed_input=16,
        speed_repeats=1,
        adding_lengths=(10,),
        adding_budget=600,
        adding_train=TrainSettings(steps=40, lr=1e-2, eval_every=20, test_size=100),
        copy_lengths=(5,),
        copy_budget=1200,
        copy_train=TrainSettings(steps=40, lr=1e-2, eval_every=20, test_size=100),
        seeds=2,
    ),
}


def matched_hidden(cell: str, d: int, params: int) -> int:
    """The hidden size of one ``cell`` layer reading ``d`` features whose parameter count comes
    nearest to ``params`` (the count grows with the size: a bisection)."""

    def count(h: int) -> int:
        layer = Recurrent(cell_factory(cell), d, h, device="meta")  # shapes only
        return sum(p.numel() for p in layer.parameters())

    lo, hi = 1, 2
    while count(hi) < params:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # count(lo) < params <= count(hi), or lo = 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < params else (lo, mid)
    return min((lo, hi), key=lambda h: (abs(count(h) - params), h))


def forward_backward_seconds(model: Recurrent, x: torch.Tensor) -> float:
    """Seconds for one forward+backward of ``model`` on time-major ``x``."""
    start = time.perf_counter()
    out, _ = model(x)
    out.square().mean().backward()
    return time.perf_counter() - start


def speed_rows(config: MinimalConfig) -> list[dict]:
    """The speed part: one row per cell and length."""
    D, N = config.speed_input, config.speed_batch
    torch.manual_seed(0)
    lstm = Recurrent(cell_factory("lstm"), D, D, batch_first=False)
    target = sum(p.numel() for p in lstm.parameters())
    models = {}
    for cell in config.cells:
        H = D if cell == "lstm" else matched_hidden(cell, D, target)
        torch.manual_seed(0)
        layer = lstm if cell == "lstm" else Recurrent(cell_factory(cell), D, H, batch_first=False)
        models[cell] = layer
    rows = []
    for T in config.speed_lengths:
        x = torch.randn(T, N, D)
        for model in models.values():  # warm-up: kernels, caches, page faults
            forward_backward_seconds(model, x)
        times: dict[str, list[float]] = {cell: [] for cell in models}
        for _ in range(config.speed_repeats):
            for cell, model in models.items():
                times[cell].append(forward_backward_seconds(model, x))
        rates = {cell: N * T / statistics.median(ts) for cell, ts in times.items()}
        for cell, model in models.items():
            rows.append(
                {
                    "part": "speed",
                    "cell": cell,
                    "T": T,
                    "hidden": model.hidden_size,
                    "params": sum(p.numel() for p in model.parameters()),
                    "tokens_per_s": rates[cell],
                    "vs_lstm": rates[cell] / rates["lstm"] if "lstm" in rates else None,
                    "implementation": model.backend_for(x),
                }
            )
    return rows


def _task_rows(part: str, runs: list[Run], metric: str, baseline: float, seeds: int) -> list[dict]:
    """One row per cell and length: the best ``metric`` per seed (median, min, max), the
    fraction of seeds solved, the updates the solved seeds needed (``"first-last"``) and, where
    the task has one, the median best recall."""
    rows = []
    for r in runs:
        best = r.history.best[metric]
        solved_at = sorted(s for s in r.history.solved_at if s is not None)
        recall = r.history.best.get("recall")
        rows.append(
            {
                "part": part,
                "cell": r.cell,
                "T": r.T,
                "hidden": r.hidden,
                "params": r.params,
                "metric": metric,
                "median": float(np.median(best)),
                "min": min(best),
                "max": max(best),
                "p_success": sum(r.history.solved) / seeds,
                "updates_to_solve": f"{solved_at[0]}-{solved_at[-1]}" if solved_at else "",
                "recall": float(np.median(recall)) if recall is not None else None,
                "baseline": baseline,
            }
        )
    return rows


def run(config: MinimalConfig, out_dir: Path, jobs: int = 1) -> Result:
    store = UnitStore(out_dir / "units", config_dict(config))
    print("speed: forward+backward tokens/s at equal parameter count")
    rows = speed_rows(config)
    task_rows = []
    parts: list[tuple[str, Callable[[int], Task], tuple[int, ...], int, TrainSettings, str]] = [
        ("adding", Adding, config.adding_lengths, config.adding_budget, config.adding_train, "mse"),
        ("copy", Copy, config.copy_lengths, config.copy_budget, config.copy_train, "loss"),
    ]
    for part, task, lengths, budget, train, metric in parts:
        print(f"{part}:")
        runs = sweep(
            task,
            config.cells,
            lengths,
            config.seeds,
            budget,
            train,
            store=store,
            prefix=part,
            jobs=jobs,
        )
        baseline = {T: task(T).baseline for T in lengths}
        for r in _task_rows(part, runs, metric, 0.0, config.seeds):
            r["baseline"] = baseline[r["T"]]
            task_rows.append(r)
    result = Result("minimal", "", config_dict(config), COLUMNS, rows + task_rows)
    longest = max(config.speed_lengths)
    result.summary = {
        f"tokens/s vs the LSTM at T={longest}": {
            r["cell"]: round(r["vs_lstm"], 2) for r in rows if r["T"] == longest
        },
        "adding solved (fraction of seeds), per T": {
            c: [r["p_success"] for r in task_rows if r["part"] == "adding" and r["cell"] == c]
            for c in config.cells
        },
        "copy solved (fraction of seeds), per T": {
            c: [r["p_success"] for r in task_rows if r["part"] == "copy" and r["cell"] == c]
            for c in config.cells
        },
    }
    result.notes = [
        "speed: one layer, equal parameter count, forward+backward, median of the repeats",
        "adding: best test MSE per seed, success < 0.01, baseline Var(sum) = 0.167",
        "copy: best test cross-entropy per seed; baseline: blanks, then a uniform guess",
    ]
    result.plots.append(_plot(config, rows, task_rows, out_dir))
    return result


def _plot(config: MinimalConfig, rows: list[dict], task_rows: list[dict], out_dir: Path) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for i, cell in enumerate(config.cells):
        style = line_style(i)
        speed = [r for r in rows if r["cell"] == cell]
        rates = [r["tokens_per_s"] for r in speed]
        axes[0].plot([r["T"] for r in speed], rates, label=cell, **style)
        for ax, part in zip(axes[1:], ("adding", "copy")):
            pts = [r for r in task_rows if r["part"] == part and r["cell"] == cell]
            ax.plot([r["T"] for r in pts], [r["median"] for r in pts], label=cell, **style)
    axes[0].set(xscale="log", yscale="log", xlabel="T", ylabel="tokens/s (forward+backward)")
    axes[0].set_title("speed at equal parameters")
    for ax, part, metric in zip(axes[1:], ("adding", "copy"), ("test MSE", "test cross-entropy")):
        base = [r for r in task_rows if r["part"] == part and r["cell"] == config.cells[0]]
        lengths, values = [r["T"] for r in base], [r["baseline"] for r in base]
        ax.plot(lengths, values, "k--", lw=1, label="baseline")
        ax.set(xscale="log", yscale="log", xlabel="T", ylabel=f"{metric} (median over seeds)")
        ax.set_title(f"{part} problem")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir / "minimal.png").name


__all__ = ["DESCRIPTION", "SETTINGS", "MinimalConfig", "matched_hidden", "run", "speed_rows"]
