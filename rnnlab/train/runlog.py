"""A training run's records: ``metrics.csv``, ``eval.csv``, ``loss.png`` and TensorBoard.

:class:`RunLog` appends one row per logged training step and one per validation, rewrites the
loss-curve PNG on request, and, on resume, keeps exactly the rows up to the resumed step. A run
killed mid-write leaves a CSV cut mid-line; a resume reads only the valid rows (a whole row, an
integer ``step``, a numeric loss) and rewrites the file cleanly. Drawing the plot never stops
training: a failure is reported once, as a warning on stderr.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Mapping
from pathlib import Path

from rnnlab.errors import RnnlabError

TRAIN_CSV = "metrics.csv"
EVAL_CSV = "eval.csv"
PLOT = "loss.png"
#: the column each file's rows must hold a number in to be kept on resume (and to be plotted)
LOSS_COLUMN = {TRAIN_CSV: "train_loss", EVAL_CSV: "val_loss"}


class RunLog:
    """CSV rows (and TensorBoard scalars) of a run in ``out_dir``; a no-op when it is None.

    Args:
        out_dir: the run directory, or None to record nothing on disk.
        resume_step: keep the rows of an existing log up to this step (None: start afresh).
        tensorboard: also write ``out_dir/tensorboard``.
    """

    def __init__(
        self, out_dir: Path | None, resume_step: int | None = None, tensorboard: bool = False
    ) -> None:
        self.out_dir = out_dir
        self.rows: dict[str, list[dict]] = {TRAIN_CSV: [], EVAL_CSV: []}
        self._tb = None
        self._plot_failed = False
        if out_dir is None:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, rows in self.rows.items():
            path = out_dir / name
            if resume_step is not None and path.is_file():
                rows += read_rows(path, LOSS_COLUMN[name], resume_step)
            self._rewrite(name)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise RnnlabError(
                    "--tensorboard needs the tensorboard package: pip install tensorboard"
                ) from None
            self._tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step)

    def train(self, row: Mapping[str, object]) -> None:
        """Record a training row (``step``, ``train_loss``, ``lr``, ``tokens_per_s``, ...)."""
        self._append(TRAIN_CSV, dict(row), "train")

    def eval(self, row: Mapping[str, object]) -> None:
        """Record a validation row (``step`` and the evaluator's metrics)."""
        self._append(EVAL_CSV, dict(row), "val")

    def plot(self) -> None:
        """Rewrite ``loss.png``: training and validation loss against steps. A failure (no
        matplotlib backend, a full disk, ...) is printed once as a warning, never raised."""
        if self.out_dir is None or not self.rows[TRAIN_CSV]:
            return
        try:
            plot_loss_curves(self.rows[TRAIN_CSV], self.rows[EVAL_CSV], self.out_dir / PLOT)
        except Exception as exc:  # the plot is a convenience: training goes on without it
            if not self._plot_failed:
                self._plot_failed = True
                reason = (str(exc).splitlines() or [""])[0][:200] or type(exc).__name__
                print(f"rnnlab: warning: could not draw {PLOT} ({reason})", file=sys.stderr)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _append(self, name: str, row: dict, prefix: str) -> None:
        rows = self.rows[name]
        rows.append(row)
        if self._tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self._tb.add_scalar(f"{prefix}/{k}", v, step)
        if self.out_dir is None:
            return
        if len(rows) > 1 and list(row) == list(rows[-2]):
            with open(self.out_dir / name, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=list(row)).writerow(row)
        else:  # new columns: rewrite with the union of them
            self._rewrite(name)

    def _rewrite(self, name: str) -> None:
        rows = self.rows[name]
        if self.out_dir is None:
            return
        path = self.out_dir / name
        if not rows:  # nothing valid to keep: no stale or garbled file either
            path.unlink(missing_ok=True)
            return
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


def read_rows(path: Path, loss_column: str, up_to_step: int) -> list[dict]:
    """The valid rows of a run's CSV ``path`` with ``step <= up_to_step``: complete rows (no
    missing or extra fields) whose ``step`` is an integer and ``loss_column`` a finite number;
    anything else (a line cut by a kill, garbage, undecodable bytes) is left out."""
    text = path.read_bytes().decode("utf-8", errors="replace").replace("\0", "")
    rows: list[dict] = []
    try:
        for row in csv.DictReader(io.StringIO(text, newline="")):
            if None in row or any(v is None for v in row.values()):
                continue  # a line cut short, or one with more fields than the header
            try:
                step = int(row.get("step") or "")
                loss = float(row.get(loss_column) or "")
            except ValueError:
                continue
            if 0 <= step <= up_to_step and math.isfinite(loss):
                rows.append(row)
    except csv.Error:  # e.g. a field larger than the csv module's limit: keep what came before
        pass
    return rows


def plot_loss_curves(train_rows: list[dict], eval_rows: list[dict], path: Path) -> None:
    """Training loss and validation loss against steps, as a PNG (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [int(r["step"]) for r in train_rows]
    ax.plot(steps, [float(r["train_loss"]) for r in train_rows], label="train", alpha=0.7)
    if eval_rows:
        ax.plot(
            [int(r["step"]) for r in eval_rows],
            [float(r["val_loss"]) for r in eval_rows],
            "o-",
            label="validation",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


__all__ = ["RunLog", "plot_loss_curves", "read_rows"]
