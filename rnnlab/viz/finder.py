"""The unit finder's statistics, in numpy: what each position of a text is (annotations), which
units follow it (correlations), how saturated each gate is, LSTMVis's match, and the one-byte
blocks the page colours from. The same figures come out of the server, the static page and the
docs (benchmarks/viz_findings.py).

Shapes: T passage length (tokens), H hidden units.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from rnnlab.analysis.diagnostics import HIGH, LOW
from rnnlab.errors import RnnlabError

#: units listed per annotation in the finder
TOP_UNITS = 10

ANNOTATIONS = (
    "line_position",
    "in_quotes",
    "bracket_depth",
    "word_start",
    "after_newline",
    "capitalised",
)
_OPEN, _CLOSE = "([{", ")]}"


def annotations(tokens: list[str]) -> dict[str, np.ndarray]:
    """What each position of a text is, for the unit finder (one float per token):

    * ``line_position``: tokens since the last newline (0 at a line's first);
    * ``in_quotes``: 1 inside double quotes (from the opening quote to the closing one);
    * ``bracket_depth``: how many of ``( [ {`` are open (counting this token);
    * ``word_start``: 1 at a letter after a non-letter;
    * ``after_newline``: 1 right after a newline;
    * ``capitalised``: 1 on the letters of a word that starts with a capital.
    """
    T = len(tokens)
    out = {name: np.zeros(T, dtype=np.float32) for name in ANNOTATIONS}
    column, quoted, depth, capital = 0, False, 0, False
    previous = "\n"
    for t, tok in enumerate(tokens):
        first = tok[:1]
        if first == '"':  # both quote marks belong to the quotation
            out["in_quotes"][t] = 1.0
            quoted = not quoted
        else:
            out["in_quotes"][t] = float(quoted)
        if first in _OPEN:
            depth += 1
        out["bracket_depth"][t] = depth
        if first in _CLOSE:
            depth = max(0, depth - 1)
        out["line_position"][t] = column
        column = 0 if tok == "\n" else column + 1
        out["after_newline"][t] = float(previous == "\n")
        letter = first.isalpha()
        if letter and not previous[-1:].isalpha():
            out["word_start"][t] = 1.0
            capital = first.isupper()
        if letter and capital:
            out["capitalised"][t] = 1.0
        if not letter:
            capital = False
        previous = tok
    return out


def _standardized(values: np.ndarray) -> np.ndarray:
    """Columns of ``values`` (T, K) centred and scaled to unit norm (float64); 0 where constant."""
    v = values.astype(np.float64)
    v -= v.mean(axis=0)
    norm = np.sqrt((v * v).sum(axis=0))
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 1e-12)


def correlations(values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson correlation of every unit's series (columns of ``values`` (T, H)) with
    ``target`` (T,); 0 where a unit or the target is constant."""
    return (_standardized(values).T @ _standardized(target[:, None]))[:, 0]


def rank_all(
    blocks: dict[tuple[int, str], np.ndarray],
    targets: dict[str, np.ndarray],
    top: int = TOP_UNITS,
) -> dict[str, list[dict[str, Any]]]:
    """For each target (T,), the ``top`` units of all ``blocks`` ((layer, gate) -> (T, H)) most
    correlated with it, by the absolute value of r: ``{name: [{"layer", "gate", "unit",
    "r"}]}`` (one matrix product for all of them); an empty list for a constant target (an
    annotation that never happens in the passage: no quotes in it, say)."""
    keys = list(blocks)
    units = np.concatenate([_standardized(blocks[k]) for k in keys], axis=1)  # (T, U)
    names = list(targets)
    r = units.T @ _standardized(np.stack([targets[n] for n in names], axis=1))  # (U, K)
    where = [
        (layer, gate, unit)
        for layer, gate in keys
        for unit in range(blocks[(layer, gate)].shape[1])
    ]
    out = {}
    constant = np.ptp(np.stack([targets[n] for n in names], axis=1), axis=0) == 0
    for k, name in enumerate(names):
        if constant[k]:
            out[name] = []
            continue
        best = np.argsort(-np.abs(r[:, k]), kind="stable")[:top]
        out[name] = [
            {"layer": where[i][0], "gate": where[i][1], "unit": where[i][2], "r": float(r[i, k])}
            for i in best
        ]
    return out


def rank_units(
    blocks: dict[tuple[int, str], np.ndarray], target: np.ndarray, top: int = TOP_UNITS
) -> list[dict[str, Any]]:
    """:func:`rank_all` for one target."""
    return rank_all(blocks, {"target": target}, top)["target"]


def saturation(values: np.ndarray, low: float = LOW, high: float = HIGH) -> dict[str, list]:
    """Per unit of a sigmoid gate's (T, H) values: the fraction of steps below ``low`` (left
    saturated) and above ``high`` (right saturated)."""
    return {
        "left": np.round((values < low).mean(axis=0), 4).tolist(),
        "right": np.round((values > high).mean(axis=0), 4).tolist(),
    }


def match(
    values: np.ndarray, start: int, end: int, threshold: float
) -> tuple[list[int], np.ndarray]:
    """LSTMVis's match: the units above ``threshold`` at every position of ``[start, end)``, and
    the positions where all of them are above it together (T,) bool."""
    if not 0 <= start < end <= len(values):
        raise RnnlabError(f"the span [{start}, {end}) is not inside the passage of {len(values)}")
    on = values > threshold
    units = np.flatnonzero(on[start:end].all(axis=0))
    together = on[:, units].all(axis=1) if len(units) else np.zeros(len(values), dtype=bool)
    return units.tolist(), together


def block_range(values: np.ndarray) -> tuple[float, float]:
    """The range a block is shown on: [0, 1] for a sigmoid gate, [-1, 1] for a tanh one, else
    its values' own (the cell state)."""
    lo = float(values.min()) if values.size else 0.0
    hi = float(values.max()) if values.size else 0.0
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if lo >= -1.0 and hi <= 1.0:
        return -1.0, 1.0
    return lo, hi


def quantize(values: np.ndarray) -> dict[str, Any]:
    """A (T, H) block as bytes: ``value = lo + (hi - lo) * byte / 255``, base64 (row-major),
    over :func:`block_range`."""
    T, H = values.shape
    lo, hi = block_range(values)
    span = hi - lo if hi > lo else 1.0
    data = np.clip(np.rint((values - lo) / span * 255.0), 0, 255).astype(np.uint8)
    return {"T": T, "H": H, "lo": lo, "hi": hi, "data": base64.b64encode(data.tobytes()).decode()}


def dequantize(block: dict[str, Any]) -> np.ndarray:
    """The (T, H) float32 values of a :func:`quantize` block."""
    raw = np.frombuffer(base64.b64decode(block["data"]), dtype=np.uint8)
    values = raw.reshape(block["T"], block["H"]).astype(np.float32)
    return block["lo"] + (block["hi"] - block["lo"]) * values / 255.0


__all__ = [
    "ANNOTATIONS",
    "TOP_UNITS",
    "annotations",
    "block_range",
    "correlations",
    "dequantize",
    "match",
    "quantize",
    "rank_all",
    "rank_units",
    "saturation",
]
