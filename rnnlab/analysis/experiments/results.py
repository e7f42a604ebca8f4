"""What every experiment leaves behind: a results JSON, a CSV table, PNG plots, a printed table."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path


@dataclass
class Result:
    """One experiment's outcome.

    Attributes:
        experiment: its name (``"latch"``).
        setting: ``"full"``, ``"quick"`` or ``"test"``.
        config: the configuration it ran with.
        columns: the table's columns, in order; ``rows`` are dicts over them.
        summary: the few numbers the claims are about.
        plots: file names of the PNGs written next to the results.
        notes: one-line remarks (what the numbers mean, what to compare them with).
        data: anything else worth keeping (per-seed values, curves), saved in the JSON only.
    """

    experiment: str
    setting: str
    config: dict
    columns: list[str]
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    seconds: float = 0.0


def config_dict(config: object) -> dict:
    """A config dataclass (nested ones too) as JSON-friendly data."""
    return _jsonable(asdict(config) if is_dataclass(config) else dict(config))


def _jsonable(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    return value


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return "" if value is None else str(value)


def format_table(columns: Sequence[str], rows: Sequence[dict]) -> str:
    """A plain-text table, one row per dict, columns aligned."""
    cells = [[str(c) for c in columns]] + [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write(result: Result, out_dir: Path) -> Path:
    """``results.json`` (everything) and ``results.csv`` (the table) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = _jsonable(asdict(result))
    (out_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=result.columns, extrasaction="ignore")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({c: row.get(c) for c in result.columns})
    return out_dir / "results.json"


__all__ = [
    "Result",
    "config_dict",
    "format_table",
    "mean_spread",
    "write",
]
