"""``gradients``: vanishing gradients made visible, before and after training.

Elman, GRU and LSTM (equal parameter budgets) on the adding problem: the norm of
``dL_T/ds_k`` against the lag ``T - k``, for the loss at the last step, at initialisation
(torch's default init, U(+-1/sqrt(H)), and the LSTM's forget-gate bias 1) and after training.
Also the singular values of the trained models' step Jacobians and their products, and the
trained gated cells' gates over one sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnnlab.analysis import diagnostics
from rnnlab.analysis.experiments.results import Result, config_dict
from rnnlab.analysis.experiments.seeds import (
    SeedEnsemble,
    SequenceModel,
    TrainSettings,
    hidden_for_budget,
    train,
)
from rnnlab.analysis.experiments.tasks import Adding
from rnnlab.analysis.plots import finish_axes, pyplot, save_figure
from rnnlab.core.registry import CELLS

DESCRIPTION = "gradient norm vs lag of untrained and trained Elman, GRU, LSTM (adding task)"


@dataclass(frozen=True)
class GradientsConfig:
    cells: tuple[str, ...] = ("elman", "gru", "lstm")
    T: int = 100
    seeds: int = 5
    budget: int = 4500
    probe_batch: int = 128
    train: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=4000, lr=3e-3, eval_every=250, test_size=500)
    )


SETTINGS = {
    "full": GradientsConfig(),
    "quick": GradientsConfig(
        T=60, seeds=3, budget=1200, train=TrainSettings(steps=600, lr=1e-2, eval_every=100)
    ),
    "test": GradientsConfig(
        T=60, seeds=2, budget=1200, train=TrainSettings(steps=150, lr=1e-2, eval_every=50)
    ),
}


def _flows(
    models: list[SequenceModel], task: Adding, x: torch.Tensor, y: torch.Tensor
) -> np.ndarray:
    """(seeds, T) ``||dL_T/ds_{T-lag}||`` of each model, by lag."""
    curves = []
    for model in models:
        model.eval()
        flow = diagnostics.gradient_flow(
            model, lambda model=model: task.loss(model(x)[None], y[None])[0]
        )["layer0"]
        curves.append(flow.by_lag)
    return np.stack(curves)


def _decay_lag(curve: np.ndarray, factor: float = 1e3) -> int | None:
    return diagnostics.GradientFlow(curve[::-1].copy(), len(curve) - 1).decay_lag(factor)


def run(config: GradientsConfig, out_dir: Path) -> Result:
    task = Adding(config.T)
    x, y = task.sample(config.probe_batch, torch.Generator().manual_seed(123))
    curves: dict[tuple[str, str], np.ndarray] = {}
    trained_models: dict[str, SequenceModel] = {}
    rows = []
    lag = min(50, config.T - 1)
    for name in config.cells:
        cell = CELLS[name]
        H = hidden_for_budget(cell, task.input_size, task.output_size, config.budget)
        ensemble = SeedEnsemble(cell, task.input_size, H, task.output_size, range(config.seeds))
        before = [ensemble.member(s) for s in range(config.seeds)]
        history = train(ensemble, task, config.train, data_seed=config.T)
        after = [ensemble.member(s) for s in range(config.seeds)]
        trained_models[name] = after[0]
        for state, models in (("untrained", before), ("trained", after)):
            c = _flows(models, task, x, y)
            curves[(name, state)] = c
            median = np.median(c / c[:, :1], axis=0)  # each seed's curve relative to its lag 0
            rows.append(
                {
                    "cell": name,
                    "state": state,
                    "hidden": H,
                    "grad_lag0": float(np.median(c[:, 0])),
                    f"ratio_lag{lag}": float(median[lag]),
                    "decay_lag_1e3": _decay_lag(median),
                    "test_mse": float(np.median(history.best["mse"]))
                    if state == "trained"
                    else None,
                }
            )
    columns = [
        "cell",
        "state",
        "hidden",
        "grad_lag0",
        f"ratio_lag{lag}",
        "decay_lag_1e3",
        "test_mse",
    ]
    result = Result("gradients", "", config_dict(config), columns, rows)
    by = {(r["cell"], r["state"]): r for r in rows}
    result.summary = {
        f"||dL/ds_(T-{lag})|| / ||dL/ds_T|| at init": {
            c: by[(c, "untrained")][f"ratio_lag{lag}"] for c in config.cells
        },
        "same, trained": {c: by[(c, "trained")][f"ratio_lag{lag}"] for c in config.cells},
    }
    result.notes = [
        f"loss at the last step of T = {config.T}; medians over {config.seeds} seeds; "
        "decay_lag_1e3: first lag where the norm has fallen (or grown) 1000-fold (None: never)"
    ]
    result.plots.append(_plot_flows(config, curves, out_dir / "gradient_flow.png"))
    probe = x[:1, : min(config.T, 60)]
    spectra = {
        n: diagnostics.jacobian_spectrum(m, lambda m=m: m(probe))["layer0"]
        for n, m in trained_models.items()
    }
    result.plots.append(
        diagnostics.plot_jacobian_spectrum(
            spectra, out_dir / "jacobians.png", title="trained models, one adding sequence"
        ).name
    )
    for n, m in trained_models.items():
        gates = diagnostics.gate_traces(m, lambda m=m: m(x[:1]))
        if gates:
            path = out_dir / f"gates_{n}.png"
            diagnostics.plot_gate_heatmaps(gates["layer0"], path, title=f"{n} gates, trained")
            result.plots.append(path.name)
    return result


def _plot_flows(config: GradientsConfig, curves: dict, path: Path) -> str:
    plt = pyplot()
    fig, (raw, rel) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {}
    for (name, state), c in curves.items():
        lags = np.arange(c.shape[1])
        style = {"ls": "--" if state == "untrained" else "-"}
        if name in colors:
            style["color"] = colors[name]
        (line,) = raw.semilogy(
            lags, np.maximum(np.median(c, 0), 1e-300), label=f"{name} {state}", **style
        )
        colors[name] = line.get_color()
        rel.semilogy(
            lags, np.maximum(np.median(c / c[:, :1], 0), 1e-300), label=f"{name} {state}", **style
        )
    raw.set_title("||dL_T / ds_(T-lag)||")
    rel.set_title("relative to lag 0")
    finish_axes((raw, rel), "lag (steps back from the loss)")
    fig.suptitle(f"gradient flow on the adding problem, T = {config.T} (median over seeds)")
    return save_figure(fig, path).name
