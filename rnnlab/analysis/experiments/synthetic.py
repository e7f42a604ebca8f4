"""The sweep shared by ``latch``, ``adding`` and ``copy``: every cell x every length, many seeds.

For each sequence length T and each cell, the hidden size is chosen so that the model (cell and
read-out) has the parameter budget's count of parameters, and all seeds are trained at once as
one :class:`~rnnlab.analysis.experiments.seeds.SeedEnsemble` on the same data streams (per T), so
that cells differ only in their architecture.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
) -> list[Run]:
    """Train ``seeds`` models of every cell on ``make_task(T)`` for every T.

    With a ``store``, each (cell, T) is a unit named ``PREFIX-T{T}-CELL``: kept once trained,
    read back when the sweep runs again with the same configuration.
    """
    store = store or UnitStore(None, {})
    runs = []
    for T in lengths:
        task = make_task(T)
        for name in cells:

            def compute(T: int = T, name: str = name, task: Task = task) -> dict:
                cell = CELLS[name]
                H = hidden_for_budget(cell, task.input_size, task.output_size, budget)
                params = sequence_model_parameters(cell, task.input_size, H, task.output_size)
                ensemble = SeedEnsemble(
                    cell, task.input_size, H, task.output_size, range(seeds), task.readout
                )
                history = train(ensemble, task, settings, data_seed=T)
                return asdict(Run(name, T, H, params, history))

            start = time.perf_counter()
            unit = f"{prefix}-T{T}-{name}" if prefix else f"T{T}-{name}"
            data = store.get(unit, compute)
            run = Run(**{**data, "history": History(**data["history"])})
            runs.append(run)
            if log is not None:
                done = "stored" if unit in store.reused else f"{time.perf_counter() - start:.0f} s"
                log(
                    f"  T={T:<4d} {name:<12s} H={run.hidden:<4d} solved "
                    f"{sum(run.history.solved)}/{seeds}  ({done})"
                )
    return runs


__all__ = ["LECTURE_CELLS", "Run", "sweep"]
