"""Finished pieces of an experiment, kept on disk so that an interrupted run picks up where it
stopped.

The full settings run for hours. Each experiment splits its work into units (one cell at one
length, one cell on one task, one regulariser arm) and computes every unit through
:meth:`UnitStore.get`: the first time, the unit runs and its JSON result is written atomically to
``OUT/units/NAME.json`` together with the experiment's whole configuration; the next time the
same command runs with the same configuration, the stored result is read back instead. A unit
stored under another configuration (other seeds, steps, cells, ...) is recomputed, and
``rnnlab experiment NAME --fresh`` recomputes everything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnnlab.train.checkpoint import atomic_write_text

#: Bumped when what a unit stores changes meaning.
UNIT_FORMAT = 1


class UnitStore:
    """Memoise an experiment's units in ``directory`` under ``config`` (JSON data).

    ``directory`` None keeps nothing (every unit is computed).
    """

    def __init__(self, directory: Path | None, config: dict) -> None:
        self.directory = directory
        self.config = json.loads(json.dumps(config))  # as it reads back from disk
        self.reused: list[str] = []

    def path(self, name: str) -> Path:
        if self.directory is None:
            raise ValueError("this store keeps nothing on disk")
        return self.directory / (re.sub(r"[^A-Za-z0-9_.=+-]", "_", name) + ".json")

    def load(self, name: str) -> Any | None:
        """The stored value of unit ``name`` under this configuration, or None."""
        if self.directory is None:
            return None
        try:
            record = json.loads(self.path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing, or unreadable: computed again
        if (
            not isinstance(record, dict)
            or record.get("format") != UNIT_FORMAT
            or record.get("unit") != name
            or record.get("config") != self.config
        ):
            return None
        return record.get("value")

    def get(self, name: str, compute: Callable[[], Any]) -> Any:
        """Unit ``name``'s value: stored, or computed by ``compute()`` (JSON data) and stored."""
        value = self.load(name)
        if value is not None:
            self.reused.append(name)
            return value
        return self.put(name, compute())

    def put(self, name: str, value: Any) -> Any:
        """Store ``value`` (JSON data) as unit ``name``; returns it as it reads back."""
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            record = {"format": UNIT_FORMAT, "unit": name, "config": self.config, "value": value}
            atomic_write_text(self.path(name), json.dumps(record))
        return json.loads(json.dumps(value))  # the same value whether computed or read back


__all__ = ["UNIT_FORMAT", "UnitStore"]
