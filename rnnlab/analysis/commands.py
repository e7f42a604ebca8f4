"""The analysis commands: ``rnnlab bench``, ``rnnlab experiment`` and ``rnnlab diagnose``.

Each is an options config (the flags are derived from it) and a function that runs it; this
module is torch-free and imports the benchmark, the experiments or the diagnostics only when the
command runs.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rnnlab.analysis.experiments import EXPERIMENTS, PARALLEL, check_jobs
from rnnlab.config import Check, Config, at_least, option
from rnnlab.errors import RnnlabError
from rnnlab.export_command import ExportOptions, export
from rnnlab.tasks.runner import THREADS, check_writable
from rnnlab.viz.command import VizOptions, viz

_DEFAULT_GRID = ((64, 100, 512), (32, 100, 128), (8, 1000, 256))
_QUICK_GRID = ((32, 100, 128),)


def _grid_point(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise RnnlabError(f"expected BATCH,TIME,HIDDEN (three positive integers), got {text!r}")
    return values  # type: ignore[return-value]


_GRID_POINT = Check(
    lambda v: len(v) == 3 and all(isinstance(x, int) and x >= 1 for x in v),
    "three positive integers (batch, time, hidden)",
)


@dataclass(frozen=True)
class BenchOptions(Config):
    """Forward and forward+backward tokens/s and peak memory of every cell and of torch.nn's
    LSTM/GRU/RNN and a naive Python-loop LSTM, at the same sizes, in one process; every figure
    also as a ratio to torch.nn.LSTM."""

    title = "benchmark"

    grid: tuple[tuple[int, int, int], ...] | None = option(
        None, parse=_grid_point, repeat=True, check=_GRID_POINT, metavar="N,T,H",
        help="a grid point batch,time,hidden (repeatable); default: "
        + " ".join(",".join(map(str, p)) for p in _DEFAULT_GRID),
    )  # fmt: skip
    quick: bool = option(False, help="grid 32,100,128 only, 3 repeats (development)")
    repeats: int | None = option(None, check=at_least(1), help="timed runs per figure (5)")
    warmup: int = option(1, check=at_least(0), help="untimed runs first")
    threads: int | None = option(None, check=THREADS, help="torch threads (default: torch's)")
    models: str | None = option(
        None, help="comma-separated model names (torch.nn.LSTM always runs); see --list; "
        "loop:VARIANT times that variant on its reference loop",
    )  # fmt: skip
    list_models: bool = option(False, flag="--list", help="print the model names and exit")
    memory: bool = option(True, help="measure peak memory (each model in a fresh process)")
    fast: bool = option(
        True, help="use rnnlab's fast path; --no-fast runs every model on torch's kernel where "
        "one exists, else on the reference loop (the 'before')",
    )  # fmt: skip
    json_path: str | None = option(
        None, flag="--json", metavar="PATH", help="write the results here"
    )


def bench(options: BenchOptions) -> int:
    from rnnlab.analysis.bench import BenchConfig, format_tables, run_bench
    from rnnlab.analysis.benchmodels import models

    if options.list_models:
        print("\n".join(models()))
        print("loop:VARIANT (any variant above, on its reference loop)")
        return 0
    if options.json_path is not None:  # before the minutes of benchmarking, not after
        check_writable(options.json_path, "--json", directory=False)
    grid = options.grid or (_QUICK_GRID if options.quick else _DEFAULT_GRID)
    names = None
    if options.models:
        names = tuple(n.strip() for n in options.models.split(",") if n.strip())
    config = BenchConfig(
        grid=grid,
        repeats=options.repeats or (3 if options.quick else 5),
        warmup=options.warmup,
        threads=options.threads,
        memory=options.memory,
        models=names,
        fast=options.fast,
    )
    result = run_bench(config, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_tables(result))
    if options.json_path is not None:
        path = Path(options.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    return 0


@dataclass(frozen=True)
class ExperimentOptions(Config):
    """Run an experiment that measures one of the lectures' claims; writes results.json,
    results.csv and PNG plots into --out and prints a short table."""

    title = "experiment"

    name: str = option(
        positional=True, choices=tuple(EXPERIMENTS), metavar="NAME", help=" | ".join(EXPERIMENTS)
    )
    setting: str = option(
        "full", choices=("full", "quick", "test"),
        help="full (documented in docs/EXPERIMENTS.md), quick (under 2 minutes) or test (seconds)",
    )  # fmt: skip
    quick: bool = option(False, help="the quick setting (same as --setting quick)")
    out: str | None = option(None, metavar="DIR", help="output directory (runs/experiments/NAME)")
    seeds: int | None = option(None, check=at_least(1), help="number of seeds (the setting's)")
    fresh: bool = option(
        False, help="recompute everything (default: reuse the parts an interrupted run of the "
        "same configuration finished, kept in OUT/units)",
    )  # fmt: skip
    threads: int = option(
        1,
        check=THREADS,
        help="torch CPU threads (the models are tiny: more mostly add overhead)",
    )
    jobs: int = option(
        1, check=at_least(1), metavar="N",
        help="train up to N units at once in worker processes of --threads threads each (the "
        f"results do not change; {', '.join(PARALLEL)})",
    )  # fmt: skip


def experiment(options: ExperimentOptions) -> int:
    import torch

    from rnnlab.analysis.experiments import report, run_experiment

    setting = "quick" if options.quick else options.setting
    out = Path(options.out) if options.out else Path("runs/experiments") / options.name
    check_jobs(options.name, options.jobs)
    check_writable(out, "--out")
    torch.set_num_threads(options.threads)
    print(f"running experiment {options.name} ({setting}) -> {out}", flush=True)
    result = run_experiment(
        options.name, setting, out, seeds=options.seeds, fresh=options.fresh, jobs=options.jobs
    )
    print(report(result, out))
    return 0


@dataclass(frozen=True)
class DiagnoseOptions(Config):
    """Gradient flow, step-Jacobian spectra and gate statistics of a trained model (a language
    model or a classifier) on a batch of its kind of data: the norm of dL/ds_k against the lag
    for the loss at the last step, the singular values of the step Jacobians along one sequence,
    and every gate's mean and saturation. Writes PNGs and diagnostics.json into --out."""

    title = "diagnose"

    checkpoint: str = option(positional=True, metavar="CKPT", help="a checkpoint or run directory")
    out: str | None = option(None, metavar="DIR", help="output directory (RUN/diagnostics)")
    data: str | None = option(None, help="text file (lm) or names folder / TSV (classify)")
    length: int = option(100, check=at_least(2), help="steps per sequence (lm)")
    batch: int = option(32, check=at_least(1), help="sequences in the batch")
    device: str = option("cpu", help="cpu, cuda, cuda:1, ... or auto (cuda when available)")
    threads: int | None = option(
        None, check=THREADS, help="torch CPU threads (default: the cores that other processes "
        "leave free)"
    )  # fmt: skip


