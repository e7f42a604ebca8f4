"""Data: the bundled corpora and the readers, vocabularies and batchers of each task."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled(name: str) -> Path:
    """Path of a bundled data file or folder, e.g. ``bundled("names")``.

    Provenance and licences: ``bundled("PROVENANCE.md")``.
    """
    path = Path(str(resources.files("rnnlab.data") / "corpora" / name))
    if not path.exists():
        raise FileNotFoundError(f"no bundled data named {name!r} (looked in {path.parent})")
    return path
