"""Experiments that measure the lectures' claims, one module each, one command each.

Every experiment module has ``DESCRIPTION``, ``SETTINGS`` (``"full"``, ``"quick"`` and ``"test"``
configs: frozen dataclasses with a ``seeds`` field) and ``run(config, out_dir) -> Result``
(those of :data:`PARALLEL` also take ``jobs``: their units train in parallel processes).
:func:`run_experiment` runs one by name and writes ``results.json``, ``results.csv`` and its
plots into ``out_dir``::

    rnnlab experiment latch --quick --out runs/latch
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import time
from pathlib import Path
from types import ModuleType

from rnnlab.analysis.experiments.results import Result, format_table, write
from rnnlab.errors import RnnlabError

#: name -> module (imported on use; each pulls in what only it needs).
EXPERIMENTS: dict[str, str] = {
    "latch": "rnnlab.analysis.experiments.latch",
    "adding": "rnnlab.analysis.experiments.adding",
    "copy": "rnnlab.analysis.experiments.copy",
    "gradients": "rnnlab.analysis.experiments.gradients",
    "clipping": "rnnlab.analysis.experiments.clipping",
    "compare": "rnnlab.analysis.experiments.compare",
    "regularizers": "rnnlab.analysis.experiments.regularizers",
    "minimal": "rnnlab.analysis.experiments.minimal",
}

#: The experiments built on :func:`rnnlab.analysis.experiments.synthetic.sweep`, whose units
#: can train in worker processes at once (``rnnlab experiment NAME --jobs N``).
PARALLEL = ("latch", "adding", "copy", "minimal")


def check_jobs(name: str, jobs: int) -> None:
    """Refuse ``jobs`` that experiment ``name`` cannot use."""
    if jobs < 1:
        raise RnnlabError(f"--jobs must be a positive integer, got {jobs}")
    if jobs > 1 and name not in PARALLEL:
        raise RnnlabError(
            f"experiment {name} runs in one process; --jobs works for {', '.join(PARALLEL)}"
        )


def experiment_module(name: str) -> ModuleType:
    if name not in EXPERIMENTS:
        raise RnnlabError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name])


def run_experiment(
    name: str,
    setting: str = "full",
    out_dir: Path | str | None = None,
    seeds: int | None = None,
    fresh: bool = False,
    jobs: int = 1,
) -> Result:
    """Run experiment ``name`` in ``setting``, write its results into ``out_dir`` and return them.

    Args:
        name: a key of :data:`EXPERIMENTS`.
        setting: ``"full"`` (the documented run), ``"quick"`` (minutes) or ``"test"`` (seconds).
        out_dir: where results and plots go (default ``runs/experiments/NAME``).
        seeds: override the number of seeds.
        fresh: recompute every unit; by default the units a previous run of the same
            configuration finished (``out_dir/units``, see
            :mod:`rnnlab.analysis.experiments.units`) are read back, so an interrupted run
            continues where it stopped.
        jobs: train up to this many units at once, in worker processes (the experiments of
            :data:`PARALLEL`; the results do not depend on it).
    """
    module = experiment_module(name)
    if setting not in module.SETTINGS:
        raise RnnlabError(
            f"unknown setting {setting!r}; choose one of: {', '.join(module.SETTINGS)}"
        )
    config = module.SETTINGS[setting]
    check_jobs(name, jobs)
    if seeds is not None:
        if seeds < 1:
            raise RnnlabError(f"--seeds must be a positive integer, got {seeds}")
        config = dataclasses.replace(config, seeds=seeds)
    out_dir = Path(out_dir) if out_dir is not None else Path("runs/experiments") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    if fresh and (out_dir / "units").is_dir():
        shutil.rmtree(out_dir / "units")
    start = time.perf_counter()
    result = (
        module.run(config, out_dir, jobs=jobs) if name in PARALLEL else module.run(config, out_dir)
    )
    result.setting = setting
    result.seconds = round(time.perf_counter() - start, 1)
    write(result, out_dir)
    return result


def report(result: Result, out_dir: Path | str) -> str:
    """The short text printed after a run: the table, the summary, where the files are."""
    lines = [f"== {result.experiment} ({result.setting}, {result.seconds:.0f} s) =="]
    lines.append(format_table(result.columns, result.rows))
    for key, value in result.summary.items():
        lines.append(f"{key}: {value}")
    lines.extend(result.notes)
    files = ", ".join(["results.json", "results.csv", *result.plots])
    lines.append(f"wrote {files} in {out_dir}")
    return "\n".join(lines)


__all__ = [
    "EXPERIMENTS",
    "PARALLEL",
    "Result",
    "check_jobs",
    "experiment_module",
    "report",
    "run_experiment",
]
