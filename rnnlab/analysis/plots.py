"""What every plot of the analysis shares: matplotlib without a display, line styles, the axes'
finish, saving."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_style(i: int) -> dict:
    """Marker and dash of the i-th line, so that lines lying on top of each other stay visible."""
    markers = "osD^vPX*"
    dashes = ["-", "--", "-.", ":"]
    return {"marker": markers[i % 8], "ls": dashes[i % 4], "ms": 9 - (i % 5), "alpha": 0.85}


def finish_axes(axes: Iterable[Any], xlabel: str, legend_size: int = 8) -> None:
    """Label the x axis, draw a light grid (log minor lines too) and the legend of each axes."""
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=legend_size)


def save_figure(fig: Any, path: Path | str) -> Path:
    """Save ``fig`` as ``path`` (folders created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


__all__ = ["finish_axes", "line_style", "pyplot", "save_figure"]
