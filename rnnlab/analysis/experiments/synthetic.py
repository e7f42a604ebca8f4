"""The sweep shared by ``latch``, ``adding``, ``copy`` and ``minimal``: every cell x every length,
many seeds.

For each sequence length T and each cell, the hidden size is chosen so that the model (cell and
read-out) has the parameter budget's count of parameters, and all seeds are trained at once as
one :class:`~rnnlab.analysis.experiments.seeds.SeedEnsemble` on the same data streams (per T), so
that cells differ only in their architecture.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass

from rnnlab.analysis.experiments.seeds import (
    History,
    SeedEnsemble,
    TrainSettings,
    hidden_for_budget,
    sequence_model_parameters,
    train,
)
from rnnlab.analysis.experiments.tasks import Task
from rnnlab.analysis.experiments.units import UnitStore
from rnnlab.core.registry import CELLS

#: The cells of the lectures, by registry name, in the order the tables list them.
LECTURE_CELLS = ("elman", "additive", "minimal-gru", "gru", "lstm", "lstm-nofg", "peephole")


@dataclass
class Run:
    """One cell at one length: its size and the per-seed training history."""

    cell: str
    T: int
    hidden: int
    params: int
    history: History


def train_unit(
    make_task: Callable[[int], Task],
    name: str,
    T: int,
    seeds: int,
    budget: int,
    settings: TrainSettings,
) -> dict:
    """One unit of :func:`sweep`: ``seeds`` models of cell ``name`` on ``make_task(T)``, as
    JSON data (a :class:`Run`). Deterministic: the same in any process and in any order."""
    task = make_task(T)
    cell = CELLS[name]
    H = hidden_for_budget(cell, task.input_size, task.output_size, budget)
    params = sequence_model_parameters(cell, task.input_size, H, task.output_size)
    ensemble = SeedEnsemble(cell, task.input_size, H, task.output_size, range(seeds), task.readout)
    history = train(ensemble, task, settings, data_seed=T)
    return asdict(Run(name, T, H, params, history))


def _worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def sweep(
    make_task: Callable[[int], Task],
    cells: Sequence[str],
    lengths: Sequence[int],
    seeds: int,
    budget: int,
    settings: TrainSettings,
    log: Callable[[str], None] | None = print,
    store: UnitStore | None = None,
    prefix: str = "",
    jobs: int = 1,
) -> list[Run]:
    """Train ``seeds`` models of every cell on ``make_task(T)`` for every T.

    With a ``store``, each (cell, T) is a unit named ``PREFIX-T{T}-CELL``: kept once trained,
    read back when the sweep runs again with the same configuration. With ``jobs`` > 1 the
    missing units train in that many worker processes at once (each with this process's torch
    threads; ``make_task`` must then pickle: a class, or a ``functools.partial`` of one), each
    stored as soon as it finishes; the results are those of ``jobs=1``.
    """
    store = store or UnitStore(None, {})
    plan = [(T, name, f"{prefix}-T{T}-{name}" if prefix else f"T{T}-{name}") for T in lengths
            for name in cells]  # fmt: skip
    values = {unit: store.load(unit) for _, _, unit in plan}
    missing = [(T, name, unit) for T, name, unit in plan if values[unit] is None]

    def report(T: int, name: str, unit: str, done: str) -> None:
        if log is not None:
            data = values[unit]
            solved = sum(data["history"]["solved"])
            log(f"  T={T:<4d} {name:<12s} H={data['hidden']:<4d} solved {solved}/{seeds}  ({done})")

    for T, name, unit in plan:
        if values[unit] is not None:
            store.reused.append(unit)
            report(T, name, unit, "stored")
    args = (seeds, budget, settings)
    if jobs > 1 and len(missing) > 1:
        import torch

        context = multiprocessing.get_context("spawn")  # no fork of a threaded torch process
        threads = torch.get_num_threads()
        with ProcessPoolExecutor(min(jobs, len(missing)), context, _worker, (threads,)) as pool:
            futures = {
                pool.submit(train_unit, make_task, name, T, *args): (T, name, unit)
                for T, name, unit in missing
            }
            for future in as_completed(futures):
                T, name, unit = futures[future]
                values[unit] = store.put(unit, future.result())
                report(T, name, unit, f"{values[unit]['history']['seconds']:.0f} s, in parallel")
    else:
        for T, name, unit in missing:
            start = time.perf_counter()
            values[unit] = store.put(unit, train_unit(make_task, name, T, *args))
            report(T, name, unit, f"{time.perf_counter() - start:.0f} s")
    return [
        Run(**{**values[unit], "history": History(**values[unit]["history"])})
        for _, _, unit in plan
    ]


__all__ = ["LECTURE_CELLS", "Run", "sweep", "train_unit"]
