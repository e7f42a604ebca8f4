"""A/B of rnnlab.core.fast's buffer cache in one process: forward+backward time and minor page
faults per call with the cache off and on, alternating, for each model and size.

    python benchmarks/cache_ab.py --models torch.nn.LSTM,lstm+ln --grid 32,100,128 --threads 2

Each timed call follows one untimed call with the same setting (which fills the cache when it
is on); the figure is the median over ``--repeats``. See docs/PERFORMANCE.md, item 8.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from rnnlab.analysis.benchmodels import resolve_models
from rnnlab.core import fast

LIMITS_MIB = (0, 256)  # off, on (the default limit)


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(names: list[str], shape: tuple[int, int, int], repeats: int) -> dict:
    """(model, limit) -> (median seconds, mean faults) of one forward+backward."""
    N, T, H = shape
    x = torch.randn(T, N, H, requires_grad=True)
    grad = torch.randn(T, N, H)
    factories = resolve_models(tuple(names))
    models = {name: factories[name](H) for name in names}
    times = {(n, c): [] for n in names for c in LIMITS_MIB}
    faults = {(n, c): 0 for n in names for c in LIMITS_MIB}
    for _ in range(repeats):
        for name, model in models.items():
            for limit in LIMITS_MIB:
                fast.set_cache_limit(limit)
                model(x)[0].backward(grad)
                before, start = _faults(), time.perf_counter()
                model(x)[0].backward(grad)
                times[(name, limit)].append(time.perf_counter() - start)
                faults[(name, limit)] += _faults() - before
    return {k: (statistics.median(v), faults[k] / repeats) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="torch.nn.LSTM,lstm-nofg,peephole,lstm+ln,gru+ln,mut3")
    parser.add_argument("--grid", action="append", default=None, help="BATCH,TIME,HIDDEN")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not fast.is_available():
        raise SystemExit("rnnlab.core.fast's kernels are not available: nothing to compare")
    torch.set_num_threads(args.threads)
    grid = args.grid or ["32,100,128", "8,1000,256", "64,100,512"]
    names = args.models.split(",")
    before = fast.set_cache_limit(LIMITS_MIB[0])
    try:
        for point in grid:
            shape = tuple(int(v) for v in point.split(","))
            result = measure(names, shape, args.repeats)
            for name in names:
                (t_off, f_off), (t_on, f_on) = (result[(name, c)] for c in LIMITS_MIB)
                print(
                    f"{point:>12}  {name:<14} off {t_off * 1e3:8.1f} ms  on {t_on * 1e3:8.1f} ms"
                    f"  ({t_off / t_on:.2f}x)  faults per call {f_off:8.0f} -> {f_on:8.0f}"
                )
    finally:
        fast.set_cache_limit(before)


if __name__ == "__main__":
    main()