def diagnose(options: DiagnoseOptions) -> int:
    from rnnlab.analysis import diagnostics
    from rnnlab.machine import choose_threads
    from rnnlab.tasks.runner import load_run, resolve_device

    choose_threads(options.threads)
    run = load_run(options.checkpoint, resolve_device(options.device))
    path = Path(run.checkpoint.path)  # never write inside a checkpoint: a save would replace it
    default = (
        path.parent / "diagnostics"
        if path.name in ("best", "last")
        else path.with_name(path.name + "-diagnostics")
    )
    out = check_writable(options.out or default, "--out" if options.out else "the output folder")
    found = run.task.diagnostic_batch(run, options.data, options.length, options.batch)
    if found is None:
        raise RnnlabError(f"diagnose has no batch for {run.task.name!r} checkpoints (lm, classify)")
    forward, loss_fn, what = found
    out.mkdir(parents=True, exist_ok=True)
    model = run.model
    flows = diagnostics.gradient_flow(model, loss_fn)
    spectra = diagnostics.jacobian_spectrum(model, forward)  # along the batch's first sequence
    gates = diagnostics.gate_traces(model, forward)
    stats = diagnostics.gate_statistics(model, forward)
    diagnostics.plot_gradient_flow(flows, out / "gradient_flow.png", title=f"loss: {what}")
    diagnostics.plot_jacobian_spectrum(spectra, out / "jacobians.png")
    for name, g in gates.items():
        diagnostics.plot_gate_heatmaps(g, out / f"gates_{name}.png", title=f"{name} gates")
    record = {
        "checkpoint": str(run.checkpoint.path),
        "loss": what,
        "gradient_flow": {
            n: {"decay_lag_1e3": f.decay_lag(), "norms_by_lag": f.by_lag.tolist()}
            for n, f in flows.items()
        },
        "jacobians": {
            n: {
                "step_max_sv_mean": float(s.step[:, 0].mean()),
                "product_max_sv_last": float(s.product[-1, 0]),
            }
            for n, s in spectra.items()
        },
        "gates": stats,
    }
    (out / "diagnostics.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{run.checkpoint.path}: loss at the last step ({what})")
    for n, f in flows.items():
        lag = f.decay_lag()
        decay = f"falls 1000-fold by lag {lag}" if lag is not None else "never falls 1000-fold"
        print(f"  {n}: ||dL/ds|| {decay} (over {len(f.by_lag)} steps)")
    for n, s in spectra.items():
        print(
            f"  {n}: step Jacobian top singular value {s.step[:, 0].mean():.3f} on average; "
            f"of the product over {len(s.step)} steps {s.product[-1, 0]:.2e}"
        )
    for n, per_gate in stats.items():
        cells = ", ".join(
            f"{g} mean {v['mean']:.2f} saturated {v['saturated']:.0%}" for g, v in per_gate.items()
        )
        print(f"  {n} gates: {cells}")
    print(f"wrote gradient_flow.png, jacobians.png, gates_*.png, diagnostics.json in {out}")
    return 0


#: name -> (options, function): the analysis commands of ``rnnlab``.
COMMANDS = {
    "bench": (BenchOptions, bench),
    "experiment": (ExperimentOptions, experiment),
    "diagnose": (DiagnoseOptions, diagnose),
    "viz": (VizOptions, viz),
    "export": (ExportOptions, export),
}

__all__ = ["COMMANDS", "BenchOptions", "DiagnoseOptions", "ExperimentOptions"]
